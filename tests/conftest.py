"""Shared pytest setup: Keras 2 before TensorFlow loads, seeds, real-data location."""

import os
import pathlib
import random
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from components import local_beam

# As the local entry points do (pipeline.runtime.start): in-process TFX Beam
# executors on the DirectRunner skip building a TFX sdist (~3 s per executor).
local_beam.skip_tfx_sdist_for_direct_runner()

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_script(name: str):
    """``scripts/<name>.py`` imported as a module (the scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The team's real datasets (never copied into the repository). Override with
#: BVAE_SHARED_DATA=/path/to/data.
SHARED_DATA = pathlib.Path(os.environ.get("BVAE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed_and_clear_keras():
    """Seeds Python/NumPy (and TF when loaded) and clears the Keras session per test."""
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 -- seeds code that uses the legacy global RNG
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        tf.keras.backend.clear_session()
        tf.random.set_seed(0)
    yield


@pytest.fixture
def shared_data() -> pathlib.Path:
    """Path of ../shared/data; skips the test with a clear message when it is absent."""
    if not (SHARED_DATA / "bvae").is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA}/bvae (set BVAE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def jd_dir(shared_data: pathlib.Path) -> pathlib.Path:
    """The released, pre-split JD dataset (``<behavior>_{train,valid,test}`` files)."""
    path = shared_data / "bvae" / "JD"
    if not path.is_dir():
        pytest.skip(f"JD dataset not found at {path}")
    return path


@pytest.fixture
def jd_events(shared_data: pathlib.Path) -> pathlib.Path:
    """The raw, timestamped JD event log (``JD_events.csv.gz``)."""
    path = shared_data / "bvae" / "JD_events.csv.gz"
    if not path.is_file():
        pytest.skip(f"JD event log not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_pipeline_data(tmp_path_factory):
    """The tiny raw/transformed example sets (``tests.pipeline.tiny``), built once per
    test process; tests only read them."""
    from tests.pipeline import tiny

    return tiny.build(tmp_path_factory.mktemp("tiny"))


#: Test files that take the longest (measured, `--durations`), longest first. With
#: `make test`'s parallel workers (one file each at a time) they start first, so that
#: the short files fill the other worker meanwhile instead of waiting at the end.
LONGEST_FIRST = (
    "tests/pipeline/test_e2e.py",
    "tests/pipeline/test_daily.py",
    "tests/bvae_tf/test_multi_worker.py",
    "tests/bvae_tf/test_trainer.py",
    "tests/serving/test_reload.py",
    "tests/components/test_tfma_ranking.py",
    "tests/components/test_example_gen_executor.py",
    "tests/bvae_tf/test_model.py",
    "tests/bvae_tf/test_preprocessing.py",
    "tests/components/test_example_gen_checks.py",
)


def pytest_collection_modifyitems(config, items):
    """Runs the files of ``LONGEST_FIRST`` first (in that order), the rest as collected."""
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
