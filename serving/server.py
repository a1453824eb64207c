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

One concern per module: :mod:`serving.versions` (complete version folders, loading
one), :mod:`serving.request_checks` (TF Serving's checks of a call and the error it
answers), :mod:`serving.model_server` (the versions served and the calls, without a
transport), :mod:`serving.grpc_api` and :mod:`serving.rest` (the gRPC services and
the REST API), :mod:`serving.supervisor` (process reload) and this module
(:class:`LocalServer`, which puts a model server on the network, and the command
line).
"""

from __future__ import annotations

import argparse
import http.server
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterable
from concurrent import futures

import bvae_tf

if __name__ == "__main__":  # the CLI: quiet TensorFlow start-up
    bvae_tf.quiet_cli()

import grpc
import tensorflow as tf
from absl import logging

from bvae_tf import console
from serving import grpc_api, rest
from serving.batching import MAX_BATCH_TIMEOUT_S
from serving.model_server import (
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_ROWS_PER_REQUEST,
    MAX_POLL_WAIT_SECONDS,
    ModelServer,
    check_model_name,
)
from serving.supervisor import LOAD_TIMEOUT_S
from serving.versions import BatchingOptions

DEFAULT_GRPC_PORT = 8500
DEFAULT_HOST = "127.0.0.1"
#: Seconds an idle REST connection is kept (TF Serving's ``--rest_api_timeout_in_ms``).
DEFAULT_REST_API_TIMEOUT_S = 30.0
#: Largest ``--rest_api_timeout_in_ms`` (a day; a socket timeout must be finite).
MAX_REST_API_TIMEOUT_MS = 86_400_000
#: Largest ``--grace_seconds`` (an hour): the wait must be finite.
MAX_GRACE_SECONDS = 3600


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
      rest_api_fd: a listening socket to serve REST on instead of binding
        ``rest_api_port`` (the supervisor's: :mod:`serving.supervisor`); taken over
        (closed on :meth:`stop`).
      retired_versions: versions an earlier serving process served (reported ``END``).
      only_version: load this version only, never another (a serving process the
        supervisor started for it); ``None``: the highest complete version that did
        not fail to load.
      states_file: the supervisor's record of the other versions' states, which
        ``GetModelStatus`` reports (:class:`ModelServer`).
      load_versions: False: never load a version (the supervisor's stand-in while no
        serving process is ready: every call is ``NOT_FOUND``, as TF Serving answers
        before a version loads, and ``GetModelStatus`` reports what ``states_file``
        records).

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
        rest_api_fd: int | None = None,
        retired_versions: Iterable[int] = (),
        load_versions: bool = True,
        only_version: int | None = None,
        states_file: str | os.PathLike | None = None,
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
            only_version=only_version,
            states_file=states_file,
        )
        self._reuse_port = reuse_port
        self._rest_api_fd = rest_api_fd
        self._load_versions = load_versions
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

    def start(self, require_version: bool = False) -> LocalServer:
        """Loads the highest complete version that loads (if any), binds and starts
        serving.

        Args:
          require_version: bind nothing unless a version loaded (the supervisor's
            processes: a process whose version failed must not take calls on the
            ports it shares with the serving one).

        Raises:
          OSError: if a port cannot be bound.
          NoVersionLoaded: with ``require_version``, if no version loaded.
        """
        if self._load_versions:
            self.model_server.start()
        if require_version and self.model_server.current is None:
            self.model_server.stop()
            raise NoVersionLoaded(f"no version of model {self.model_server.model_name} loaded")
        server = grpc.server(
            futures.ThreadPoolExecutor(self._max_workers, thread_name_prefix="grpc-worker"),
            maximum_concurrent_rpcs=self._max_concurrent_rpcs,
            options=[
                ("grpc.max_receive_message_length", self._max_request_bytes),
                ("grpc.so_reuseport", int(self._reuse_port)),
            ],
        )
        grpc_api.add_services(server, self.model_server)
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
            try:
                self._rest = rest.make_server(
                    self.model_server,
                    self._host,
                    self._requested_rest_port,
                    max_request_bytes=self._max_request_bytes,
                    max_concurrent_calls=self._max_concurrent_rpcs,
                    timeout_s=self._rest_api_timeout_s,
                    reuse_port=self._reuse_port,
                    listening_fd=self._rest_api_fd,
                )
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
            "%s model %s from %s: gRPC at %s%s%s",
            "Serving" if self._load_versions else "Waiting for a first version of",
            self.model_server.model_name,
            self.model_server.model_dir,
            self.target,
            f", REST at {_host_port(self._host, self.rest_port)}" if self._rest else "",
            "" if self._load_versions else " (NOT_FOUND until it serves)",
        )
        return self

    def rest_listening_fd(self) -> int | None:
        """A duplicate of the started REST server's listening socket descriptor (the
        caller owns and closes it; it outlives :meth:`stop`), or None without REST."""
        return None if self._rest is None else os.dup(self._rest.socket.fileno())

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


class NoVersionLoaded(RuntimeError):
    """``LocalServer.start(require_version=True)`` found no version it could load."""


class _StartInterrupted(BaseException):
    """SIGTERM/SIGINT before the server started (a ``BaseException``, so that the
    load's ``except Exception`` does not take it for a failed version)."""


def _at_least(low: float, high: float | None = None, kind: type = int):
    """An argparse type: a number of ``kind`` in ``[low, high]``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind.__name__}") from None
        if not (value >= low and (high is None or value <= high)):
            bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    return parse


_PORT = _at_least(0, 65535)


def port_in_use(host: str, port: int) -> bool:
    """Whether ``host:port`` is bound already (a plain bind, without ``SO_REUSEPORT``,
    fails): another server there would share the port with this one."""
    for family, _, _, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(address)
            except OSError:
                return True
    return False


#: Abstract Unix socket name (Linux) by which a server claims a TCP port; see
#: :func:`claim_ports`.
_PORT_CLAIM = "\0bvae-tfx/serving.server/port/{port}"


def claim_ports(ports: Iterable[int]) -> tuple[list[socket.socket], list[int]]:
    """Claims TCP ports for this server, for as long as this process holds the claims.

    The supervisor's serving processes bind their ports with ``SO_REUSEPORT`` (the
    next version's process binds them before the old one stops), and Linux lets any
    process of the same user join such a port (the supervisor's stand-in too). Two
    servers started at the same moment would both find the ports free
    (:func:`port_in_use`) and then share them, calls spread silently between the two.
    So the first process of each server also binds, without ``SO_REUSEPORT``, an
    abstract Unix socket named by the port: a second bind of that name fails whatever
    the timing, the kernel drops it when the process ends however it ends, and it
    lives in the network namespace, as the ports do. The claim is by port number
    alone, so two supervised servers on one port number and different ``--host``
    addresses are refused too.

    Args:
      ports: TCP port numbers; ``0`` (a port picked at bind time) is not claimed.

    Returns:
      The claims held (keep them open while serving; closing one releases its port)
      and the ports another server holds. Off Linux (no abstract Unix sockets) nothing
      is claimed and nothing is refused.
    """
    held: list[socket.socket] = []
    taken: list[int] = []
    if not sys.platform.startswith("linux"):
        return held, taken
    for port in ports:
        if not port:
            continue
        claim = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            claim.bind(_PORT_CLAIM.format(port=port))
        except OSError:
            claim.close()
            taken.append(port)
        else:
            held.append(claim)
    return held, taken


def _model_name(text: str) -> str:
    try:
        return check_model_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serving.server",
        description="Local TF Serving-protocol server over <base>/<model_name>/<version>/.",
    )
    parser.add_argument("--model_base_path", required=True, help="folder holding <model_name>/")
    parser.add_argument("--model_name", required=True, type=_model_name)
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default loopback)")
    parser.add_argument("--port", type=_PORT, default=DEFAULT_GRPC_PORT, help="gRPC port")
    parser.add_argument(
        "--rest_api_port", type=_PORT, default=0, help="REST port; 0 (default) disables REST"
    )
    parser.add_argument(
        "--rest_api_timeout_in_ms",
        type=_at_least(1, MAX_REST_API_TIMEOUT_MS),
        default=int(DEFAULT_REST_API_TIMEOUT_S * 1000),
        help=f"close REST connections idle for longer; at most {MAX_REST_API_TIMEOUT_MS} (a day)",
    )
    parser.add_argument(
        "--file_system_poll_wait_seconds",
        type=_at_least(0, MAX_POLL_WAIT_SECONDS, kind=float),
        default=1.0,
        help=f"seconds between polls for new versions, 0 to {MAX_POLL_WAIT_SECONDS} (a day: "
        "a longer wait leaves a published version unserved for days, and inf cannot be "
        "waited for); 0: poll once, at start",
    )
    parser.add_argument(
        "--grpc_max_threads", type=_at_least(1), default=8, help="gRPC worker threads"
    )
    parser.add_argument("--max_concurrent_rpcs", type=_at_least(1), default=64)
    parser.add_argument("--max_request_bytes", type=_at_least(1), default=DEFAULT_MAX_REQUEST_BYTES)
    parser.add_argument(
        "--max_rows_per_request",
        type=_at_least(1),
        default=DEFAULT_MAX_ROWS_PER_REQUEST,
        help="most rows (users) per Predict call; more: INVALID_ARGUMENT",
    )
    parser.add_argument(
        "--tensorflow_intra_op_parallelism",
        type=_at_least(0),
        default=0,
        help="threads per TF op; 0 (default, as TF Serving): TF's choice from the cores",
    )
    parser.add_argument(
        "--tensorflow_inter_op_parallelism",
        type=_at_least(0),
        default=0,
        help="TF ops run at once; 0 (default, as TF Serving): TF's choice from the cores",
    )
    parser.add_argument(
        "--enable_batching", action="store_true", help="batch concurrent Predict calls"
    )
    parser.add_argument(
        "--max_batch_size", type=_at_least(1), default=32, help="rows per model call"
    )
    parser.add_argument(
        "--batch_timeout_micros",
        type=_at_least(0, int(MAX_BATCH_TIMEOUT_S * 1e6)),
        default=0,
        help="wait for more calls per batch, at most a minute (60000000); 0: batch what "
        "queued meanwhile",
    )
    parser.add_argument(
        "--num_batch_threads",
        type=_at_least(0),
        default=1,
        help="model calls at once (1 measured best on 2 cores: larger batches, less CPU "
        "per request); 0: one per core, as TF Serving",
    )
    parser.add_argument(
        "--grace_seconds",
        type=_at_least(0, MAX_GRACE_SECONDS, kind=float),
        default=10.0,
        help=f"shutdown grace for running calls, 0 to {MAX_GRACE_SECONDS} seconds",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="log every INFO record (TensorFlow's too)"
    )
    parser.add_argument(
        "--log_file",
        default=None,
        help="also append every INFO+ logging record (the libraries' too, with "
        "process id, logger and source line) to this file, which every serving process "
        "shares; reopened when moved, for logrotate. Default: stderr only",
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
        type=_at_least(0, LOAD_TIMEOUT_S, kind=float),
        default=60.0,
        help="a new version that found no spare CPU to load in this long loads at normal "
        f"priority (process reload); at most {LOAD_TIMEOUT_S:g}, when a load is abandoned",
    )
    # Set by serving.supervisor for the processes it starts.
    parser.add_argument("--ready_fd", type=int, default=None, help=argparse.SUPPRESS)
    # The supervisor's REST listening socket, shared by its serving processes.
    parser.add_argument("--rest_api_fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--load_at_idle_priority", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--retired_versions", default="", help=argparse.SUPPRESS)
    # The version a serving process is started for (it loads that one only).
    parser.add_argument("--load_version", type=int, default=None, help=argparse.SUPPRESS)
    # The supervisor's record of the versions it started (serving.supervisor).
    parser.add_argument("--states_file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rest_api_port and args.rest_api_port == args.port:
        parser.error(f"--port and --rest_api_port are both {args.port}: give two ports")
    try:
        socket.getaddrinfo(args.host, None)
    except (OSError, UnicodeError) as e:
        parser.error(f"--host {args.host!r} does not resolve: {e}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; serves until SIGTERM or SIGINT."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parse_args(argv)
    try:
        # The first process writes the log file's first line now: a file that cannot be
        # written stops the server at start. Its serving processes only append (a file
        # rotated to an unwritable path is a logged error there, not a failed version).
        console.setup(
            args.log_file, service=True, verbose=args.verbose, open_now=args.ready_fd is None
        )
    except OSError as e:
        print(
            f"python -m serving.server: error: --log_file {args.log_file!r} cannot be written: {e}",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    claims: list[socket.socket] = []
    if args.ready_fd is None:  # the first process of this server: are its ports free?
        ports = [port for port in (args.port, args.rest_api_port) if port]
        claims, claimed = claim_ports(ports)
        taken = [
            f"{args.host}:{port}"
            for port in ports
            if port in claimed or port_in_use(args.host, port)
        ]
        if taken:
            for claim in claims:
                claim.close()
            logging.error("%s in use (another server?): choose free ports", ", ".join(taken))
            return 2
    try:
        return _serve(argv, args)
    finally:
        for claim in claims:
            claim.close()


def server_from_args(
    args: argparse.Namespace,
    *,
    child: bool,
    load_versions: bool = True,
    states_file: str | None = None,
) -> LocalServer:
    """The :class:`LocalServer` of ``python -m serving.server``'s flags: a serving
    process's (``child``: it binds with ``SO_REUSEPORT`` and loads its version once)
    or the in-process server's; ``load_versions=False``: the supervisor's stand-in
    (:mod:`serving.supervisor`), which reads the supervisor's ``states_file`` (the
    serving processes get it as ``--states_file``)."""
    return LocalServer(
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
        rest_api_fd=args.rest_api_fd if child and load_versions else None,
        retired_versions=[int(v) for v in args.retired_versions.split(",") if v],
        load_versions=load_versions,
        only_version=args.load_version if child else None,
        states_file=states_file or (args.states_file if child else None),
    )


def _serve(argv: list[str], args: argparse.Namespace) -> int:
    """Serves (the supervisor, or a serving process) until SIGTERM or SIGINT."""
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
    server = server_from_args(args, child=child)
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
        # A supervisor's process binds the shared ports only once its version loaded.
        server.start(require_version=child)
        started.set()
    except _StartInterrupted:
        server.stop(grace_seconds=0)
        logging.info("Server stopped")
        return 0
    except NoVersionLoaded:
        logging.error("No version of model %s could be loaded", args.model_name)
        return supervisor.EXIT_NO_VERSION
    if child and not stopping.is_set():
        current = server.model_server.current
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
