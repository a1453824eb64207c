"""Protocol logic of the local server: versions served, Predict, metadata and status.

:class:`ModelServer` is transport-free: it polls the base path, loads and warms up a
newer complete version beside the served one and swaps it in atomically (requests
already running finish on the version they started on; a version that fails to load
or warm up is not served and the previous one stays), and answers
``Predict``/``GetModelMetadata``/``GetModelStatus`` request protos with response
protos or :class:`~serving.request_checks.ServingError` carrying TF Serving's code
and message (``predict_util.cc``, ``get_model_metadata_impl.cc``,
``get_model_status_impl.cc``, ``basic_manager.cc``). The gRPC and REST front ends
(:mod:`serving.grpc_api`, :mod:`serving.rest`) and :class:`serving.server.LocalServer`
put it on the network.
"""

from __future__ import annotations

import json
import os
import pathlib
import threading
import time
from collections.abc import Iterable

import grpc
import tensorflow as tf
from absl import logging
from google.protobuf import message
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
)

from bvae_tf.export import ASSETS_EXTRA, MAX_WARMUP_RECORDS, WARMUP_FILENAME, warmup_file
from serving import tensor_protos
from serving.request_checks import ServingError, callable_signature, output_aliases, parse_inputs
from serving.versions import (
    BatchingOptions,
    ServableVersion,
    complete_versions,
    load_version,
    version_fingerprint,
    why_no_version,
)

#: TF Serving's ``ModelVersionStatus.State`` values.
_State = get_model_status_pb2.ModelVersionStatus.State
SIGNATURE_DEF_FIELD = "signature_def"
_GRPC_CODES = {code.value[0]: code for code in grpc.StatusCode}
DEFAULT_MAX_REQUEST_BYTES = 4 * 1024 * 1024
#: Most rows (users: size of dimension 0 of each input) one Predict call may hold.
#: Each row costs the model ``num_items`` floats of scores per behavior (160 KB on
#: JD), so the bound caps the memory one call can take, not just its bytes.
DEFAULT_MAX_ROWS_PER_REQUEST = 1024
#: Longest wait between two polls of the base path, in seconds (a day). Longer waits
#: mean a published version waits days to be served; and ``threading.Event.wait``
#: raises ``OverflowError`` beyond about 9.2e9 s (``threading.TIMEOUT_MAX``).
MAX_POLL_WAIT_SECONDS = 86_400


def op_error_message(error: tf.errors.OpError) -> str:
    """TensorFlow's message for a failed signature call, without what the eager
    wrapper adds around it: the ``Graph execution error:`` / ``Detected at node …``
    header with its stack lines, the ``[[{{node …}}]]`` line and the ``[Op:…]`` tag.
    ``"assertion failed: [purchase_items: item index outside [0, num_items=127)]"``,
    not six lines of which one says it. Other messages are returned as they are."""
    text = error.message or ""
    if not text.startswith("Graph execution error:"):
        return text
    lines = text.splitlines()
    detected = next((i for i, line in enumerate(lines) if line.startswith("Detected at node")), 0)
    body = [
        line
        for line in lines[detected + 1 :]
        if line.strip()
        and not line.startswith(("  ", "<stack traces unavailable>"))  # the stack
        and not line.lstrip().startswith("[[")  # the node line, with its [Op:…] tag
    ]
    return "\n".join(body) or text


def _model_spec_text(spec: model_pb2.ModelSpec) -> str:
    """TF Serving's ``ServableRequest::DebugString`` for a model spec."""
    if spec.HasField("version"):
        return f"Specific({spec.name}, {spec.version.value})"
    return f"Latest({spec.name})"


def check_model_name(model_name: str) -> str:
    """``model_name`` if it names one folder under the model base path.

    Raises:
      ValueError: if it is empty, ``.`` or ``..``, or holds a ``/`` or a NUL.
    """
    if model_name in ("", ".", "..") or "/" in model_name or "\0" in model_name:
        raise ValueError(f"model_name must be a non-empty folder name, got {model_name!r}")
    return model_name


