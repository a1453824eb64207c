"""The installed stack is the one the README promises."""

import importlib
import os

import pytest

pytestmark = pytest.mark.unit


def test_packages_import_and_keras_is_legacy():
    for name in ("bvae_tf", "components", "pipeline", "serving"):
        importlib.import_module(name)
    assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
    import tensorflow as tf

    assert tf.keras.__name__.startswith("tf_keras"), tf.keras.__name__
    assert tf.__version__.startswith("2.16.")


@pytest.mark.parametrize(
    ("module", "version_prefix"),
    [
        ("tfx", "1.16."),
        ("tensorflow_data_validation", "1.16."),
        ("tensorflow_model_analysis", "0.47."),
        ("tensorflow_transform", "1.16."),
        ("apache_beam", "2.60."),
    ],
)
def test_pinned_stack_versions(module, version_prefix):
    mod = importlib.import_module(module)
    assert mod.__version__.startswith(version_prefix), (module, mod.__version__)


def test_serving_apis_and_metadata_import():
    from ml_metadata.proto import metadata_store_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    assert predict_pb2.PredictRequest().model_spec.name == ""
    assert hasattr(prediction_service_pb2_grpc, "PredictionServiceStub")
    assert metadata_store_pb2.ConnectionConfig().WhichOneof("config") is None


def test_tensorboard_starts():
    """The README's training curves: ``tensorboard`` imports ``pkg_resources`` at start,
    which setuptools >= 82 no longer ships (the lock pins 81)."""
    from tensorboard import default, main  # noqa: F401  (the console script's imports)

    assert default.get_plugins()


def test_the_stack_is_installed_with_its_bytecode():
    """``scripts/install.sh`` compiles site-packages: with PYTHONDONTWRITEBYTECODE set,
    every process would otherwise compile TensorFlow's modules from source again."""
    import importlib.util

    import tensorflow as tf
    import tfx

    for module in (tf, tfx):
        cached = importlib.util.cache_from_source(module.__file__)
        assert os.path.exists(cached), f"{module.__name__}: no {cached}"


def test_a_second_install_waits_for_the_first(tmp_path):
    """``scripts/install.sh`` takes ``<VENV>.install-lock`` first: while another install
    holds it, a second one says so and waits, touching nothing."""
    import fcntl
    import pathlib
    import shutil
    import subprocess

    if shutil.which("flock") is None:
        pytest.skip("flock(1) is not installed here: install.sh runs unlocked")
    script = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "install.sh"
    venv = tmp_path / "venv"
    with open(f"{venv}.install-lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the first install
        second = subprocess.Popen(
            ["bash", str(script)],
            env={**os.environ, "VENV": str(venv)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            line = second.stdout.readline()
            assert "another install into" in line and "waiting for it" in line, line
            with pytest.raises(subprocess.TimeoutExpired):
                second.wait(timeout=2)  # still waiting while the lock is held
        finally:
            second.kill()
            second.wait()
    assert not venv.exists()  # nothing was created while it waited
