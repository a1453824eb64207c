"""gRPC client for the served BVAE model (TF Serving or the local server).

Builds ``PredictRequest``s with ``tensorflow_serving.apis`` from users' per-behavior
raw item ids (one tf.Example per user, the ``serving_default`` contract of
``bvae_tf.features``) or from ready tf.Examples, checks and casts every input against
the signature that ``GetModelMetadata`` reports, retries ``UNAVAILABLE`` (and
``CANCELLED`` by the server) with exponential backoff, and returns per-behavior
top-K ``(item id, score)`` lists.

Command line::

    python -m serving.client --model_name bvae predict --history purchase=i1,i2 --history click=i3
    python -m serving.client --model_name bvae predict --histories_file users.jsonl --json
    python -m serving.client --model_name bvae predict --examples_file eval.tfrecord.gz
    python -m serving.client --model_name bvae metadata
    python -m serving.client --model_name bvae status
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

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
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from bvae_tf import console, features
from serving import signatures, tensor_protos

DEFAULT_TARGET = "127.0.0.1:8500"
_SIGNATURE_DEF_FIELD = "signature_def"
_MAX_RECEIVE_BYTES = 64 * 1024 * 1024

History = Mapping[str, Sequence[str | bytes]]
#: Status codes a call is retried on. Every call of this client only reads, so a
#: retry is safe. ``CANCELLED`` never comes from this client (it cancels nothing; a
#: deadline gives ``DEADLINE_EXCEEDED``): a gRPC server that stops cancels the calls
#: it has received but not yet started, e.g. when a serving process hands over to
#: the next version's process (``serving.supervisor``) or a TF Serving replica stops.
RETRIED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


@dataclasses.dataclass(frozen=True)
class Recommendations:
    """Top-K items of one user, per behavior.

    Attributes:
      items: behavior -> ``((item_id, score), …)`` best first; the model's own
        exclusions (score ``-inf``: items the user already did behavior ``b`` on) are
        left out, so a list can be shorter than K.
      oov_count: the user's item ids the model did not know and dropped.
      model_version: version of the model that answered.
    """

    items: Mapping[str, tuple[tuple[str, float], ...]]
    oov_count: int
    model_version: int


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A Predict response as NumPy arrays.

    Attributes:
      outputs: output alias -> array (``object`` arrays of ``bytes`` for strings).
      model_version: version of the model that answered.
    """

    outputs: Mapping[str, np.ndarray]
    model_version: int


def normalize_item_id(item: str | bytes) -> bytes:
    """An item id as the ExampleGen writes it: surrounding whitespace stripped, UTF-8.

    The ExampleGen strips the ids it reads (``str.strip``), so ``"  i17  "`` is the
    item ``i17`` in the model's vocabulary. ``bytes`` ids are decoded as UTF-8 and
    stripped the same way; ``bytes`` that are not UTF-8 (the ExampleGen never writes
    such an id) only lose surrounding ASCII whitespace.

    Args:
      item: a raw item id.

    Returns:
      The stripped id, UTF-8 encoded; ``b""`` when it was only whitespace.

    Raises:
      ValueError: if ``item`` is neither ``str`` nor ``bytes``.
    """
    if isinstance(item, str):
        return item.strip().encode("utf-8")
    if isinstance(item, bytes):
        try:
            return item.decode("utf-8").strip().encode("utf-8")
        except UnicodeDecodeError:
            return item.strip()
    raise ValueError(f"item ids must be str or bytes, got {item!r}")


def history_example(history: History) -> tf.train.Example:
    """One user's tf.Example: a bytes feature ``<b>_items`` per behavior ``b``.

    Item ids are normalised as the ExampleGen does (:func:`normalize_item_id`):
    surrounding whitespace is stripped. An id that is only whitespace becomes the
    empty id, which no vocabulary holds (the ExampleGen rejects events with an empty
    id), so the model counts it in ``oov_count``.

    Args:
      history: behavior -> the user's raw item ids (``str`` or ``bytes``) for it,
        oldest first. Behaviors may be missing (no items).

    Raises:
      ValueError: naming the behavior, if an item id is not ``str``/``bytes``.
    """
    feature = {}
    for behavior, items in history.items():
        if isinstance(items, str | bytes):
            raise ValueError(
                f"history[{behavior!r}] must be a sequence of item ids, got the string {items!r}"
            )
        values = []
        for item in items:
            if not isinstance(item, str | bytes):
                raise ValueError(
                    f"item ids must be str or bytes; history[{behavior!r}] holds {item!r}"
                )
            values.append(normalize_item_id(item))
        feature[features.items_key(behavior)] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=values)
        )
    return tf.train.Example(features=tf.train.Features(feature=feature))


