"""Real data: the JD event log through ExampleGen, TFDV and the curated JD schema."""

import pytest
from tfx import v1 as tfx
from tfx.orchestration import pipeline as pipeline_py

from bvae_tf import features
from pipeline import configs, jd, local_runner, report
from pipeline import pipeline as pipeline_lib

pytestmark = pytest.mark.slow


def test_jd_log_splits_like_the_release_and_passes_the_curated_schema(jd_events, tmp_path):
    config = configs.load_config(
        jd.DEFAULT_CONFIG, [f"data.input_base={jd_events}", f"output_root={tmp_path}"]
    )
    tfx.orchestration.LocalDagRunner().run(
        local_runner.build(config),
        run_options=pipeline_py.RunOptions(to_nodes=[pipeline_lib.EXAMPLE_VALIDATOR]),
    )
    summary = report.summarize(config.resolved_metadata_path, config.pipeline_name)
    assert summary["components"][pipeline_lib.EXAMPLE_VALIDATOR]["state"] == "COMPLETE"
    splits = summary["accounting"]["splits"]
    # The released JD files: 10,690 users with train rows (the release format's JD files).
    assert splits[features.TRAIN]["examples"] == 10690
    assert summary["accounting"]["identity_holds"] is True
