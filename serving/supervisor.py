"""Process reload for the local server: each version loads in a process of its own.

Loading a SavedModel holds Python's GIL for long stretches (``tf.saved_model.load``
imports the function graphs; up to 0.5 s at a time for a JD-sized export), and
loading and warming take the CPU, so a version loaded inside the serving process
stalls every call for seconds. ``python -m serving.server`` therefore runs as a
small supervisor (this module) over serving processes:

1. The supervisor polls the base path as the in-process server does (version policy
   ``latest``, complete versions only, a version that failed is retried only once
   its files change, and does not hide a lower one) and starts ``python -m
   serving.server`` (the same flags, and ``--load_version``: it loads that version
   only) for the version to serve.
2. A process started while another serves loads and warms its version at Linux's
   ``SCHED_IDLE`` priority (it gets only CPU time the serving process leaves),
   then returns to normal priority, binds the same gRPC port (``SO_REUSEPORT``),
   starts accepting on the REST listening socket the supervisor holds (one socket
   for all processes, passed down as a file descriptor) and reports ready. If the
   serving process leaves no CPU time for ``--idle_load_timeout_s`` (a saturated
   server), the supervisor moves the loading process to normal priority, so that a
   new version is served late, not never.
3. Only then is the old process stopped as on SIGTERM: it stops accepting calls,
   finishes the running ones and exits; clients reconnect to the new process (gRPC
   retries a call that the old process refused before running it). A REST
   connection still queued on the shared socket is accepted by the new process.

Until a first serving process is ready, the supervisor itself holds the ports with
a stand-in (:func:`serving.server.server_from_args` with ``load_versions=False``,
also ``SO_REUSEPORT``): every call is ``NOT_FOUND`` (``Servable not found for
request: Latest(name)``), as TF Serving answers before a version loads, and
``GetModelStatus`` reports each version tried (``LOADING``, or ``END`` with why it
failed), so a client can tell "no version yet" from "no server". The stand-in stops
once the first serving process is ready.

A version that fails to load or warm up is logged and not served; the serving
process keeps its version. ``GetModelStatus`` of the new process reports the
versions served before it as ``END``. SIGTERM/SIGINT to the supervisor stop every
serving process gracefully; the supervisor exits with status 0 (1 if the serving
process died by itself).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import json
import os
import pathlib
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

from absl import logging
from tensorflow_serving.apis import get_model_status_pb2

#: ``ModelVersionStatus`` states the stand-in reports (get_model_status.proto).
_LOADING = get_model_status_pb2.ModelVersionStatus.LOADING
_END = get_model_status_pb2.ModelVersionStatus.END
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE

#: Exit status of a serving process that found no version it could load.
EXIT_NO_VERSION = 3
#: Seconds a new serving process may take to load and warm up before it is abandoned.
LOAD_TIMEOUT_S = 600.0
_PR_SET_PDEATHSIG = 1


def _can_restore_normal_priority() -> bool:
    """Whether this process may return from ``SCHED_IDLE`` to ``SCHED_OTHER`` at nice 0."""
    if os.geteuid() == 0:
        return True
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    return soft == resource.RLIM_INFINITY or soft >= 20 - os.getpriority(os.PRIO_PROCESS, 0)


def set_scheduling(idle: bool, pid: int | None = None) -> bool:
    """Moves every thread of a process to ``SCHED_IDLE`` (``idle``) or ``SCHED_OTHER``.

    Threads started later inherit the class of the thread that starts them. Lowering
    is refused (returns ``False``, nothing changed) where this process could not come
    back to normal priority (no ``CAP_SYS_NICE`` and ``RLIMIT_NICE`` too low), so a
    serving process never stays at idle priority.

    Args:
      idle: ``SCHED_IDLE`` if true, else ``SCHED_OTHER``.
      pid: the process; ``None``: this one.

    Returns:
      Whether every thread now has the asked class (``False`` off Linux).
    """
    if not hasattr(os, "SCHED_IDLE") or (idle and not _can_restore_normal_priority()):
        return False
    policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
    done = True
    try:
        tids = os.listdir(f"/proc/{pid or 'self'}/task")
    except OSError:
        return False
    for tid in tids:
        try:
            os.sched_setscheduler(int(tid), policy, os.sched_param(0))
        except ProcessLookupError:  # the thread ended meanwhile
            continue
        except OSError:
            done = False
    return done


def stop_with_supervisor() -> None:
    """Asks Linux to send this process SIGTERM when its parent (the supervisor) dies,
    so that serving processes never outlive a supervisor that was killed."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def report_ready(fd: int, version: int, port: int, rest_port: int | None) -> None:
    """Tells the supervisor (pipe ``fd``) that this process serves ``version`` on its ports."""
    message = json.dumps({"version": version, "port": port, "rest_port": rest_port})
    os.write(fd, message.encode() + b"\n")
    os.close(fd)


