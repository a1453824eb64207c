"""The ``python -m serving.client`` command line: top-K items, metadata and status.

Command line::

    python -m serving.client --model_name bvae predict --history purchase=i1,i2 --history click=i3
    python -m serving.client --model_name bvae predict --histories_file users.jsonl --json
    python -m serving.client --model_name bvae predict --examples_file eval.tfrecord.gz
    python -m serving.client --model_name bvae metadata
    python -m serving.client --model_name bvae status

Prints a table (``--json``: JSON, one object per user; the user ``--history``
describes has no id: ``"user_id": null``); a failed call prints ``error: CODE: message`` and
exits 1. :func:`serving.client.main` runs :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence

import grpc
import tensorflow as tf
from google.protobuf import json_format, message
from tensorflow_serving.apis import get_model_status_pb2

from bvae_tf import console, features
from bvae_tf.config import unique_keys
from serving import signatures
from serving.client import DEFAULT_TARGET, ServingClient
from serving.client_requests import Recommendations, check_behaviors, history_example


def _parse_history_flags(values: Sequence[str]) -> dict[str, list[str]]:
    history: dict[str, list[str]] = {}
    for value in values:
        behavior, sep, items = value.partition("=")
        behavior = behavior.strip()
        if not sep or not behavior:
            raise ValueError(f"--history takes BEHAVIOR=ID1,ID2,…, got {value!r}")
        history.setdefault(behavior, []).extend(i for i in items.split(",") if i)
    return history


def _read_histories_file(path: str) -> tuple[list[str], list[dict[str, list[str]]], list[int]]:
    """JSON lines: ``{"user_id": …, "<behavior>": [ids…], …}`` per user.

    UTF-8, with or without a byte-order mark; blank lines are skipped. Returns the users
    (``user_id``, else the position), their histories and the line of each.

    Raises:
      ValueError: naming the file (and line) that is not UTF-8, not JSON, not an object
        of behavior -> list of ids (with a ``user_id`` that is a string or an
        integer, and no key twice), or holds no history at all.
      OSError: if the file cannot be read.
    """
    users, histories, lines = [], [], []
    with open(path, encoding="utf-8-sig") as f:
        number = 0
        try:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                record = json.loads(line, object_pairs_hook=unique_keys)
                if not isinstance(record, dict):
                    raise ValueError(f"expected a JSON object, got {line.strip()[:80]!r}")
                user = record.pop(features.USER_ID, len(users))
                if isinstance(user, bool) or not isinstance(user, str | int):
                    raise ValueError(
                        f"{features.USER_ID} must be a string or an integer, got {user!r}"
                    )
                users.append(str(user))
                for behavior, items in record.items():
                    history_example({behavior: items})  # a list of string ids, or named
                histories.append(record)
                lines.append(number)
        except RecursionError as e:
            raise ValueError(f"{path}:{number}: JSON nested too deeply") from e
        except UnicodeDecodeError as e:
            where = f" after line {number}" if number else ""
            raise ValueError(f"{path}: not UTF-8 text{where} ({e.reason})") from e
        except ValueError as e:  # json.JSONDecodeError too
            raise ValueError(f"{path}:{number}: {e}") from e
    if not histories:
        raise ValueError(f"{path}: no user histories (one JSON object per line)")
    return users, histories, lines


#: gRPC target schemes (``dns:///host:port``, ``unix:path``, …) passed on unchecked.
_TARGET_SCHEMES = ("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:", "vsock:")


def _check_server(parser: argparse.ArgumentParser, target: str) -> None:
    """A ``host:port`` target needs a port of 1-65535 in digits (gRPC would read ``-1``
    as 65535, ``abc`` as 0 and ``80x`` as 80); a target with a gRPC scheme is not
    checked."""
    if target.startswith(_TARGET_SCHEMES):
        return
    if "://" in target:  # e.g. http://: gRPC would take it for a host name to resolve
        scheme = target.split("://", 1)[0]
        parser.error(
            f"--server {target!r}: give host:port of the gRPC API without {scheme}://, e.g. "
            f"{DEFAULT_TARGET} (or a gRPC scheme: {', '.join(_TARGET_SCHEMES)})"
        )
    host, sep, port = target.rpartition(":")
    if not target.strip() or not sep or not host.strip() or not port:
        parser.error(f"--server {target!r}: give host:port, e.g. {DEFAULT_TARGET}")
    if not (port.isascii() and port.isdigit()):
        parser.error(f"--server {target!r}: port {port!r} is not a number")
    if not 1 <= int(port) <= 65535:
        parser.error(f"--server {target!r}: port {port} is not in 1-65535")


def _seconds(value: str) -> float:
    """``--timeout``: seconds, finite, > 0 and at most a day (gRPC fails larger
    deadlines at once, as DEADLINE_EXCEEDED)."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0.0 < seconds <= 86_400.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"must be > 0 and at most 86400 seconds, got {value}")
    return seconds


