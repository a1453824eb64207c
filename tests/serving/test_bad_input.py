"""The local server and client against careless and hostile input.

Tensors whose shape is not a tensor shape or that a few bytes expand into millions of
elements, malformed REST requests (bad base64, bad ``Content-Length``, chunked
bodies, version numbers beyond int64, nesting), idle connections, version folders
that are half copied, change while loading or overflow int64, and SIGTERM while the
first version loads.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from bvae_tf import features
from serving import model_server as model_server_module
from serving.client_requests import recommendations_from_outputs, serialize_histories
from serving.model_server import DEFAULT_MAX_ROWS_PER_REQUEST, ModelServer
from serving.request_checks import ServingError
from serving.server import LocalServer
from serving.versions import complete_versions
from tests.serving.conftest import MODEL_NAME, TOP_K, publish

pytestmark = pytest.mark.e2e

EXAMPLE = serialize_histories([{features.PURCHASE: ["i1"], features.CLICK: ["nope"]}])[0]


@pytest.fixture
def predict(local_server):
    channel = grpc.insecure_channel(local_server.target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    yield lambda request: stub.Predict(request, timeout=20)
    channel.close()


def _request(values, dims=None, unknown_rank=False):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    proto = request.inputs[features.SERVING_INPUT]
    proto.dtype = types_pb2.DT_STRING
    proto.string_val.extend(values)
    for size in [len(values)] if dims is None else dims:
        proto.tensor_shape.dim.add().size = size
    proto.tensor_shape.unknown_rank = unknown_rank
    return request


def _rejected(predict, request):
    with pytest.raises(grpc.RpcError) as info:
        predict(request)
    return info.value.code(), info.value.details()


# --- gRPC tensors ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("dims", "unknown_rank"), [([-1], False), ([1], True)], ids=["negative", "unknown-rank"]
)
def test_a_shape_that_is_no_tensor_shape_is_a_parsing_error(predict, dims, unknown_rank):
    code, details = _rejected(predict, _request([EXAMPLE], dims, unknown_rank))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("tensor parsing error: examples: shape")


def test_a_few_bytes_cannot_ask_for_a_huge_tensor(predict):
    # One value, shape [100000]: TensorFlow repeats the last value to fill a tensor,
    # so a 40-byte request would otherwise run 100,000 users (the bound: the
    # fixture's max_request_bytes, 64 KiB, elements).
    request = _request([EXAMPLE], dims=[100_000])
    assert request.ByteSize() < 100
    code, details = _rejected(predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "holds 100000 elements, more than the 65536 a request may hold" in details
    # Filling within the bound still works as TensorFlow reads it.
    response = predict(_request([EXAMPLE], dims=[3]))
    oov = response.outputs[features.OOV_COUNT]
    assert [d.size for d in oov.tensor_shape.dim] == [3]


def test_thousands_of_items_unicode_and_empty_ids_are_counted_not_fatal(client):
    unknown = [f"u{i}" for i in range(3000)] + ["", "\u00fc", "\u65e5\u672c", "\x00"]
    recs = client.recommend(
        [{features.PURCHASE: ["i1", *unknown]}, {features.CLICK: ["i2"] * 2000}] * 2
    )
    assert [r.oov_count for r in recs] == [len(unknown), 0] * 2
    assert all("i1" not in dict(r.items[features.PURCHASE]) for r in recs[::2])
    many = client.recommend([{features.CLICK: [f"i{i % 12}"]} for i in range(500)])
    assert len(many) == 500 and all(len(r.items[features.PURCHASE]) == TOP_K for r in many)


def test_unknown_behaviors_are_named_in_the_request_and_model_order():
    served = (features.PURCHASE, features.CLICK, features.FAVORITE)
    history = {"zzz": ["i1"], features.CLICK: ["i2"], "aaa": []}
    with pytest.raises(ValueError) as e:
        serialize_histories([history], served)
    assert "['zzz', 'aaa'] are not served" in str(e.value)
    assert f"its behaviors are {list(served)}" in str(e.value)


@pytest.mark.parametrize(
    ("histories", "message"),
    [
        (
            {features.PURCHASE: ["i17"]},
            "histories must be a list of mappings behavior -> list of item ids, one per user "
            "(one user: [history]); got dict {'purchase': ['i17']}",
        ),
        (
            ["i17"],
            "histories[0] must be a mapping behavior -> list of item ids (one user's "
            "history), got str 'i17'",
        ),
        (
            "i17",
            "histories must be a list of mappings behavior -> list of item ids, one per "
            "user; got str 'i17'",
        ),
        (5, "got int 5"),
        (
            [{}, [features.PURCHASE, "i1"]],
            "histories[1] must be a mapping behavior -> list of "
            "item ids (one user's history), got list ['purchase', 'i1']",
        ),
    ],
    ids=["one-mapping", "list-of-ids", "string", "number", "list-in-list"],
)
def test_histories_of_the_wrong_shape_are_named(histories, message, client):
    served = (features.PURCHASE, features.CLICK, features.FAVORITE)
    for behaviors in (served, None):
        with pytest.raises(ValueError) as e:
            serialize_histories(histories, behaviors)
        assert message in str(e.value)
    with pytest.raises(ValueError) as e:  # the client's recommend checks before any call
        client.recommend(histories)
    assert message in str(e.value) and "are not served" not in str(e.value)


def test_top_k_below_one_is_an_error_not_a_silent_cut():
    outputs = {
        features.item_ids_output(features.PURCHASE): np.array([[b"i1", b"i2"]], dtype=object),
        features.scores_output(features.PURCHASE): np.array([[2.0, 1.0]], np.float32),
        features.OOV_COUNT: np.array([0]),
    }
    for top_k in (0, -1):
        with pytest.raises(ValueError, match=f"top_k must be an integer >= 1, got {top_k}"):
            recommendations_from_outputs(outputs, [features.PURCHASE], model_version=1, top_k=top_k)


# --- REST --------------------------------------------------------------------------------
def _http(port, head, body=b"", timeout_s=5.0):
    """Status code and JSON body of one raw HTTP exchange (``None`` if no answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(head.encode("latin-1") + body)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pass
    if not data:
        return None, None
    header, _, payload = data.partition(b"\r\n\r\n")
    return int(header.split()[1]), json.loads(payload or b"null")


PREDICT = f"/v1/models/{MODEL_NAME}:predict"
B64 = base64.b64encode(EXAMPLE).decode()


@pytest.mark.parametrize(
    ("path", "body", "headers", "expected"),
    [
        (PREDICT, {"instances": [{"b64": "!!!*"}]}, {}, (400, "Unable to base64 decode")),
        (PREDICT, {"instances": [{"b64": 5}]}, {}, (400, "Unable to base64 decode")),
        (PREDICT, {"instances": [{"b64": None}]}, {}, (400, "Unable to base64 decode")),
        (
            PREDICT,
            {"instances": [{"examples": {"b64": B64}, "extra": 1}]},
            {},
            (400, "instances[0] names inputs ['extra'] that are not in the signature"),
        ),
        (
            PREDICT,
            {"instances": [{"examples": {"b64": B64}}, {"b64": B64}]},
            {},
            (400, "instances[1] is a bare value but other instances are objects"),
        ),
        (
            PREDICT,
            '{"instances": ' + "[" * 5000 + "]" * 5000 + "}",
            {},
            (400, "nested too deeply"),
        ),
        (PREDICT, {"instances": []}, {"Content-Length": "-1"}, (400, "got '-1'")),
        (PREDICT, {"instances": []}, {"Content-Length": "abc"}, (400, "got 'abc'")),
        (
            PREDICT,
            "",
            {"Content-Length": None, "Transfer-Encoding": "chunked"},
            (411, "chunked requests are not supported"),
        ),
        (PREDICT, {"instances": []}, {"Content-Length": None}, (411, "needs a Content-Length")),
        (
            PREDICT,
            {"signature_name": None, "instances": []},
            {},
            (400, "'signature_name' must be a string, got null"),
        ),
        (
            f"/v1/models/{MODEL_NAME}/versions/99999999999999999999999:predict",
            {"instances": []},
            {},
            (400, "Failed to convert version: 99999999999999999999999 to numeric."),
        ),
        # Accepted: any content type (TF Serving ignores it), a batch of 0.
        (PREDICT, {"instances": [{"b64": B64}]}, {"Content-Type": "text/plain"}, (200, None)),
        (PREDICT, {"instances": []}, {}, (200, None)),
    ],
    ids=[
        "bad-b64",
        "b64-int",
        "b64-null",
        "extra-key-in-row",
        "mixed-row-forms",
        "deep-nesting",
        "negative-length",
        "non-numeric-length",
        "chunked",
        "no-length",
        "null-signature",
        "version-beyond-int64",
        "text-content-type",
        "empty-batch",
    ],
)
def test_rest_bad_requests(local_server, path, body, headers, expected):
    status, message = expected
    if not isinstance(body, str):
        body = json.dumps(body)
    headers = {k: v for k, v in {"Content-Length": str(len(body)), **headers}.items() if v}
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    got, payload = _http(
        local_server.rest_port,
        f"POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{lines}\r\n",
        body.encode(),
    )
    assert got == status, payload
    if message is not None:
        assert message in payload["error"]
    else:
        assert "predictions" in payload
    got, _ = _http(
        local_server.rest_port, f"GET /v1/models/{MODEL_NAME} HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    assert got == 200  # still serving


def test_a_bare_inputs_list_for_several_inputs_asks_for_named_inputs():
    """Columnar ``{"inputs": [[1]]}`` fits only a signature with one input; for several
    it is not given to the first name (then "missing" the others) but refused."""
    from types import SimpleNamespace

    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import model_pb2

    from serving import rest

    signature = meta_graph_pb2.SignatureDef()
    for name, rank in (("padded", 2), ("behavior", 1)):
        signature.inputs[name].dtype = types_pb2.DT_INT64
        for _ in range(rank):
            signature.inputs[name].tensor_shape.dim.add().size = -1
    servable = SimpleNamespace(
        signature_defs={"score_items": signature}, runners={"score_items": None}
    )
    model_server = SimpleNamespace(resolve=lambda spec: servable)
    for inputs in ([[1]], 1, {"b64": "AA=="}):
        with pytest.raises(ServingError) as info:
            rest._rest_predict_request(
                model_server,
                model_pb2.ModelSpec(name=MODEL_NAME),
                {"signature_name": "score_items", "inputs": inputs},
            )
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.message == (
            "inputs is a plain value/list, but expecting an object as multiple input tensors "
            "required as per tensorinfo_map: signature score_items has inputs "
            '{behavior,padded}; send them named, {"inputs": {"behavior": "…", "padded": "…"}}'
        )
    request, row_format = rest._rest_predict_request(
        model_server,
        model_pb2.ModelSpec(name=MODEL_NAME),
        {"signature_name": "score_items", "inputs": {"padded": [[1]], "behavior": [0]}},
    )
    assert not row_format and sorted(request.inputs) == ["behavior", "padded"]


def _http_with_headers(port, head):
    """Status, lower-cased headers and raw body of one HTTP exchange."""
    with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
        sock.sendall(head.encode("latin-1"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    header, _, body = data.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
@pytest.mark.parametrize(
    ("path", "allow"), [(f"/v1/models/{MODEL_NAME}", "GET"), (PREDICT, "POST")]
)
def test_other_methods_get_json_405_with_allow(local_server, method, path, allow):
    status, headers, body = _http_with_headers(
        local_server.rest_port, f"{method} {path} HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    )
    assert status == 405 and headers["allow"] == allow
    assert headers["content-type"] == "application/json"
    if method == "HEAD":  # a HEAD answer has no body
        assert body == b""
    else:
        assert json.loads(body) == {"error": f"{method} is not supported for {path}; use {allow}"}


def test_http_errors_of_the_server_itself_are_json(local_server):
    status, headers, body = _http_with_headers(
        local_server.rest_port, f"BREW /v1/models/{MODEL_NAME} HTTP/1.1\r\n\r\n"
    )
    assert (status, json.loads(body)) == (501, {"error": "Unsupported method ('BREW')"})
    assert headers["content-type"] == "application/json"
    status, headers, body = _http_with_headers(local_server.rest_port, "GET / x HTTP/1.1\r\n\r\n")
    assert status == 400 and "Bad request syntax" in json.loads(body)["error"]
    status, headers, body = _http_with_headers(
        local_server.rest_port, f"GET {PREDICT} HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    assert (status, headers["allow"]) == (405, "POST")


def test_conflicting_content_lengths_are_refused(local_server):
    head = f"POST {PREDICT} HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 16\r\n\r\n"
    got, payload = _http(local_server.rest_port, head, b"{}")
    assert got == 400 and "conflicting Content-Length headers" in payload["error"]


def test_idle_rest_connections_are_closed(exported_model_base):
    base, name = exported_model_base
    with LocalServer(base, name, port=0, rest_api_port=0, rest_api_timeout_s=0.5) as server:
        started = time.monotonic()
        # Silent, and a body shorter than its Content-Length: both closed at the timeout.
        assert _http(server.rest_port, "") == (None, None)
        half = f"POST {PREDICT} HTTP/1.1\r\nContent-Length: 100\r\n\r\n"
        assert _http(server.rest_port, half, b"{") == (None, None)
        assert time.monotonic() - started < 4.0


# --- version folders ---------------------------------------------------------------------
def _fake_version(model_dir, name):
    (model_dir / name / "variables").mkdir(parents=True)
    (model_dir / name / "saved_model.pb").write_bytes(b"")
    (model_dir / name / "variables" / "variables.index").write_bytes(b"")


def test_version_numbers_beyond_int64_are_not_versions(tmp_path):
    for name in ("99999999999999999999999", "9223372036854775808", "9223372036854775807", "3"):
        _fake_version(tmp_path, name)
    assert sorted(complete_versions(tmp_path)) == [3, 2**63 - 1]


def test_skipped_version_entries_are_logged_once_with_the_reason(tmp_path, caplog):
    _fake_version(tmp_path, "99999999999999999999")
    (tmp_path / "5").write_text("")  # a file
    (tmp_path / "6").mkdir()  # a half copy
    (tmp_path / "6" / "saved_model.pb").write_bytes(b"")
    with caplog.at_level("INFO", logger="absl"):
        assert complete_versions(tmp_path) == {}
        said = [
            r.getMessage() for r in caplog.records if "Not a servable version" in r.getMessage()
        ]
        assert sorted(said) == [
            f"Not a servable version: {tmp_path / '5'} (it is not a folder)",
            f"Not a servable version: {tmp_path / '6'} (it has no variables/variables.index (yet))",
            f"Not a servable version: {tmp_path / '99999999999999999999'} (its number is above "
            f"the largest version {2**63 - 1})",
        ]
        caplog.clear()
        assert complete_versions(tmp_path) == {}  # polled again: said once
        assert not [r for r in caplog.records if "Not a servable version" in r.getMessage()]


def test_two_folders_of_one_version_are_named_and_the_last_name_is_served(tmp_path, caplog):
    """``10/`` and ``0010/``: TF Serving loads the name that sorts last, with a warning
    naming both; an incomplete winner is not replaced by the other folder."""
    for name in ("0010", "10", "3", "03", "007"):
        _fake_version(tmp_path, name)
    (tmp_path / "03" / "saved_model.pb").unlink()  # "3" wins over "03" anyway
    (tmp_path / "7" / "variables").mkdir(parents=True)  # "7" wins over "007", incomplete
    with caplog.at_level("WARNING"):
        versions = complete_versions(tmp_path)
        assert versions == {10: tmp_path / "10", 3: tmp_path / "3"}
        warnings = [r.getMessage() for r in caplog.records if "Duplicate" in r.getMessage()]
        assert len(warnings) == 3, warnings
        for version, kept, ignored in ((10, "10", "0010"), (7, "7", "007"), (3, "3", "03")):
            assert (
                f"Version {version} will be loaded from {tmp_path / kept}, "
                f"{tmp_path / ignored} will be ignored" in "\n".join(warnings)
            )
        caplog.clear()
        assert complete_versions(tmp_path) == versions  # polled again: no second warning
        assert not [r for r in caplog.records if "Duplicate" in r.getMessage()]


def test_a_failed_version_is_retried_once_its_files_change(tmp_path, model_template):
    publish(model_template, tmp_path, 1)
    model_server = ModelServer(tmp_path, MODEL_NAME, poll_wait_seconds=0)
    model_server.start()
    # Version 2 "complete" while its variables are still being copied: cut in half.
    staging = tmp_path / MODEL_NAME / ".tmp-2"
    shutil.copytree(model_template / "seed2", staging)
    data = next((staging / "variables").glob("variables.data-*"))
    full = data.read_bytes()
    data.write_bytes(full[: len(full) // 2])
    staging.rename(tmp_path / MODEL_NAME / "2")
    assert model_server.poll() is None
    assert model_server.poll() is None  # unchanged: not retried
    assert model_server.current.version == 1
    # The copy completes; saved_model.pb is untouched.
    (tmp_path / MODEL_NAME / "2" / "variables" / data.name).write_bytes(full)
    assert model_server.poll() == 2
    assert model_server.current.version == 2
    model_server.stop()


def test_a_version_changing_while_it_loads_is_not_served(tmp_path, model_template, monkeypatch):
    publish(model_template, tmp_path, 1)
    model_server = ModelServer(tmp_path, MODEL_NAME, poll_wait_seconds=0)
    model_server.start()
    load = model_server_module.load_version
    copies = []

    def load_while_copying(version, path, batching=None):
        loaded = load(version, path, batching)
        if not copies:  # the copy writes one more file while the load runs
            copies.append(path)
            (path / "assets.extra" / "late_file").write_bytes(b"x")
        return loaded

    monkeypatch.setattr(model_server_module, "load_version", load_while_copying)
    shutil.copytree(model_template / "seed2", tmp_path / MODEL_NAME / "2")
    assert model_server.poll() is None
    assert model_server.current.version == 1
    assert model_server.poll() == 2  # unchanged since: loaded and served
    model_server.stop()


def test_sigterm_while_the_first_version_loads_exits(tmp_path, model_template):
    publish(model_template, tmp_path, 1)
    code = (
        "import os, signal, sys\n"
        "from serving import model_server, server\n"
        "load = model_server.load_version\n"
        "def load_and_signal(*args):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return load(*args)\n"
        "model_server.load_version = load_and_signal\n"
        "sys.exit(server.main(sys.argv[1:]))\n"
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            f"--model_base_path={tmp_path}",
            f"--model_name={MODEL_NAME}",
            f"--port={port}",
            "--reload_in_process",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output, _ = process.communicate(timeout=45)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.communicate()
    assert process.returncode == 0, output
    assert "Received SIGTERM while starting" in output
    assert "Server stopped" in output


def test_too_many_rows_are_refused_naming_the_limit(predict):
    # 200,000 empty examples are 400 KB on the wire but 200,000 rows of scores.
    request = _request([b""] * 2000)
    code, details = _rejected(predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{DEFAULT_MAX_ROWS_PER_REQUEST} rows a request may hold" in details
    assert details.startswith("input tensor alias examples: 2000 rows, more than the")


@pytest.mark.parametrize("seconds", [float("inf"), 1e10, float("nan"), -1.0])
def test_a_poll_wait_that_cannot_be_waited_is_refused(tmp_path, seconds):
    with pytest.raises(ValueError, match=r"poll_wait_seconds must be in \[0, 86400\] seconds"):
        ModelServer(tmp_path, MODEL_NAME, poll_wait_seconds=seconds)


def test_row_limit_is_configurable_and_exact(exported_model_base):
    base, name = exported_model_base
    with pytest.raises(ValueError, match="max_rows_per_request"):
        ModelServer(base, name, max_rows_per_request=0)
    model_server = ModelServer(
        base, name, poll_wait_seconds=0, enable_warmup=False, max_rows_per_request=3
    )
    model_server.start()
    try:
        answer = model_server.predict(_request([EXAMPLE] * 3))
        assert answer.outputs[features.OOV_COUNT].tensor_shape.dim[0].size == 3
        with pytest.raises(ServingError) as info:
            model_server.predict(_request([EXAMPLE] * 4))
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "4 rows, more than the 3 rows a request may hold" in info.value.message
    finally:
        model_server.stop()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--port", "70000"], "argument --port: must be in [0, 65535], got 70000"),
        (["--port", "8600", "--rest_api_port", "8600"], "are both 8600: give two ports"),
        (["--enable_batching", "--max_batch_size", "0"], "--max_batch_size: must be >= 1"),
        (["--batch_timeout_micros", "-5"], "--batch_timeout_micros: must be in [0, 60000000]"),
        (["--batch_timeout_micros", "10000000000000000"], "must be in [0, 60000000]"),
        (["--max_rows_per_request", "0"], "--max_rows_per_request: must be >= 1"),
        (["--grpc_max_threads", "0"], "--grpc_max_threads: must be >= 1"),
        (["--max_request_bytes", "0"], "--max_request_bytes: must be >= 1"),
        (["--host", "256.1.1.1"], "--host '256.1.1.1' does not resolve"),
        (["--model_name", "a/b"], "--model_name: model_name must be a non-empty folder name"),
        (["--model_name", ""], "--model_name: model_name must be a non-empty folder name"),
        (["--model_name", ".."], "got '..'"),
        (
            ["--file_system_poll_wait_seconds", "inf"],
            "--file_system_poll_wait_seconds: must be in [0, 86400], got inf",
        ),
        (["--file_system_poll_wait_seconds", "1e10"], "must be in [0, 86400], got 1e10"),
        (["--file_system_poll_wait_seconds", "nan"], "must be in [0, 86400], got nan"),
        (["--grace_seconds", "inf"], "--grace_seconds: must be in [0, 3600], got inf"),
        (["--idle_load_timeout_s", "1e300"], "--idle_load_timeout_s: must be in [0, 600.0]"),
        (["--rest_api_timeout_in_ms", "10" * 10], "must be in [1, 86400000]"),
        (["--log_file", "/"], "--log_file '/' cannot be written: [Errno 21] Is a directory"),
        (["--log_file", ""], "--log_file '' cannot be written"),
        (["--log_file", "/proc/self/no/server.log"], "cannot be written"),
        (["--log_file", "/dev/full"], "cannot be written: [Errno 28] No space left on device"),
        (["--log_file", "/dev/null/server.log"], "[Errno 20] Not a directory: '/dev/null'"),
    ],
)
def test_bad_server_flags_stop_it_before_anything_serves(flags, message, capsys):
    from serving import server

    with pytest.raises(SystemExit):
        server.main(["--model_base_path", "/nonexistent", "--model_name", "m", *flags])
    assert message in capsys.readouterr().err


def test_a_port_in_use_is_refused_not_shared(tmp_path):
    from serving import server

    with socket.socket() as taken:  # as the gRPC server binds: SO_REUSEPORT
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert server.port_in_use("127.0.0.1", port)
        argv = ["--model_base_path", str(tmp_path), "--model_name", "m", "--port", str(port)]
        assert server.main(argv) == 2  # before any serving process starts
    assert not server.port_in_use("127.0.0.1", port)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_server_waiting_for_its_first_version_answers_and_keeps_its_ports(
    tmp_path, model_template
):
    """A server whose only version fails to load binds its ports at once: calls are
    NOT_FOUND and the status says the version failed (not UNAVAILABLE, as for no
    server); a second server on the same port is refused, not sharing it. A lower
    version published then is served: the broken higher one (its folder named "03")
    does not hide it, is tried once, and the serving process reports it failed."""
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    broken = tmp_path / MODEL_NAME / "03"
    (broken / "variables").mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    (broken / "variables" / "variables.index").write_bytes(b"")
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "serving.server",
        f"--model_base_path={tmp_path}",
        f"--model_name={MODEL_NAME}",
        f"--port={port}",
    ]
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "failed to load" not in log.read_text():
            assert first.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert "Waiting for a first version of model bvae" in log.read_text()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            predict = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict
            code, details = _rejected(predict, _request([EXAMPLE]))
            assert code == grpc.StatusCode.NOT_FOUND, details
            assert details == f"Servable not found for request: Latest({MODEL_NAME})"
            status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec={"name": MODEL_NAME}),
                timeout=10,
            )
        (version,) = status.model_version_status
        assert version.version == 3
        assert version.state == get_model_status_pb2.ModelVersionStatus.END
        assert "failed to load" in version.status.error_message
        second = subprocess.run(command, check=False, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"127.0.0.1:{port} in use (another server?): choose free ports" in second.stderr
        publish(model_template, tmp_path, 2)
        while "Version 2 of model bvae serves from process" not in log.read_text():
            assert first.poll() is None and time.monotonic() < deadline + 120, log.read_text()
            time.sleep(0.2)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                _request([EXAMPLE]), timeout=10
            )
            status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec={"name": MODEL_NAME}),
                timeout=10,
            )
        assert answer.model_spec.version.value == 2
        states = {s.version: (s.state, s.status.error_message) for s in status.model_version_status}
        assert states[2] == (get_model_status_pb2.ModelVersionStatus.AVAILABLE, "")
        assert states[3][0] == get_model_status_pb2.ModelVersionStatus.END
        assert "failed to load" in states[3][1]
        # Version 3 was tried once; the serving process was started for version 2 and
        # loaded only that one.
        text = log.read_text()
        assert text.count("Started serving process") == 2, text
        after = text.rsplit("Started serving process", 1)[-1]
        assert "Loading servable: {name: bvae version: 3} failed" not in after
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    assert first.returncode == 0, log.read_text()


def test_port_claims_are_exclusive_and_released():
    from serving import server

    port = _free_port()
    held, taken = server.claim_ports([port, 0])
    try:
        assert len(held) == 1 and taken == []
        again, taken = server.claim_ports([port])
        assert again == [] and taken == [port]
    finally:
        for claim in held:
            claim.close()
    held, taken = server.claim_ports([port])
    assert len(held) == 1 and taken == []
    held[0].close()


def test_a_bound_port_is_not_shared_by_a_second_local_server(exported_model_base):
    """gRPC Python binds with SO_REUSEPORT unless told not to: a second server on the
    same gRPC or REST port must fail to bind, not share it."""
    base, name = exported_model_base
    with LocalServer(base, name, port=0, rest_api_port=0, enable_warmup=False) as first:
        with pytest.raises(OSError, match="cannot bind the gRPC port"):
            LocalServer(base, name, port=first.port, enable_warmup=False).start()
        second = LocalServer(base, name, port=0, rest_api_port=first.rest_port, enable_warmup=False)
        with pytest.raises(OSError, match="Address already in use"):
            second.start()
        assert second._grpc is None  # its gRPC server was stopped again


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_body_cut_short_by_the_client_is_logged_not_a_traceback(local_server, capfd, reset):
    """A client that sends part of its body and goes away: one log line, no traceback."""
    capfd.readouterr()
    with socket.create_connection(("127.0.0.1", local_server.rest_port), timeout=5.0) as sock:
        sock.sendall(f"POST {PREDICT} HTTP/1.1\r\nContent-Length: 100\r\n\r\n{{".encode())
        if reset:  # RST instead of FIN: the server's answer meets a reset connection.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            sock.shutdown(socket.SHUT_WR)
    time.sleep(0.5)
    got, _ = _http(
        local_server.rest_port, f"GET /v1/models/{MODEL_NAME} HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    assert got == 200  # still serving
    err = capfd.readouterr().err
    assert "Traceback" not in err, err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([[True]], "expects dtype int64 but got bool values"),  # True is not item index 1
        ([[1, 2], [3]], "its rows have different lengths; .*pad them with -1"),
        ([[0.5]], "expects dtype int64 but got float64 values"),
    ],
)
def test_score_items_inputs_that_are_no_indices_are_refused(value, message):
    from tensorflow.core.protobuf import meta_graph_pb2

    from serving import signatures

    info = meta_graph_pb2.TensorInfo(dtype=types_pb2.DT_INT64)
    info.tensor_shape.dim.add().size = -1
    info.tensor_shape.dim.add().size = -1
    with pytest.raises(ValueError, match=message):
        signatures.cast_to_signature("purchase_items", value, info)
    assert signatures.cast_to_signature("purchase_items", [[1, -1]], info).tolist() == [[1, -1]]


def test_tensorflow_errors_reach_the_caller_without_the_wrappers_noise():
    import tensorflow as tf

    from serving.model_server import op_error_message

    raw = (
        "Graph execution error:\n\nDetected at node bvae/Assert/Assert defined at (most "
        "recent call last):\n<stack traces unavailable>\nassertion failed: [purchase_items: "
        "item index outside [0, num_items=127)]\n\t [[{{node bvae/Assert/Assert}}]] "
        "[Op:__inference_signature_wrapper_2869]"
    )
    error = tf.errors.InvalidArgumentError(None, None, raw)
    assert op_error_message(error) == (
        "assertion failed: [purchase_items: item index outside [0, num_items=127)]"
    )
    with_stack = raw.replace(
        "<stack traces unavailable>", '  File "x.py", line 3, in f\n    y = g()'
    )
    assert op_error_message(tf.errors.InvalidArgumentError(None, None, with_stack)) == (
        op_error_message(error)
    )
    plain = tf.errors.InvalidArgumentError(None, None, "Could not parse example input")
    assert op_error_message(plain) == "Could not parse example input"


def test_empty_index_rows_are_a_batch_of_empty_histories_not_a_float_error():
    from tensorflow.core.protobuf import meta_graph_pb2

    from serving import signatures

    info = meta_graph_pb2.TensorInfo(dtype=types_pb2.DT_INT64)
    info.tensor_shape.dim.add().size = -1
    info.tensor_shape.dim.add().size = -1
    empty = signatures.cast_to_signature("purchase_items", [[], []], info)
    assert empty.shape == (2, 0) and empty.dtype == np.int64
    with pytest.raises(ValueError, match="expects dtype int64 but got string values"):
        signatures.cast_to_signature("purchase_items", [["1"]], info)
    with pytest.raises(ValueError, match="expects dtype int64 but got mixed or null values"):
        signatures.cast_to_signature("purchase_items", [[None]], info)


def test_a_broken_newer_version_does_not_hide_an_older_one_once_the_served_folder_is_gone(
    tmp_path, caplog
):
    """The supervisor's choice: the highest complete version that did not fail to load
    with its present files. Deleting the serving version's folder while a broken newer
    one is there switches to the next complete version (it used to serve the deleted
    one on without a word), and the vanished folder is named once."""
    import argparse
    from types import SimpleNamespace

    from serving import supervisor, versions

    model_dir = tmp_path / "m"
    for name in ("243", "300", "600"):
        _fake_version(model_dir, name)
    args = argparse.Namespace(
        model_base_path=str(tmp_path), model_name="m", port=0, rest_api_port=0,
        idle_load_timeout_s=1.0,
    )  # fmt: skip
    chooser = supervisor._Supervisor([], args)
    assert chooser._wanted_version() == 600
    chooser._failed[600] = versions.version_fingerprint(model_dir / "600")  # it failed
    chooser._serving = SimpleNamespace(ready={"version": 300})
    assert chooser._wanted_version() == 300  # the serving one: nothing to load
    shutil.rmtree(model_dir / "300")
    with caplog.at_level("WARNING", logger="absl"):
        assert chooser._wanted_version() == 243
        assert chooser._wanted_version() == 243
    gone = [r.getMessage() for r in caplog.records if "is gone" in r.getMessage()]
    assert gone == [
        "The folder of version 300 (serving) is gone; it serves on until another version loads"
    ]
    (model_dir / "600" / "saved_model.pb").write_bytes(b"new files")  # republished
    assert chooser._wanted_version() == 600
