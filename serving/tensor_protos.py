"""NumPy <-> ``TensorProto`` conversion on the request path.

``tf.make_tensor_proto`` / ``tf.make_ndarray`` are general but slow per call, and the
installed protobuf runtime is the pure-Python one, so every message copy counts. For
the dtypes the serving contract uses (string, float32/64, int32/64) these functions
write and read TensorFlow's own layout directly — ``string_val`` for strings,
``tensor_content`` (packed little-endian values) for numbers, as
``tensorflow/core/framework/tensor.proto`` defines it — and defer everything else
(other dtypes, ``float_val``-style encodings as TF Serving's ``AsProtoField`` writes
them) to the TensorFlow functions.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

_PACKED = {
    types_pb2.DT_FLOAT: np.dtype("<f4"),
    types_pb2.DT_DOUBLE: np.dtype("<f8"),
    types_pb2.DT_INT32: np.dtype("<i4"),
    types_pb2.DT_INT64: np.dtype("<i8"),
}


def fill_tensor_proto(proto: tensor_pb2.TensorProto, array: np.ndarray, dtype: int) -> None:
    """Writes ``array`` into an empty ``proto`` as a tensor of ``dtype``.

    Args:
      proto: an empty TensorProto, e.g. ``request.inputs[alias]`` (filled in place,
        which avoids a message copy).
      array: values; ``object``/bytes arrays for ``DT_STRING``.
      dtype: a ``DataType`` enum value.
    """
    if dtype == types_pb2.DT_STRING:
        proto.dtype = dtype
        for size in array.shape:
            proto.tensor_shape.dim.add().size = size
        proto.string_val.extend(array.reshape(-1).tolist())
    elif dtype in _PACKED:
        proto.dtype = dtype
        for size in array.shape:
            proto.tensor_shape.dim.add().size = size
        proto.tensor_content = np.ascontiguousarray(array, dtype=_PACKED[dtype]).tobytes()
    else:
        proto.CopyFrom(tf.make_tensor_proto(array, dtype=dtype))


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """The NumPy value of a TensorProto (``object`` array of ``bytes`` for strings;
    a string tensor with a shape and no values holds empty strings, as TensorFlow's
    ``Tensor::FromProto`` leaves them).

    Raises:
      ValueError or TypeError: if the proto's values do not match its shape or dtype
        (from ``tf.make_ndarray``).
    """
    shape = [dim.size for dim in proto.tensor_shape.dim]
    size = math.prod(shape)
    if proto.dtype == types_pb2.DT_STRING and not proto.tensor_content:
        if len(proto.string_val) in (0, size):  # none: empty strings, as TensorFlow fills
            result = np.empty(size, dtype=object)
            result[:] = list(proto.string_val) or b""
            return result.reshape(shape)
    elif proto.dtype in _PACKED and proto.tensor_content:
        dtype = _PACKED[proto.dtype]
        if len(proto.tensor_content) == size * dtype.itemsize:
            return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    return tf.make_ndarray(proto)
