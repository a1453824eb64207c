"""TF Serving's checks of a call, and the error a failed call raises.

:class:`ServingError` carries the gRPC status code and message TF Serving answers;
the gRPC and REST front ends (:mod:`serving.grpc_api`, :mod:`serving.rest`) turn it
into a gRPC status or an HTTP status. :func:`parse_inputs` and
:func:`output_aliases` check a ``PredictRequest`` against the signature as
``predict_util.cc`` does (missing/extra input, wrong dtype or shape, unknown or
duplicate output -> ``INVALID_ARGUMENT`` naming the tensor) and bound what a request
may make the server build.
"""

from __future__ import annotations

import math

import grpc
import numpy as np
from google.protobuf import message
from tensorflow.core.example import example_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import model_pb2, predict_pb2

from bvae_tf import features
from serving import signatures, tensor_protos


class ServingError(Exception):
    """A failed call, with the gRPC status code TF Serving would answer."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def signature_key(spec: model_pb2.ModelSpec) -> str:
    """The signature a model spec names (``serving_default`` when it names none)."""
    return spec.signature_name or features.SERVING_SIGNATURE


def callable_signature(
    servable, spec: model_pb2.ModelSpec
) -> tuple[str, meta_graph_pb2.SignatureDef]:
    """The key and SignatureDef of the signature ``spec`` names, one that Predict runs
    (``servable.runners`` has it: the SavedModel's init op is listed among the
    SignatureDefs, as TF Serving lists it, but is not run).

    Args:
      servable: a loaded version (``signature_defs`` and ``runners``, by key).
      spec: the request's model spec.

    Raises:
      ServingError: ``FAILED_PRECONDITION`` ``Serving signature key "…" not found.``
        (TF Serving's message).
    """
    key = signature_key(spec)
    signature = servable.signature_defs.get(key)
    if signature is None or key not in servable.runners:
        raise ServingError(
            grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.'
        )
    return key, signature


def parse_inputs(
    signature: meta_graph_pb2.SignatureDef,
    request: predict_pb2.PredictRequest,
    max_elements: int,
    max_rows: int,
) -> dict[str, np.ndarray]:
    """Checks the request's inputs against the signature (predict_util.cc) and converts them.

    A tensor whose shape is not a valid tensor shape (unknown rank, a negative size)
    or holds more than ``max_elements`` elements fails as TensorFlow's
    ``Tensor::FromProto`` does: ``tensor parsing error``. A tensor with more than
    ``max_rows`` rows (dimension 0) fails with ``INVALID_ARGUMENT`` naming the limit,
    before any value is converted.
    """
    if len(request.inputs) != len(signature.inputs):
        sent, wanted = set(request.inputs), set(signature.inputs)
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input size does not match signature: {len(sent)}!={len(wanted)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(wanted))}}}). "
            f"Sent extra: {{{','.join(sorted(sent - wanted))}}}. "
            f"Missing but required: {{{','.join(sorted(wanted - sent))}}}.",
        )
    tensors = {}
    for alias, proto in request.inputs.items():
        info = signature.inputs.get(alias)
        if info is None:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input tensor alias not found in signature: {alias}. Inputs expected to be "
                f"in the set {{{','.join(sorted(signature.inputs))}}}.",
            )
        if proto.dtype != info.dtype:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input tensor alias {alias}: expects dtype {signatures.dtype_name(info.dtype)} "
                f"but {signatures.dtype_name(proto.dtype)} is provided",
            )
        shape = proto.tensor_shape
        sizes = [dim.size for dim in shape.dim]
        if shape.unknown_rank or any(size < 0 for size in sizes):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"tensor parsing error: {alias}: shape {sizes}"
                f"{' of unknown rank' if shape.unknown_rank else ''} is not a tensor shape",
            )
        count = math.prod(sizes)
        if count > max_elements:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"tensor parsing error: {alias}: shape {sizes} holds {count} "
                f"elements, more than the {max_elements} a request may hold",
            )
        if sizes and sizes[0] > max_rows:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input tensor alias {alias}: {sizes[0]} rows, more than the {max_rows} rows "
                f"a request may hold (--max_rows_per_request); send them in several requests",
            )
        values = proto.string_val
        if proto.dtype == types_pb2.DT_STRING and 0 < len(values) < count:
            # TensorFlow repeats the last value to fill the shape: bounded by what a
            # request may carry (max_elements is the request byte limit), or one 500 KB
            # tf.Example declared as 1,024 rows would build 512 MB.
            filled = sum(map(len, values)) + (count - len(values)) * len(values[-1])
            if filled > max_elements:
                raise ServingError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"tensor parsing error: {alias}: shape {sizes} lists {len(values)} "
                    f"string values; repeating the last to fill the shape would build "
                    f"{filled} bytes, more than the {max_elements} a request may carry: "
                    "list every element",
                )
        try:
            array = tensor_protos.to_ndarray(proto)
        except Exception as e:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"tensor parsing error: {alias}: {type(e).__name__}: {str(e)[:200]}",
            ) from e
        if not signatures.is_compatible_shape(array.shape, info.tensor_shape):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input tensor alias {alias}: shape {list(array.shape)} is not compatible with "
                f"the signature's shape {signatures.shape_to_list(info.tensor_shape)}",
            )
        if alias == features.SERVING_INPUT and proto.dtype == types_pb2.DT_STRING:
            _check_examples(alias, array)
        tensors[alias] = array
    return tensors


def _check_examples(alias: str, array: np.ndarray) -> None:
    """Every value of ``array`` parses as a ``tf.Example`` (the protobuf library's
    parser): ``tf.io.parse_example`` takes some malformed bytes (``b"\\x00\\x00"``)
    as an empty example, so without this one signature would refuse bytes that
    another answers for. Each distinct value is parsed once.

    Raises:
      ServingError: ``INVALID_ARGUMENT`` "Could not parse example input", naming the
        first row that does not parse.
    """
    checked: set[bytes] = set()
    for row, value in enumerate(array.reshape(-1)):
        if value in checked:
            continue
        try:
            example_pb2.Example.FromString(value)
        except message.DecodeError as e:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Could not parse example input: {alias}[{row}] ({len(value)} bytes) is not a "
                f"serialized tf.Example ({e})",
            ) from e
        checked.add(value)


def output_aliases(
    signature: meta_graph_pb2.SignatureDef, request: predict_pb2.PredictRequest
) -> list[str]:
    """Outputs to return: the request's ``output_filter`` or all (predict_util.cc)."""
    seen: list[str] = []
    for alias in request.output_filter:
        if alias not in signature.outputs:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {alias} Outputs expected to be "
                f"in the set {{{','.join(sorted(signature.outputs))}}}.",
            )
        if alias in seen:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT, f"duplicate output tensor alias: {alias}"
            )
        seen.append(alias)
    return seen or sorted(signature.outputs)
