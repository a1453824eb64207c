"""End to end: ``python -m pipeline.beam_runner`` (its real entry point) with two
multi-process Beam workers on the synthetic log, through to a pushed model."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from pipeline import configs, report

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_beam_runner_entry_point_with_two_worker_processes_pushes_a_model(tmp_path):
    config_path = tmp_path / "config.json"
    config_path.write_text(
        json.dumps(
            {
                "output_root": str(tmp_path),
                "pipeline_name": "bvae-beam",
                "model": {"latent_dim": 8},
                "training": {"epochs": 3, "patience": 3, "batch_size": 100},
                "top_k": 5,
                # Three epochs do not reach the default bound; the gate itself is tested
                # elsewhere: here any non-negative NDCG blesses.
                "evaluation": {"lower_bounds": {"*": {"ndcg@5": 0.0}}},
            }
        )
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.beam_runner",
            "--config",
            str(config_path),
            "--",
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=2",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    config = configs.load_config(str(config_path))
    summary = report.summarize(config.resolved_metadata_path, config.pipeline_name)
    assert summary["accounting"]["identity_holds"] is True
    assert summary["blessed"] is True
    assert summary["pushed"] is True
    version_dir = pathlib.Path(summary["pushed_destination"])
    assert (version_dir / "saved_model.pb").is_file()
    assert version_dir.parent == pathlib.Path(config.resolved_serving_model_dir) / config.model_name
    # Quiet by default: a progress line per component, then the summary; the full
    # TFX/Beam log is in the file named on the first line.
    assert f"Pushed: version {summary['pushed_version']}" in result.stdout
    assert f"Statistics (for pipeline.schema_tool --statistics): {summary['statistics_uri']}" in (
        result.stdout
    )
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) <= 150, "\n".join(lines)
    assert any(line.endswith("] Trainer ...") for line in lines), lines
    assert not [line for line in lines if line.startswith(("INFO:", "I0000", "E0000", "W0000"))]
    log_file = pathlib.Path(result.stdout.splitlines()[0].removeprefix("Full log: "))
    assert log_file.parent == tmp_path / "logs"
    assert "node Transform is finished." in log_file.read_text()
