"""SignatureDef helpers shared by the client, the local server and the warm-up writer.

A SignatureDef (``tensorflow/core/protobuf/meta_graph.proto``) lists a signature's
inputs and outputs as ``TensorInfo`` (graph tensor name, ``DataType``, shape with
``-1`` for unknown dimensions). TF Serving returns the SignatureDefs of a model in
``GetModelMetadata`` (``metadata["signature_def"]``, a packed ``SignatureDefMap``);
the local server reads them from ``saved_model.pb``.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from bvae_tf import features

#: Name of the SavedModel graph proto and of the variables index inside a version.
SAVED_MODEL_FILENAME = "saved_model.pb"
VARIABLES_INDEX = os.path.join("variables", "variables.index")
#: Tag of the serving MetaGraph.
SERVE_TAG = "serve"

_ITEM_IDS_SUFFIX = features.item_ids_output("")
_SCORES_SUFFIX = features.scores_output("")


def dtype_name(dtype: int) -> str:
    """TensorFlow's ``DataTypeString`` of a ``DataType`` value (``DT_FLOAT`` -> ``"float"``)."""
    try:
        return types_pb2.DataType.Name(dtype).removeprefix("DT_").lower()
    except ValueError:
        return f"unknown dtype {dtype}"


def shape_to_list(shape: tensor_shape_pb2.TensorShapeProto) -> list[int] | None:
    """Dimensions of a shape proto, ``-1`` where unknown; ``None`` for unknown rank."""
    if shape.unknown_rank:
        return None
    return [dim.size for dim in shape.dim]


def is_compatible_shape(shape: Sequence[int], expected: tensor_shape_pb2.TensorShapeProto) -> bool:
    """Whether a concrete shape fits a signature shape (``-1`` matches any size)."""
    dims = shape_to_list(expected)
    if dims is None:
        return True
    return len(dims) == len(shape) and all(
        d < 0 or d == s for d, s in zip(dims, shape, strict=True)
    )


def read_signature_defs(
    saved_model_dir: str | os.PathLike,
) -> dict[str, meta_graph_pb2.SignatureDef]:
    """Reads the SignatureDefs of the ``serve`` MetaGraph from ``saved_model.pb``.

    Args:
      saved_model_dir: a SavedModel directory.

    Returns:
      Signature key -> SignatureDef, as TF Serving's ``GetModelMetadata`` lists them.

    Raises:
      ValueError: if the directory has no ``saved_model.pb`` or no ``serve`` MetaGraph.
    """
    path = pathlib.Path(saved_model_dir) / SAVED_MODEL_FILENAME
    if not path.is_file():
        raise ValueError(f"{saved_model_dir!s} is not a SavedModel: {path} does not exist")
    saved_model = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"SavedModel {saved_model_dir!s} has no MetaGraph tagged {SERVE_TAG!r}")


def behaviors_of(signature: meta_graph_pb2.SignatureDef) -> tuple[str, ...]:
    """Behaviors a ``serving_default`` signature ranks for, from its output names.

    A behavior ``b`` counts when both ``<b>_item_ids`` and ``<b>_scores`` are outputs
    (``bvae_tf.features``). The signature's outputs are a map with no order, so the
    behaviors of ``features.DEFAULT_BEHAVIORS`` come in that order (purchase, click,
    favorite, cart: the paper's and the models' order), any others after them by name.
    """
    outputs = signature.outputs
    found = {
        name[: -len(_ITEM_IDS_SUFFIX)]
        for name in outputs
        if name.endswith(_ITEM_IDS_SUFFIX)
        and features.scores_output(name[: -len(_ITEM_IDS_SUFFIX)]) in outputs
    }
    standard = [b for b in features.DEFAULT_BEHAVIORS if b in found]
    return (*standard, *sorted(found - set(standard)))


def _kind_name(dtype: np.dtype) -> str:
    """A NumPy dtype as a message names it: ``string`` for ``<U1``, ``mixed or null``
    for ``object``, else its name (``bool``, ``float64``)."""
    if dtype.kind in "SU":
        return "string"
    if dtype.kind == "O":
        return "mixed or null"
    return str(dtype)


