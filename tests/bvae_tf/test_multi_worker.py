"""Multi-worker training, really run: two worker processes on loopback
(``TF_CONFIG``, free ports) train the tiny model with ``MultiWorkerMirroredStrategy``
through the Trainer's ``run_fn``, against a single-worker run of the same settings.

Both workers get the same ``FnArgs`` (as TFX gives them): only the chief writes the
export, ``fit_result.json`` and TensorBoard files; the other worker's go to a
temporary directory that it removes. Each worker reads every other batch of 16
(``AutoShardPolicy.DATA``), so a step's global batch is 32 and an epoch has half the
steps; the single worker trains with batches of 32, so both take the same number of
updates of the same size. Their data order and sharding differ: the valid score may
differ, within ``TOLERANCE``.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest
import tensorflow as tf

from bvae_tf import features, trainer
from tests.pipeline import tiny

pytestmark = pytest.mark.e2e

REPO = pathlib.Path(__file__).resolve().parents[2]
EPOCHS = 12
#: Allowed gap of the valid selection score (sum over the 2 behaviors of NDCG@5).
TOLERANCE = 0.08


def _fn_args(data, out: pathlib.Path, batch_size: int) -> dict:
    return {
        "train_files": data.transformed_files(features.TRAIN),
        "eval_files": data.transformed_files(features.EVAL),
        "transform_output": data.transform_output,
        "serving_model_dir": str(out / "model" / "Format-Serving"),
        "model_run_dir": str(out / "model_run"),
        "custom_config": {
            "behaviors": list(tiny.BEHAVIORS),
            "model": {"latent_dim": 8, "learning_rate": 0.01},
            "training": {
                "epochs": EPOCHS,
                "patience": EPOCHS,
                "batch_size": batch_size,
                "verbose": 0,
            },
            "top_k": 5,
        },
    }


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _tf_config(workers: list[str], index: int) -> dict:
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}


def _run(args: dict, tf_config: dict | None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.bvae_tf.multi_worker_main", json.dumps(args)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def runs(tiny_pipeline_data, tmp_path_factory):
    """``{"single": FnArgs dict, "multi": FnArgs dict}`` after both trainings."""
    root = tmp_path_factory.mktemp("multi_worker")
    args = {
        name: _fn_args(tiny_pipeline_data, root / name, batch_size)
        for name, batch_size in (("single", 32), ("multi", 16))
    }
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    processes = [_run(args["single"], None)] + [
        _run(
            args["multi"], {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=600)[0] for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, out in zip(processes, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    return args, outputs


def _fit(args) -> dict:
    with open(os.path.join(args["model_run_dir"], trainer.FIT_RESULT_FILE)) as f:
        return json.load(f)


def test_two_workers_train_like_one_within_tolerance(runs):
    args, _ = runs
    single, multi = _fit(args["single"]), _fit(args["multi"])
    assert (multi["strategy"], multi["replicas"]) == ("multi_worker_mirrored", 2)
    assert (single["strategy"], single["replicas"]) == ("default", 1)
    assert single["epochs_run"] == multi["epochs_run"] == EPOCHS
    first = multi["history"][0]["selection_score"]
    assert multi["best_score"] > first + 0.05  # it learned
    assert abs(multi["best_score"] - single["best_score"]) <= TOLERANCE, (single, multi)


def test_only_the_chief_writes_the_outputs(runs, tiny_pipeline_data):
    args, _ = runs
    run_dir = pathlib.Path(args["multi"]["model_run_dir"])
    assert sorted(p.name for p in run_dir.iterdir()) == ["fit_result.json", "tensorboard"]
    # One TensorBoard writer (the chief's): one events file per folder.
    folders = {p.parent for p in (run_dir / "tensorboard").rglob("events.out.tfevents.*")}
    assert folders
    for folder in folders:
        assert len(list(folder.glob("events.out.tfevents.*"))) == 1, folder
    serve = tf.saved_model.load(args["multi"]["serving_model_dir"]).signatures[
        features.SERVING_SIGNATURE
    ]
    out = serve(examples=tf.constant(tiny_pipeline_data.serialized(features.EVAL)[:4]))
    for b in tiny.BEHAVIORS:
        assert out[features.item_ids_output(b)].shape == (4, 5)


@pytest.mark.parametrize(
    ("task", "cluster", "chief"),
    [
        ((None, None), {}, True),
        (("worker", 0), {"worker": ["a", "b"]}, True),
        (("worker", 1), {"worker": ["a", "b"]}, False),
        # Vertex AI: worker pool 0 is the chief, pool 1 the workers.
        (("chief", 0), {"chief": ["a"], "worker": ["b", "c"]}, True),
        (("worker", 0), {"chief": ["a"], "worker": ["b", "c"]}, False),
        (("worker", 1), {"chief": ["a"], "worker": ["b", "c"]}, False),
    ],
)
def test_exactly_one_task_is_the_chief(task, cluster, chief):
    assert trainer.is_chief_task(*task, cluster) is chief


def test_a_single_worker_strategy_under_a_multi_worker_tf_config_is_refused(monkeypatch):
    cluster = {"cluster": {"chief": ["a:1"], "worker": ["b:1"]}, "task": {"type": "chief"}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    for name in ("default", "mirrored"):
        with pytest.raises(ValueError, match="TF_CONFIG names 2 tasks"):
            trainer.make_strategy(name)
    with pytest.raises(ValueError, match=r"TF_CONFIG names 2 tasks.* with training.devices"):
        trainer.make_strategy("auto", ["/cpu:0"])
