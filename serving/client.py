"""gRPC client for the served BVAE model (TF Serving or the local server).

:class:`ServingClient` builds ``PredictRequest``s with ``tensorflow_serving.apis``
from users' per-behavior raw item ids (one tf.Example per user, the
``serving_default`` contract of ``bvae_tf.features``) or from ready tf.Examples,
checks and casts every input against the signature that ``GetModelMetadata``
reports, retries ``UNAVAILABLE`` (and ``CANCELLED`` by the server) with exponential
backoff, and returns per-behavior top-K ``(item id, score)`` lists. The requests and
the lists are built by :mod:`serving.client_requests`, which needs no connection.

Command line (:mod:`serving.client_cli`)::

    python -m serving.client --model_name bvae predict --history purchase=i1,i2 --history click=i3
    python -m serving.client --model_name bvae predict --histories_file users.jsonl --json
    python -m serving.client --model_name bvae predict --examples_file eval.tfrecord.gz
    python -m serving.client --model_name bvae metadata
    python -m serving.client --model_name bvae status
"""

from __future__ import annotations

import dataclasses
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
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from bvae_tf import features
from serving import signatures, tensor_protos
from serving.client_requests import (
    History,
    Recommendations,
    build_predict_request,
    recommendations_from_outputs,
    serialize_histories,
)

DEFAULT_TARGET = "127.0.0.1:8500"
_SIGNATURE_DEF_FIELD = "signature_def"
_MAX_RECEIVE_BYTES = 64 * 1024 * 1024

#: Status codes a call is retried on. Every call of this client only reads, so a
#: retry is safe. ``CANCELLED`` never comes from this client (it cancels nothing; a
#: deadline gives ``DEADLINE_EXCEEDED``): a gRPC server that stops cancels the calls
#: it has received but not yet started, e.g. when a serving process hands over to
#: the next version's process (``serving.supervisor``) or a TF Serving replica stops.
RETRIED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A Predict response as NumPy arrays.

    Attributes:
      outputs: output alias -> array (``object`` arrays of ``bytes`` for strings).
      model_version: version of the model that answered.
    """

    outputs: Mapping[str, np.ndarray]
    model_version: int


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
        # The SavedModel's init op is listed in the metadata (as TF Serving lists it)
        # but Predict does not run it.
        callable_names = sorted(k for k in defs if k != "__saved_model_init_op")
        if self.signature_name not in callable_names:
            raise ValueError(
                f"model {self.model_name!r} has no signature {self.signature_name!r} to "
                f"call; it has {callable_names}"
            )
        return defs[self.signature_name]

    def behaviors(self) -> tuple[str, ...]:
        """Behaviors the model ranks for (from the signature's outputs).

        Raises:
          ValueError: if :attr:`signature_name` returns no top-K outputs
            (``<b>_item_ids`` and ``<b>_scores``), e.g. the Evaluator's
            ``rank_heldout``: it cannot answer :meth:`recommend`.
        """
        return self._ranking_signature()[1]

    def _ranking_signature(self) -> tuple[meta_graph_pb2.SignatureDef, tuple[str, ...]]:
        signature = self.signature()
        behaviors = signatures.behaviors_of(signature)
        if not behaviors:
            raise ValueError(
                f"signature {self.signature_name!r} of model {self.model_name!r} returns no "
                f"top-K recommendations (<behavior>_item_ids and <behavior>_scores); its "
                f"outputs are {sorted(signature.outputs)}. Recommendations come from "
                f"{features.SERVING_SIGNATURE!r}."
            )
        return signature, behaviors

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
        signature, behaviors = self._ranking_signature()
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


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (:mod:`serving.client_cli`); returns the exit status."""
    from serving import client_cli

    return client_cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
