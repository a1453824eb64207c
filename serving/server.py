"""A local server that speaks TF Serving's gRPC (and REST) API over a model base path.

TF Serving's binary (``tensorflow_model_server``) is not installable everywhere this
project runs, so this server gives local runs and tests the same protocol over the
same directory layout; one client works against both. It serves
``<model_base_path>/<model_name>/<version>/`` SavedModels as the Pusher writes them:

* ``tensorflow.serving.PredictionService/Predict`` and ``/GetModelMetadata`` and
  ``tensorflow.serving.ModelService/GetModelStatus`` (gRPC, ``tensorflow_serving.apis``);
  optionally TF Serving's REST API (``/v1/models/<name>[:predict|/metadata]``).
* Version policy ``latest``: the highest *complete* version is served. A version is a
  folder whose name is a non-negative integer and which holds ``saved_model.pb`` and
  ``variables/variables.index``; anything else (staging folders such as the
  Pusher's ``.staging-…``, half copies) is ignored.
* Hot reload: the base path is polled; a newer version is loaded and warmed up
  (``assets.extra/tf_serving_warmup_requests``, as TF Serving does) beside the old
  one, then swapped in atomically. Requests already running finish on the version
  they started on; a version that fails to load or warm up is not served and the
  previous one stays. The command line runs each version in a process of its own
  (:mod:`serving.supervisor`), so that loading never stalls the serving process;
  :class:`LocalServer` and ``--reload_in_process`` reload inside the process.
* Errors carry TF Serving's status codes and messages (``predict_util.cc``,
  ``get_model_metadata_impl.cc``, ``get_model_status_impl.cc``,
  ``basic_manager.cc``): unknown model or version -> ``NOT_FOUND``, unknown signature
  -> ``FAILED_PRECONDITION``, missing/extra input, wrong dtype or shape ->
  ``INVALID_ARGUMENT`` naming the input.
* Bounded: a fixed worker pool, a bound on concurrent RPCs (``RESOURCE_EXHAUSTED``
  beyond it; HTTP 429 on REST) and on the request size; binds 127.0.0.1 unless told
  otherwise; on SIGTERM/SIGINT it stops accepting calls and lets running ones finish.
* Optional server-side batching of concurrent Predict calls (``--enable_batching``,
  :mod:`serving.batching`), as TF Serving's flag of the same name.
* When every version disappears from the base path the last one keeps serving, with
  a warning (TF Serving's file-system source with ``servable_versions_always_present``).

Run it with ``python -m serving.server --model_base_path DIR --model_name NAME``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import dataclasses
import http.server
import json
import math
import os
import pathlib
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures

import bvae_tf

if __name__ == "__main__":  # the CLI: quiet TensorFlow start-up
    bvae_tf.quiet_cli()

import grpc
import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import json_format
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)

from bvae_tf import console, features
from serving import signatures, tensor_protos
from serving.batching import Batcher
from serving.warmup import MAX_WARMUP_RECORDS, warmup_file

#: TF Serving's ``ModelVersionStatus.State`` values.
_State = get_model_status_pb2.ModelVersionStatus.State
_VERSION_DIR = re.compile(r"[0-9]+")
_SIGNATURE_DEF_FIELD = "signature_def"
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}
#: HTTP statuses TF Serving's REST API answers for each gRPC code (http_rest_api_util).
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

DEFAULT_GRPC_PORT = 8500
DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: Most rows (users: size of dimension 0 of each input) one Predict call may hold.
#: Each row costs the model ``num_items`` floats of scores per behavior (160 KB on
#: JD), so the bound caps the memory one call can take, not just its bytes.
DEFAULT_MAX_ROWS_PER_REQUEST = 1024
#: Largest version number: versions are int64 in ``ModelSpec`` (TF Serving ignores
#: folders whose name does not parse as one).
MAX_VERSION = 2**63 - 1
#: Seconds an idle REST connection is kept (TF Serving's ``--rest_api_timeout_in_ms``).
DEFAULT_REST_API_TIMEOUT_S = 30.0


class ServingError(Exception):
    """A failed call, with the gRPC status code TF Serving would answer."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def complete_versions(model_dir: str | os.PathLike) -> dict[int, pathlib.Path]:
    """Complete version folders under ``<model_base_path>/<model_name>``.

    Returns:
      Version number -> folder, for every folder named by a non-negative integer (at
      most :data:`MAX_VERSION`) that holds ``saved_model.pb`` and
      ``variables/variables.index``. Empty when ``model_dir`` does not exist.
    """
    versions = {}
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(model_dir) as it:
        for entry in it:
            if (
                not _VERSION_DIR.fullmatch(entry.name)
                or int(entry.name) > MAX_VERSION
                or not entry.is_dir()
            ):
                continue
            path = pathlib.Path(entry.path)
            if (path / signatures.SAVED_MODEL_FILENAME).is_file() and (
                path / signatures.VARIABLES_INDEX
            ).is_file():
                versions[int(entry.name)] = path
    return versions


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
            runner = Batcher(
                runner,
                max_batch_size=batching.max_batch_size,
                batch_timeout_s=batching.batch_timeout_s,
                num_threads=batching.num_batch_threads,
                name=f"batch-v{version}-{key}",
            )
        runners[key] = runner
    return ServableVersion(
        version=version,
        path=path,
        signature_defs=signature_defs,
        runners=runners,
        module=module,
    )


