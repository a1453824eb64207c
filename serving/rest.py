"""The local server's REST API: TF Serving's ``/v1/models`` over HTTP/JSON.

``GET /v1/models/<name>[/versions/<n>|/labels/<label>]`` (status),
``GET …/metadata`` and ``POST …:predict`` with a row (``{"instances": …}``) or
columnar (``{"inputs": …}``) body; binary strings travel as ``{"b64": …}``, as in
TF Serving; other methods get 405 with an ``Allow`` header, and every answer, errors
included, is JSON. Calls go to a :class:`~serving.model_server.ModelServer`; a
:class:`~serving.request_checks.ServingError` is answered with the HTTP status TF
Serving's REST API gives its gRPC code. Bounded like the gRPC side: calls at once
(more: 429), request size (more: 413), and an idle or slow connection is closed after
a timeout.
"""

from __future__ import annotations

import base64
import binascii
import http.server
import json
import re
import socket
import sys
import threading
from collections.abc import Callable, Mapping

import grpc
import numpy as np
from absl import logging
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)

from serving import signatures, tensor_protos
from serving.model_server import SIGNATURE_DEF_FIELD, ModelServer
from serving.request_checks import ServingError, callable_signature
from serving.versions import MAX_VERSION

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
    """A PredictRequest from a REST body (``instances`` row or ``inputs`` columnar format).

    Returns:
      The request, and whether the body used the row format (the answer then holds
      ``predictions``, else ``outputs``).

    Raises:
      ServingError: ``INVALID_ARGUMENT`` for a body that does not fit the signature (a
        bare value or list for a signature with several inputs: TF Serving's REST API
        takes those as an object of named inputs), ``FAILED_PRECONDITION`` for an
        unknown signature, ``NOT_FOUND`` for an unknown model or version.
    """
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"'signature_name' must be a string, got {json.dumps(signature_name)[:64]}",
        )
    spec.signature_name = signature_name
    servable = model_server.resolve(spec)
    key, signature = callable_signature(servable, spec)
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
                        "Expecting object as instances for a signature with several inputs"
                        if len(names) > 1
                        else f"instances[{index}] is a bare value but other instances are "
                        f"objects of named inputs: use one form for every row (the input "
                        f"is {names[0]})",
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
        if isinstance(inputs, dict) and set(inputs) != {"b64"}:
            columns = {k: _from_json(v) for k, v in inputs.items()}
        elif len(names) > 1:
            # TF Serving's REST API: a bare value or list is the one input of a
            # signature with one; several inputs are named in an object.
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "inputs is a plain value/list, but expecting an object as multiple input "
                f"tensors required as per tensorinfo_map: signature {key} has inputs "
                f"{{{','.join(names)}}}; send them named, "
                + json.dumps({"inputs": dict.fromkeys(names, "…")}, ensure_ascii=False),
            )
        else:
            columns = {names[0]: _from_json(inputs)}
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

    def _send(
        self,
        status: int,
        payload: Mapping[str, object],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answers ``status`` with ``payload`` as JSON (no body for a HEAD request)."""
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if getattr(self, "command", None) != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """``BaseHTTPRequestHandler``'s own refusals (a malformed request line or
        header, an unknown method: 501) as JSON ``{"error": …}``, as every other
        answer, instead of its HTML page; the connection is closed."""
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        short = self.responses.get(code, (f"HTTP {code}",))[0]
        self._send(code, {"error": message or short}, {"Connection": "close"})

    def _method_not_allowed(self) -> None:
        """PUT, DELETE, PATCH, HEAD, OPTIONS: 405 with an ``Allow`` header naming the
        method the path takes (POST for ``:predict``, else GET). The connection is
        closed (a request body, never read, would be taken for the next request)."""
        self.close_connection = True
        routed = self._route()
        if routed is None:
            return
        allow = "POST" if routed[1] == ":predict" else "GET"
        self._send(
            405,
            {"error": f"{self.command} is not supported for {self.path}; use {allow}"},
            {"Allow": allow, "Connection": "close"},
        )

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _method_not_allowed

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
            self._send(405, {"error": "predict needs POST"}, {"Allow": "POST"})
        elif rest == "/metadata":
            self._answer(lambda: self._metadata(spec))
        else:
            self._answer(lambda: self._status(spec))

    def _content_length(self) -> int | tuple[int, str]:
        """The request body's declared byte count, or the HTTP status and error that
        refuse the request."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return 411, "chunked requests are not supported; send Content-Length"
        lengths = self.headers.get_all("Content-Length") or []
        if len(set(lengths)) > 1:
            return 400, f"conflicting Content-Length headers: {lengths}"
        if not lengths:  # its body would be read as the next request
            return 411, "a POST needs a Content-Length header"
        declared = lengths[0].strip()
        if not (declared.isascii() and declared.isdigit()):
            return 400, f"Content-Length must be a byte count, got {declared!r}"
        length = int(declared)
        if length > self.max_request_bytes:
            return 413, f"request of {length} bytes exceeds {self.max_request_bytes}"
        return length

    def do_POST(self) -> None:
        length = self._content_length()
        if isinstance(length, tuple):
            self.close_connection = True
            self._send(length[0], {"error": length[1]})
            return
        body = self.rfile.read(length)
        if len(body) < length:
            # The client closed its side before its declared body arrived: it reads no
            # answer, so none is sent (answering could meet a reset connection).
            self.close_connection = True
            logging.warning(
                "REST %s from %s: the connection closed after %d of %d body bytes; no answer",
                self.path,
                self.client_address[0],
                len(body),
                length,
            )
            return
        routed = self._route()
        if routed is None:
            return
        spec, rest = routed
        if rest != ":predict":
            self._send(
                405,
                {"error": f"POST is only supported for :predict, not {self.path}"},
                {"Allow": "GET"},
            )
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
            model_spec=spec, metadata_field=[SIGNATURE_DEF_FIELD]
        )
        response = self.model_server.get_model_metadata(request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[SIGNATURE_DEF_FIELD].Unpack(signature_map)
        return {
            "model_spec": json_format.MessageToDict(response.model_spec),
            "metadata": {SIGNATURE_DEF_FIELD: json_format.MessageToDict(signature_map)},
        }

    def _status(self, spec: model_pb2.ModelSpec) -> Mapping[str, object]:
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
        response = self.model_server.get_model_status(request)
        return json_format.MessageToDict(
            response, including_default_value_fields=True, preserving_proto_field_name=True
        )


def _handle_error(
    server: http.server.ThreadingHTTPServer, request: object, client_address: tuple
) -> None:
    """``socketserver``'s error hook: a client gone mid-exchange is one log line.

    A connection reset or closed by the client while its answer is written is the
    client's doing and logged as such; anything else keeps the default report (a
    traceback on stderr).
    """
    error = sys.exc_info()[1]
    if isinstance(error, ConnectionError):
        logging.warning("REST client %s went away: %s", client_address[0], error)
        return
    http.server.ThreadingHTTPServer.handle_error(server, request, client_address)


def make_server(
    model_server: ModelServer,
    host: str,
    port: int,
    *,
    max_request_bytes: int,
    max_concurrent_calls: int,
    timeout_s: float,
    reuse_port: bool,
    listening_fd: int | None = None,
) -> http.server.ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server answering the REST API for ``model_server``.

    Args:
      model_server: answers the calls.
      host: address to bind (IPv6 when it holds a ``:``).
      port: port to bind; ``0`` picks a free one.
      max_request_bytes: largest request body accepted (more: 413).
      max_concurrent_calls: calls handled at once (more: 429).
      timeout_s: a connection idle (or sending its request) for longer is closed.
      reuse_port: bind with ``SO_REUSEPORT``.
      listening_fd: a listening TCP socket's file descriptor to accept on instead of
        binding ``host:port`` (the supervisor's serving processes share one socket, so
        that connections queued when a process stops are accepted by its successor
        instead of reset); the server owns it (closes it on ``server_close``).

    Raises:
      OSError: if the port cannot be bound, or ``listening_fd`` is not a listening
        TCP socket.
    """
    handler = type(
        "RestHandler",
        (_RestHandler,),
        {
            "model_server": model_server,
            "max_request_bytes": max_request_bytes,
            "slots": threading.BoundedSemaphore(max_concurrent_calls),
            "timeout": timeout_s,
        },
    )
    server_class = type(
        "RestServer",
        (http.server.ThreadingHTTPServer,),
        {
            "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET,
            "allow_reuse_port": reuse_port,
            "handle_error": _handle_error,
        },
    )
    if listening_fd is None:
        return server_class((host, port), handler)
    listening = socket.socket(fileno=listening_fd)
    if listening.type != socket.SOCK_STREAM or not listening.getsockopt(
        socket.SOL_SOCKET, socket.SO_ACCEPTCONN
    ):
        listening.detach()  # (not ours to close)
        raise OSError(f"file descriptor {listening_fd} is not a listening TCP socket")
    server = server_class(listening.getsockname()[:2], handler, bind_and_activate=False)
    server.socket.close()
    server.socket = listening
    server.server_address = listening.getsockname()
    return server