@dataclasses.dataclass(eq=False)
class _Process:
    """A serving process and what it reported on its ready pipe."""

    popen: subprocess.Popen
    fingerprint: tuple[tuple[str, int, int], ...]
    wanted_version: int
    path: pathlib.Path  # the version's folder (its name may be "007")
    ready: dict | None = None
    reader: threading.Thread | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)
    idle: bool = False

    def start_reader(self, read_fd: int) -> None:
        def read() -> None:
            with os.fdopen(read_fd, "rb") as pipe:
                line = pipe.readline()
            if line:
                self.ready = json.loads(line)

        self.reader = threading.Thread(target=read, name="ready-pipe", daemon=True)
        self.reader.start()

    @property
    def is_ready(self) -> bool:
        return self.ready is not None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)


class _Supervisor:
    def __init__(self, argv: Sequence[str], args: argparse.Namespace):
        from serving import versions

        self._versions = versions
        self._argv = list(argv)
        self._args = args
        self._model_dir = pathlib.Path(args.model_base_path) / args.model_name
        self._port = args.port
        self._rest_port = args.rest_api_port
        self._serving: _Process | None = None
        self._loading: _Process | None = None
        self._draining: list[_Process] = []
        self._retired: list[int] = []
        self._failed: dict[int, tuple[tuple[str, int, int], ...]] = {}
        self._stop = threading.Event()
        self._signal_name = ""
        self._no_version_logged = False
        self._gone_logged: set[int] = set()  # serving versions whose folder vanished
        self._idle_load_timeout_s = args.idle_load_timeout_s
        self._stand_in = None  # serving.server.LocalServer until a version serves
        self._rest_fd: int | None = None  # the shared REST listening socket
        self._paths: dict[int, pathlib.Path] = {}  # complete versions at the last poll
        # What GetModelStatus reports of the versions the supervisor started (loading,
        # failed, retired), kept in a file the stand-in and the serving processes read:
        # a version that fails while another serves is reported END with its error
        # by the serving process, as TF Serving reports it.
        self._states: dict[int, tuple[int, str]] = {}
        self._states_dir: str | None = None  # made by run(), once SIGTERM is handled
        self._states_file = ""

    # --- the stand-in ---------------------------------------------------------------
    def _start_stand_in(self) -> None:
        """Binds the ports at once with a server that loads nothing (module docstring);
        a port given as 0 is the one it picked, for the serving processes too."""
        from serving import server

        stand_in = server.server_from_args(
            self._args, child=True, load_versions=False, states_file=self._states_file
        )
        stand_in.start()
        self._stand_in = stand_in
        self._port = stand_in.port
        self._rest_port = stand_in.rest_port or 0
        # The REST listening socket stays open here for the supervisor's lifetime and
        # every serving process accepts on it (--rest_api_fd): a connection queued
        # when a process stops is accepted by the next one, where closing a listener
        # of its own (SO_REUSEPORT) would reset the connections queued on it.
        self._rest_fd = stand_in.rest_listening_fd()

    def _set_state(self, version: int, state: int, error: str = "") -> None:
        """Records a version's state for GetModelStatus in the states file, which the
        stand-in and the serving processes (``--states_file``) read."""
        self._states[version] = (state, error)
        self._write_states()

    def _write_states(self) -> None:
        """Writes the states file; a failure is a warning (GetModelStatus of the serving
        processes then misses the latest states), never a stop of the server."""
        staging = self._states_file + ".tmp"
        try:
            os.makedirs(self._states_dir, exist_ok=True)  # a /tmp cleaner may remove it
            with open(staging, "w", encoding="utf-8") as f:
                json.dump({str(v): list(state) for v, state in self._states.items()}, f)
            os.replace(staging, self._states_file)  # readers never see half a file
        except OSError as e:
            logging.warning("Cannot write the version states for GetModelStatus: %s", e)

    def _stop_stand_in(self) -> None:
        if self._stand_in is not None:
            self._stand_in.stop(grace_seconds=1.0)
            self._stand_in = None

    # --- processes --------------------------------------------------------------------
    def _spawn(self, version: int, idle: bool) -> _Process:
        read_fd, write_fd = os.pipe()
        retired = list(self._retired)
        if self._serving is not None and self._serving.ready is not None:
            retired.append(self._serving.ready["version"])
        flags = [
            f"--port={self._port}",
            f"--rest_api_port={self._rest_port}",
            f"--ready_fd={write_fd}",
            f"--retired_versions={','.join(map(str, retired))}",
            f"--load_version={version}",
            f"--states_file={self._states_file}",
        ]
        if idle:
            flags.append("--load_at_idle_priority")
        if self._rest_fd is not None:
            flags.append(f"--rest_api_fd={self._rest_fd}")
        command = [sys.executable, "-m", "serving.server", *self._argv, *flags]
        path = self._paths[version]  # _wanted_version chose it from this poll
        shared = (write_fd,) if self._rest_fd is None else (write_fd, self._rest_fd)
        process = _Process(
            popen=subprocess.Popen(command, pass_fds=shared),
            fingerprint=self._versions.version_fingerprint(path),
            wanted_version=version,
            path=path,
            idle=idle,
        )
        os.close(write_fd)
        process.start_reader(read_fd)
        self._set_state(version, _LOADING)
        logging.info(
            "Started serving process %d for version %d of model %s%s",
            process.popen.pid,
            version,
            self._args.model_name,
            " (loading at idle priority)" if idle else "",
        )
        return process

    def _wanted_version(self) -> int | None:
        versions = self._versions.complete_versions(self._model_dir)
        self._paths = versions
        serving = self._serving.ready["version"] if self._serving is not None else None
        if serving is not None and serving not in versions and serving not in self._gone_logged:
            self._gone_logged.add(serving)
            logging.warning(
                "The folder of version %d (serving) is gone; it serves on until another "
                "version loads",
                serving,
            )
        if not versions:
            if not self._no_version_logged:
                logging.warning(
                    "No versions of servable %s found under base path %s%s",
                    self._args.model_name,
                    self._model_dir,
                    self._versions.why_no_version(self._model_dir),
                )
                self._no_version_logged = True
            return None
        self._no_version_logged = False
        # The highest complete version that did not fail to load with its present files:
        # a broken newer version does not hide an older one (e.g. once the serving
        # version's folder is deleted).
        usable = [
            v
            for v in versions
            if v not in self._failed
            or self._failed[v] != self._versions.version_fingerprint(versions[v])
        ]
        return max(usable) if usable else None

    def _loading_finished(self) -> None:
        """Switches to the loading process once ready; forgets it if it exited."""
        loading = self._loading
        if loading.is_ready:
            self._loading = None
            previous = self._serving
            self._serving = loading
            self._port = loading.ready["port"]
            self._rest_port = loading.ready["rest_port"] or 0
            self._stop_stand_in()  # the serving process holds the ports now
            if previous is not None:
                previous.stop()
                self._draining.append(previous)
                if previous.ready is not None:
                    self._retired.append(previous.ready["version"])
                    self._set_state(previous.ready["version"], _END)
            self._set_state(loading.ready["version"], _AVAILABLE)
            logging.info(
                "Version %d of model %s serves from process %d%s",
                loading.ready["version"],
                self._args.model_name,
                loading.popen.pid,
                f"; process {previous.popen.pid} finishes its calls and exits"
                if previous is not None
                else "",
            )
            return
        code = loading.popen.poll()
        waited = time.monotonic() - loading.started
        if code is None and loading.idle and waited > self._idle_load_timeout_s:
            # The serving process leaves no CPU time: load at normal priority rather
            # than never.
            loading.idle = False
            set_scheduling(idle=False, pid=loading.popen.pid)
            logging.warning(
                "Version %d still loading after %.0f s at idle priority (no spare CPU); "
                "loading it at normal priority",
                loading.wanted_version,
                waited,
            )
        timed_out = waited > LOAD_TIMEOUT_S
        if code is None and not timed_out:
            return
        if code is None:
            loading.popen.kill()
            loading.popen.wait()
        if loading.reader is not None:
            loading.reader.join(1.0)
        if loading.is_ready:  # reported ready just before the check
            return
        self._loading = None
        if self._versions.version_fingerprint(loading.path) == loading.fingerprint:
            self._failed[loading.wanted_version] = loading.fingerprint
            self._set_state(
                loading.wanted_version,
                _END,
                f"failed to load (serving process {loading.popen.pid} "
                f"{'timed out' if timed_out else f'exited with status {code}'}; the "
                "server's log says why)",
            )
            logging.error(
                "Version %d of model %s failed to load (process %d %s); not serving it",
                loading.wanted_version,
                self._args.model_name,
                loading.popen.pid,
                "timed out" if timed_out else f"exited with status {code}",
            )
        else:
            logging.warning(
                "Files of version %d changed while it loaded; loading it again",
                loading.wanted_version,
            )

    def _reap(self) -> None:
        self._draining = [p for p in self._draining if p.popen.poll() is None]

    # --- loop -------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self._stop.is_set():
            self._signal_name = signal.Signals(signum).name
            self._stop.set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self._states_dir = tempfile.mkdtemp(prefix="bvae-serving-")
        self._states_file = os.path.join(self._states_dir, "version_states.json")
        try:
            self._write_states()
            return self._run()
        finally:
            shutil.rmtree(self._states_dir, ignore_errors=True)

    def _run(self) -> int:
        poll_s = self._args.file_system_poll_wait_seconds
        polled_once = False
        status = 0
        try:
            self._start_stand_in()
        except OSError as e:
            logging.error("%s", e)
            return 2
        while not self._stop.is_set():
            if self._loading is not None:
                self._loading_finished()
            if self._serving is not None and self._serving.popen.poll() is not None:
                status = 1
                logging.error(
                    "Serving process %d exited with status %d",
                    self._serving.popen.pid,
                    self._serving.popen.returncode,
                )
                break
            self._reap()
            if self._loading is None and (poll_s > 0 or not polled_once):
                polled_once = True
                version = self._wanted_version()
                serving = self._serving.ready["version"] if self._serving else None
                if version is not None and version != serving:
                    self._loading = self._spawn(version, idle=self._serving is not None)
            self._stop.wait(0.05 if self._loading is not None else max(poll_s, 0.05))
        if self._signal_name:
            logging.info("Received %s; stopping the serving processes", self._signal_name)
        self._stop_stand_in()
        if self._rest_fd is not None:  # refused once the serving processes close theirs
            os.close(self._rest_fd)
            self._rest_fd = None
        for process in (self._loading, self._serving, *self._draining):
            if process is not None:
                process.stop()
        for process in (self._loading, self._serving, *self._draining):
            if process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.popen.wait(self._args.grace_seconds + 30)
                if process.popen.poll() is None:
                    process.popen.kill()
                    process.popen.wait()
        logging.info("Server stopped")
        return status


def run(argv: Sequence[str], args: argparse.Namespace) -> int:
    """Supervises serving processes for ``python -m serving.server`` (module docstring).

    Args:
      argv: the command line flags, passed on to every serving process.
      args: those flags parsed.

    Returns:
      The exit status: 0 after SIGTERM/SIGINT, 1 if the serving process died.
    """
    return _Supervisor(argv, args).run()
