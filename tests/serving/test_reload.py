"""Version handling of the local server: hot reload under load, incomplete and bad
versions, retries while the server is down, graceful SIGTERM."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, predict_pb2, prediction_log_pb2

from bvae_tf import features
from serving import versions as versions_module
from serving.client import ServingClient
from serving.client_requests import build_history_request
from serving.model_server import ModelServer
from serving.request_checks import ServingError
from serving.server import LocalServer
from serving.versions import BatchingOptions, complete_versions
from tests.serving.conftest import MODEL_NAME, publish

pytestmark = pytest.mark.e2e

_State = get_model_status_pb2.ModelVersionStatus.State


def _wait_for(condition, timeout_s=120.0, what="condition"):
    # Generous: the conditions are met in about a second on idle cores; a loaded CI
    # machine must not fail the test on time alone.
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _states(client):
    return {
        s.version: (s.state, s.status.error_message)
        for s in client.get_model_status().model_version_status
    }


@pytest.mark.parametrize(
    "batching", [None, BatchingOptions(max_batch_size=4)], ids=["unbatched", "batched"]
)
def test_hot_reload_switches_without_a_failed_call(tmp_path, model_template, batching):
    publish(model_template, tmp_path, 1, seed=1)
    history = [{features.PURCHASE: ["i1"], features.CLICK: ["i2", "i3"]}]
    with LocalServer(
        tmp_path, MODEL_NAME, port=0, poll_wait_seconds=0.1, batching=batching
    ) as server:
        versions: list[list[int]] = [[] for _ in range(4)]
        answers: dict[int, object] = {}
        errors: list[BaseException] = []
        stop = threading.Event()

        def call(index: int) -> None:
            with ServingClient(server.target, model_name=MODEL_NAME, timeout_s=60) as client:
                while not stop.is_set():
                    try:
                        (result,) = client.recommend(history)
                    except Exception as e:
                        errors.append(e)
                        return
                    versions[index].append(result.model_version)
                    answers[result.model_version] = result.items

        threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        _wait_for(lambda: all(len(v) >= 5 for v in versions), what="answers from version 1")
        publish(model_template, tmp_path, 2, seed=2)
        _wait_for(
            lambda: all(v and v[-1] == 2 for v in versions) or errors,
            what="every client answered by version 2",
        )
        count = [len(v) for v in versions]
        _wait_for(
            lambda: all(len(v) >= c + 5 for v, c in zip(versions, count, strict=True)) or errors,
            what="more answers from version 2",
        )
        stop.set()
        for thread in threads:
            thread.join()

        assert errors == []
        for seen in versions:
            switch = seen.index(2)
            assert set(seen[:switch]) == {1}
            assert set(seen[switch:]) == {2}  # never back to the old version
        assert answers[1] != answers[2]  # the seeds differ, so do the rankings
        with ServingClient(server.target, model_name=MODEL_NAME) as client:
            assert _states(client) == {2: (_State.AVAILABLE, ""), 1: (_State.END, "")}


@pytest.mark.parametrize(
    "batching", [None, BatchingOptions(max_batch_size=4)], ids=["unbatched", "batched"]
)
def test_in_flight_calls_finish_on_the_old_version(tmp_path, model_template, monkeypatch, batching):
    """A call running on version 1 while version 2 is swapped in completes on version 1."""
    entered, release = threading.Event(), threading.Event()
    make_runner = versions_module._numpy_runner

    def held_runner(function, signature):
        run = make_runner(function, signature)

        def held(inputs):
            if not release.is_set():
                entered.set()
                release.wait(30)
            return run(inputs)

        return held

    monkeypatch.setattr(versions_module, "_numpy_runner", held_runner)
    publish(model_template, tmp_path, 1, seed=1)
    model_server = ModelServer(
        tmp_path, MODEL_NAME, poll_wait_seconds=0, enable_warmup=False, batching=batching
    )
    model_server.start()
    request = build_history_request(
        [{}],
        model_name=MODEL_NAME,
        signature=model_server.current.signature_defs[features.SERVING_SIGNATURE],
    )
    answers = []
    in_flight = threading.Thread(target=lambda: answers.append(model_server.predict(request)))
    in_flight.start()
    assert entered.wait(30)
    publish(model_template, tmp_path, 2, seed=2)
    assert model_server.poll() == 2
    assert model_server.current.version == 2
    release.set()
    in_flight.join(30)
    assert [a.model_spec.version.value for a in answers] == [1]
    assert features.OOV_COUNT in answers[0].outputs
    assert model_server.predict(request).model_spec.version.value == 2
    model_server.stop()


def test_incomplete_and_broken_versions_are_not_served(tmp_path, model_template):
    publish(model_template, tmp_path, 2)
    model_dir = tmp_path / MODEL_NAME
    # A staging folder, a non-numeric folder, a version without its variables.
    shutil.copytree(model_dir / "2", model_dir / ".tmp-9")
    shutil.copytree(model_dir / "2", model_dir / "latest")
    shutil.copytree(model_dir / "2", model_dir / "8")
    os.remove(model_dir / "8" / "variables" / "variables.index")
    assert sorted(complete_versions(model_dir)) == [2]

    with LocalServer(tmp_path, MODEL_NAME, port=0, poll_wait_seconds=0.1) as server:
        client = ServingClient(server.target, model_name=MODEL_NAME, timeout_s=10)
        assert client.recommend([{}])[0].model_version == 2
        # Version 10: complete files but a corrupt graph -> the load fails.
        shutil.copytree(model_dir / "2", model_dir / ".tmp-10")
        (model_dir / ".tmp-10" / "saved_model.pb").write_bytes(b"not a SavedModel")
        os.rename(model_dir / ".tmp-10", model_dir / "10")
        _wait_for(lambda: _states(client).get(10, (0,))[0] == _State.END, what="version 10 END")
        assert "failed" in _states(client)[10][1]
        assert client.recommend([{}])[0].model_version == 2

        # Version 11: loads, but its warm-up request is invalid -> not served either.
        shutil.copytree(model_dir / "2", model_dir / ".tmp-11")
        bad = predict_pb2.PredictRequest()
        bad.model_spec.name = MODEL_NAME
        bad.inputs["history"].string_val.append(b"")
        log = prediction_log_pb2.PredictionLog(predict_log={"request": bad})
        warmup = model_dir / ".tmp-11" / "assets.extra" / "tf_serving_warmup_requests"
        with tf.io.TFRecordWriter(str(warmup)) as writer:
            writer.write(log.SerializeToString())
        os.rename(model_dir / ".tmp-11", model_dir / "11")
        _wait_for(lambda: _states(client).get(11, (0,))[0] == _State.END, what="version 11 END")
        assert "input tensor alias not found in signature: history" in _states(client)[11][1]
        assert client.recommend([{}])[0].model_version == 2
        assert _states(client)[2] == (_State.AVAILABLE, "")
        client.close()


def test_a_broken_highest_version_does_not_hide_a_lower_one(tmp_path, model_template, caplog):
    """In process: versions 2 and 3, 3 broken -> 2 is served from the first poll on,
    and 3 is tried again only once its files change. With every folder removed, the
    serving version serves on, and the log says so."""
    publish(model_template, tmp_path, 2)
    broken = publish(model_template, tmp_path, 3)
    (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
    with LocalServer(tmp_path, MODEL_NAME, port=0, poll_wait_seconds=0) as server:
        assert server.model_server.current.version == 2
        with ServingClient(server.target, model_name=MODEL_NAME, timeout_s=10) as client:
            assert client.recommend([{}])[0].model_version == 2
            states = _states(client)
        assert states[2] == (_State.AVAILABLE, "")
        assert states[3][0] == _State.END and "failed" in states[3][1]
        assert server.model_server.poll() is None  # 3 unchanged: not loaded again
        shutil.rmtree(broken)
        publish(model_template, tmp_path, 3, seed=2)
        assert server.model_server.poll() == 3
        shutil.rmtree(tmp_path / MODEL_NAME)
        assert server.model_server.poll() is None
        assert "version 3 (serving) serves on until another version loads" in caplog.text
        assert server.model_server.current.version == 3


def test_server_without_versions_answers_not_found_then_serves(tmp_path, model_template):
    with LocalServer(tmp_path, MODEL_NAME, port=0, poll_wait_seconds=0.1) as server:
        client = ServingClient(server.target, model_name=MODEL_NAME, timeout_s=10)
        with pytest.raises(grpc.RpcError) as info:
            client.get_model_metadata()
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert client.retries == 0  # only UNAVAILABLE is retried
        publish(model_template, tmp_path, 3)
        _wait_for(lambda: server.model_server.current is not None, what="version 3")
        assert client.recommend([{}])[0].model_version == 3
        client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_process_whose_version_failed_binds_no_port(tmp_path, model_template):
    """The supervisor's processes share the ports (SO_REUSEPORT): one whose version does
    not load must not take calls (it would answer NOT_FOUND beside the serving one)."""
    from serving.server import NoVersionLoaded, port_in_use

    target = publish(model_template, tmp_path, 5)
    (target / "saved_model.pb").write_bytes(b"not a SavedModel")
    port = _free_port()
    server = LocalServer(tmp_path, MODEL_NAME, port=port, poll_wait_seconds=0, reuse_port=True)
    with pytest.raises(NoVersionLoaded, match="no version of model"):
        server.start(require_version=True)
    assert not port_in_use("127.0.0.1", port)
    # Without require_version (a server waiting for its first version) it binds.
    with LocalServer(tmp_path, MODEL_NAME, port=port, poll_wait_seconds=0) as waiting:
        assert waiting.model_server.current is None and port_in_use("127.0.0.1", port)


def test_client_retries_unavailable_until_the_server_is_up(tmp_path, model_template):
    publish(model_template, tmp_path, 1)
    port = _free_port()
    client = ServingClient(
        f"127.0.0.1:{port}",
        model_name=MODEL_NAME,
        max_attempts=30,
        initial_backoff_s=0.05,
        max_backoff_s=0.2,
    )
    server = LocalServer(tmp_path, MODEL_NAME, port=port, poll_wait_seconds=0)
    starter = threading.Timer(0.5, server.start)
    starter.start()
    try:
        assert client.recommend([{}])[0].model_version == 1
        assert client.retries >= 1
    finally:
        starter.join()
        server.stop(grace_seconds=0)
        client.close()

    down = ServingClient(
        f"127.0.0.1:{_free_port()}", model_name=MODEL_NAME, max_attempts=3, initial_backoff_s=0.01
    )
    with pytest.raises(grpc.RpcError) as info:
        down.get_model_status()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert down.retries == 2
    down.close()


def _server_command(base_path, port: int, *flags: str) -> list[str]:
    """``python -m serving.server`` on ``base_path`` with batching and ``flags``."""
    return [
        sys.executable,
        "-m",
        "serving.server",
        f"--model_base_path={base_path}",
        f"--model_name={MODEL_NAME}",
        f"--port={port}",
        *flags,
        "--enable_batching",
    ]


def _children(pid: int) -> set[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return {int(child) for child in f.read().split()}


def test_cli_loads_a_new_version_in_another_process(tmp_path, model_template):
    """The serving process never loads a later version: a new process loads and warms
    it, takes over the port, and the old one finishes its calls and exits; SIGTERM
    then stops the server gracefully."""
    publish(model_template, tmp_path, 1, seed=1)
    port, rest_port = _free_port(), _free_port()
    log = tmp_path / "server.log"
    process = subprocess.Popen(
        _server_command(
            tmp_path,
            port,
            "--file_system_poll_wait_seconds=0.1",
            f"--rest_api_port={rest_port}",
            # On saturated cores (a parallel test run) the idle-priority loader may get
            # no CPU: bound its wait so the switch happens within the test's timeout.
            "--idle_load_timeout_s=5",
            f"--log_file={tmp_path / 'logs' / 'server.log'}",
        ),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    versions: list[int] = []  # every answer, in the order they arrived
    per_thread: list[list[int]] = [[] for _ in range(3)]  # each client's own answers
    errors: list[BaseException] = []
    stop = threading.Event()

    def call(mine: list[int]) -> None:
        with ServingClient(
            f"127.0.0.1:{port}", model_name=MODEL_NAME, timeout_s=10, max_attempts=240
        ) as client:
            while not stop.is_set():
                try:
                    version = client.recommend([{features.CLICK: ["i1"]}])[0].model_version
                except grpc.RpcError as e:
                    if mine or e.code() != grpc.StatusCode.NOT_FOUND:
                        errors.append(e)
                        return
                    # The supervisor's stand-in, before the first version serves (a
                    # loaded machine: the clients' retries reached it before that).
                    time.sleep(0.05)
                    continue
                except Exception as e:
                    errors.append(e)
                    return
                mine.append(version)
                versions.append(version)

    rest_versions: list[int] = []  # REST, a new connection per call

    def call_rest() -> None:
        url = f"http://127.0.0.1:{rest_port}/v1/models/{MODEL_NAME}"
        while not stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=10) as answer:
                    states = json.loads(answer.read())["model_version_status"]
            except urllib.error.HTTPError as e:  # an answer (the stand-in's 404)
                if rest_versions:
                    errors.append(
                        RuntimeError(f"REST after {rest_versions[-5:]}: {e!r} {e.read()!r}")
                    )
                    return
                time.sleep(0.05)
                continue
            except Exception as e:
                if rest_versions:
                    errors.append(RuntimeError(f"REST after {rest_versions[-5:]}: {e!r}"))
                    return
                time.sleep(0.05)  # not up yet
                continue
            available = [int(v["version"]) for v in states if v["state"] == "AVAILABLE"]
            if available:  # (the stand-in's answer lists the version LOADING)
                rest_versions.append(max(available))

    threads = [threading.Thread(target=call, args=(mine,)) for mine in per_thread]
    threads.append(threading.Thread(target=call_rest))
    try:
        for thread in threads:
            thread.start()
        _wait_for(
            lambda: len(versions) >= 10 or errors, timeout_s=120.0, what="answers from version 1"
        )
        assert errors == [], log.read_text()
        (first,) = _children(process.pid)
        publish(model_template, tmp_path, 2, seed=2)
        _wait_for(
            lambda: versions[-1] == 2 or errors, timeout_s=90.0, what="answers from version 2"
        )
        _wait_for(lambda: first not in _children(process.pid), what="the old process exits")
        count, rest_count = len(versions), len(rest_versions)
        _wait_for(
            lambda: (
                (len(versions) >= count + 10 and len(rest_versions) >= rest_count + 10) or errors
            ),
            what="more answers",
        )
        stop.set()
        for thread in threads:
            thread.join(30)
        assert errors == [], log.read_text()
        # Each client switches once from 1 to 2 and never back. (Across clients a call
        # the old process was still answering may arrive after another client's first
        # answer from the new one.)
        for mine in per_thread:
            switch = mine.index(2) if 2 in mine else len(mine)
            assert set(mine[:switch]) <= {1} and set(mine[switch:]) <= {2}, mine
        assert versions[0] == 1 and versions[-1] == 2
        # REST, on the socket the supervisor holds and passes on: both processes
        # answered it, and no call failed across the switch.
        assert rest_versions[0] == 1 and rest_versions[-1] == 2, rest_versions
        (second,) = _children(process.pid)
        assert second != first
        with ServingClient(f"127.0.0.1:{port}", model_name=MODEL_NAME) as client:
            assert _states(client) == {2: (_State.AVAILABLE, ""), 1: (_State.END, "")}
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert process.returncode == 0, output
    assert "(loading at idle priority)" in output
    # SIGTERM stops it gracefully: exit status 0 after both messages.
    assert "Received SIGTERM" in output
    assert "Server stopped" in output
    # --log_file: the supervisor and both serving processes append to one file, each
    # line with its process id; it holds what stderr showed, and more (INFO records
    # of the libraries).
    file_lines = (tmp_path / "logs" / "server.log").read_text().splitlines()
    pids = {int(line.split()[3]) for line in file_lines if re.match(r"\d{4}-\d\d-\d\d ", line)}
    assert {process.pid, first, second} <= pids, pids
    file_text = "\n".join(file_lines)
    for message in ("(loading at idle priority)", "Received SIGTERM", "Server stopped"):
        assert message in file_text, message


def test_scheduling_class_covers_every_thread(monkeypatch):
    from serving import supervisor

    started, release = threading.Event(), threading.Event()
    thread = threading.Thread(target=lambda: (started.set(), release.wait(30)))
    thread.start()
    try:
        assert started.wait(10)
        try:
            assert supervisor.set_scheduling(idle=True)
            assert os.sched_getscheduler(0) == os.SCHED_IDLE
            assert os.sched_getscheduler(thread.native_id) == os.SCHED_IDLE
        finally:
            assert supervisor.set_scheduling(idle=False)
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
        assert os.sched_getscheduler(thread.native_id) == os.SCHED_OTHER
    finally:
        release.set()
        thread.join()
    # Where the process could not come back to normal priority it is not lowered.
    monkeypatch.setattr(supervisor, "_can_restore_normal_priority", lambda: False)
    assert not supervisor.set_scheduling(idle=True)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER


def test_scheduling_class_of_another_process():
    from serving import supervisor

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert supervisor.set_scheduling(idle=True, pid=other.pid)
        assert os.sched_getscheduler(other.pid) == os.SCHED_IDLE
        assert supervisor.set_scheduling(idle=False, pid=other.pid)
        assert os.sched_getscheduler(other.pid) == os.SCHED_OTHER
    finally:
        other.kill()
        other.wait()
    assert not supervisor.set_scheduling(idle=False, pid=other.pid)  # gone


def test_rest_connections_queued_at_a_handover_are_served_by_the_successor():
    """The supervisor's serving processes accept REST on one listening socket it
    holds: a connection still queued when a process stops (closes its descriptor) is
    accepted by the next, where a listener of its own would reset it."""
    from serving import rest

    listening = socket.create_server(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    settings = dict(max_request_bytes=1024, max_concurrent_calls=2, timeout_s=5, reuse_port=False)

    def server():
        return rest.make_server(
            None, "127.0.0.1", 0, **settings, listening_fd=os.dup(listening.fileno())
        )

    old = server()  # never accepts: the connection below waits in the socket's queue
    assert old.server_address[1] == port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(b"GET /v1/nothing HTTP/1.0\r\n\r\n")
        old.server_close()  # the old process stops
        new = server()
        thread = threading.Thread(target=new.serve_forever, daemon=True)
        thread.start()
        try:
            answer = client.recv(4096)
        finally:
            new.shutdown()
            new.server_close()
            listening.close()
    assert answer.startswith(b"HTTP/1.1 404 Not Found"), answer


def test_rest_refuses_a_descriptor_that_is_not_a_listening_socket():
    from serving import rest

    settings = dict(max_request_bytes=1024, max_concurrent_calls=2, timeout_s=5, reuse_port=False)
    with socket.socket() as unbound:
        with pytest.raises(OSError, match="is not a listening TCP socket"):
            rest.make_server(None, "127.0.0.1", 0, **settings, listening_fd=unbound.fileno())
        assert unbound.fileno() >= 0  # left open for its owner


def test_the_no_version_warning_says_whether_the_base_path_exists(tmp_path):
    missing = versions_module.why_no_version(str(tmp_path / "nope" / MODEL_NAME))
    assert "the folder does not exist: check --model_base_path and --model_name" in missing
    (tmp_path / MODEL_NAME / "7").mkdir(parents=True)  # a version folder, no saved_model.pb
    empty = versions_module.why_no_version(str(tmp_path / MODEL_NAME))
    assert "no version folder with a saved_model.pb in it yet" in empty
    assert versions_module.why_no_version("gs://bucket/models/bvae") == ""  # not looked into


def test_status_reports_the_supervisors_states_and_ignores_an_unreadable_file(tmp_path, caplog):
    """A serving process's GetModelStatus: the supervisor's record of the versions it
    started (``states_file``); a file it cannot read is a warning, not an error."""
    from tensorflow_serving.apis import get_model_status_pb2

    states_file = tmp_path / "version_states.json"
    states = {"3": [_State.END, "failed to load"], "4": [_State.LOADING, ""]}
    states_file.write_text(json.dumps(states))
    server = ModelServer(tmp_path, MODEL_NAME, poll_wait_seconds=0, states_file=states_file)
    request = get_model_status_pb2.GetModelStatusRequest(model_spec={"name": MODEL_NAME})
    answer = server.get_model_status(request)
    got = {s.version: (s.state, s.status.error_message) for s in answer.model_version_status}
    assert got == {4: (_State.LOADING, ""), 3: (_State.END, "failed to load")}
    states_file.write_text("{not json")
    with pytest.raises(ServingError, match="Could not find any versions of model bvae"):
        server.get_model_status(request)
    assert "Cannot read the supervisor's version states" in caplog.text


def test_the_supervisors_states_file_survives_a_tmp_cleaner_and_never_stops_it(tmp_path, caplog):
    """Its folder removed (a /tmp cleaner): made again; unwritable: a warning."""
    from serving import supervisor

    states = supervisor._Supervisor.__new__(supervisor._Supervisor)  # no server needed
    states._states = {3: (_State.END, "failed to load")}
    states._states_dir = str(tmp_path / "gone")
    states._states_file = str(tmp_path / "gone" / "version_states.json")
    states._write_states()
    assert json.loads(pathlib.Path(states._states_file).read_text()) == {
        "3": [_State.END, "failed to load"]
    }
    states._states_dir, states._states_file = "/dev/null/x", "/dev/null/x/version_states.json"
    states._write_states()
    assert "Cannot write the version states for GetModelStatus" in caplog.text