def serialize_histories(
    histories: Sequence[History], behaviors: Sequence[str] | None = None
) -> list[bytes]:
    """Serialized tf.Examples for users' histories.

    Args:
      histories: one mapping behavior -> raw item ids per user.
      behaviors: the model's behaviors; when given, any other key is an error (the
        model would silently ignore it).

    Raises:
      ValueError: naming the behavior or item id that is not accepted.
    """
    known = None if behaviors is None else set(behaviors)
    result = []
    for history in histories:
        if known is not None:
            unknown = sorted(set(history) - known)
            if unknown:
                raise ValueError(
                    f"behavior(s) {unknown} are not served by the model; "
                    f"its behaviors are {sorted(known)}"
                )
        result.append(history_example(history).SerializeToString())
    return result


def build_predict_request(
    inputs: Mapping[str, object],
    *,
    model_name: str,
    signature_name: str = features.SERVING_SIGNATURE,
    version: int | None = None,
    signature: meta_graph_pb2.SignatureDef | None = None,
    output_filter: Sequence[str] = (),
) -> predict_pb2.PredictRequest:
    """A ``PredictRequest`` with the inputs cast to the signature's dtypes.

    Args:
      inputs: input alias -> array-like value.
      model_name: ``model_spec.name``.
      signature_name: ``model_spec.signature_name``.
      version: ``model_spec.version``; ``None`` asks for the latest.
      signature: the SignatureDef to check against (from ``GetModelMetadata`` or
        ``saved_model.pb``). With it, every input must be present, none may be extra,
        and each is cast to its dtype (``float64`` never reaches a ``float32`` input)
        and checked against its shape. Without it, values go as NumPy infers them.
      output_filter: output aliases to return (all when empty).

    Raises:
      ValueError: naming the input that is missing, extra or not convertible.
    """
    if not model_name:
        raise ValueError("model_name must be non-empty")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = version
    request.output_filter.extend(output_filter)
    if signature is not None:
        missing = sorted(set(signature.inputs) - set(inputs))
        extra = sorted(set(inputs) - set(signature.inputs))
        if missing or extra:
            raise ValueError(
                f"signature {signature_name!r} takes inputs {sorted(signature.inputs)}; "
                f"missing {missing}, not in the signature {extra}"
            )
        unknown_outputs = sorted(set(output_filter) - set(signature.outputs))
        if unknown_outputs:
            raise ValueError(
                f"output_filter names {unknown_outputs}, not outputs of {signature_name!r}"
            )
    for alias, value in inputs.items():
        if signature is not None:
            info = signature.inputs[alias]
            array = signatures.cast_to_signature(alias, value, info)
            tensor_protos.fill_tensor_proto(request.inputs[alias], array, info.dtype)
        else:
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return request


def build_history_request(
    histories: Sequence[History],
    *,
    model_name: str,
    signature: meta_graph_pb2.SignatureDef,
    signature_name: str = features.SERVING_SIGNATURE,
    version: int | None = None,
) -> predict_pb2.PredictRequest:
    """A ``serving_default`` request for users' per-behavior raw item ids.

    Args:
      histories: one mapping behavior -> raw item ids per user (may be empty: a batch
        of 0; a user may have no items at all).
      model_name, signature_name, version: the ``model_spec``.
      signature: the ``serving_default`` SignatureDef; its outputs name the behaviors.

    Raises:
      ValueError: for a behavior the model does not serve, a bad item id, or a
        signature whose inputs are not ``examples``.
    """
    serialized = serialize_histories(histories, signatures.behaviors_of(signature))
    return build_predict_request(
        {features.SERVING_INPUT: serialized},
        model_name=model_name,
        signature_name=signature_name,
        version=version,
        signature=signature,
    )