def _version(value: str) -> int:
    """``--version``: a model version, 0 to 2**63 - 1 (TF Serving's int64)."""
    try:
        version = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 0 <= version < 2**63:
        raise argparse.ArgumentTypeError(f"must be in 0 to 2**63 - 1, got {value}")
    return version


def _read_examples_file(path: str) -> tuple[list[str], list[bytes]]:
    """A TFRecord file (``.gz``: GZIP) of serialized tf.Examples.

    Raises:
      ValueError: naming the file if it is missing, empty or not a TFRecord file of
        tf.Examples.
    """
    compression = "GZIP" if path.endswith(".gz") else ""
    if not tf.io.gfile.exists(path):
        raise ValueError(f"--examples_file {path!r} does not exist")
    try:
        records = list(
            tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator()
        )
        examples = [tf.train.Example.FromString(record) for record in records]
    except (tf.errors.OpError, message.DecodeError) as e:
        reason = (getattr(e, "message", None) or str(e)).split("}} ")[-1].split(" [Op:")[0]
        raise ValueError(
            f"--examples_file {path!r} is not a TFRecord file of tf.Examples"
            f"{' (GZIP, by its .gz name)' if compression else ''}: {reason.splitlines()[0]}"
        ) from e
    if not records:
        raise ValueError(f"--examples_file {path!r} holds no tf.Example records")
    return _users_of(examples), records


def _users_of(examples: Sequence[tf.train.Example]) -> list[str]:
    """Each example's user id (bytes that are not UTF-8 as ``\\x..`` escapes: the id
    only labels the answer), or its position for an example without one."""
    users: list[str] = []
    for example in examples:
        user = example.features.feature.get(features.USER_ID)
        users.append(
            user.bytes_list.value[0].decode("utf-8", "backslashreplace")
            if user is not None and user.bytes_list.value
            else str(len(users))
        )
    return users


def _warn_repeated_users(source: str, users: Sequence[str], places: Sequence[str]) -> None:
    """Warns on stderr of a user id given more than once: each occurrence is a request
    of its own and is answered, so the output holds that user once per occurrence."""
    seen: dict[str, list[str]] = {}
    for user, place in zip(users, places, strict=True):
        seen.setdefault(user, []).append(place)
    repeated = {user: where for user, where in seen.items() if len(where) > 1}
    for user, where in list(repeated.items())[:5]:
        print(
            f"warning: {source}: user_id {user!r} is given {len(where)} times "
            f"({', '.join(where)}); each is answered",
            file=sys.stderr,
        )
    if len(repeated) > 5:
        print(f"warning: {source}: {len(repeated) - 5} more user ids repeat", file=sys.stderr)


