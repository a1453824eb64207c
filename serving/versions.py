"""Version folders of a served model: which are complete, and loading one.

The local server (:mod:`serving.server`) serves ``<model_base_path>/<model_name>/
<version>/`` SavedModels as the Pusher writes them, with TF Serving's version policy
``latest``: the highest *complete* version. A version is a folder whose name is a
non-negative integer (at most :data:`MAX_VERSION`) and which holds ``saved_model.pb``
and ``variables/variables.index``; anything else (staging folders such as the
Pusher's ``.staging-…``, half copies) is ignored. A folder's fingerprint tells
whether anybody wrote to it between two looks. :func:`load_version` loads one
version into a :class:`ServableVersion` whose runners take and return NumPy arrays,
batched (:mod:`serving.batching`) when :class:`BatchingOptions` are given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import re
from collections.abc import Callable, Mapping

import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.core.protobuf import meta_graph_pb2

from bvae_tf import features
from serving import signatures
from serving.batching import Batcher

_VERSION_DIR = re.compile(r"[0-9]+")
#: Largest version number: versions are int64 in ``ModelSpec`` (TF Serving ignores
#: folders whose name does not parse as one).
MAX_VERSION = 2**63 - 1


def why_no_version(model_dir: str) -> str:
    """What to add to TF Serving's "No versions of servable ... found under base path
    ..." for ``model_dir``: that the folder does not exist, or holds no version
    folder (an integer name) with a ``saved_model.pb``; the server keeps polling."""
    path = pathlib.Path(model_dir)
    if "://" in str(model_dir):
        return ""
    if not path.exists():
        return " (the folder does not exist: check --model_base_path and --model_name; polling)"
    return " (no version folder with a saved_model.pb in it yet; polling)"


def complete_versions(model_dir: str | os.PathLike) -> dict[int, pathlib.Path]:
    """Complete version folders under ``<model_base_path>/<model_name>``.

    Two folders may name one version (``10/`` and ``0010/``). TF Serving
    (``file_system_storage_path_source.cc``, ``IndexChildrenByVersion``) then loads the
    one whose name sorts last (``10``) and logs that the other is ignored; so does
    this function, with a warning naming both folders (once per set of folders in a
    process, not at every poll).

    Returns:
      Version number -> folder, for every folder named by a non-negative integer (at
      most :data:`MAX_VERSION`) that holds ``saved_model.pb`` and
      ``variables/variables.index`` (of several folders of one version, the one
      whose name sorts last, complete or not). Empty when ``model_dir`` does not
      exist.
    """
    candidates: dict[int, list[str]] = {}
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(model_dir) as it:
        for entry in it:
            if not _VERSION_DIR.fullmatch(entry.name):
                continue
            if int(entry.name) > MAX_VERSION:
                _note_skipped(entry.path, f"its number is above the largest version {MAX_VERSION}")
            elif not entry.is_dir():
                _note_skipped(entry.path, "it is not a folder")
            else:
                candidates.setdefault(int(entry.name), []).append(entry.name)
    versions = {}
    for version, names in candidates.items():
        names.sort()
        path = pathlib.Path(model_dir) / names[-1]
        if len(names) > 1:
            _warn_duplicate_version(version, path, names[:-1])
        missing = [
            name
            for name in (signatures.SAVED_MODEL_FILENAME, signatures.VARIABLES_INDEX)
            if not (path / name).is_file()
        ]
        if missing:
            _note_skipped(str(path), f"it has no {' and no '.join(missing)} (yet)")
        else:
            versions[version] = path
    return versions


#: Version-like entries already said to be skipped (once per entry and reason).
_noted_skipped: set[tuple[str, str]] = set()


def _note_skipped(path: str, why: str) -> None:
    """Logs (INFO, once per entry and reason, not at every poll) that a version-like
    entry of the model folder is not served, and why: a publisher's half copy, a
    file, a number TF Serving cannot take."""
    if (path, why) in _noted_skipped:
        return
    _noted_skipped.add((path, why))
    logging.info("Not a servable version: %s (%s)", path, why)


#: Duplicate version folders already warned of (warn once, not at every poll).
_warned_duplicates: set[tuple[str, ...]] = set()


def _warn_duplicate_version(version: int, path: pathlib.Path, ignored: list[str]) -> None:
    key = (str(path), *ignored)
    if key in _warned_duplicates:
        return
    _warned_duplicates.add(key)
    logging.warning(
        "Duplicate version directories detected. Version %d will be loaded from %s, %s "
        "will be ignored (TF Serving's choice: the name that sorts last); keep one "
        "folder per version number",
        version,
        path,
        ", ".join(str(path.parent / name) for name in ignored),
    )


def version_fingerprint(path: pathlib.Path) -> tuple[tuple[str, int, int], ...]:
    """``(relative path, size, mtime in ns)`` of every file under a version folder.

    Two equal fingerprints mean nobody wrote to the folder in between: a version that
    failed to load is retried once its files change (a copy that was still running
    completes), and a version whose files change while it loads is not served.
    """
    files = []
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            with contextlib.suppress(FileNotFoundError):
                info = os.stat(full)
                files.append((os.path.relpath(full, path), info.st_size, info.st_mtime_ns))
    return tuple(sorted(files))


@dataclasses.dataclass(frozen=True)
class BatchingOptions:
    """Server-side batching (TF Serving's ``--enable_batching`` parameters).

    Attributes:
      max_batch_size: most rows (users) run in one model call.
      batch_timeout_s: how long a batch waits for more calls; 0 batches only what
        queued while the previous batch ran (no added latency when idle).
      num_batch_threads: model calls running at once per signature.
    """

    max_batch_size: int = 32
    batch_timeout_s: float = 0.0
    num_batch_threads: int = 1

    def __post_init__(self):
        if self.max_batch_size < 1 or self.num_batch_threads < 1 or self.batch_timeout_s < 0:
            raise ValueError(
                "batching needs max_batch_size >= 1, num_batch_threads >= 1 and "
                f"batch_timeout_s >= 0, got {self}"
            )


Runner = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


@dataclasses.dataclass(frozen=True, eq=False)
class ServableVersion:
    """One loaded version of the model.

    Attributes:
      version: the version number (folder name).
      path: the version folder.
      signature_defs: signature key -> SignatureDef, as in ``saved_model.pb``.
      runners: signature key -> callable mapping input alias -> NumPy array to output
        alias -> NumPy array (batched when batching is on).
      module: the loaded SavedModel object, kept alive while the version serves.
    """

    version: int
    path: pathlib.Path
    signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]
    runners: Mapping[str, Runner]
    module: object

    def close(self) -> None:
        """Stops batch threads once queued calls ran; later calls run unbatched."""
        for key, runner in self.runners.items():
            if isinstance(runner, Batcher):
                runner.close()
                if runner.batches:
                    logging.info(
                        "Version %d, signature %s: %d calls ran in %d batches (%.2f per batch)",
                        self.version,
                        key,
                        runner.batched_calls,
                        runner.batches,
                        runner.batched_calls / runner.batches,
                    )


def _numpy_runner(function: Callable, signature: meta_graph_pb2.SignatureDef) -> Runner:
    dtypes = {alias: info.dtype for alias, info in signature.inputs.items()}

    def run(inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {
            alias: tf.constant(value, dtype=dtypes[alias]) for alias, value in inputs.items()
        }
        return {alias: tensor.numpy() for alias, tensor in function(**tensors).items()}

    return run


def load_version(
    version: int, path: pathlib.Path, batching: BatchingOptions | None = None
) -> ServableVersion:
    """Loads one version folder (``tf.saved_model.load`` with the ``serve`` tag).

    Args:
      version: the version number.
      path: the version folder.
      batching: batch concurrent calls of each signature; ``None``: no batching.
    """
    signature_defs = signatures.read_signature_defs(path)
    module = tf.saved_model.load(str(path), tags=[signatures.SERVE_TAG])
    runners: dict[str, Runner] = {}
    for key, function in module.signatures.items():
        if key not in signature_defs:
            continue
        runner = _numpy_runner(function, signature_defs[key])
        if batching is not None:
            ends = features.padded_outputs(key)
            padding = {
                alias: value
                for alias in signature_defs[key].outputs
                for end, value in ends.items()
                if alias.endswith(end)
            }
            runner = Batcher(
                runner,
                max_batch_size=batching.max_batch_size,
                batch_timeout_s=batching.batch_timeout_s,
                num_threads=batching.num_batch_threads,
                name=f"batch-v{version}-{key}",
                padding=padding,
            )
        runners[key] = runner
    return ServableVersion(
        version=version,
        path=path,
        signature_defs=signature_defs,
        runners=runners,
        module=module,
    )
