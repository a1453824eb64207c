"""Load benchmark of the local TF Serving-protocol server on loopback.

Serves a JD-sized model (13,465 items, d=100, behaviors purchase/click/favorite,
top-10; by default the BVAE export of ``bvae_tf.trainer``, untrained, over a
vocabulary analyzed by Transform) from a separate server process
(``python -m serving.server``) and drives it with 8 concurrent clients (threads,
each with its own ``serving.client.ServingClient``) sending one-user requests for
the top-10 per behavior. Each call is timed end to end: building the request, the
gRPC round trip, parsing the response.

Two kinds of load, each for ``--duration_s`` (and at most ``--max_requests``):

* ``closed``: every client sends its next request as soon as the last one answered.
  This measures the most the server sustains; latency is then mostly queueing
  (Little's law: mean latency = clients / throughput).
* ``rate``: the clients send ``--rate`` requests/s together on a fixed schedule;
  latency counts from the scheduled send time, so a late send is not hidden
  (no coordinated omission). This measures latency at a given load.

For each kind: ``--repeats`` steady runs (figures per run and their median), then
``--repeats`` runs during each of which a new version (a copy of a second export
under the next version number) is published mid-run (renamed into the base path, as
the Pusher does): every request must still succeed; prints when the first answer
from the new version came and the latency during the reload: from the publication
until the new version has answered for 1 s (at least 5 s; to the end of the run if
it never answered), and the medians over the runs. A summary at the end gives the
steady p50/p99 at ``--rate``, the closed-loop requests/s and the reload-window
p50/p99 and failed requests.

Server CPU is that of the server's whole process tree (``serving.supervisor`` runs
each version in a process of its own). Targets on 2 cores: p99 <= 10 ms at 300
requests/s, >= 800 requests/s closed loop with 8 clients, p99 <= 50 ms in the 5 s
after a publication at 300 requests/s, 0 failed requests. Other work on the same
cores slows every figure, so the load average is printed with each run.

Run from the repository root::

    python -m benchmarks.serve_load                              # 30 s per run
    python -m benchmarks.serve_load --duration_s 5 --repeats 1   # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import grpc
import numpy as np
from tensorflow_serving.apis import get_model_status_pb2

from bvae_tf import features
from bvae_tf.export import write_warmup_requests
from serving.client import ServingClient

MODEL_NAME = "bvae"
JD_ITEMS = 13_465
JD_DIM = 100
JD_BEHAVIORS = (features.PURCHASE, features.CLICK, features.FAVORITE)
_RELOAD_WINDOW_S = 5.0
_SWITCH_TAIL_S = 1.0


def _jd_transform_output(root: pathlib.Path, num_items: int, seed: int) -> str:
    """Transform output (``bvae_tf.preprocessing``) whose vocabulary holds ``num_items`` ids.

    Analyzes synthetic raw train examples in which every id ``i0 … i<num_items-1>``
    occurs, with Beam's DirectRunner, as the Transform component would.
    """
    import tensorflow as tf
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from bvae_tf import preprocessing

    spec = {features.USER_ID: tf.io.VarLenFeature(tf.string)}
    spec.update({features.items_key(b): tf.io.VarLenFeature(tf.string) for b in JD_BEHAVIORS})
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    rng = np.random.default_rng(seed)
    num_users = max(1, num_items // 8)
    rows = []
    for user, chunk in enumerate(np.array_split(rng.permutation(num_items), num_users)):
        row = {features.USER_ID: [f"u{user}".encode()]}
        for behavior in JD_BEHAVIORS:
            items = rng.choice(num_items, size=int(rng.integers(1, 20)))
            if behavior == features.CLICK:
                items = np.concatenate([chunk, items])
            row[features.items_key(behavior)] = [f"i{i}".encode() for i in items]
        rows.append(row)
    output = root / "transform_output"

    def preprocessing_fn(inputs):
        return preprocessing.preprocessing_fn(inputs, {"behaviors": list(JD_BEHAVIORS)})

    with tft_beam.Context(temp_dir=str(root / "tft_tmp"), force_tf_compat_v1=False):
        transform_fn = (rows, metadata) | tft_beam.AnalyzeDataset(preprocessing_fn)
        _ = transform_fn | tft_beam.WriteTransformFn(str(output))
    metadata_io.write_metadata(metadata, str(output / "metadata"))
    return str(output)


def _export_real(path: pathlib.Path, args: argparse.Namespace, seed: int, transform: str) -> None:
    """Exports an (untrained, seeded) BVAE with ``bvae_tf.export.export_serving_model``."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from bvae_tf import export
    from bvae_tf import model as model_lib

    output = tft.TFTransformOutput(transform)
    num_items = output.vocabulary_size_by_name(features.ITEM_VOCABULARY)
    model = model_lib.build_model(
        model_lib.BVAEConfig(
            behaviors=JD_BEHAVIORS, num_items=num_items, latent_dim=args.dim, seed=seed
        )
    )
    one_user = tf.SparseTensor([[0, 0]], tf.constant([0], tf.int64), [1, 1])
    model.recommend({features.items_key(b): one_user for b in JD_BEHAVIORS}, k=args.top_k)
    export.export_serving_model(model, output, str(path), top_k=args.top_k)