def _model_spec_text(spec: model_pb2.ModelSpec) -> str:
    """TF Serving's ``ServableRequest::DebugString`` for a model spec."""
    if spec.HasField("version"):
        return f"Specific({spec.name}, {spec.version.value})"
    return f"Latest({spec.name})"


def _signature_key(spec: model_pb2.ModelSpec) -> str:
    return spec.signature_name or features.SERVING_SIGNATURE


class ModelServer:
    """Protocol logic of the local server: versions, Predict, metadata and status.

    Transport-free: each call takes a request proto and returns the response proto or
    raises :class:`ServingError` with TF Serving's code and message.

    Args:
      model_base_path: folder holding ``<model_name>/<version>/`` SavedModels.
      model_name: the served model's name (requests must use it).
      poll_wait_seconds: seconds between polls of the base path; ``0`` polls once,
        at :meth:`start` (TF Serving's ``--file_system_poll_wait_seconds``).
      enable_warmup: replay ``assets.extra/tf_serving_warmup_requests`` on load.
      batching: batch concurrent Predict calls; ``None``: each call runs alone.
      max_input_elements: most elements an input tensor may hold. A TensorProto may
        list fewer values than its shape holds (TensorFlow repeats the last one), so
        a request of a few bytes could otherwise make the server build a tensor of
        any size; every element costs a request at least one byte, so
        :class:`LocalServer` sets this to its ``max_request_bytes``.
      retired_versions: versions an earlier serving process served; ``GetModelStatus``
        reports them ``END`` (process reload, :mod:`serving.supervisor`).
      max_rows_per_request: most rows (size of dimension 0) an input may have; a
        call with more is refused with ``INVALID_ARGUMENT`` naming the limit
        (an empty serialized tf.Example costs 2 bytes on the wire, yet its row of
        scores costs ``num_items`` floats per behavior).

    Raises:
      ValueError: if ``model_name`` is empty, ``poll_wait_seconds`` negative,
        ``max_input_elements`` or ``max_rows_per_request`` below 1.
    """

    def __init__(
        self,
        model_base_path: str | os.PathLike,
        model_name: str,
        *,
        poll_wait_seconds: float = 1.0,
        enable_warmup: bool = True,
        batching: BatchingOptions | None = None,
        max_input_elements: int = DEFAULT_MAX_REQUEST_BYTES,
        max_rows_per_request: int = DEFAULT_MAX_ROWS_PER_REQUEST,
        retired_versions: Iterable[int] = (),
    ):
        if not model_name or "/" in model_name:
            raise ValueError(f"model_name must be a non-empty folder name, got {model_name!r}")
        if poll_wait_seconds < 0:
            raise ValueError(f"poll_wait_seconds must be >= 0, got {poll_wait_seconds}")
        if max_input_elements < 1:
            raise ValueError(f"max_input_elements must be >= 1, got {max_input_elements}")
        if max_rows_per_request < 1:
            raise ValueError(f"max_rows_per_request must be >= 1, got {max_rows_per_request}")
        self._max_input_elements = max_input_elements
        self._max_rows_per_request = max_rows_per_request
        self.model_name = model_name
        self.model_dir = pathlib.Path(model_base_path) / model_name
        self._poll_wait_seconds = poll_wait_seconds
        self._enable_warmup = enable_warmup
        self._batching = batching
        self._current: ServableVersion | None = None
        self._states: dict[int, tuple[int, str]] = {v: (_State.END, "") for v in retired_versions}
        #: Versions that failed to load -> their folder's fingerprint at that load.
        self._failed: dict[int, tuple[tuple[str, int, int], ...]] = {}
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._no_version_logged = False

    # --- versions -------------------------------------------------------------------
    @property
    def current(self) -> ServableVersion | None:
        """The version now served, or ``None`` before the first one loaded."""
        return self._current

    def start(self) -> None:
        """Polls once (loading the highest complete version) and starts the poller."""
        self.poll()
        if self._poll_wait_seconds > 0:
            self._poller = threading.Thread(
                target=self._poll_loop, name=f"poll-{self.model_name}", daemon=True
            )
            self._poller.start()

    def stop(self) -> None:
        """Stops polling and batching; the served version stays loaded."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join()
        if self._current is not None:
            self._current.close()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll_wait_seconds):
            try:
                self.poll()
            except Exception:  # the poller must survive any one bad poll
                logging.exception("Polling %s failed", self.model_dir)

    def poll(self) -> int | None:
        """Checks the base path once; loads and switches to a newer complete version.

        Returns:
          The version switched to, or ``None`` if nothing changed.
        """
        with self._poll_lock:
            versions = complete_versions(self.model_dir)
            if not versions:
                if not self._no_version_logged:
                    logging.warning(
                        "No versions of servable %s found under base path %s",
                        self.model_name,
                        self.model_dir,
                    )
                    self._no_version_logged = True
                return None
            self._no_version_logged = False
            version = max(versions)
            current = self._current
            if current is not None and current.version == version:
                return None
            path = versions[version]
            fingerprint = version_fingerprint(path)
            if self._failed.get(version) == fingerprint:
                return None
            return self._load_and_switch(version, path, fingerprint)

    def _set_state(self, version: int, state: int, error: str = "") -> None:
        with self._lock:
            self._states[version] = (state, error)

    def _load_and_switch(
        self, version: int, path: pathlib.Path, fingerprint: tuple[tuple[str, int, int], ...]
    ) -> int | None:
        """Loads and warms up a version; switches to it unless it failed or changed.

        A failure is remembered with the folder's fingerprint, so the version is tried
        again only once its files change. A version whose files changed during the
        load (a copy still running) is dropped and loaded again at the next poll.
        """
        self._set_state(version, _State.LOADING)
        started = time.monotonic()
        servable = None
        try:
            servable = load_version(version, path, self._batching)
            warmed = self._warm_up(servable) if self._enable_warmup else 0
        except Exception as e:
            if servable is not None:
                servable.close()
            message = (
                f"Loading servable: {{name: {self.model_name} version: {version}}} failed: {e}"
            )
            logging.error("%s", message)
            self._failed[version] = fingerprint
            self._set_state(version, _State.END, message)
            return None
        if version_fingerprint(path) != fingerprint:
            servable.close()
            logging.warning(
                "Files of version %d of model %s changed while it loaded; not serving it, "
                "loading it again at the next poll",
                version,
                self.model_name,
            )
            with self._lock:
                self._states.pop(version, None)
            return None
        with self._lock:
            previous, self._current = self._current, servable
            self._states[version] = (_State.AVAILABLE, "")
            if previous is not None:
                self._states[previous.version] = (_State.END, "")
        if previous is not None:
            previous.close()
        logging.info(
            "Serving version %d of model %s (loaded in %.2f s, %d warm-up requests)%s",
            version,
            self.model_name,
            time.monotonic() - started,
            warmed,
            f"; version {previous.version} unloaded" if previous is not None else "",
        )
        return version

    def _warm_up(self, servable: ServableVersion) -> int:
        """Replays the version's warm-up Predict requests; any failure fails the load."""
        path = warmup_file(servable.path)
        if not path.is_file():
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            count += 1
            if count > MAX_WARMUP_RECORDS:
                raise ValueError(
                    f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
                )
            log = prediction_log_pb2.PredictionLog.FromString(record)
            if log.WhichOneof("log_type") != "predict_log":
                raise ValueError(f"Unsupported log_type for warmup: {log.WhichOneof('log_type')}")
            self._run_predict(servable, log.predict_log.request)
        return count

    # --- calls ----------------------------------------------------------------------
    def _resolve(self, spec: model_pb2.ModelSpec) -> ServableVersion:
        """The loaded version a model spec asks for (basic_manager / server_core)."""
        if spec.HasField("version") and spec.version_label:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "ModelSpec has 'version' and 'version_label' both set",
            )
        if spec.version_label:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Unrecognized servable version label: {spec.version_label}",
            )
        current = self._current
        if (
            spec.name != self.model_name
            or current is None
            or (spec.HasField("version") and spec.version.value != current.version)
        ):
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: {_model_spec_text(spec)}",
            )
        return current

    def predict(self, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
        """``PredictionService.Predict``; raises :class:`ServingError` on failure."""
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        return self._run_predict(self._resolve(request.model_spec), request)

    def _run_predict(
        self, servable: ServableVersion, request: predict_pb2.PredictRequest
    ) -> predict_pb2.PredictResponse:
        key = _signature_key(request.model_spec)
        signature = servable.signature_defs.get(key)
        runner = servable.runners.get(key)
        if signature is None or runner is None:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.'
            )
        inputs = _parse_inputs(
            signature, request, self._max_input_elements, self._max_rows_per_request
        )
        aliases = _output_aliases(signature, request)
        try:
            outputs = runner(inputs)
        except tf.errors.OpError as e:
            raise ServingError(
                _GRPC_CODES.get(e.error_code, grpc.StatusCode.UNKNOWN), e.message
            ) from e
        except UnicodeDecodeError as e:
            # TensorFlow could not decode its own error message (it quotes the bad input).
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"signature {key} rejected its inputs; TensorFlow's error message quotes "
                f"bytes that are not UTF-8 ({e})",
            ) from e
        except ValueError as e:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from e
        arrays = {alias: outputs[alias] for alias in aliases}
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.signature_name = key
        response.model_spec.version.value = servable.version
        for alias, array in arrays.items():
            tensor_protos.fill_tensor_proto(
                response.outputs[alias], array, signature.outputs[alias].dtype
            )
        return response

    def get_model_metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """``PredictionService.GetModelMetadata`` (the ``signature_def`` field)."""
        if not request.metadata_field:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "GetModelMetadataRequest must specify at least one metadata_field",
            )
        for field in request.metadata_field:
            if field != _SIGNATURE_DEF_FIELD:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported"
                )
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        servable = self._resolve(request.model_spec)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = servable.version
        response.metadata[_SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response

    def get_model_status(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """``ModelService.GetModelStatus``: state of every version seen (or the one asked)."""
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        spec = request.model_spec
        with self._lock:
            states = dict(self._states) if spec.name == self.model_name else {}
        if spec.HasField("version"):
            if spec.version.value not in states:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Could not find version {spec.version.value} of model {spec.name}",
                )
            states = {spec.version.value: states[spec.version.value]}
        elif not states:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}"
            )
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in sorted(states, reverse=True):
            state, error = states[version]
            status = response.model_version_status.add(version=version, state=state)
            status.status.SetInParent()
            if error:
                status.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
                status.status.error_message = error
        return response


