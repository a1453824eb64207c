"""End to end: the daily run of ``docs/PIPELINE.md`` ("A daily run"), its three
commands as written there, with a smaller model and epoch budget for test time, and
every Beam job on Beam's portable runner path (``--runner=PortableRunner
--job_endpoint=embed --environment_type=LOOPBACK``: the job API the Flink and Spark
runners use).

Day 1 (``python -m pipeline.demo $S``) trains from scratch and writes batch rows;
day 2 (``--set synthetic.seed=1``, a new span that adds and removes items) starts
from day 1's blessed model, passes the drift check, is blessed against day 1's model,
pushed as a second version, and writes batch rows again; day 3 (the behavior mix
shifted) stops after StatisticsGen with exit status 1 and a message naming the
drifted feature and its distance, and nothing new is trained or pushed.
"""

import csv
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import tensorflow as tf

from bvae_tf import features
from pipeline import configs, report
from pipeline import pipeline as pipeline_lib

#: Three pipeline runs in one module fixture: about 6 minutes on 2 idle cores, above
#: the suite's 900 s per test (pyproject.toml) when the cores are shared.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2700)]

REPO = pathlib.Path(__file__).resolve().parents[2]
#: ``$S`` of docs/PIPELINE.md, with the output root under the test's tmp dir.
SWITCHES = ("training.warm_start=true", "drift.enabled=true", "batch_inference.enabled=true")
#: Test time only: a small model and budget that still clears the demo gate (NDCG@5 >= 0.1).
SMALL = (
    "model.latent_dim=16",
    "training.epochs=60",
    "training.patience=10",
    "training.batch_size=100",
)
#: Beam's portable runner path with an embedded job server and in-process workers.
PORTABLE = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]
#: The pipeline's Beam components (the BatchRecommender runs with batch output on).
BEAM_NODES = (
    pipeline_lib.EXAMPLE_GEN,
    pipeline_lib.STATISTICS_GEN,
    pipeline_lib.TRANSFORM,
    pipeline_lib.EVALUATOR,
    pipeline_lib.TEST_EVALUATOR,
    pipeline_lib.BATCH_RECOMMENDER,
)
DAYS = {
    1: (),
    2: ("synthetic.seed=1",),
    3: ("synthetic.seed=2", "synthetic.cart_rate=0.9", "synthetic.purchase_after_cart=0.9"),
}


def _sets(values) -> list[str]:
    return [arg for value in values for arg in ("--set", value)]


@pytest.fixture(scope="module")
def days(tmp_path_factory):
    """Runs the three days in turn; returns ``{day: (completed process, summary)}``."""
    root = tmp_path_factory.mktemp("daily")
    config = configs.load_config(None, [f"output_root={root}"])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    runs = {}
    for day, extra in DAYS.items():
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline.demo",
                *_sets((f"output_root={root}", *SWITCHES, *SMALL, *extra)),
                *_sets([f"beam_pipeline_args={json.dumps(PORTABLE)}"]),
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        summary = report.summarize(config.resolved_metadata_path, config.pipeline_name)
        runs[day] = (done, summary)
        if day < 3:
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return config, runs


def _versions(config) -> list[str]:
    base = pathlib.Path(config.resolved_serving_model_dir) / config.model_name
    return sorted(p.name for p in base.iterdir() if p.name.isdigit())