def _format_table(users: Sequence[str | None], results: Sequence[Recommendations]) -> str:
    """The human-readable answer; a ``None`` user is the one ``--history`` describes
    (it has no id)."""
    lines = []
    for user, result in zip(users, results, strict=True):
        behaviors = list(result.items)
        lines.append(
            ("user from --history (no id)" if user is None else f"user {user}")
            + f"  (model version {result.model_version}, "
            f"unknown item ids dropped: {result.oov_count}"
            + (
                f", feature keys not read: {result.unknown_feature_count}"
                if result.unknown_feature_count
                else ""
            )
            + ")"
        )
        width = max([12] + [len(i) for items in result.items.values() for i, _ in items])
        header = "  rank" + "".join(f"  {b:<{width}} {'score':>9}" for b in behaviors)
        lines.append(header)
        depth = max((len(items) for items in result.items.values()), default=0)
        for rank in range(depth):
            cells = []
            for behavior in behaviors:
                items = result.items[behavior]
                if rank < len(items):
                    item, score = items[rank]
                    cells.append(f"  {item:<{width}} {score:>9.4f}")
                else:
                    cells.append(f"  {'':<{width}} {'':>9}")
            lines.append(f"  {rank + 1:>4}" + "".join(cells))
        short = [f"{b} {len(result.items[b])}" for b in behaviors if len(result.items[b]) < depth]
        short = short or [f"{b} 0" for b in behaviors if not result.items[b]]
        if short:  # blank cells: say why
            lines.append(
                f"  fewer items for {', '.join(short)}: the items the user already did under "
                "a behavior are never recommended for it"
            )
        lines.append("")
    return "\n".join(lines)


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serving.client",
        description="Query the served BVAE model over TF Serving's gRPC API.",
    )
    parser.add_argument(
        "--server", default=DEFAULT_TARGET, help="host:port of the gRPC API (default: %(default)s)"
    )
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--signature_name", default=features.SERVING_SIGNATURE)
    parser.add_argument("--version", type=_version, default=None, help="default: latest")
    parser.add_argument(
        "--timeout", type=_seconds, default=5.0, help="deadline per call, seconds (<= 86400)"
    )
    parser.add_argument(
        "--max_attempts", type=int, default=4, help="attempts on UNAVAILABLE/CANCELLED"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    # --json is also accepted after the subcommand.
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print JSON"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict", help="top-K items per behavior for users", parents=[json_flag]
    )
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--history",
        action="append",
        metavar="BEHAVIOR=ID1,ID2",
        help="one user's raw item ids for a behavior (repeat per behavior)",
    )
    source.add_argument("--histories_file", help="JSON lines, one {behavior: [ids]} per user")
    source.add_argument("--examples_file", help="TFRecord (.gz: GZIP) of tf.Examples")
    predict.add_argument("--top_k", type=int, default=None, help="default: all the model returns")
    predict.add_argument(
        "--batch_size",
        type=int,
        default=64,
        help="users per request; at most the server's row limit (the local server's "
        "--max_rows_per_request, 1024 by default)",
    )
    commands.add_parser(
        "metadata", help="the model's signatures (GetModelMetadata)", parents=[json_flag]
    )
    commands.add_parser(
        "status", help="the model's versions and states (GetModelStatus)", parents=[json_flag]
    )
    args = parser.parse_args(argv)
    _check_server(parser, args.server)
    return args