def _parse_inputs(
    signature: meta_graph_pb2.SignatureDef,
    request: predict_pb2.PredictRequest,
    max_elements: int,
    max_rows: int,
) -> dict[str, np.ndarray]:
    """Checks the request's inputs against the signature (predict_util.cc) and converts them.

    A tensor whose shape is not a valid tensor shape (unknown rank, a negative size)
    or holds more than ``max_elements`` elements fails as TensorFlow's
    ``Tensor::FromProto`` does: ``tensor parsing error``. A tensor with more than
    ``max_rows`` rows (dimension 0) fails with ``INVALID_ARGUMENT`` naming the limit,
    before any value is converted.
    """
    if len(request.inputs) != len(signature.inputs):
        sent, wanted = set(request.inputs), set(signature.inputs)
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input size does not match signature: {len(sent)}!={len(wanted)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
            f"Missing but required: {{{','.join(sorted(wanted - sent))}}}.",
        )
    tensors = {}
    for alias, proto in request.inputs.items():
        info = signature.inputs.get(alias)
        if info is None:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input tensor alias not found in signature: {alias}. Inputs expected to be "
                f"in the set {{{','.join(sorted(signature.inputs))}}}.",
            )
        if proto.dtype != info.dtype:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input tensor alias {alias}: expects dtype {signatures.dtype_name(info.dtype)} "
                f"but {signatures.dtype_name(proto.dtype)} is provided",
            )
        shape = proto.tensor_shape
        sizes = [dim.size for dim in shape.dim]
        if shape.unknown_rank or any(size < 0 for size in sizes):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"tensor parsing error: {alias}: shape {sizes}"
                f"{' of unknown rank' if shape.unknown_rank else ''} is not a tensor shape",
            )
        if math.prod(sizes) > max_elements:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"tensor parsing error: {alias}: shape {sizes} holds {math.prod(sizes)} "
                f"elements, more than the {max_elements} a request may hold",
            )
        if sizes and sizes[0] > max_rows:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input tensor alias {alias}: {sizes[0]} rows, more than the {max_rows} rows "
                f"a request may hold (--max_rows_per_request); send them in several requests",
            )
        try:
            array = tensor_protos.to_ndarray(proto)
        except Exception as e:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT, f"tensor parsing error: {alias}"
            ) from e
        if not signatures.is_compatible_shape(array.shape, info.tensor_shape):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input tensor alias {alias}: shape {list(array.shape)} is not compatible with "
                f"the signature's shape {signatures.shape_to_list(info.tensor_shape)}",
            )
        tensors[alias] = array
    return tensors


