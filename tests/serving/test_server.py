"""Client <-> local server end to end: answers equal the model's, TF Serving's errors."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from bvae_tf import features
from serving.client_requests import serialize_histories
from tests.serving.conftest import MODEL_NAME, NUM_ITEMS, TOP_K, assert_same_ranking

pytestmark = pytest.mark.e2e

BEHAVIORS = (features.PURCHASE, features.CLICK, features.FAVORITE)  # behaviors_of's order
HISTORIES = [
    # 10 of the 12 items bought: only i10 and i11 may be recommended for purchase.
    {features.PURCHASE: [f"i{i}" for i in range(10)]},
    {},  # no history at all
    {features.CLICK: ["i1", "nope", "i2", "i1"]},  # a duplicate and an unknown id
    {features.FAVORITE: ["x", "y"]},  # only unknown ids
]


def _direct(base, version, serialized):
    """Outputs of ``serving_default`` called on the SavedModel itself."""
    loaded = tf.saved_model.load(str(base / MODEL_NAME / str(version)))
    outputs = loaded.signatures[features.SERVING_SIGNATURE](
        examples=tf.constant(serialized, dtype=tf.string)
    )
    return {key: value.numpy() for key, value in outputs.items()}


def _expected_top_k(direct, row, behavior):
    ids = direct[features.item_ids_output(behavior)][row]
    scores = direct[features.scores_output(behavior)][row]
    return [(i.decode(), float(s)) for i, s in zip(ids, scores, strict=True) if np.isfinite(s)]


def test_top_k_equals_the_model_called_directly(exported_model_base, client):
    base, _ = exported_model_base
    direct = _direct(base, 1, serialize_histories(HISTORIES))
    results = client.recommend(HISTORIES)
    assert len(results) == len(HISTORIES)
    for row, result in enumerate(results):
        assert result.model_version == 1
        assert set(result.items) == set(BEHAVIORS)
        for behavior in BEHAVIORS:
            assert_same_ranking(result.items[behavior], _expected_top_k(direct, row, behavior))
    # The user's own purchases are left out: 12 items - 10 bought = 2 left.
    assert [i for i, _ in results[0].items[features.PURCHASE]] in (["i10", "i11"], ["i11", "i10"])
    assert [r.oov_count for r in results] == [0, 0, 1, 2]


def test_ids_with_surrounding_whitespace_are_known(client):
    padded = [{b: [f"  {i}\t" for i in items] for b, items in h.items()} for h in HISTORIES]
    for got, expected in zip(client.recommend(padded), client.recommend(HISTORIES), strict=True):
        assert got.oov_count == expected.oov_count
        for behavior in BEHAVIORS:
            assert_same_ranking(got.items[behavior], expected.items[behavior])


def test_batch_of_one_and_ragged_batches_agree(client):
    one_by_one = client.recommend(HISTORIES, batch_size=1)
    together = client.recommend(HISTORIES, batch_size=len(HISTORIES))
    for a, b in zip(one_by_one, together, strict=True):
        assert a.oov_count == b.oov_count
        for behavior in BEHAVIORS:
            assert_same_ranking(a.items[behavior], b.items[behavior])


def test_empty_history_gets_a_finite_descending_ranking(client):
    (result,) = client.recommend([{}])
    for behavior in BEHAVIORS:
        scores = [s for _, s in result.items[behavior]]
        assert len(scores) == TOP_K
        assert all(np.isfinite(scores))
        assert scores == sorted(scores, reverse=True)


def test_top_k_truncates_and_recommend_examples_matches(client):
    examples = [tf.train.Example.FromString(s) for s in serialize_histories(HISTORIES)]
    full = client.recommend(HISTORIES)
    short = client.recommend_examples(examples, top_k=2)
    for a, b in zip(full, short, strict=True):
        for behavior in BEHAVIORS:
            assert_same_ranking(b.items[behavior], a.items[behavior][:2])


def test_batch_of_zero_returns_empty_outputs(client):
    prediction = client.predict({features.SERVING_INPUT: []})
    assert prediction.outputs[features.OOV_COUNT].shape == (0,)
    for behavior in BEHAVIORS:
        assert prediction.outputs[features.item_ids_output(behavior)].shape == (0, TOP_K)
        assert prediction.outputs[features.scores_output(behavior)].shape == (0, TOP_K)
    assert client.recommend([]) == []


def test_client_side_checks_are_clear_errors(client):
    with pytest.raises(ValueError, match="'cart'"):
        client.recommend([{features.CART: ["i1"]}])
    with pytest.raises(ValueError, match="click"):
        client.recommend([{features.CLICK: [3]}])
    with pytest.raises(ValueError, match="top_k=6"):
        client.recommend([{}], top_k=TOP_K + 1)
    with pytest.raises(ValueError, match="missing \\['examples'\\]"):
        client.predict({"history": [b""]})


def test_metadata_and_status(client):
    defs = client.signature_defs()
    assert {features.SERVING_SIGNATURE, features.TRANSFORM_SIGNATURE} <= set(defs)
    assert client.metadata_version == 1
    assert client.behaviors() == BEHAVIORS
    status = client.get_model_status()
    assert [(s.version, s.state) for s in status.model_version_status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]
    assert status.model_version_status[0].status.error_code == 0


# --- errors exactly as TF Serving answers them ---------------------------------------------
@pytest.fixture
def stubs(local_server):
    channel = grpc.insecure_channel(local_server.target)
    yield (
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )
    channel.close()


def _string_tensor(values, dims=None):
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=values)
    for size in [len(values)] if dims is None else dims:
        proto.tensor_shape.dim.add().size = size
    return proto


def _request(name=MODEL_NAME, inputs=None, **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    inputs = {features.SERVING_INPUT: _string_tensor([b""])} if inputs is None else inputs
    for alias, proto in inputs.items():
        request.inputs[alias].CopyFrom(proto)
    return request


def _error(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    return info.value.code(), info.value.details()


FLOAT_INPUT = tensor_pb2.TensorProto(
    dtype=types_pb2.DT_FLOAT,
    float_val=[1.0],
    tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=[{"size": 1}]),
)


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (_request(name="nope"), "NOT_FOUND", "Servable not found for request: Latest(nope)"),
        (_request(version=7), "NOT_FOUND", "Servable not found for request: Specific(bvae, 7)"),
        (
            _request(signature_name="nosig"),
            "FAILED_PRECONDITION",
            'Serving signature key "nosig" not found.',
        ),
        (
            _request(signature_name="__saved_model_init_op"),
            "FAILED_PRECONDITION",
            'Serving signature key "__saved_model_init_op" not found.',
        ),
        (
            _request(version_label="stable"),
            "INVALID_ARGUMENT",
            "Unrecognized servable version label: stable",
        ),
        (_request(inputs={}), "INVALID_ARGUMENT", "Missing but required: {examples}."),
        (
            _request(
                inputs={
                    features.SERVING_INPUT: _string_tensor([b""]),
                    "extra": _string_tensor([b""]),
                }
            ),
            "INVALID_ARGUMENT",
            "Sent extra: {extra}.",
        ),
        (
            _request(inputs={"history": _string_tensor([b""])}),
            "INVALID_ARGUMENT",
            "input tensor alias not found in signature: history. "
            "Inputs expected to be in the set {examples}.",
        ),
        (
            _request(inputs={features.SERVING_INPUT: FLOAT_INPUT}),
            "INVALID_ARGUMENT",
            "input tensor alias examples: expects dtype string but float is provided",
        ),
        (
            _request(inputs={features.SERVING_INPUT: _string_tensor([b""], dims=[1, 1])}),
            "INVALID_ARGUMENT",
            "input tensor alias examples: shape [1, 1] is not compatible",
        ),
        (
            _request(inputs={features.SERVING_INPUT: _string_tensor([b"", b"", b""], dims=[1])}),
            "INVALID_ARGUMENT",
            "tensor parsing error: examples: ValueError: cannot reshape array of size 3 into "
            "shape (1,)",
        ),
        (
            _request(inputs={features.SERVING_INPUT: _string_tensor([b"not a tf.Example"])}),
            "INVALID_ARGUMENT",
            "Could not parse example input",
        ),
        (
            _request(inputs={features.SERVING_INPUT: _string_tensor([b"\xff\xfe"])}),
            "INVALID_ARGUMENT",
            "Could not parse example input: examples[0] (2 bytes) is not a serialized",
        ),
        (
            # 2 KB declared as 64 rows: TensorFlow would repeat it into 128 KB, more
            # than the fixture's 64 KiB request limit.
            _request(inputs={features.SERVING_INPUT: _string_tensor([b"x" * 2000], dims=[64])}),
            "INVALID_ARGUMENT",
            "lists 1 string values; repeating the last to fill the shape would build 128000 "
            "bytes, more than the 65536 a request may carry",
        ),
    ],
    ids=[
        "unknown-model",
        "unknown-version",
        "unknown-signature",
        "init-op-signature",
        "version-label",
        "missing-input",
        "extra-input",
        "misnamed-input",
        "wrong-dtype",
        "wrong-shape",
        "bad-tensor",
        "bad-example",
        "bad-example-not-utf8",
        "string-values-fewer-than-the-shape",
    ],
)
def test_predict_errors(stubs, request_, code, message):
    predictions, _ = stubs
    got_code, details = _error(predictions.Predict, request_)
    assert got_code.name == code
    assert message in details


def test_a_string_tensor_with_a_shape_and_no_values_holds_empty_examples(stubs):
    """TensorFlow fills a string tensor's missing values with empty strings: three
    empty histories, answered as three ``b""`` rows are."""
    predictions, _ = stubs
    empty = predictions.Predict(_request(inputs={features.SERVING_INPUT: _string_tensor([], [3])}))
    listed = predictions.Predict(
        _request(inputs={features.SERVING_INPUT: _string_tensor([b""] * 3)})
    )
    assert empty.outputs == listed.outputs
    assert list(empty.outputs[features.OOV_COUNT].tensor_shape.dim) == list(
        listed.outputs[features.OOV_COUNT].tensor_shape.dim
    )


def test_output_filter(stubs):
    predictions, _ = stubs
    request = _request()
    request.output_filter.append(features.OOV_COUNT)
    response = predictions.Predict(request, timeout=10)
    assert set(response.outputs) == {features.OOV_COUNT}
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == features.SERVING_SIGNATURE
    request.output_filter.append("nope")
    code, details = _error(predictions.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: nope" in details
    request.output_filter[-1] = features.OOV_COUNT
    code, details = _error(predictions.Predict, request)
    assert details == "duplicate output tensor alias: oov_count"


def test_missing_model_spec_and_oversized_request(stubs):
    predictions, _ = stubs
    code, details = _error(predictions.Predict, predict_pb2.PredictRequest())
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    big = _request(inputs={features.SERVING_INPUT: _string_tensor([b"x" * 100_000])})
    code, _ = _error(predictions.Predict, big)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_metadata_errors(stubs):
    predictions, _ = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL_NAME
    code, details = _error(predictions.GetModelMetadata, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "GetModelMetadataRequest must specify at least one metadata_field"
    request.metadata_field.append("labels")
    code, details = _error(predictions.GetModelMetadata, request)
    assert details == "Metadata field labels is not supported"
    request.metadata_field[:] = ["signature_def"]
    request.model_spec.name = "nope"
    code, details = _error(predictions.GetModelMetadata, request)
    assert code == grpc.StatusCode.NOT_FOUND


def test_status_errors(stubs):
    _, models = stubs
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    code, details = _error(models.GetModelStatus, request)
    assert (code, details) == (
        grpc.StatusCode.NOT_FOUND,
        "Could not find any versions of model nope",
    )
    request.model_spec.name = MODEL_NAME
    request.model_spec.version.value = 9
    code, details = _error(models.GetModelStatus, request)
    assert (code, details) == (grpc.StatusCode.NOT_FOUND, "Could not find version 9 of model bvae")
    request.model_spec.ClearField("version")
    request.model_spec.version_label = "stable"  # none configured: as Predict answers
    code, details = _error(models.GetModelStatus, request)
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: stable",
    )


def test_a_bad_request_in_a_batch_fails_alone(local_server, client):
    """Concurrent good and malformed requests: batching must not spread the failure."""
    import concurrent.futures

    good = serialize_histories(HISTORIES[:1])
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(local_server.target)
    )
    bad = _request(inputs={features.SERVING_INPUT: _string_tensor([b"\xff\xfe"])})
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        goods = [pool.submit(client.predict, {features.SERVING_INPUT: good}) for _ in range(12)]
        bads = [pool.submit(predictions.Predict, bad, timeout=10) for _ in range(4)]
        assert all(f.result().model_version == 1 for f in goods)
        for future in bads:
            with pytest.raises(grpc.RpcError):
                future.result()


# --- REST ----------------------------------------------------------------------------------
def _rest(server, path, body=None):
    url = f"http://127.0.0.1:{server.rest_port}{path}"
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_rest_api(local_server, client):
    status, body = _rest(local_server, f"/v1/models/{MODEL_NAME}")
    assert status == 200
    assert body["model_version_status"][0]["version"] == "1"
    assert body["model_version_status"][0]["state"] == "AVAILABLE"

    serialized = serialize_histories(HISTORIES)
    instances = [{"b64": base64.b64encode(s).decode()} for s in serialized]
    status, body = _rest(local_server, f"/v1/models/{MODEL_NAME}:predict", {"instances": instances})
    assert status == 200
    grpc_results = client.recommend(HISTORIES)
    for row, expected in zip(body["predictions"], grpc_results, strict=True):
        assert row[features.OOV_COUNT] == expected.oov_count
        for behavior in BEHAVIORS:
            got = [
                (i, s)
                for i, s in zip(
                    row[features.item_ids_output(behavior)],
                    row[features.scores_output(behavior)],
                    strict=True,
                )
                if s != float("-inf")
            ]
            assert_same_ranking(got, expected.items[behavior])

    status, body = _rest(
        local_server,
        f"/v1/models/{MODEL_NAME}/versions/1:predict",
        {"inputs": {features.SERVING_INPUT: instances[:2]}},
    )
    assert status == 200
    assert len(body["outputs"][features.OOV_COUNT]) == 2

    status, body = _rest(local_server, f"/v1/models/{MODEL_NAME}/metadata")
    assert status == 200
    assert features.SERVING_SIGNATURE in body["metadata"]["signature_def"]["signatureDef"]

    # A version label: no labels are configured, so status refuses it as metadata and
    # predict do (it is not the status of every version).
    for path in ("", "/metadata"):
        status, body = _rest(local_server, f"/v1/models/{MODEL_NAME}/labels/stable{path}")
        assert (status, body) == (400, {"error": "Unrecognized servable version label: stable"})

    status, body = _rest(local_server, "/v1/models/nope:predict", {"instances": instances})
    assert (status, body) == (404, {"error": "Servable not found for request: Latest(nope)"})
    status, body = _rest(local_server, f"/v1/models/{MODEL_NAME}:predict", {"rows": []})
    assert status == 400
    assert "instances" in body["error"]
    # The init op is in the metadata (as TF Serving lists it) but no signature to call:
    # refused as gRPC refuses it, whatever the body (it used to fail with HTTP 500).
    status, body = _rest(local_server, f"/v1/models/{MODEL_NAME}/metadata")
    assert "__saved_model_init_op" in body["metadata"]["signature_def"]["signatureDef"]
    for rows in (instances[:1], [], ["x"]):
        request = {"signature_name": "__saved_model_init_op", "instances": rows}
        status, body = _rest(local_server, f"/v1/models/{MODEL_NAME}:predict", request)
        assert (status, body) == (
            400,
            {"error": 'Serving signature key "__saved_model_init_op" not found.'},
        )


def test_num_items_fixture_matches_the_vocabulary(client):
    """Guards the expectations above: the stand-in vocabulary is i0 … i11."""
    ids = {i for r in client.recommend([{}]) for items in r.items.values() for i, _ in items}
    assert ids <= {f"i{i}" for i in range(NUM_ITEMS)}
