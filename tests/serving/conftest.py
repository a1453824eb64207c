"""Fixtures of the serving tests: an exported model base path and a running local server.

``exported_model_base`` is the one place that decides which SavedModel the serving
tests use: the stand-in of ``benchmarks/standin_model.py``, which implements the
exact ``serving_default`` contract of ``bvae_tf.features`` with 12 items (small
enough that a user's own items visibly leave the top-K). ``test_real_export.py``
serves a model exported by ``bvae_tf.trainer`` as well.
"""

from __future__ import annotations

import pathlib
import shutil

import pytest

from benchmarks.standin_model import export_standin_model
from bvae_tf.export import write_warmup_requests
from serving.client import ServingClient
from serving.server import LocalServer

MODEL_NAME = "bvae"
NUM_ITEMS = 12
TOP_K = 5


@pytest.fixture(scope="session")
def model_template(tmp_path_factory) -> pathlib.Path:
    """Version-less stand-in exports (seed 1 and 2) to copy into base paths."""
    root = tmp_path_factory.mktemp("standin")
    for seed in (1, 2):
        path = export_standin_model(
            root / f"seed{seed}", num_items=NUM_ITEMS, top_k=TOP_K, seed=seed
        )
        write_warmup_requests(path, model_name=MODEL_NAME)
    return root


def publish(
    template: pathlib.Path, base: pathlib.Path, version: int, seed: int = 1
) -> pathlib.Path:
    """Copies a template export to ``base/bvae/.tmp-<version>``, then renames it into place."""
    model_dir = base / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = model_dir / f".tmp-{version}"
    shutil.copytree(template / f"seed{seed}", staging)
    target = model_dir / str(version)
    staging.rename(target)
    return target


@pytest.fixture(scope="module")
def exported_model_base(tmp_path_factory, model_template) -> tuple[pathlib.Path, str]:
    """``(model_base_path, model_name)`` with version 1 of the stand-in model."""
    base = tmp_path_factory.mktemp("models")
    publish(model_template, base, 1)
    return base, MODEL_NAME


@pytest.fixture(scope="module")
def local_server(exported_model_base):
    """A local server (gRPC and REST, batching on) on free loopback ports."""
    base, name = exported_model_base
    from serving.versions import BatchingOptions

    with LocalServer(
        base,
        name,
        port=0,
        rest_api_port=0,
        poll_wait_seconds=0.2,
        max_request_bytes=64 * 1024,
        batching=BatchingOptions(max_batch_size=8),
    ) as server:
        yield server


@pytest.fixture
def client(local_server):
    with ServingClient(local_server.target, model_name=MODEL_NAME, timeout_s=10.0) as c:
        yield c


def assert_same_ranking(got, expected):
    """Equal ``((item_id, score), …)`` lists: same ids, scores equal up to float rounding
    (a batch of another size may round a matmul differently in the last bit)."""
    got, expected = list(got), list(expected)
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], rel=1e-5, abs=1e-6)