def _output_aliases(
    signature: meta_graph_pb2.SignatureDef, request: predict_pb2.PredictRequest
) -> list[str]:
    """Outputs to return: the request's ``output_filter`` or all (predict_util.cc)."""
    seen: list[str] = []
    for alias in request.output_filter:
        if alias not in signature.outputs:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {{{','.join(sorted(signature.outputs))}}}.",
            )
        if alias in seen:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT, f"duplicate output tensor alias: {alias}"
            )
        seen.append(alias)
    return seen or sorted(signature.outputs)


# --- gRPC ---------------------------------------------------------------------------------
def _grpc_call(method: Callable):
    def handler(request, context):
        try:
            return method(request)
        except ServingError as e:
            context.abort(e.code, e.message)
        except Exception as e:
            logging.exception("Unexpected error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

    return handler


class _PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, model_server: ModelServer):
        self.Predict = _grpc_call(model_server.predict)
        self.GetModelMetadata = _grpc_call(model_server.get_model_metadata)


class _ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, model_server: ModelServer):
        self.GetModelStatus = _grpc_call(model_server.get_model_status)


# --- REST (TF Serving's /v1/models API) ------------------------------------------------------
_REST_PATH = re.compile(
    r"/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<rest>/metadata|:predict)?"
)


def _json_value(array: np.ndarray, alias: str) -> object:
    """An output as REST JSON: strings as UTF-8 text (``{"b64": …}`` when binary or ``*_bytes``)."""
    if array.dtype != object:
        return array.tolist()

    def text(value: bytes) -> object:
        if not alias.endswith("_bytes"):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode("ascii")}

    return np.vectorize(text, otypes=[object])(array).tolist() if array.size else array.tolist()