def _export(path: pathlib.Path, args: argparse.Namespace, seed: int, transform: str | None) -> str:
    """Exports a JD-sized model with its warm-up file; returns what kind of model it is."""
    if transform is not None:
        _export_real(path, args, seed, transform)
        kind = (
            f"BVAE exported by bvae_tf.export.export_serving_model (untrained, seeded; "
            f"{args.num_items} items, d={args.dim}, {len(JD_BEHAVIORS)} behaviors, K={args.top_k})"
        )
    else:
        from benchmarks.standin_model import export_standin_model

        export_standin_model(
            path,
            num_items=args.num_items,
            behaviors=JD_BEHAVIORS,
            dim=args.dim,
            top_k=args.top_k,
            seed=seed,
        )
        kind = (
            f"stand-in model with the serving contract (dense multi-hot encoder and "
            f"{len(JD_BEHAVIORS)} linear decoders, {args.num_items} items, d={args.dim}, "
            f"K={args.top_k})"
        )
    write_warmup_requests(path, model_name=MODEL_NAME)
    return kind


def _histories(num_items: int, count: int, seed: int) -> list[dict[str, list[str]]]:
    """Users with 0-40 items per behavior (Zipf-like popularity), ~2% with an unknown id."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, num_items + 1) ** 0.8
    popularity /= popularity.sum()
    users = []
    for _ in range(count):
        history = {}
        for behavior in JD_BEHAVIORS:
            items = [
                f"i{i}" for i in rng.choice(num_items, size=int(rng.integers(0, 41)), p=popularity)
            ]
            if rng.random() < 0.02:
                items.append("unknown-item")
            history[behavior] = items
        users.append(history)
    return users


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants, those it has
    waited for included (Linux ``/proc``; NaN elsewhere).

    The server is a supervisor over serving processes (``serving.supervisor``), so its
    CPU is that of the whole process tree.
    """
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        children = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return float("nan")
    own = sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")
    return own + sum(
        cpu for cpu in (_cpu_seconds(int(child)) for child in children) if not math.isnan(cpu)
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class _Run:
    """One run: per answered call (finish time s, latency ms, version); errors."""

    done_s: list[float]
    latency_ms: list[float]
    versions: list[int]
    errors: list[str]
    seconds: float
    server_cpu_s: float
    client_cpu_s: float


def _run_load(
    target: str,
    histories: list[dict[str, list[str]]],
    *,
    clients: int,
    duration_s: float,
    max_requests: int,
    top_k: int,
    rate: float | None,
    server_pid: int,
    during: Callable[[float], None] | None = None,
) -> _Run:
    """``clients`` threads sending one-user requests (closed loop, or ``rate`` per s)."""
    lock = threading.Lock()
    done_s: list[float] = []
    latency_ms: list[float] = []
    versions: list[int] = []
    errors: list[str] = []
    sent = [0]
    ready = threading.Barrier(clients + 1)
    start = [0.0]

    def worker(index: int) -> None:
        client = ServingClient(target, model_name=MODEL_NAME, timeout_s=5.0)
        client.signature()
        ready.wait()
        t_start = start[0]
        k = 0
        while True:
            with lock:
                if sent[0] >= max_requests:
                    break
                sent[0] += 1
            if rate is None:
                scheduled = time.perf_counter()
            else:
                scheduled = t_start + (k * clients + index) / rate
                pause = scheduled - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            if scheduled - t_start >= duration_s:
                break
            history = histories[(k * clients + index) % len(histories)]
            k += 1
            try:
                result = client.recommend([history], top_k=top_k)[0]
            except (grpc.RpcError, ValueError) as e:
                with lock:
                    errors.append(str(e)[:300])
                continue
            finished = time.perf_counter()
            with lock:
                done_s.append(finished - t_start)
                latency_ms.append((finished - scheduled) * 1e3)
                versions.append(result.model_version)
        client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    cpu = _cpu_seconds(server_pid), time.process_time()
    start[0] = time.perf_counter() + 0.05
    ready.wait()
    helper = None
    if during is not None:
        helper = threading.Thread(target=during, args=(start[0],), daemon=True)
        helper.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start[0]
    if helper is not None:
        helper.join()
    return _Run(
        done_s,
        latency_ms,
        versions,
        errors,
        seconds,
        _cpu_seconds(server_pid) - cpu[0],
        time.process_time() - cpu[1],
    )


def _figures(latency_ms: list[float], seconds: float, errors: int) -> dict[str, float]:
    lat = np.asarray(latency_ms) if latency_ms else np.asarray([np.nan])
    p50, p95, p99 = np.percentile(lat, [50, 95, 99])
    return {
        "requests": len(latency_ms),
        "errors": errors,
        "qps": len(latency_ms) / seconds,
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "max": float(np.max(lat)),
    }


def _line(name: str, f: dict[str, float]) -> str:
    return (
        f"{name:<22} requests {f['requests']:>6.0f}  errors {f['errors']:>3.0f}  "
        f"QPS {f['qps']:7.1f}  p50 {f['p50']:6.2f} ms  p95 {f['p95']:6.2f} ms  "
        f"p99 {f['p99']:6.2f} ms  max {f['max']:7.2f} ms"
    )


def _wait_ready(target: str, deadline_s: float, process: subprocess.Popen) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        client = ServingClient(target, model_name=MODEL_NAME, timeout_s=1.0, max_attempts=1)
        try:
            client.signature()
            return
        except grpc.RpcError:
            time.sleep(0.2)
        finally:
            client.close()
    raise RuntimeError(f"server at {target} not ready after {deadline_s} s")


def _wait_available(target: str, version: int, deadline_s: float) -> float:
    """Waits until ``version`` serves (so its loading does not spill into the next run)."""
    started = time.monotonic()
    with ServingClient(target, model_name=MODEL_NAME, timeout_s=5.0) as client:
        while time.monotonic() - started < deadline_s:
            states = {s.version: s.state for s in client.get_model_status().model_version_status}
            if states.get(version) == get_model_status_pb2.ModelVersionStatus.AVAILABLE:
                return time.monotonic() - started
            time.sleep(0.1)
    raise RuntimeError(f"version {version} not AVAILABLE after {deadline_s} s")


def _reload_run(
    args: argparse.Namespace,
    load: dict,
    rate: float | None,
    *,
    version: int,
    staging: pathlib.Path,
    model_dir: pathlib.Path,
    repeat: int,
) -> dict[str, float]:
    """One run with ``version`` published halfway; figures of the window after it."""
    published: dict[str, float] = {}

    def publish(started: float) -> None:
        time.sleep(args.duration_s / 2)
        os.rename(staging / str(version), model_dir / str(version))
        published["at"] = time.perf_counter() - started

    run = _run_load(
        duration_s=args.duration_s,
        max_requests=args.max_requests,
        rate=rate,
        during=publish,
        **load,
    )
    print(
        _line(
            f"reload #{repeat + 1} (v{version})",
            _figures(run.latency_ms, run.seconds, len(run.errors)),
        ),
        flush=True,
    )
    at = published.get("at", float("nan"))
    first_new = min(
        (done for done, v in zip(run.done_s, run.versions, strict=True) if v == version),
        default=None,
    )
    # The reload: from the publication until the new version has answered for
    # _SWITCH_TAIL_S (loading, warm-up, switch and reconnections), at least
    # _RELOAD_WINDOW_S; to the end of the run if it never answered.
    end = max(
        at + _RELOAD_WINDOW_S,
        first_new + _SWITCH_TAIL_S if first_new is not None else run.seconds,
    )
    window = [lat for done, lat in zip(run.done_s, run.latency_ms, strict=True) if at <= done < end]
    counts = {v: run.versions.count(v) for v in sorted(set(run.versions))}
    print(
        f"    version {version} published at {at:.2f} s; first answer from it at "
        + (f"{first_new:.2f} s (+{first_new - at:.2f} s)" if first_new else "never")
        + f"; answers per version {counts}; failed requests {len(run.errors)}",
        flush=True,
    )
    w = _figures(window or [float("nan")], end - at, len(run.errors))
    print(
        f"    reload window ({end - at:.1f} s from the publication): {len(window)} answers, "
        f"p50 {w['p50']:.2f} ms, p99 {w['p99']:.2f} ms, max {w['max']:.2f} ms; "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    for error in run.errors[:3]:
        print(f"    error: {error}")
    waited = _wait_available(load["target"], version, 300.0)
    print(f"    version {version} AVAILABLE {waited:.2f} s after the run ended", flush=True)
    return w


def _positive(kind: type):
    """An argparse type: a finite number of ``kind`` above 0 (``nan``, ``inf``, ``0``
    and negatives are usage errors)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if kind is int else 'a number'}"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text}")
        return value

    return parse


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line; a bad value is a usage error (exit status 2) naming the flag.

    Raises:
      SystemExit: for a duration, rate or count that is not finite and > 0, a
        ``--top_k`` above ``--num_items``, or ``--loads`` other than closed/rate.
    """
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.serve_load",
        description="Load benchmark of the local TF Serving-protocol server (loopback).",
    )
    positive_int, positive_float = _positive(int), _positive(float)
    parser.add_argument(
        "--duration_s", type=positive_float, default=30.0, help="seconds per run (> 0)"
    )
    parser.add_argument("--max_requests", type=positive_int, default=100_000, help="cap per run")
    parser.add_argument("--clients", type=positive_int, default=8, help="concurrent clients")
    parser.add_argument("--repeats", type=positive_int, default=3, help="steady runs per load kind")
    parser.add_argument(
        "--loads", default="closed,rate", help="comma list of load kinds: closed, rate"
    )
    parser.add_argument(
        "--rate", type=positive_float, default=300.0, help="requests/s of 'rate' load (> 0)"
    )
    parser.add_argument("--num_items", type=positive_int, default=JD_ITEMS)
    parser.add_argument("--dim", type=positive_int, default=JD_DIM)
    parser.add_argument("--top_k", type=positive_int, default=10, help="at most --num_items")
    parser.add_argument("--no_reload", action="store_true", help="skip the reload runs")
    parser.add_argument(
        "--model",
        choices=("real", "standin"),
        default="real",
        help="real: bvae_tf.trainer's export (Transform analyzed with Beam first); "
        "standin: the test stand-in with the same contract",
    )
    parser.add_argument(
        "--server_args",
        default="--enable_batching --grpc_max_threads=8",
        help="flags for python -m serving.server (space separated)",
    )
    parser.add_argument("--workdir", default=None, help="keep models and log here")
    args = parser.parse_args(argv)
    if args.top_k > args.num_items:
        parser.error(f"--top_k {args.top_k} exceeds --num_items {args.num_items}")
    args.loads = [kind.strip() for kind in args.loads.split(",") if kind.strip()]
    if not args.loads or set(args.loads) - {"closed", "rate"}:
        parser.error(f"--loads takes closed and/or rate, got {args.loads}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark and prints its figures."""
    args = _parse_args(argv)
    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="serve_load_"))
    base, staging = workdir / "models", workdir / "staging"
    for folder in (base, staging, workdir / "transform_output", workdir / "tft_tmp"):
        shutil.rmtree(folder, ignore_errors=True)
    print(f"cpus {os.cpu_count()}, load average {os.getloadavg()}", flush=True)
    t0 = time.perf_counter()
    transform = None
    if args.model == "real":
        transform = _jd_transform_output(workdir, args.num_items, seed=0)
    kind = _export(base / MODEL_NAME / "1", args, 1, transform)
    template = staging / "template"
    if not args.no_reload:
        _export(template, args, 2, transform)
    print(
        f"model: {kind}; {1 if args.no_reload else 2} versions exported in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    next_version = [2]

    port = _free_port()
    target = f"127.0.0.1:{port}"
    log_path = workdir / "server.log"
    command = [
        sys.executable,
        "-m",
        "serving.server",
        f"--model_base_path={base}",
        f"--model_name={MODEL_NAME}",
        f"--port={port}",
        "--file_system_poll_wait_seconds=0.5",
        *args.server_args.split(),
    ]
    print("server:", " ".join(command[1:]), flush=True)
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    histories = _histories(args.num_items, 4000, seed=0)
    load = dict(
        target=target,
        histories=histories,
        clients=args.clients,
        top_k=args.top_k,
        server_pid=server.pid,
    )
    summary: dict[str, dict[str, float]] = {}
    try:
        _wait_ready(target, 120.0, server)
        _run_load(duration_s=3.0, max_requests=1000, rate=None, **load)  # warm both sides
        for kind_name in args.loads:
            rate = args.rate if kind_name == "rate" else None
            title = f"{kind_name} ({args.clients} clients" + (
                f", {args.rate:g}/s)" if rate else ")"
            )
            print(f"\n== {title}", flush=True)
            figures = []
            for repeat in range(args.repeats):
                run = _run_load(
                    duration_s=args.duration_s, max_requests=args.max_requests, rate=rate, **load
                )
                figures.append(_figures(run.latency_ms, run.seconds, len(run.errors)))
                n = max(1, len(run.latency_ms))
                print(_line(f"steady #{repeat + 1}", figures[-1]), flush=True)
                print(
                    f"    CPU per request: server {run.server_cpu_s / n * 1e3:.2f} ms, "
                    f"clients {run.client_cpu_s / n * 1e3:.2f} ms; load average "
                    f"{os.getloadavg()[0]:.2f}",
                    flush=True,
                )
                for error in run.errors[:3]:
                    print(f"    error: {error}")
            median = {key: statistics.median(f[key] for f in figures) for key in figures[0]}
            print(_line("steady median", median), flush=True)
            summary[f"{kind_name} steady"] = median
            if args.no_reload:
                continue
            windows = []
            for repeat in range(args.repeats):
                version = next_version[0]
                next_version[0] += 1
                shutil.copytree(template, staging / str(version))
                windows.append(
                    _reload_run(
                        args,
                        load,
                        rate,
                        version=version,
                        staging=staging,
                        model_dir=base / MODEL_NAME,
                        repeat=repeat,
                    )
                )
            median = {key: statistics.median(w[key] for w in windows) for key in windows[0]}
            print(
                f"reload median          reload windows: "
                f"p50 {median['p50']:.2f} ms, p99 {median['p99']:.2f} ms, max "
                f"{median['max']:.2f} ms; failed requests {median['errors']:.0f}",
                flush=True,
            )
            summary[f"{kind_name} reload"] = median
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    print(f"\nserver exit status after SIGTERM: {server.returncode}")
    print(f"\n== summary (medians of {args.repeats}; load average now {os.getloadavg()[0]:.2f})")
    if "rate steady" in summary:
        f = summary["rate steady"]
        print(f"steady {args.rate:g}/s:        p50 {f['p50']:.2f} ms, p99 {f['p99']:.2f} ms")
    if "closed steady" in summary:
        f = summary["closed steady"]
        print(
            f"closed loop ({args.clients} clients): {f['qps']:.1f} requests/s, "
            f"p99 {f['p99']:.2f} ms"
        )
    for kind_name in args.loads:
        f = summary.get(f"{kind_name} reload")
        if f is not None:
            print(
                f"reload under {kind_name:<6} load: p50 {f['p50']:.2f} ms, p99 {f['p99']:.2f} ms "
                f"during the reload; failed requests "
                f"{f['errors']:.0f}"
            )
    for line in log_path.read_text().splitlines():
        if "Serving version" in line:
            print(f"    server log: {line.strip()}")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
