"""End to end: the Beam runner's entry point on the synthetic log, then the TFX CLI
re-run gated.

Run 1 (``python -m pipeline.beam_runner ... -- --direct_running_mode=multi_processing
--direct_num_workers=2``: BeamDagRunner, every Beam component in 2 worker processes):
every component executes once; the ExampleGen's output equals a plain-Python
reference; the model is blessed and pushed as
``<serving>/<model>/<version>/`` and answers ``serving_default``; the console shows
progress lines and the summary, the full log goes to ``<output_root>/logs/``. Run 2
(``tfx pipeline create`` + ``tfx run create``, LocalDagRunner reading
``$BVAE_PIPELINE_CONFIG``; same data, Beam options and cache): an impossible
absolute bound: the blessing is written, not blessed, and nothing new is pushed.
"""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

import bvae_tf  # noqa: F401
from bvae_tf import export as warmup
from bvae_tf import features
from components import synthetic_logs
from components.multi_behavior_example_gen import accounting
from pipeline import configs, report
from pipeline import pipeline as pipeline_lib
from tests.components.example_gen_testing import assert_matches_the_reference, read_splits

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parents[2]
QUIETING_ENV = ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")
#: Beam options of both runs (the CLI run reads them from the config; the same
#: options keep the executor specs, and so the cache keys, of the two runs equal).
BEAM_ARGS = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
CONFIG = {
    "enable_cache": True,
    "beam_pipeline_args": BEAM_ARGS,
    "model": {"latent_dim": 16},
    # ~0.2 s per epoch after the first: enough to clear the default NDCG@5 >= 0.1 bound.
    "training": {"epochs": 60, "patience": 10, "batch_size": 100},
    "top_k": 5,
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    path = root / "config.json"
    path.write_text(json.dumps({**CONFIG, "output_root": str(root)}))
    return root, path, configs.load_config(str(path))


@pytest.fixture(scope="module")
def first_run_output(workspace):
    _, path, _ = workspace
    # The entry point quiets itself: none of the quieting environment of make/pytest.
    env = {k: v for k, v in os.environ.items() if k not in QUIETING_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.beam_runner", "--config", str(path), "--", *BEAM_ARGS],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def first_run(workspace, first_run_output):
    _, _, config = workspace
    return report.summarize(config.resolved_metadata_path, config.pipeline_name)


def _versions(config) -> list[str]:
    base = pathlib.Path(config.resolved_serving_model_dir) / config.model_name
    return sorted(p.name for p in base.iterdir()) if base.exists() else []


def test_first_run_executes_every_component_blesses_and_pushes(workspace, first_run):
    _, _, config = workspace
    components = first_run["components"]
    executed = [n for n in pipeline_lib.NODE_IDS if n != pipeline_lib.BASELINE_RESOLVER]
    assert {n: components[n]["state"] for n in executed} == {n: "COMPLETE" for n in executed}
    accounting = first_run["accounting"]
    assert accounting["identity_holds"] is True
    assert sum(accounting["rows_rejected"].values()) > 0  # the log's deliberate bad rows
    evaluation = first_run["evaluation"]
    assert evaluation["gate_split"] == features.EVAL
    assert set(evaluation["splits"]) == {features.EVAL, features.TEST}
    for split in (features.EVAL, features.TEST):
        assert set(evaluation["splits"][split]) == set(config.behaviors)
        purchase = evaluation["splits"][split]["purchase"]
        assert purchase["num_users"] > 0
        assert 0.0 <= purchase["ndcg@5"] <= 1.0
        # Sliced by user activity; the slices' users add up to the overall count.
        activity = [s for s in evaluation["slices"][split] if s.startswith("activity=")]
        assert len(activity) >= 2
        users = sum(evaluation["slices"][split][s]["purchase"]["num_users"] for s in activity)
        assert users == purchase["num_users"]
    assert evaluation["baseline"] is None  # first model: nothing blessed before
    assert config.gate_config().bounds_for("purchase") == {"ndcg@5": 0.1}
    assert evaluation["validation"] == {"ok": True, "failures": []}
    # tfma.load_eval_result reads the gate's output (what a notebook renders).
    loaded = tfma.load_eval_result(evaluation["uri"])
    slice_keys = {key for key, _ in loaded.slicing_metrics}
    activity = [s for s in evaluation["slices"][features.EVAL] if s.startswith("activity=")]
    assert slice_keys == {()} | {(("activity", s.split("=", 1)[1]),) for s in activity}
    assert first_run["blessed"] is True
    assert first_run["pushed"] is True
    version_dir = pathlib.Path(first_run["pushed_destination"])
    assert version_dir.parent == pathlib.Path(config.resolved_serving_model_dir) / config.model_name
    assert _versions(config) == [first_run["pushed_version"]]
    assert (version_dir / "saved_model.pb").is_file()
    assert warmup.warmup_file(version_dir).is_file()
    text = report.format_summary(first_run)
    assert "Blessed: yes" in text
    assert str(version_dir) in text


def test_beam_runner_console_is_short_and_the_full_log_is_in_a_file(
    workspace, first_run, first_run_output
):
    root, _, _ = workspace
    stdout, stderr = first_run_output.stdout, first_run_output.stderr
    assert f"Pushed: version {first_run['pushed_version']}" in stdout
    assert f"(for pipeline.schema_tool --statistics): {first_run['statistics_uri']}" in stdout
    assert f"(for components.batch_recommender --examples): {first_run['examples_uri']}" in stdout
    lines = (stdout + stderr).splitlines()
    assert len(lines) <= 150, "\n".join(lines)
    assert any(line.endswith("] Trainer ...") for line in lines), lines
    noise = ("INFO:", "WARNING:absl", "WARNING:tensorflow", "E0000", "W0000", "I0000")
    assert not [line for line in lines if line.startswith(noise) or "Warning:" in line]
    log_file = pathlib.Path(stdout.splitlines()[0].removeprefix("Full log: "))
    assert log_file.parent == root / "logs"
    assert "node Transform is finished." in log_file.read_text()


def test_the_multi_process_example_gen_matches_the_plain_python_reference(workspace, first_run):
    """The ExampleGen of run 1 (2 Beam worker processes) on the default synthetic log
    gives exactly the plain-Python reference's examples and counts every row."""
    _, _, config = workspace
    examples = pathlib.Path(first_run["examples_uri"])
    record = json.loads((examples / accounting.ACCOUNTING_FILE).read_text())
    log_config = synthetic_logs.SyntheticLogConfig(**config.synthetic)
    _, summary = synthetic_logs.render_log(log_config)  # what the runner wrote, and counts
    assert_matches_the_reference(record, read_splits(examples), log_config, summary)


def test_pushed_model_answers_serving_default(first_run):
    version_dir = first_run["pushed_destination"]
    eval_dir = pathlib.Path(first_run["examples_uri"]) / "Split-eval"
    records = [
        r.numpy()
        for r in tf.data.TFRecordDataset(sorted(map(str, eval_dir.iterdir())), "GZIP").take(8)
    ]
    serve = tf.saved_model.load(version_dir).signatures[features.SERVING_SIGNATURE]
    out = serve(examples=tf.constant(records))
    for behavior in ("purchase", "click"):
        ids = out[features.item_ids_output(behavior)].numpy()
        scores = out[features.scores_output(behavior)].numpy()
        assert ids.shape == scores.shape == (len(records), CONFIG["top_k"])
        assert np.all(np.diff(scores, axis=1) <= 0)
        for record, row in zip(records, ids, strict=True):
            example = tf.train.Example.FromString(record)
            own = set(example.features.feature[features.items_key(behavior)].bytes_list.value)
            assert not own & set(row)
    assert out[features.OOV_COUNT].numpy().tolist() == [0] * len(records)


def test_cli_rerun_with_an_impossible_bound_is_not_blessed_and_pushes_nothing(workspace, first_run):
    root, path, config = workspace
    strict = json.loads(path.read_text())
    strict["evaluation"] = {"lower_bounds": {"*": {"ndcg@5": 1.0}}}
    strict_path = root / "strict.json"
    strict_path.write_text(json.dumps(strict))
    env = {
        **os.environ,
        configs.CONFIG_ENV: str(strict_path),
        "LOCAL_HOME": str(root / "tfx_home"),
    }
    tfx_cli = os.path.join(os.path.dirname(sys.executable), "tfx")
    printed = []
    for command in (
        ["pipeline", "create", "--engine", "local", "--pipeline_path", "pipeline/local_runner.py"],
        ["run", "create", "--engine", "local", "--pipeline_name", config.pipeline_name],
    ):
        done = subprocess.run(
            [tfx_cli, *command], cwd=REPO, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        printed.append(done.stdout)
    # The runner prints a summary after a run, not when the CLI only compiles.
    assert "Blessed:" not in printed[0]
    assert "Blessed: no" in printed[1] and "Pushed: nothing" in printed[1]
    assert "the gate is the config's evaluation.lower_bounds" in printed[1]  # what to change
    second = report.summarize(config.resolved_metadata_path, config.pipeline_name)
    assert second["run_id"] != first_run["run_id"]
    for node in (pipeline_lib.EXAMPLE_GEN, pipeline_lib.TRANSFORM, pipeline_lib.TRAINER):
        assert second["components"][node]["state"] == "CACHED"
    assert second["components"][pipeline_lib.EVALUATOR]["state"] == "COMPLETE"
    assert second["blessed"] is False
    assert "ndcg@5" in second["blessing_message"]
    # The latest blessed model (run 1's) was the baseline, and it did not regress: only
    # the absolute bounds failed.
    assert second["evaluation"]["baseline"] is not None
    failures = second["evaluation"]["validation"]["failures"]
    assert failures and all("(value, " in f for f in failures)
    assert second["pushed"] is False
    assert _versions(config) == [first_run["pushed_version"]]
