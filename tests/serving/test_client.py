"""Request building, casting against the signature, TensorProto conversion, top-K parsing."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from bvae_tf import features
from serving import signatures, tensor_protos
from serving.client import ServingClient
from serving.client_requests import (
    build_history_request,
    build_predict_request,
    history_example,
    normalize_item_id,
    recommendations_from_outputs,
)

pytestmark = pytest.mark.unit


def _signature(inputs, outputs=None):
    """A SignatureDef from ``{alias: (DataType, dims)}`` (-1: any size)."""
    signature = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for target, spec in ((signature.inputs, inputs), (signature.outputs, outputs or {})):
        for alias, (dtype, dims) in spec.items():
            info = target[alias]
            info.name = f"{alias}:0"
            info.dtype = dtype
            for size in dims:
                info.tensor_shape.dim.add().size = size
    return signature


SERVING = _signature(
    {features.SERVING_INPUT: (types_pb2.DT_STRING, [-1])},
    {
        **{features.item_ids_output(b): (types_pb2.DT_STRING, [-1, 3]) for b in ("click", "buy")},
        **{features.scores_output(b): (types_pb2.DT_FLOAT, [-1, 3]) for b in ("click", "buy")},
        features.OOV_COUNT: (types_pb2.DT_INT64, [-1]),
        "click_extra": (types_pb2.DT_STRING, [-1]),  # no matching scores: not a behavior
    },
)


def test_behaviors_come_from_the_outputs():
    # click is a standard behavior (features.DEFAULT_BEHAVIORS): it comes first.
    assert signatures.behaviors_of(SERVING) == ("click", "buy")


def test_history_example_and_request():
    example = history_example({"click": ["a", b"b"], "buy": []})
    feature = example.features.feature
    assert list(feature[features.items_key("click")].bytes_list.value) == [b"a", b"b"]
    assert list(feature[features.items_key("buy")].bytes_list.value) == []
    request = build_history_request(
        [{"click": ["a"]}, {}], model_name="bvae", signature=SERVING, version=3
    )
    assert request.model_spec.name == "bvae"
    assert request.model_spec.version.value == 3
    assert request.model_spec.signature_name == features.SERVING_SIGNATURE
    examples = tf.make_ndarray(request.inputs[features.SERVING_INPUT])
    assert examples.shape == (2,)
    parsed = tf.io.parse_example(
        examples, {features.items_key("click"): tf.io.VarLenFeature(tf.string)}
    )
    assert tf.sparse.to_dense(parsed[features.items_key("click")]).numpy().tolist() == [
        [b"a"],
        [b""],
    ]


def test_item_ids_are_stripped_as_the_example_gen_does():
    # ExampleGen parsing: field.strip() of the UTF-8 text.
    example = history_example(
        {"click": ["  i17  ", b"\ti2\n", "\u3000i3", "   ", b"\xffi4 "], "buy": [" "]}
    )
    feature = example.features.feature
    assert list(feature[features.items_key("click")].bytes_list.value) == [
        b"i17",
        b"i2",
        b"i3",  # U+3000 (ideographic space) is whitespace to str.strip
        b"",  # only whitespace: empty, which the model counts unknown
        b"\xffi4",  # not UTF-8: only ASCII whitespace goes
    ]
    assert list(feature[features.items_key("buy")].bytes_list.value) == [b""]
    assert normalize_item_id(" a b ") == b"a b"  # inner whitespace is part of the id


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ({"cart": ["a"]}, "'cart'"),
        ({"click": [1]}, "history\\['click'\\] holds 1"),
        ({"click": "abc"}, "list of item ids, got the string 'abc'"),
        # A JSON object would give its keys as ids; a number is no list either.
        ({"click": {"i17": 1}}, "list of item ids, got dict"),
        ({"click": 17}, "list of item ids, got int 17"),
    ],
    ids=["unknown-behavior", "number-id", "string", "object", "number"],
)
def test_bad_histories_are_clear_errors(history, message):
    with pytest.raises(ValueError, match=message):
        build_history_request([history], model_name="bvae", signature=SERVING)


NUMERIC = _signature(
    {
        "weights": (types_pb2.DT_FLOAT, [-1, 2]),
        "counts": (types_pb2.DT_INT32, [-1]),
        "names": (types_pb2.DT_STRING, [-1]),
    }
)


def test_inputs_are_cast_to_the_signature_dtypes():
    request = build_predict_request(
        {
            "weights": np.array([[0.5, 1.25]], dtype=np.float64),
            "counts": np.array([7], dtype=np.int64),
            "names": ["é"],
        },
        model_name="m",
        signature=NUMERIC,
    )
    weights = request.inputs["weights"]
    assert weights.dtype == types_pb2.DT_FLOAT
    assert tf.make_ndarray(weights).dtype == np.float32
    assert tf.make_ndarray(weights).tolist() == [[0.5, 1.25]]
    assert request.inputs["counts"].dtype == types_pb2.DT_INT32
    assert tf.make_ndarray(request.inputs["counts"]).tolist() == [7]
    assert tf.make_ndarray(request.inputs["names"]).tolist() == ["é".encode()]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"weights": [[1.0, 2.0]], "counts": [1]}, "missing \\['names'\\]"),
        (
            {"weights": [[1.0, 2.0]], "counts": [1], "names": ["a"], "extra": [1]},
            "not in the signature \\['extra'\\]",
        ),
        ({"weights": [[1.0, 2.0]], "counts": [1.5], "names": ["a"]}, "input 'counts'.*int32"),
        ({"weights": [[1.0, 2.0]], "counts": [2**40], "names": ["a"]}, "'counts'.*out of the"),
        ({"weights": [[1.0, 2.0, 3.0]], "counts": [1], "names": ["a"]}, "'weights' has shape"),
        ({"weights": [["a", "b"]], "counts": [1], "names": ["a"]}, "input 'weights'"),
        ({"weights": [[1.0, 2.0]], "counts": [1], "names": [3]}, "input 'names'"),
        ({"weights": [[1e300, 2.0]], "counts": [1], "names": ["a"]}, "'weights'.*out of the"),
    ],
    ids=[
        "missing",
        "extra",
        "float-to-int",
        "int-overflow",
        "shape",
        "string-to-float",
        "number-to-string",
        "float-overflow",
    ],
)
def test_inputs_that_do_not_fit_are_clear_errors(inputs, message):
    with pytest.raises(ValueError, match=message):
        build_predict_request(inputs, model_name="m", signature=NUMERIC)


def test_unknown_output_filter_is_an_error():
    with pytest.raises(ValueError, match="output_filter names \\['nope'\\]"):
        build_predict_request(
            {features.SERVING_INPUT: [b""]},
            model_name="m",
            signature=SERVING,
            output_filter=["nope"],
        )


@pytest.mark.parametrize(
    "array",
    [
        np.array([[b"a", b""], [b"\xff", b"long" * 50]], dtype=object),
        np.zeros((0, 3), dtype=object),
        np.array([[1.5, -2.0]], dtype=np.float32),
        np.array([1e-300, 3.0]),
        np.array([[1, -(2**31)]], dtype=np.int32),
        np.array([2**40, -1], dtype=np.int64),
        np.array(7, dtype=np.int64),
        np.array([True, False]),
    ],
    ids=["string", "empty-string", "float32", "float64", "int32", "int64", "scalar", "bool"],
)
def test_tensor_protos_round_trip_like_tensorflow(array):
    dtype = tf.dtypes.as_dtype(tf.string if array.dtype == object else array.dtype)
    proto = tensor_pb2.TensorProto()
    tensor_protos.fill_tensor_proto(proto, array, dtype.as_datatype_enum)
    assert proto.dtype == dtype.as_datatype_enum
    expected = tf.make_ndarray(tf.make_tensor_proto(array, dtype=dtype))
    np.testing.assert_array_equal(tf.make_ndarray(proto), expected)
    np.testing.assert_array_equal(tensor_protos.to_ndarray(proto), expected)
    assert tensor_protos.to_ndarray(proto).shape == array.shape


def test_to_ndarray_reads_the_field_encoding_tf_serving_answers_with():
    """TF Serving writes ``float_val``/``int64_val`` (``AsProtoField``), not tensor_content."""
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[0.5, 0.25])
    proto.tensor_shape.dim.add().size = 2
    assert tensor_protos.to_ndarray(proto).tolist() == [0.5, 0.25]
    repeated = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, int64_val=[3])
    repeated.tensor_shape.dim.add().size = 3
    assert tensor_protos.to_ndarray(repeated).tolist() == [3, 3, 3]  # TF repeats the last value


def test_recommendations_leave_out_excluded_items():
    inf = -np.inf
    outputs = {
        features.item_ids_output("click"): np.array([[b"a", b"b", b"c"], [b"c", b"a", b"b"]]),
        features.scores_output("click"): np.array([[3.0, 2.0, inf], [1.0, 0.5, 0.25]], np.float32),
        features.item_ids_output("buy"): np.array([[b"x", b"y", b"z"], [b"y", b"z", b"x"]]),
        features.scores_output("buy"): np.array([[inf, inf, inf], [2.0, 1.0, 0.0]], np.float32),
        features.OOV_COUNT: np.array([0, 4]),
    }
    first, second = recommendations_from_outputs(outputs, ("buy", "click"), model_version=5)
    assert first.items == {"buy": (), "click": (("a", 3.0), ("b", 2.0))}
    assert (first.oov_count, first.model_version) == (0, 5)
    assert second.items["click"] == (("c", 1.0), ("a", 0.5), ("b", 0.25))
    assert second.oov_count == 4
    assert (first.unknown_feature_count, second.unknown_feature_count) == (0, 0)  # older export
    counted = {**outputs, features.UNKNOWN_FEATURE_COUNT: np.array([2, 0])}
    first, _ = recommendations_from_outputs(counted, ("buy",), model_version=5)
    assert first.unknown_feature_count == 2
    (_, top1) = recommendations_from_outputs(outputs, ("click",), model_version=5, top_k=1)
    assert top1.items == {"click": (("c", 1.0),)}
    with pytest.raises(ValueError, match="top_k=4 exceeds the 3"):
        recommendations_from_outputs(outputs, ("click",), model_version=5, top_k=4)
    with pytest.raises(ValueError, match="cart_item_ids"):
        recommendations_from_outputs(outputs, ("cart",), model_version=5)


class _Failure(grpc.RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return self._code.name


@pytest.mark.parametrize(
    ("code", "retried"),
    [
        (grpc.StatusCode.UNAVAILABLE, True),
        (grpc.StatusCode.CANCELLED, True),  # a stopping server dropped the call
        (grpc.StatusCode.INVALID_ARGUMENT, False),
        (grpc.StatusCode.DEADLINE_EXCEEDED, False),
    ],
)
def test_which_failures_are_retried(code, retried):
    calls = []

    def rpc(request, timeout):
        calls.append(request)
        if len(calls) == 1:
            raise _Failure(code)
        return "answer"

    with ServingClient("127.0.0.1:1", model_name="bvae", initial_backoff_s=0.001) as client:
        if retried:
            assert client._call(rpc, "request") == "answer"
            assert (len(calls), client.retries) == (2, 1)
        else:
            with pytest.raises(grpc.RpcError) as info:
                client._call(rpc, "request")
            assert info.value.code() == code
            assert (len(calls), client.retries) == (1, 0)


def test_the_init_op_listed_in_the_metadata_is_no_signature_to_call():
    client = ServingClient("127.0.0.1:1", model_name="m", signature_name="__saved_model_init_op")
    try:
        client._signature_defs = {  # as GetModelMetadata lists them (no server needed)
            "__saved_model_init_op": meta_graph_pb2.SignatureDef(),
            features.SERVING_SIGNATURE: SERVING,
        }
        with pytest.raises(ValueError) as info:
            client.signature()
        assert str(info.value) == (
            "model 'm' has no signature '__saved_model_init_op' to call; it has "
            f"['{features.SERVING_SIGNATURE}']"
        )
        client.signature_name = features.SERVING_SIGNATURE
        assert client.signature() is SERVING
    finally:
        client.close()