class ModelServer:
    """Protocol logic of the local server: versions, Predict, metadata and status.

    Transport-free: each call takes a request proto and returns the response proto or
    raises :class:`ServingError` with TF Serving's code and message.

    Args:
      model_base_path: folder holding ``<model_name>/<version>/`` SavedModels.
      model_name: the served model's name (requests must use it).
      poll_wait_seconds: seconds between polls of the base path, 0 to
        :data:`MAX_POLL_WAIT_SECONDS`; ``0`` polls once, at :meth:`start` (TF
        Serving's ``--file_system_poll_wait_seconds``).
      enable_warmup: replay ``assets.extra/tf_serving_warmup_requests`` on load.
      batching: batch concurrent Predict calls; ``None``: each call runs alone.
      max_input_elements: most elements an input tensor may hold. A TensorProto may
        list fewer values than its shape holds (TensorFlow repeats the last one), so
        a request of a few bytes could otherwise make the server build a tensor of
        any size; every element costs a request at least one byte, so
        :class:`serving.server.LocalServer` sets this to its ``max_request_bytes``.
      retired_versions: versions an earlier serving process served; ``GetModelStatus``
        reports them ``END`` (process reload, :mod:`serving.supervisor`).
      only_version: load this version only (a serving process the supervisor started
        for it); ``None``: the highest complete version that does not fail to load.
      states_file: a JSON file ``{"<version>": [state, error], ...}`` the supervisor
        keeps of the versions it started (:mod:`serving.supervisor`);
        ``GetModelStatus`` reports those states for every version but the one this
        server serves (a version that failed to load while this one serves: ``END``
        with its error; one loading: ``LOADING``). Unreadable: ignored.
      max_rows_per_request: most rows (size of dimension 0) an input may have; a
        call with more is refused with ``INVALID_ARGUMENT`` naming the limit
        (an empty serialized tf.Example costs 2 bytes on the wire, yet its row of
        scores costs ``num_items`` floats per behavior).

    Raises:
      ValueError: if ``model_name`` is empty, ``poll_wait_seconds`` not in 0 to
        :data:`MAX_POLL_WAIT_SECONDS` (NaN, infinite),
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
        only_version: int | None = None,
        states_file: str | os.PathLike | None = None,
    ):
        check_model_name(model_name)
        if not 0 <= poll_wait_seconds <= MAX_POLL_WAIT_SECONDS:  # NaN fails too
            raise ValueError(
                f"poll_wait_seconds must be in [0, {MAX_POLL_WAIT_SECONDS}] seconds, got "
                f"{poll_wait_seconds}"
            )
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
        self._only_version = only_version
        self._states_file = states_file
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
        """Checks the base path once; loads and switches to the highest complete version
        that loads.

        A version that failed to load is tried again only once its files change, and
        does not hide a lower one: with versions 1, 2, 3 and a broken 3 before any version
        served (or once the serving version's folder is deleted), 2 is served.

        Returns:
          The version switched to, or ``None`` if nothing changed.
        """
        with self._poll_lock:
            versions = complete_versions(self.model_dir)
            if self._only_version is not None:
                versions = {v: p for v, p in versions.items() if v == self._only_version}
            if not versions:
                if not self._no_version_logged:
                    serving = self._current
                    logging.warning(
                        "No versions of servable %s found under base path %s%s%s",
                        self.model_name,
                        self.model_dir,
                        why_no_version(self.model_dir),
                        ""
                        if serving is None
                        else f"; version {serving.version} (serving) serves on until "
                        "another version loads",
                    )
                    self._no_version_logged = True
                return None
            self._no_version_logged = False
            current = self._current
            for version in sorted(versions, reverse=True):
                if current is not None and current.version == version:
                    return None
                path = versions[version]
                fingerprint = version_fingerprint(path)
                if self._failed.get(version) == fingerprint:
                    continue  # failed with these files: the next lower one
                switched = self._load_and_switch(version, path, fingerprint)
                if switched is not None or self._failed.get(version) != fingerprint:
                    return switched  # served, or its files changed while it loaded
            return None

    def _set_state(self, version: int, state: int, error: str = "") -> None:
        """Records a version's ``ModelVersionStatus.State`` (and its load error) for
        ``GetModelStatus``."""
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
        """Replays the version's warm-up Predict requests; any failure fails the load.

        Returns:
          The number of requests replayed (0 without a warm-up file).

        Raises:
          ValueError: naming the file (``assets.extra/tf_serving_warmup_requests`` of
            the version) if it is not a TFRecord file of ``PredictionLog`` records
            (corrupt, truncated, another format), holds more than
            ``MAX_WARMUP_RECORDS`` or a log that is not a ``predict_log``.
          ServingError: if a warm-up request fails on the model.
        """
        path = warmup_file(servable.path)
        if not path.is_file():
            return 0
        where = (
            f"{ASSETS_EXTRA}/{WARMUP_FILENAME} of version {servable.version} of model "
            f"{self.model_name} ({path})"
        )
        invalid = f"{where} is not a valid TFRecord file of PredictionLog records"
        try:
            records = list(
                tf.data.TFRecordDataset(str(path)).take(MAX_WARMUP_RECORDS + 1).as_numpy_iterator()
            )
        except tf.errors.OpError as e:
            reason = e.message.split("}} ")[-1].split(" [Op:")[0].strip()
            raise ValueError(
                f"{invalid}: {reason}; write it again (bvae_tf.export.write_warmup_requests)"
            ) from e
        if len(records) > MAX_WARMUP_RECORDS:
            raise ValueError(
                f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
            )
        count = 0
        for record in records:
            count += 1
            try:
                log = prediction_log_pb2.PredictionLog.FromString(record)
            except message.DecodeError as e:
                raise ValueError(
                    f"{invalid}: record {count} does not parse as a PredictionLog ({e}); "
                    "write it again (bvae_tf.export.write_warmup_requests)"
                ) from e
            if log.WhichOneof("log_type") != "predict_log":
                raise ValueError(f"Unsupported log_type for warmup: {log.WhichOneof('log_type')}")
            try:
                self._run_predict(servable, log.predict_log.request)
            except ServingError as e:
                raise ServingError(
                    e.code,
                    f"warm-up request {count} of {where} failed: {e.message}; write the file "
                    "again for this model (bvae_tf.export.write_warmup_requests)",
                ) from e
        return count

    # --- calls ----------------------------------------------------------------------
    @staticmethod
    def _check_version_label(spec: model_pb2.ModelSpec) -> None:
        """Refuses a version label (server_core's ``GetModelVersionForLabel``): no
        labels are configured here, so every label is unknown.

        Raises:
          ServingError: ``INVALID_ARGUMENT`` if ``spec`` sets ``version_label`` (or
            sets it and ``version`` both).
        """
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

    def resolve(self, spec: model_pb2.ModelSpec) -> ServableVersion:
        """The loaded version a model spec asks for (basic_manager / server_core)."""
        self._check_version_label(spec)
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
        return self._run_predict(self.resolve(request.model_spec), request)

    def _run_predict(
        self, servable: ServableVersion, request: predict_pb2.PredictRequest
    ) -> predict_pb2.PredictResponse:
        key, signature = callable_signature(servable, request.model_spec)
        runner = servable.runners[key]
        inputs = parse_inputs(
            signature, request, self._max_input_elements, self._max_rows_per_request
        )
        aliases = output_aliases(signature, request)
        try:
            outputs = runner(inputs)
        except tf.errors.DataLossError as e:
            # decode_proto (serving_default's unknown_feature_count) on bytes that are
            # not a tf.Example: the request's fault, as a parse_example failure is.
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Could not parse example input: signature {key} read a serialized "
                f"tf.Example that is malformed ({op_error_message(e)})",
            ) from e
        except tf.errors.OpError as e:
            raise ServingError(
                _GRPC_CODES.get(e.error_code, grpc.StatusCode.UNKNOWN), op_error_message(e)
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
            if field != SIGNATURE_DEF_FIELD:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported"
                )
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        servable = self.resolve(request.model_spec)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response

    def _supervisor_states(self) -> dict[int, tuple[int, str]]:
        """The supervisor's ``states_file``; ``{}`` if it cannot be read."""
        try:
            with open(self._states_file, encoding="utf-8") as f:
                states = json.load(f)
            return {int(v): (int(state), str(error)) for v, (state, error) in states.items()}
        except (OSError, ValueError, TypeError) as e:
            logging.warning("Cannot read the supervisor's version states: %s", e)
            return {}

    def get_model_status(
        self, request: get_model_status_pb2.GetModelStatusRequest
    ) -> get_model_status_pb2.GetModelStatusResponse:
        """``ModelService.GetModelStatus``: state of every version seen (or the one asked).

        A version label is resolved as for Predict and metadata: no labels are
        configured, so any label is ``INVALID_ARGUMENT`` (``Unrecognized servable
        version label``), not the status of every version.
        """
        if not request.HasField("model_spec"):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        spec = request.model_spec
        self._check_version_label(spec)
        with self._lock:
            states = dict(self._states) if spec.name == self.model_name else {}
            current = self._current
        if spec.name == self.model_name and self._states_file is not None:
            own = dict(states)
            states.update(self._supervisor_states())
            if current is not None and current.version in own:
                states[current.version] = own[current.version]  # it knows its own best
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