def _run(args: argparse.Namespace, client: ServingClient) -> str:
    if args.command == "status":
        response = client.get_model_status()
        if args.json:
            return json.dumps(
                json_format.MessageToDict(response, preserving_proto_field_name=True), indent=2
            )
        rows = [
            f"version {s.version}: "
            f"{get_model_status_pb2.ModelVersionStatus.State.Name(s.state)}"
            + (f" ({s.status.error_message})" if s.status.error_message else "")
            for s in response.model_version_status
        ]
        return "\n".join([f"model {args.model_name}", *rows])
    if args.command == "metadata":
        defs = client.signature_defs()
        summary = {
            key: signatures.signature_summary(sig)
            for key, sig in sorted(defs.items())
            if not key.startswith("__")
        }
        if args.json:
            return json.dumps(
                {
                    "model_name": args.model_name,
                    "model_version": client.metadata_version,
                    "signatures": summary,
                },
                indent=2,
            )
        lines = [f"model {args.model_name}, version {client.metadata_version}"]
        for key, parts in summary.items():
            lines.append(f"signature {key}")
            for kind in ("inputs", "outputs"):
                for alias, info in parts[kind].items():
                    lines.append(f"  {kind[:-1]:<6} {alias:<24} {info['dtype']:<8} {info['shape']}")
        return "\n".join(lines)
    if args.history:
        users, results = (
            [None],  # --history describes one user, without an id
            client.recommend(
                [_parse_history_flags(args.history)], top_k=args.top_k, batch_size=args.batch_size
            ),
        )
    elif args.histories_file:
        users, histories, lines = _read_histories_file(args.histories_file)
        _warn_repeated_users(args.histories_file, users, [f"line {n}" for n in lines])
        served = client.behaviors()
        for history, line in zip(histories, lines, strict=True):
            try:
                check_behaviors(history, served)
            except ValueError as e:
                raise ValueError(f"{args.histories_file}:{line}: {e}") from e
        results = client.recommend(histories, top_k=args.top_k, batch_size=args.batch_size)
    else:
        users, examples = _read_examples_file(args.examples_file)
        _warn_repeated_users(
            args.examples_file, users, [f"record {n}" for n in range(1, len(users) + 1)]
        )
        results = client.recommend_examples(examples, top_k=args.top_k, batch_size=args.batch_size)
    if args.json:
        return json.dumps(
            [
                {
                    "user_id": user,
                    "model_version": r.model_version,
                    "oov_count": r.oov_count,
                    "unknown_feature_count": r.unknown_feature_count,
                    "recommendations": {
                        b: [{"item_id": i, "score": s} for i, s in items]
                        for b, items in r.items.items()
                    },
                }
                for user, r in zip(users, results, strict=True)
            ],
            indent=2,
        )
    return _format_table(users, results)


#: The local server's refusal of a request with more rows than its
#: ``--max_rows_per_request`` (``serving.request_checks.parse_inputs``).
_ROW_LIMIT = re.compile(r"(?P<rows>[0-9]+) rows, more than the (?P<limit>[0-9]+) rows a request")


def _row_limit_error(args: argparse.Namespace, details: str) -> str | None:
    """The message for a ``predict`` refused for its rows per request: the user's fix
    is this client's ``--batch_size``, not the server's flag; ``None`` otherwise."""
    match = _ROW_LIMIT.search(details)
    if args.command != "predict" or match is None:
        return None
    limit = match["limit"]
    return (
        f"--batch_size {args.batch_size} sends {match['rows']} users per request, more than "
        f"the {limit} the server takes (its --max_rows_per_request): give --batch_size "
        f"{limit} or less"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1 on a failed call)."""
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    console.setup()
    try:
        with ServingClient(
            args.server,
            model_name=args.model_name,
            signature_name=args.signature_name,
            version=args.version,
            timeout_s=args.timeout,
            max_attempts=args.max_attempts,
        ) as client:
            print(_run(args, client))
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
            refused = _row_limit_error(args, e.details() or "")
            if refused is not None:
                print(f"error: INVALID_ARGUMENT: {refused}", file=sys.stderr)
                return 1
        hint = ""
        if e.code() == grpc.StatusCode.NOT_FOUND and args.version is None:
            hint = (
                f" (--model_name {args.model_name!r} must be the name the server serves: "
                "the pipeline config's model_name, printed in the run's \"Serve it:\" line; "
                "or no version of it has loaded yet: the status command says)"
            )
        print(f"error: {e.code().name}: {e.details()}{hint}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader closed the pipe (e.g. `| head`): it has what it wanted. Point
        # stdout at /dev/null so the exit's flush is quiet too (the Python docs' fix,
        # "Note on SIGPIPE" in the signal module).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