def _check_batch_rows(summary, train_examples_uri: str) -> None:
    """The batch CSV has top-K rows for every user and behavior, none of them an item
    the user already did under that behavior in the train split."""
    batch = summary["batch_recommendations"]
    assert batch["blessed"] is True
    seen = {}
    train_dir = pathlib.Path(train_examples_uri) / "Split-train"
    for record in tf.data.TFRecordDataset(sorted(map(str, train_dir.iterdir())), "GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        user = example.features.feature[features.USER_ID].bytes_list.value[0].decode()
        for key, feature in example.features.feature.items():
            if key.endswith("_items"):
                behavior = key.removesuffix("_items")
                seen[user, behavior] = {v.decode() for v in feature.bytes_list.value}
    rows = []
    for path in pathlib.Path(batch["uri"]).glob("recommendations-*.csv"):
        with path.open(newline="") as f:
            rows += list(csv.DictReader(f))
    assert len(rows) == batch["rows"] > 0
    users = {r["user_id"] for r in rows}
    assert len(users) == batch["users"]
    behaviors = {r["behavior"] for r in rows}
    assert len(rows) == len(users) * len(behaviors) * batch["top_k"]
    clashes = [r for r in rows if r["item_id"] in seen.get((r["user_id"], r["behavior"]), ())]
    assert not clashes, clashes[:5]


def test_day1_trains_from_scratch_pushes_and_writes_batch_rows(days):
    _, runs = days
    done, summary = runs[1]
    printed = done.stdout + done.stderr
    assert "training.warm_start: no blessed model yet, training from scratch." in printed
    assert "Drift vs the previous span" not in printed  # nothing to compare yet
    assert summary["blessed"] is True and summary["pushed"] is True
    assert "drift" not in summary
    _check_batch_rows(summary, summary["examples_uri"])


def test_day2_warm_starts_passes_drift_and_pushes_a_second_version(days):
    config, runs = days
    (_, first), (done, second) = runs[1], runs[2]
    match = re.search(
        r"Warm start from the latest blessed model: (\d+) items kept, (\d+) new, (\d+) dropped",
        done.stdout + done.stderr,
    )
    assert match, done.stdout[-3000:] + done.stderr[-3000:]
    kept, new, dropped = map(int, match.groups())
    assert kept > 0 and new > 0 and dropped > 0  # the new span adds and removes items
    fit_file = pathlib.Path(second["tensorboard_logdir"]).parent / "fit_result.json"
    assert json.loads(fit_file.read_text())["warm_start"]["items_kept"] == kept
    assert second["drift"]["measurements"] > 0
    assert second["drift"]["drifted"] == 0
    assert f"Drift vs the previous span: 0 of {second['drift']['measurements']}" in done.stdout
    # Judged against day 1's model: TFMA scored both, the change thresholds held.
    baseline = second["evaluation"]["baseline"][features.EVAL]["overall"]
    assert set(baseline) == set(config.behaviors)
    assert second["blessing_message"] == "blessed (against the latest blessed model)"
    assert second["blessed"] is True and second["pushed"] is True
    assert _versions(config) == sorted([first["pushed_version"], second["pushed_version"]])
    _check_batch_rows(second, second["examples_uri"])
    assert second["batch_recommendations"]["uri"] != first["batch_recommendations"]["uri"]


def test_day3_drifted_span_stops_before_training_and_pushes_nothing(days):
    config, runs = days
    (_, second), (done, third) = runs[2], runs[3]
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    message = done.stderr[done.stderr.index("error: the train split drifted") :]
    assert re.search(r"behaviors \(behavior_mix\): distance \d\.\d{4} > threshold 0\.1", message)
    assert second["statistics_uri"] in message  # compared with day 2's statistics
    assert third["run_id"] != second["run_id"]
    assert third["components"][pipeline_lib.STATISTICS_GEN]["state"] == "COMPLETE"
    for node in (pipeline_lib.TRANSFORM, pipeline_lib.TRAINER, pipeline_lib.PUSHER):
        assert node not in third["components"]
    assert _versions(config) == sorted([runs[1][1]["pushed_version"], second["pushed_version"]])


def _node_logs(log_text: str) -> dict[str, str]:
    """The full log's lines per component, between "<node> is running" and "... is
    finished" (LocalDagRunner: ``Component X``; BeamDagRunner: ``node X``)."""
    sections, current = {}, None
    for line in log_text.splitlines():
        match = re.search(r"(?:Component|node) (\S+) is (running|finished)", line)
        if match:
            current = match.group(1) if match.group(2) == "running" else None
            continue
        if current:
            sections[current] = sections.get(current, "") + line + "\n"
    return sections


def test_every_beam_component_ran_on_the_portable_runner(days):
    _, runs = days
    done, _ = runs[2]
    log_file = pathlib.Path(done.stdout.splitlines()[0].removeprefix("Full log: "))
    sections = _node_logs(log_file.read_text())
    for node in BEAM_NODES:
        assert "portable_runner" in sections[node], node
        assert "Job state changed to DONE" in sections[node], node
    assert "portable_runner" not in sections[pipeline_lib.TRAINER]  # no Beam job there