def recommendations_from_outputs(
    outputs: Mapping[str, np.ndarray],
    behaviors: Sequence[str],
    *,
    model_version: int,
    top_k: int | None = None,
) -> list[Recommendations]:
    """Per-user top-K lists from ``serving_default`` outputs.

    Args:
      outputs: ``<b>_item_ids`` ``[batch, K]`` bytes, ``<b>_scores`` ``[batch, K]``
        float32 and ``oov_count`` ``[batch]`` int64, as NumPy arrays.
      behaviors: behaviors to read.
      model_version: version that produced the outputs.
      top_k: keep at most this many items per behavior (``None``: all K).

    Raises:
      ValueError: if an output is missing or ``top_k`` is below 1 or exceeds K.
    """
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    missing = [
        name
        for b in behaviors
        for name in (features.item_ids_output(b), features.scores_output(b))
        if name not in outputs
    ]
    if missing:
        raise ValueError(f"outputs {missing} are missing from the response")
    batch = len(outputs[features.OOV_COUNT]) if features.OOV_COUNT in outputs else None
    result = []
    per_behavior = {}
    for behavior in behaviors:
        ids = outputs[features.item_ids_output(behavior)]
        scores = outputs[features.scores_output(behavior)]
        if top_k is not None and top_k > ids.shape[1]:
            raise ValueError(
                f"top_k={top_k} exceeds the {ids.shape[1]} items per behavior the model returns"
            )
        per_behavior[behavior] = (ids, scores)
        batch = len(ids) if batch is None else batch
    oov = (
        outputs[features.OOV_COUNT].tolist()
        if features.OOV_COUNT in outputs
        else [0] * (batch or 0)
    )
    kept = {
        behavior: (ids.tolist(), scores.tolist(), (~np.isneginf(scores)).tolist())
        for behavior, (ids, scores) in per_behavior.items()
    }
    for row in range(batch or 0):
        items = {}
        for behavior, (ids, scores, keep) in kept.items():
            ranked = tuple(
                (item.decode("utf-8"), score)
                for item, score, ok in zip(ids[row], scores[row], keep[row], strict=True)
                if ok
            )
            items[behavior] = ranked[:top_k] if top_k is not None else ranked
        result.append(
            Recommendations(items=items, oov_count=int(oov[row]), model_version=model_version)
        )
    return result


