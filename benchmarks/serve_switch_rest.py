"""REST calls on new connections across version switches of the local server.

Copies the newest version of ``MODEL_BASE_PATH/MODEL_NAME`` (e.g. the demo's export,
``make demo``) into a temporary base path, serves it with ``python -m serving.server``
on loopback (REST on) and has ``--threads`` clients send REST status calls
(``GET /v1/models/NAME``), each on a new TCP connection, the case a switch can hurt:
a connection queued on a listening socket that closes is reset. Meanwhile
``--switches`` new versions are published, each a copy renamed into the base path (as
the Pusher does), the next once the previous one has answered for ``--interval_s``.
Every failed call is counted by kind (reset, refused, closed without an answer,
timeout, an HTTP status other than 200). Prints a line per switch and a summary, and
stops by itself (SIGTERM to the server).

Run from the repository root::

    python -m benchmarks.serve_switch_rest                  # out/serving, model bvae
    python -m benchmarks.serve_switch_rest --switches 4 --threads 8
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: Failure kinds of a call, the first class that matches (RemoteDisconnected is a
#: ConnectionResetError: the server closed the connection before answering).
_FAILURES = (
    (http.client.RemoteDisconnected, "closed without an answer"),
    (ConnectionResetError, "reset"),
    (ConnectionRefusedError, "refused"),
    (TimeoutError, "timeout"),
    (OSError, "other OSError"),
)


def _call(port: int, model_name: str) -> tuple[str, int | None]:
    """One status call on a new connection: ``("ok", AVAILABLE version)`` or
    ``(failure kind, None)``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", f"/v1/models/{model_name}")
        answer = connection.getresponse()
        body = answer.read()
    except OSError as e:
        return next(kind for cls, kind in _FAILURES if isinstance(e, cls)), None
    finally:
        connection.close()
    if answer.status != 200:
        return f"HTTP {answer.status}", None
    states = json.loads(body)["model_version_status"]
    available = [int(v["version"]) for v in states if v["state"] == "AVAILABLE"]
    return ("ok", max(available)) if available else ("no version available", None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_base_path", default="out/serving")
    parser.add_argument("--model_name", default="bvae")
    parser.add_argument("--switches", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--interval_s", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.switches < 1 or args.threads < 1 or not args.interval_s > 0:
        parser.error("--switches and --threads must be >= 1, --interval_s > 0")
    source = pathlib.Path(args.model_base_path) / args.model_name
    versions = (
        sorted((int(p.name), p) for p in source.glob("*") if p.name.isdigit() and p.is_dir())
        if source.is_dir()
        else []
    )
    if not versions:
        parser.error(f"no version folder under {source} (run `make demo` first, or give one)")
    first, export = versions[-1]
    with tempfile.TemporaryDirectory(prefix="serve_switch_") as tmp:
        base = pathlib.Path(tmp) / args.model_name
        shutil.copytree(export, base / str(first))
        port, rest_port = _free_port(), _free_port()
        log = pathlib.Path(tmp) / "server.log"
        with log.open("w") as out:
            server = subprocess.Popen(
                [sys.executable, "-m", "serving.server", f"--model_base_path={tmp}",
                 f"--model_name={args.model_name}", f"--port={port}",
                 f"--rest_api_port={rest_port}", "--file_system_poll_wait_seconds=0.2"],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        counts: collections.Counter[str] = collections.Counter()
        seen: dict[int, float] = {}  # version: when it first answered
        stop = threading.Event()
        lock = threading.Lock()

        def client() -> None:
            while not stop.is_set():
                started = time.monotonic()
                kind, version = _call(rest_port, args.model_name)
                with lock:
                    if version is not None:
                        seen.setdefault(version, time.monotonic())
                    if not seen or started < min(seen.values()):
                        continue  # sent before the first version served: not counted
                    counts[kind] += 1

        threads = [threading.Thread(target=client, daemon=True) for _ in range(args.threads)]
        for thread in threads:
            thread.start()
        try:
            for switch in range(args.switches + 1):
                version = first + switch
                if switch:
                    staging = base / f".staging-{version}"
                    shutil.copytree(export, staging)
                    staging.rename(base / str(version))
                deadline = time.monotonic() + 300
                while version not in seen:
                    if server.poll() is not None or time.monotonic() > deadline:
                        print(f"version {version} never answered; the log: {log.read_text()}")
                        return 1
                    time.sleep(0.05)
                time.sleep(args.interval_s)
                with lock:
                    failed = sum(n for kind, n in counts.items() if kind != "ok")
                    print(
                        f"version {version} serves: {sum(counts.values())} calls, {failed} failed"
                    )
        finally:
            stop.set()
            for thread in threads:
                thread.join(15)
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
    total = sum(counts.values())
    failures = {kind: n for kind, n in counts.items() if kind != "ok"}
    print(
        f"summary: {total} REST calls on new connections over {args.switches} switches, "
        f"{sum(failures.values())} failed"
        + (f" ({', '.join(f'{k}: {n}' for k, n in sorted(failures.items()))})" if failures else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