def _from_json(value: object) -> object:
    """Decodes REST ``{"b64": …}`` objects (any depth) into bytes.

    Raises:
      ValueError: for a ``b64`` value that is not a base64 string (TF Serving:
        ``Unable to base64 decode``) or any other JSON object.
    """
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            encoded = value["b64"]
            if not isinstance(encoded, str):
                raise ValueError(f"Unable to base64 decode: 'b64' holds {encoded!r}, not a string")
            try:
                return base64.b64decode(encoded, validate=True)
            except binascii.Error as e:
                raise ValueError(f"Unable to base64 decode {encoded[:64]!r}: {e}") from e
        raise ValueError(f"unexpected JSON object {sorted(value)}; only {{'b64': …}} is allowed")
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _rest_predict_request(
    model_server: ModelServer, spec: model_pb2.ModelSpec, body: Mapping[str, object]
) -> tuple[predict_pb2.PredictRequest, bool]:
    """A PredictRequest from a REST body (``instances`` row or ``inputs`` columnar format)."""
    spec.signature_name = str(body.get("signature_name", ""))
    servable = model_server._resolve(spec)
    key = _signature_key(spec)
    signature = servable.signature_defs.get(key)
    if signature is None:
        raise ServingError(
            grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.'
        )
    if ("instances" in body) == ("inputs" in body):
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "Missing 'inputs' or 'instances' key"
            if "instances" not in body
            else "Not both 'inputs' and 'instances' may be specified",
        )
    row_format = "instances" in body
    names = sorted(signature.inputs)
    if row_format:
        instances = body["instances"]
        if not isinstance(instances, list):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "'instances' must be a JSON list")
        named = [isinstance(row, dict) and set(row) != {"b64"} for row in instances]
        if len(names) == 1 and not any(named):
            columns = {names[0]: _from_json(instances)}
        else:
            columns = {name: [] for name in names}
            for index, (row, is_named) in enumerate(zip(instances, named, strict=True)):
                if not is_named:
                    raise ServingError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "Expecting object as instances for a signature with several inputs",
                    )
                extra = sorted(set(row) - set(names))
                if extra:
                    raise ServingError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"instances[{index}] names inputs {extra} that are not in the "
                        f"signature; inputs expected to be in the set {{{','.join(names)}}}.",
                    )
                for name in names:
                    if name not in row:
                        raise ServingError(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            f"Missing named input: {name} in 'instances' object.",
                        )
                    columns[name].append(_from_json(row[name]))
    else:
        inputs = body["inputs"]
        columns = (
            {k: _from_json(v) for k, v in inputs.items()}
            if isinstance(inputs, dict) and set(inputs) != {"b64"}
            else {names[0]: _from_json(inputs)}
        )
    request = predict_pb2.PredictRequest()
    request.model_spec.CopyFrom(spec)
    for alias, value in columns.items():
        info = signature.inputs.get(alias)
        if info is None:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input tensor alias not found in signature: {alias}. Inputs expected to be "
                f"in the set {{{','.join(names)}}}.",
            )
        try:
            array = signatures.cast_to_signature(alias, value, info)
        except ValueError as e:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from e
        tensor_protos.fill_tensor_proto(request.inputs[alias], array, info.dtype)
    return request, row_format


