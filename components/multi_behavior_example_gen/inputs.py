"""The multi-behavior ExampleGen's input files, listed before anything is read.

Shared by the component's executor (driver side), the runners' start-up check
(``pipeline.runtime.check_input``) and ``pipeline.data_check``. A local
``input_base`` is listed with the standard library, so the runners' check does not
load TensorFlow; a remote one (``scheme://``, e.g. ``gs://``) through TFX's
filesystem layer (``tfx.dsl.io.fileio``).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

from absl import logging

from bvae_tf import features
from components.multi_behavior_example_gen.config import ExampleGenConfig

_GLOB_CHARACTERS = "*?["
#: The ``Examples`` custom property, and the component's execution property, holding
#: :func:`input_fingerprint` of the files read.
FINGERPRINT_KEY = "input_fingerprint"


class _Stat(NamedTuple):
    """The fields of ``tfx.dsl.io.fileio.stat`` read here."""

    length: int
    mtime_nsec: int


class _LocalFiles:
    """The subset of ``tfx.dsl.io.fileio`` used here, for local paths."""

    isdir = staticmethod(os.path.isdir)
    exists = staticmethod(os.path.exists)
    listdir = staticmethod(os.listdir)

    @staticmethod
    def glob(pattern: str) -> list[str]:
        return glob.glob(pattern)

    @staticmethod
    def stat(path: str) -> _Stat:
        stat = os.stat(path)
        return _Stat(length=stat.st_size, mtime_nsec=stat.st_mtime_ns)


def _filesystem(path: str):
    if "://" not in path:
        return _LocalFiles
    from tfx.dsl.io import fileio  # loads TensorFlow (a few seconds)

    return fileio


def input_fingerprint(paths: Sequence[str]) -> str:
    """Size and modification-time fingerprint of the files, in the stock ExampleGen's
    format (``split:single_split,num_files:N,total_bytes:B,xor_checksum:X,sum_checksum:S``,
    mtimes in whole seconds)."""
    total_bytes = xor_checksum = sum_checksum = 0
    for path in paths:
        stat = _filesystem(path).stat(path)
        total_bytes += stat.length
        mtime = int(stat.mtime_nsec / 1e9)
        xor_checksum ^= mtime
        sum_checksum += mtime
    return (
        f"split:single_split,num_files:{len(paths)},total_bytes:{total_bytes},"
        f"xor_checksum:{xor_checksum},sum_checksum:{sum_checksum}"
    )


def local_input_fingerprint(config: ExampleGenConfig) -> str | None:
    """:func:`input_fingerprint` of a local input's files, or ``None`` for a remote
    input (``scheme://``) or one that cannot be listed now (the executor names the
    problem when it runs)."""
    if "://" in config.input_base:
        return None
    try:
        files, _ = resolve_input_files(config)
        return input_fingerprint([f if isinstance(f, str) else f[0] for f in files])
    except (ValueError, OSError):
        return None


def resolve_input_files(config: ExampleGenConfig) -> tuple[list[Any], list[str]]:
    """Lists the input files (metadata only, no data is read).

    Args:
      config: the component's configuration.

    Returns:
      ``(files, skipped)``: raw log: sorted paths; release: sorted
      ``(path, behavior, split)`` tuples and the release files of behaviors not kept.

    Raises:
      ValueError: if ``input_base`` does not exist, holds no input file, or cannot be
        listed (e.g. an unreachable or unauthorised ``gs://`` bucket); names it.
    """
    fs = _filesystem(config.input_base)
    if fs is _LocalFiles:
        return _resolve(config, fs)
    import tensorflow as tf

    try:
        return _resolve(config, fs)
    except (OSError, tf.errors.OpError) as e:
        detail = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"input_base {config.input_base!r} cannot be listed: {detail}") from e


def _resolve(config: ExampleGenConfig, fs) -> tuple[list[Any], list[str]]:
    base = config.input_base
    if config.splits_from_files:
        if not fs.isdir(base):
            raise ValueError(f"release input_base {base!r} is not a folder")
        files, skipped = [], []
        expected = set()
        for prefix, behavior in sorted(config.behavior_mapping.items()):
            for suffix, split in features.RELEASE_SPLIT_MAPPING.items():
                expected.add(f"{prefix}_{suffix}")
                path = os.path.join(base, f"{prefix}_{suffix}")
                if not fs.exists(path):
                    continue
                if behavior in config.behaviors:
                    files.append((path, behavior, split))
                else:
                    skipped.append(path)
        unknown = sorted(
            name
            for name in fs.listdir(base)
            if name.rstrip("/") not in expected and not name.startswith((".", "_"))
        )
        if unknown:
            logging.warning(
                "MultiBehaviorExampleGen: release folder %r: files not read (no prefix of %s): %s",
                base,
                sorted(config.behavior_mapping),
                unknown,
            )
        if not files:
            raise ValueError(
                f"release input_base {base!r} holds none of the files "
                f"<prefix>_<suffix> for prefixes {sorted(config.behavior_mapping)} "
                f"and suffixes {sorted(features.RELEASE_SPLIT_MAPPING)}"
            )
        return files, skipped
    # An existing path is taken literally, even when its name holds glob characters.
    if fs.isdir(base):
        paths = [os.path.join(base, name) for name in fs.listdir(base)]
    elif fs.exists(base):
        paths = [base]
    elif any(ch in base for ch in _GLOB_CHARACTERS):
        paths = fs.glob(base)
    else:
        raise ValueError(f"input_base {base!r} does not exist")
    folders = sorted(p for p in paths if fs.isdir(p))
    if folders:
        logging.warning(
            "MultiBehaviorExampleGen: input_base %r: folders not read (no recursion): %s",
            base,
            folders,
        )
    files = sorted(
        p
        for p in paths
        if not os.path.basename(p.rstrip("/")).startswith((".", "_")) and not fs.isdir(p)
    )
    if not files:
        raise ValueError(f"input_base {base!r} matches no data file")
    return files, []
