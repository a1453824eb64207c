"""The batch recommendation job's output options, without Beam or TensorFlow, so that
the pipeline config and the command line check them before either loads."""

from __future__ import annotations

from collections.abc import Sequence

CSV = "csv"
TFRECORD = "tfrecord"
FORMATS = (CSV, TFRECORD)
DEFAULT_BATCH_SIZE = 256


def check_arguments(formats: Sequence[str], batch_size: int) -> None:
    """Checks the job's ``formats`` and ``batch_size`` (the config keys are named).

    Raises:
      ValueError: on an unknown format, no format (or a bare string), or a batch size
        that is not an integer >= 1.
    """
    if isinstance(formats, str) or not formats or set(formats) - set(FORMATS):
        raise ValueError(
            f"batch_inference.formats must be a non-empty subset of {list(FORMATS)}, "
            f"got {formats!r}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_inference.batch_size must be an integer >= 1, got {batch_size!r}")