class _RestHandler(http.server.BaseHTTPRequestHandler):
    model_server: ModelServer
    max_request_bytes: int
    #: Bounds the calls handled at once (the gRPC bound); more get HTTP 429.
    slots: threading.BoundedSemaphore
    #: Seconds a connection may stay idle or take to send a request (socket timeout).
    timeout: float
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        logging.vlog(1, "REST %s", format % args)

    def _send(self, status: int, payload: Mapping[str, object]) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> tuple[model_pb2.ModelSpec, str] | None:
        match = _REST_PATH.fullmatch(self.path.split("?", 1)[0])
        if match is None:
            self._send(404, {"error": f"Malformed request: {self.command} {self.path}"})
            return None
        spec = model_pb2.ModelSpec(name=match["name"])
        if match["version"] is not None:
            version = int(match["version"])
            if version > MAX_VERSION:
                self._send(
                    400, {"error": f"Failed to convert version: {match['version']} to numeric."}
                )
                return None
            spec.version.value = version
        if match["label"] is not None:
            spec.version_label = match["label"]
        return spec, match["rest"] or ""

    def _answer(self, call: Callable[[], Mapping[str, object]]) -> None:
        if not self.slots.acquire(blocking=False):
            self._send(429, {"error": "too many concurrent requests"})
            return
        try:
            self._send(200, call())
        except ServingError as e:
            self._send(_HTTP_STATUS.get(e.code, 500), {"error": e.message})
        except (ValueError, json.JSONDecodeError) as e:
            self._send(400, {"error": str(e)})
        except RecursionError:
            self._send(400, {"error": "request JSON is nested too deeply"})
        except Exception as e:
            logging.exception("Unexpected REST error")
            self._send(500, {"error": f"{type(e).__name__}: {e}"})
        finally:
            self.slots.release()

    def do_GET(self) -> None:
        routed = self._route()
        if routed is None:
            return
        spec, rest = routed
        if rest == ":predict":
            self._send(405, {"error": "predict needs POST"})
        elif rest == "/metadata":
            self._answer(lambda: self._metadata(spec))
        else:
            self._answer(lambda: self._status(spec))

    def do_POST(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._send(411, {"error": "chunked requests are not supported; send Content-Length"})
            return
        declared = (self.headers.get("Content-Length") or "0").strip()
        if not (declared.isascii() and declared.isdigit()):
            self.close_connection = True
            self._send(400, {"error": f"Content-Length must be a byte count, got {declared!r}"})
            return
        length = int(declared)
        if length > self.max_request_bytes:
            self.close_connection = True
            self._send(
                413, {"error": f"request of {length} bytes exceeds {self.max_request_bytes}"}
            )
            return
        body = self.rfile.read(length)
        routed = self._route()
        if routed is None:
            return
        spec, rest = routed
        if rest != ":predict":
            self._send(405, {"error": f"POST is only supported for :predict, not {self.path}"})
            return
        self._answer(lambda: self._predict(spec, body))

    def _predict(self, spec: model_pb2.ModelSpec, body: bytes) -> Mapping[str, object]:
        payload = json.loads(body or b"{}")
        if not isinstance(payload, dict):
            raise ValueError("request body must be a JSON object")
        request, row_format = _rest_predict_request(self.model_server, spec, payload)
        response = self.model_server.predict(request)
        outputs = {
            alias: _json_value(tensor_protos.to_ndarray(proto), alias)
            for alias, proto in sorted(response.outputs.items())
        }
        if not row_format:
            return {"outputs": outputs if len(outputs) > 1 else next(iter(outputs.values()))}
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values()))}
        rows = len(next(iter(outputs.values())))
        return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(rows)]}

    def _metadata(self, spec: model_pb2.ModelSpec) -> Mapping[str, object]:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=spec, metadata_field=[_SIGNATURE_DEF_FIELD]
        )
        response = self.model_server.get_model_metadata(request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[_SIGNATURE_DEF_FIELD].Unpack(signature_map)
        return {
            "model_spec": json_format.MessageToDict(response.model_spec),
            "metadata": {_SIGNATURE_DEF_FIELD: json_format.MessageToDict(signature_map)},
        }

    def _status(self, spec: model_pb2.ModelSpec) -> Mapping[str, object]:
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
        response = self.model_server.get_model_status(request)
        return json_format.MessageToDict(
            response, including_default_value_fields=True, preserving_proto_field_name=True
        )


# --- assembly -----------------------------------------------------------------------------
def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class LocalServer:
    """A running local TF Serving-protocol server (gRPC, optionally REST).

    Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Args:
      model_base_path: folder holding ``<model_name>/<version>/`` SavedModels.
      model_name: the served model's name.
      host: address to bind; loopback by default.
      port: gRPC port; ``0`` picks a free one (see :attr:`port`).
      rest_api_port: REST port; ``None`` disables REST, ``0`` picks a free one.
      poll_wait_seconds: seconds between polls for new versions (``0``: poll once).
      max_workers: threads handling gRPC calls.
      max_concurrent_rpcs: calls accepted at once; more get ``RESOURCE_EXHAUSTED``.
      max_request_bytes: largest request accepted (gRPC and REST).
      max_rows_per_request: most rows (users) one Predict call may hold; more are
        refused with ``INVALID_ARGUMENT`` (REST: 400).
      enable_warmup: replay each version's warm-up requests on load.
      batching: batch concurrent Predict calls; ``None``: each call runs alone.
      rest_api_timeout_s: a REST connection idle (or sending its request) for longer
        is closed, so idle clients do not hold server threads.
      reuse_port: bind with ``SO_REUSEPORT``, so that a successor process can bind the
        same ports before this one stops (process reload, :mod:`serving.supervisor`).
        Off by default: then a port in use is an error.
      retired_versions: versions an earlier serving process served (reported ``END``).

    Raises:
      ValueError: on a non-positive worker count, RPC bound, request size, row bound
        or REST timeout.
    """

    def __init__(
        self,
        model_base_path: str | os.PathLike,
        model_name: str,
        *,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_GRPC_PORT,
        rest_api_port: int | None = None,
        poll_wait_seconds: float = 1.0,
        max_workers: int = 8,
        max_concurrent_rpcs: int = 64,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_rows_per_request: int = DEFAULT_MAX_ROWS_PER_REQUEST,
        enable_warmup: bool = True,
        batching: BatchingOptions | None = None,
        rest_api_timeout_s: float = DEFAULT_REST_API_TIMEOUT_S,
        reuse_port: bool = False,
        retired_versions: Iterable[int] = (),
    ):
        for name, value in (
            ("max_workers", max_workers),
            ("max_concurrent_rpcs", max_concurrent_rpcs),
            ("max_request_bytes", max_request_bytes),
            ("max_rows_per_request", max_rows_per_request),
            ("rest_api_timeout_s", rest_api_timeout_s),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self.model_server = ModelServer(
            model_base_path,
            model_name,
            poll_wait_seconds=poll_wait_seconds,
            enable_warmup=enable_warmup,
            batching=batching,
            max_input_elements=max_request_bytes,
            max_rows_per_request=max_rows_per_request,
            retired_versions=retired_versions,
        )
        self._reuse_port = reuse_port
        self._host = host
        self._requested_port = port
        self._requested_rest_port = rest_api_port
        self._max_workers = max_workers
        self._max_concurrent_rpcs = max_concurrent_rpcs
        self._max_request_bytes = max_request_bytes
        self._rest_api_timeout_s = rest_api_timeout_s
        self._grpc: grpc.Server | None = None
        self._rest: http.server.ThreadingHTTPServer | None = None
        self._rest_thread: threading.Thread | None = None
        self.port = 0
        self.rest_port: int | None = None

    @property
    def target(self) -> str:
        """``host:port`` of the gRPC endpoint, for a client channel."""
        return _host_port(self._host, self.port)

    def start(self) -> LocalServer:
        """Loads the highest complete version (if any), binds and starts serving.

        Raises:
          OSError: if a port cannot be bound.
        """
        self.model_server.start()
        server = grpc.server(
            futures.ThreadPoolExecutor(self._max_workers, thread_name_prefix="grpc-worker"),
            maximum_concurrent_rpcs=self._max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", self._max_request_bytes),
                ("grpc.so_reuseport", int(self._reuse_port)),
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionServicer(self.model_server), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            _ModelServicer(self.model_server), server
        )
        address = _host_port(self._host, self._requested_port)
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError as e:
            self.model_server.stop()
            raise OSError(f"cannot bind the gRPC port at {address}: {e}") from e
        if self.port == 0:
            self.model_server.stop()
            raise OSError(f"cannot bind the gRPC port at {address}")
        server.start()
        self._grpc = server
        if self._requested_rest_port is not None:
            handler = type(
                "RestHandler",
                (_RestHandler,),
                {
                    "model_server": self.model_server,
                    "max_request_bytes": self._max_request_bytes,
                    "slots": threading.BoundedSemaphore(self._max_concurrent_rpcs),
                    "timeout": self._rest_api_timeout_s,
                },
            )
            server_class = type(
                "RestServer",
                (http.server.ThreadingHTTPServer,),
                {
                    "address_family": socket.AF_INET6 if ":" in self._host else socket.AF_INET,
                    "allow_reuse_port": self._reuse_port,
                },
            )
            try:
                self._rest = server_class((self._host, self._requested_rest_port), handler)
            except OSError:
                self.stop(grace_seconds=0)
                raise
            self._rest.daemon_threads = True
            self.rest_port = self._rest.server_address[1]
            self._rest_thread = threading.Thread(
                target=self._rest.serve_forever, name="rest", daemon=True
            )
            self._rest_thread.start()
        logging.info(
            "Serving model %s from %s: gRPC at %s%s",
            self.model_server.model_name,
            self.model_server.model_dir,
            self.target,
            f", REST at {_host_port(self._host, self.rest_port)}" if self._rest else "",
        )
        return self

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Stops accepting calls, lets running ones finish (up to ``grace_seconds``)."""
        if self._rest is not None:
            self._rest.shutdown()
            self._rest.server_close()
            self._rest = None
        if self._grpc is not None:
            self._grpc.stop(grace_seconds).wait()
            self._grpc = None
        self.model_server.stop()

    def wait(self) -> None:
        """Blocks until the gRPC server has stopped."""
        if self._grpc is not None:
            self._grpc.wait_for_termination()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(grace_seconds=1.0)


class _StartInterrupted(BaseException):
    """SIGTERM/SIGINT before the server started (a ``BaseException``, so that the
    load's ``except Exception`` does not take it for a failed version)."""


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serving.server",
        description="Local TF Serving-protocol server over <base>/<model_name>/<version>/.",
    )
    parser.add_argument("--model_base_path", required=True, help="folder holding <model_name>/")
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_GRPC_PORT, help="gRPC port")
    parser.add_argument(
        "--rest_api_port", type=int, default=0, help="REST port; 0 (default) disables REST"
    )
    parser.add_argument(
        "--rest_api_timeout_in_ms",
        type=int,
        default=int(DEFAULT_REST_API_TIMEOUT_S * 1000),
        help="close REST connections idle for longer",
    )
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    parser.add_argument("--grpc_max_threads", type=int, default=8, help="gRPC worker threads")
    parser.add_argument("--max_concurrent_rpcs", type=int, default=64)
    parser.add_argument("--max_request_bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES)
    parser.add_argument(
        "--max_rows_per_request",
        type=int,
        default=DEFAULT_MAX_ROWS_PER_REQUEST,
        help="most rows (users) per Predict call; more: INVALID_ARGUMENT",
    )
    parser.add_argument(
        "--tensorflow_intra_op_parallelism",
        type=int,
        default=0,
        help="threads per TF op; 0 (default, as TF Serving): TF's choice from the cores",
    )
    parser.add_argument(
        "--tensorflow_inter_op_parallelism",
        type=int,
        default=0,
        help="TF ops run at once; 0 (default, as TF Serving): TF's choice from the cores",
    )
    parser.add_argument(
        "--enable_batching", action="store_true", help="batch concurrent Predict calls"
    )
    parser.add_argument("--max_batch_size", type=int, default=32, help="rows per model call")
    parser.add_argument(
        "--batch_timeout_micros",
        type=int,
        default=0,
        help="wait for more calls per batch; 0: batch what queued meanwhile",
    )
    parser.add_argument(
        "--num_batch_threads",
        type=int,
        default=0,
        help="model calls at once; 0 (default, as TF Serving): one per core",
    )
    parser.add_argument("--grace_seconds", type=float, default=10.0, help="shutdown grace")
    parser.add_argument(
        "--verbose", action="store_true", help="log every INFO record (TensorFlow's too)"
    )
    parser.add_argument(
        "--no_warmup", action="store_true", help="do not replay assets.extra warm-up requests"
    )
    parser.add_argument(
        "--reload_in_process",
        action="store_true",
        help="load new versions inside the serving process (loading then stalls calls; "
        "default: a new process loads and warms each version and takes over when warm)",
    )
    parser.add_argument(
        "--idle_load_timeout_s",
        type=float,
        default=60.0,
        help="a new version that found no spare CPU to load in this long loads at normal "
        "priority (process reload)",
    )
    # Set by serving.supervisor for the processes it starts.
    parser.add_argument("--ready_fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--load_at_idle_priority", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--retired_versions", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; serves until SIGTERM or SIGINT."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse_args(argv)
    console.setup(service=True, verbose=args.verbose)
    from serving import supervisor

    if args.ready_fd is None and not args.reload_in_process:
        return supervisor.run(argv, args)
    child = args.ready_fd is not None
    if child:
        supervisor.stop_with_supervisor()
    if args.load_at_idle_priority and not supervisor.set_scheduling(idle=True):
        logging.warning("Could not lower this process's CPU priority for loading")
    tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)
    tf.config.threading.set_inter_op_parallelism_threads(args.tensorflow_inter_op_parallelism)
    server = LocalServer(
        args.model_base_path,
        args.model_name,
        host=args.host,
        port=args.port,
        rest_api_port=args.rest_api_port or None,
        poll_wait_seconds=0 if child else args.file_system_poll_wait_seconds,
        max_workers=args.grpc_max_threads,
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        max_request_bytes=args.max_request_bytes,
        max_rows_per_request=args.max_rows_per_request,
        enable_warmup=not args.no_warmup,
        rest_api_timeout_s=args.rest_api_timeout_in_ms / 1000,
        batching=BatchingOptions(
            max_batch_size=args.max_batch_size,
            batch_timeout_s=args.batch_timeout_micros / 1e6,
            num_batch_threads=args.num_batch_threads or os.cpu_count() or 1,
        )
        if args.enable_batching
        else None,
        reuse_port=child,
        retired_versions=[int(v) for v in args.retired_versions.split(",") if v],
    )
    started, stopping, stopped = threading.Event(), threading.Event(), threading.Event()
    stop_begun = threading.Event()

    def stop() -> None:
        server.stop(args.grace_seconds)
        stopped.set()

    def begin_stop() -> None:
        stop_begun.set()
        threading.Thread(target=stop, name="shutdown", daemon=True).start()

    def shut_down(signum: int, _frame: object) -> None:
        if stopping.is_set():
            return
        stopping.set()
        if not started.is_set():
            # Still loading, no call accepted yet: abandon the start.
            logging.info("Received %s while starting; stopping", signal.Signals(signum).name)
            raise _StartInterrupted
        logging.info("Received %s; finishing running calls", signal.Signals(signum).name)
        begin_stop()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    try:
        server.start()
        started.set()
    except _StartInterrupted:
        server.stop(grace_seconds=0)
        logging.info("Server stopped")
        return 0
    if child and not stopping.is_set():
        current = server.model_server.current
        if current is None:
            logging.error("No version of model %s could be loaded", args.model_name)
            server.stop(grace_seconds=0)
            return supervisor.EXIT_NO_VERSION
        if args.load_at_idle_priority and not supervisor.set_scheduling(idle=False):
            logging.warning("Could not restore this process's CPU priority")
        supervisor.report_ready(args.ready_fd, current.version, server.port, server.rest_port)
    if stopping.is_set() and not stop_begun.is_set():
        # The signal came while starting but did not interrupt it.
        begin_stop()
    server.wait()
    stopped.wait()
    logging.info("Server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