def cast_to_signature(name: str, value: object, info: meta_graph_pb2.TensorInfo) -> np.ndarray:
    """Converts one input value to the dtype and shape its signature declares.

    Numbers are cast only within their kind or to a wider kind (``float64`` ->
    ``float32``, ``int`` -> ``float``, ``int64`` -> ``int32`` if the values fit);
    floats never become integers and numbers never become strings. ``str`` values
    for a ``string`` input are UTF-8 encoded.

    Args:
      name: the input's alias in the signature (used in error messages).
      value: array-like value of the input.
      info: the signature's TensorInfo of that input.

    Returns:
      A NumPy array of the signature's dtype (``object`` of ``bytes`` for strings).

    Raises:
      ValueError: naming the input, if the value cannot be converted without loss or
        its shape does not fit the signature's shape.
    """
    want = tf.dtypes.as_dtype(info.dtype)
    try:
        array = np.asarray(value, dtype=object if want == tf.string else None)
    except ValueError as e:  # NumPy's "inhomogeneous shape": rows of different lengths
        pad = (
            f" (pad them with {features.TRANSFORM_PADDING}, as transform_features does)"
            if want.is_integer
            else ""
        )
        raise ValueError(
            f"input {name!r}: its rows have different lengths; a tensor's rows must all "
            f"have the same length{pad}"
        ) from e
    if array.size == 0 and want != tf.string:
        array = array.astype(want.as_numpy_dtype)  # [[], []]: NumPy's float64 of nothing
    if want == tf.string:
        if array.dtype != object and array.dtype.kind not in "SU":
            raise ValueError(f"input {name!r} expects dtype string but got {array.dtype} values")
        flat = [v.encode("utf-8") if isinstance(v, str) else v for v in array.reshape(-1).tolist()]
        if not all(isinstance(v, bytes) for v in flat):
            bad = next(v for v in flat if not isinstance(v, bytes))
            if isinstance(bad, list):  # NumPy keeps rows of different lengths as lists
                raise ValueError(
                    f"input {name!r}: its rows have different lengths; a tensor's rows must "
                    "all have the same length"
                )
            shown = repr(bad)
            shown = shown if len(shown) <= 100 else f"{shown[:100]}... ({len(shown)} characters)"
            raise ValueError(f"input {name!r} expects dtype string but got value {shown}")
        result = np.empty(len(flat), dtype=object)
        result[:] = flat
        result = result.reshape(array.shape)
    else:
        target = np.dtype(want.as_numpy_dtype)
        if (
            array.dtype == object
            or array.dtype.kind in "SUV"
            or (array.dtype.kind == "b" and target.kind != "b")  # True is not index 1
            or not np.can_cast(array.dtype, target, casting="same_kind")
        ):
            raise ValueError(
                f"input {name!r} expects dtype {dtype_name(info.dtype)} but got "
                f"{_kind_name(array.dtype)} values, which do not convert without loss"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            result = array.astype(target)
        if not np.array_equal(np.isfinite(result), np.isfinite(array)) or (
            target.kind in "iu" and not np.array_equal(result, array)
        ):
            raise ValueError(
                f"input {name!r}: values are out of the range of {dtype_name(info.dtype)}"
            )
    if not is_compatible_shape(result.shape, info.tensor_shape):
        raise ValueError(
            f"input {name!r} has shape {list(result.shape)}, the signature expects "
            f"{shape_to_list(info.tensor_shape)} (-1: any size)"
        )
    return result


def signature_summary(signature: meta_graph_pb2.SignatureDef) -> dict[str, dict[str, object]]:
    """Inputs and outputs of a signature as ``{"inputs": {alias: {dtype, shape}}, …}``."""

    def describe(infos: Mapping[str, meta_graph_pb2.TensorInfo]) -> dict[str, object]:
        return {
            alias: {"dtype": dtype_name(info.dtype), "shape": shape_to_list(info.tensor_shape)}
            for alias, info in sorted(infos.items())
        }

    return {"inputs": describe(signature.inputs), "outputs": describe(signature.outputs)}