class ServingClient:
    """Client of TF Serving's gRPC API for one model.

    Args:
      target: ``host:port`` of TF Serving or the local server.
      model_name: the served model's name.
      signature_name: signature to call.
      version: model version to ask for; ``None`` asks for the latest.
      timeout_s: deadline of each call attempt, seconds.
      max_attempts: attempts per call; only :data:`RETRIED_CODES` are retried.
      initial_backoff_s, max_backoff_s: backoff before retry ``n`` is
        ``min(max, initial * 2**(n-1))`` seconds, scaled by a random factor in
        ``[0.5, 1]`` (seeded).
      channel: an existing channel to use instead of opening one to ``target``.
      seed: seed of the backoff jitter.

    Attributes:
      retries: answers retried so far (all calls together).

    Raises:
      ValueError: on a non-positive timeout or attempt count.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        model_name: str,
        signature_name: str = features.SERVING_SIGNATURE,
        version: int | None = None,
        timeout_s: float = 5.0,
        max_attempts: int = 4,
        initial_backoff_s: float = 0.1,
        max_backoff_s: float = 2.0,
        channel: grpc.Channel | None = None,
        seed: int = 0,
    ):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if not model_name:
            raise ValueError("model_name must be non-empty")
        self.model_name = model_name
        self.signature_name = signature_name
        self.version = version
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._rng = random.Random(seed)
        self._owns_channel = channel is None
        self._channel = channel or grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", _MAX_RECEIVE_BYTES)]
        )
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._lock = threading.Lock()
        self._signature_defs: dict[str, meta_graph_pb2.SignatureDef] | None = None
        self._metadata_version: int | None = None
        self.retries = 0

    def close(self) -> None:
        """Closes the channel if this client opened it."""
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- calls --------------------------------------------------------------------------
    def _call(self, rpc: Callable, request: object) -> object:
        """Calls ``rpc`` with the deadline, retrying :data:`RETRIED_CODES` with backoff."""
        attempt = 1
        while True:
            try:
                return rpc(request, timeout=self._timeout_s)
            except grpc.RpcError as e:
                if e.code() not in RETRIED_CODES or attempt >= self._max_attempts:
                    raise
                with self._lock:
                    self.retries += 1
                    delay = self._rng.uniform(0.5, 1.0) * min(
                        self._max_backoff_s, self._initial_backoff_s * 2 ** (attempt - 1)
                    )
                logging.warning(
                    "%s (%s); retry %d/%d in %.2f s",
                    e.code().name,
                    e.details(),
                    attempt,
                    self._max_attempts - 1,
                    delay,
                )
                time.sleep(delay)
                attempt += 1

    def _model_spec(self, message: object) -> None:
        message.model_spec.name = self.model_name
        if self.version is not None:
            message.model_spec.version.value = self.version

    def get_model_metadata(self) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """``GetModelMetadata`` with the ``signature_def`` field.

        Raises:
          grpc.RpcError: with TF Serving's status (e.g. ``NOT_FOUND``).
        """
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=[_SIGNATURE_DEF_FIELD]
        )
        self._model_spec(request)
        return self._call(self._predictions.GetModelMetadata, request)

    def get_model_status(self) -> get_model_status_pb2.GetModelStatusResponse:
        """``GetModelStatus``: the state of each version of the model.

        Raises:
          grpc.RpcError: with TF Serving's status (e.g. ``NOT_FOUND``).
        """
        request = get_model_status_pb2.GetModelStatusRequest()
        self._model_spec(request)
        return self._call(self._models.GetModelStatus, request)

    def signature_defs(self, refresh: bool = False) -> dict[str, meta_graph_pb2.SignatureDef]:
        """The model's SignatureDefs (from ``GetModelMetadata``, cached).

        The cache is dropped when a response comes from another model version.
        """
        with self._lock:
            cached = None if refresh else self._signature_defs
        if cached is not None:
            return cached
        response = self.get_model_metadata()
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[_SIGNATURE_DEF_FIELD].Unpack(signature_map)
        result = dict(signature_map.signature_def)
        with self._lock:
            self._signature_defs = result
            self._metadata_version = response.model_spec.version.value
        return result

    @property
    def metadata_version(self) -> int | None:
        """Model version the cached SignatureDefs came from (``None``: not fetched)."""
        return self._metadata_version

    def signature(self) -> meta_graph_pb2.SignatureDef:
        """The SignatureDef of :attr:`signature_name`.

        Raises:
          ValueError: if the model has no such signature.
        """
        defs = self.signature_defs()
        if self.signature_name not in defs:
            raise ValueError(
                f"model {self.model_name!r} has no signature {self.signature_name!r}; "
                f"it has {sorted(defs)}"
            )
        return defs[self.signature_name]

    def behaviors(self) -> tuple[str, ...]:
        """Behaviors the model ranks for (from the signature's outputs)."""
        return signatures.behaviors_of(self.signature())

    def _send(self, request: predict_pb2.PredictRequest) -> Prediction:
        response = self._call(self._predictions.Predict, request)
        version = response.model_spec.version.value
        with self._lock:
            if self._metadata_version is not None and version != self._metadata_version:
                self._signature_defs = None
                self._metadata_version = None
        outputs = {
            alias: tensor_protos.to_ndarray(proto) for alias, proto in response.outputs.items()
        }
        return Prediction(outputs=outputs, model_version=version)

    def predict(
        self, inputs: Mapping[str, object], *, output_filter: Sequence[str] = ()
    ) -> Prediction:
        """``Predict`` with inputs checked and cast against the signature.

        Args:
          inputs: input alias -> array-like value (any batch size, including 0).
          output_filter: output aliases to return (all when empty).

        Raises:
          ValueError: naming an input that is missing, extra or not convertible.
          grpc.RpcError: with TF Serving's status when the server rejects the call.
        """
        request = build_predict_request(
            inputs,
            model_name=self.model_name,
            signature_name=self.signature_name,
            version=self.version,
            signature=self.signature(),
            output_filter=output_filter,
        )
        return self._send(request)

    def _recommend_batches(
        self, serialized: Sequence[bytes], top_k: int | None, batch_size: int
    ) -> list[Recommendations]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        signature = self.signature()
        behaviors = signatures.behaviors_of(signature)
        result: list[Recommendations] = []
        for start in range(0, len(serialized), batch_size):
            request = build_predict_request(
                {features.SERVING_INPUT: serialized[start : start + batch_size]},
                model_name=self.model_name,
                signature_name=self.signature_name,
                version=self.version,
                signature=signature,
            )
            prediction = self._send(request)
            result.extend(
                recommendations_from_outputs(
                    prediction.outputs,
                    behaviors,
                    model_version=prediction.model_version,
                    top_k=top_k,
                )
            )
        return result

    def recommend(
        self, histories: Sequence[History], *, top_k: int | None = None, batch_size: int = 64
    ) -> list[Recommendations]:
        """Top-K items per behavior for users given by their raw item ids.

        Args:
          histories: one mapping behavior -> raw item ids per user.
          top_k: items per behavior to keep (``None``: all the model returns).
          batch_size: users per Predict request.

        Raises:
          ValueError: for an unknown behavior, a bad item id, ``top_k`` below 1 or
            above the model's K, or ``batch_size`` < 1.
          grpc.RpcError: with TF Serving's status when the server rejects the call.
        """
        serialized = serialize_histories(histories, self.behaviors())
        return self._recommend_batches(serialized, top_k, batch_size)

    def recommend_examples(
        self,
        examples: Iterable[bytes | tf.train.Example],
        *,
        top_k: int | None = None,
        batch_size: int = 64,
    ) -> list[Recommendations]:
        """Top-K items per behavior for users given as tf.Examples (``<b>_items``).

        Raises:
          ValueError: for a value that is neither bytes nor a tf.Example, ``top_k``
            below 1 or above the model's K, or ``batch_size`` < 1.
          grpc.RpcError: with TF Serving's status when the server rejects the call.
        """
        serialized = []
        for example in examples:
            if isinstance(example, tf.train.Example):
                serialized.append(example.SerializeToString())
            elif isinstance(example, bytes):
                serialized.append(example)
            else:
                raise ValueError(f"examples must be bytes or tf.train.Example, got {example!r}")
        return self._recommend_batches(serialized, top_k, batch_size)


# --- command line -------------------------------------------------------------------------
def _parse_history_flags(values: Sequence[str]) -> dict[str, list[str]]:
    history: dict[str, list[str]] = {}
    for value in values:
        behavior, sep, items = value.partition("=")
        behavior = behavior.strip()
        if not sep or not behavior:
            raise ValueError(f"--history takes BEHAVIOR=ID1,ID2,…, got {value!r}")
        history.setdefault(behavior, []).extend(i for i in items.split(",") if i)
    return history


def _read_histories_file(path: str) -> tuple[list[str], list[dict[str, list[str]]]]:
    """JSON lines: ``{"user_id": …, "<behavior>": [ids…], …}`` per user."""
    users, histories = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {line.strip()!r}")
            users.append(str(record.pop(features.USER_ID, len(users))))
            histories.append(record)
    return users, histories


def _read_examples_file(path: str) -> tuple[list[str], list[bytes]]:
    """A TFRecord file (``.gz``: GZIP) of serialized tf.Examples."""
    compression = "GZIP" if path.endswith(".gz") else ""
    users, records = [], []
    for record in tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator():
        example = tf.train.Example.FromString(record)
        user = example.features.feature.get(features.USER_ID)
        users.append(
            user.bytes_list.value[0].decode("utf-8")
            if user is not None and user.bytes_list.value
            else str(len(users))
        )
        records.append(record)
    return users, records


def _format_table(users: Sequence[str], results: Sequence[Recommendations]) -> str:
    lines = []
    for user, result in zip(users, results, strict=True):
        behaviors = list(result.items)
        lines.append(
            f"user {user}  (model version {result.model_version}, "
            f"unknown item ids dropped: {result.oov_count})"
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
        lines.append("")
    return "\n".join(lines)


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serving.client",
        description="Query the served BVAE model over TF Serving's gRPC API.",
    )
    parser.add_argument("--server", default=DEFAULT_TARGET, help="host:port of the gRPC API")
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--signature_name", default=features.SERVING_SIGNATURE)
    parser.add_argument("--version", type=int, default=None, help="default: latest")
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline per call, seconds")
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
    predict.add_argument("--batch_size", type=int, default=64, help="users per request")
    commands.add_parser(
        "metadata", help="the model's signatures (GetModelMetadata)", parents=[json_flag]
    )
    commands.add_parser(
        "status", help="the model's versions and states (GetModelStatus)", parents=[json_flag]
    )
    return parser.parse_args(argv)


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
            ["0"],
            client.recommend(
                [_parse_history_flags(args.history)], top_k=args.top_k, batch_size=args.batch_size
            ),
        )
    elif args.histories_file:
        users, histories = _read_histories_file(args.histories_file)
        results = client.recommend(histories, top_k=args.top_k, batch_size=args.batch_size)
    else:
        users, examples = _read_examples_file(args.examples_file)
        results = client.recommend_examples(examples, top_k=args.top_k, batch_size=args.batch_size)
    if args.json:
        return json.dumps(
            [
                {
                    "user_id": user,
                    "model_version": r.model_version,
                    "oov_count": r.oov_count,
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
        print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
