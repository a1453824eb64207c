"""BVAE (Behavior-aware Variational Autoencoder) in TensorFlow/Keras 2.

Importing this package sets ``TF_USE_LEGACY_KERAS=1`` so that ``tf.keras`` is
Keras 2 (``tf_keras``), which TFX 1.16 needs.
It must therefore be imported before TensorFlow; it imports nothing heavy itself.
"""

import logging
import os
import sys
import warnings

#: Whether the user chose TensorFlow's C++ log level (then it is never changed).
_TF_LOG_LEVEL_FROM_USER = "TF_CPP_MIN_LOG_LEVEL" in os.environ

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


#: Modules of the Google client libraries (pulled in by TFX and Beam) that warn about
#: this platform's versions at import: harmless here, and repeated by every Beam worker.
_NOISY_IMPORT_WARNINGS = (
    "google.api_core._python_version_support",
    "google.auth.transport.grpc",
    "google.cloud.aiplatform.models",
)


#: Set by :func:`quiet_cli` for the processes a command starts (Beam's multi-process
#: workers): importing this package there installs :func:`_quiet_unraisable` too.
QUIET_SHUTDOWN_ENV = "BVAE_QUIET_TF_SHUTDOWN"


def _quiet_unraisable(original):
    """An ``sys.unraisablehook`` that logs TensorFlow's function-deletion errors at
    interpreter shutdown ("Exception ignored in ... AtomicFunction.__del__": harmless,
    printed by CPython to stderr) at INFO instead of printing them; anything else goes
    to ``original``."""

    # Bound now: at interpreter shutdown this module's globals may already be None.
    logger = logging.getLogger("bvae_tf.console")

    def hook(unraisable):
        if type(unraisable.object).__name__ == "AtomicFunction" or "AtomicFunction" in repr(
            unraisable.object
        ):
            try:  # noqa: SIM105 -- no contextlib: globals may be None at shutdown
                logger.info(
                    "ignored at shutdown: %s in %r", unraisable.exc_value, unraisable.object
                )
            except Exception:  # logging itself is being torn down: stay silent
                pass
            return
        original(unraisable)

    return hook


def quiet_cli() -> None:
    """For command-line tools, before TensorFlow is imported: hides TensorFlow's C++
    start-up messages (``TF_CPP_MIN_LOG_LEVEL=3``, e.g. the cuDNN/cuFFT "Unable to
    register factory" lines of a CPU machine) unless the user set a level, and the
    Google client libraries' FutureWarnings about the Python, grpcio and storage
    versions, in this process and (through ``PYTHONWARNINGS``) in the processes it
    starts, such as Beam's multi-process workers; and, in those processes, TensorFlow's
    shutdown noise (:data:`QUIET_SHUTDOWN_ENV`; ``console.setup`` does it here)."""
    os.environ[QUIET_SHUTDOWN_ENV] = "1"
    if not _TF_LOG_LEVEL_FROM_USER:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    filters = [f"ignore::FutureWarning:{module}" for module in _NOISY_IMPORT_WARNINGS]
    for module in _NOISY_IMPORT_WARNINGS:
        warnings.filterwarnings("ignore", category=FutureWarning, module=module.replace(".", r"\."))
    inherited = [f for f in os.environ.get("PYTHONWARNINGS", "").split(",") if f]
    os.environ["PYTHONWARNINGS"] = ",".join(inherited + [f for f in filters if f not in inherited])


# ``python -m <module of this project>``: Python sets ``sys.argv[0]`` to "-m" while it
# imports the module's packages, which import this one first; quiet the CLI before
# any of them loads TensorFlow (e.g. ``python -m pipeline.data_check``).
if sys.argv[:1] == ["-m"]:
    quiet_cli()
elif os.environ.get(QUIET_SHUTDOWN_ENV) == "1" and sys.unraisablehook is sys.__unraisablehook__:
    # A process a quieted command started (a Beam worker): its stderr is the console's.
    sys.unraisablehook = _quiet_unraisable(sys.__unraisablehook__)

__version__ = "0.1.0"
