"""TF Serving warm-up file written into an export with the client's request builder."""

from __future__ import annotations

import shutil

import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, prediction_log_pb2

from bvae_tf import export as warmup
from bvae_tf import features
from tests.serving.conftest import MODEL_NAME

pytestmark = pytest.mark.unit


@pytest.fixture
def export_dir(model_template, tmp_path):
    path = tmp_path / "export"
    shutil.copytree(model_template / "seed1", path)
    warmup.warmup_file(path).unlink()
    return path


def _requests(path):
    return [
        prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()
    ]


def test_default_warmup_requests_run_on_the_model(export_dir):
    path = warmup.write_warmup_requests(export_dir, model_name=MODEL_NAME)
    assert path == export_dir / "assets.extra" / "tf_serving_warmup_requests"
    requests = _requests(path)
    assert [len(r.inputs[features.SERVING_INPUT].string_val) for r in requests] == [1, 1, 2]
    serve = tf.saved_model.load(str(export_dir)).signatures[features.SERVING_SIGNATURE]
    for request in requests:
        assert request.model_spec.name == MODEL_NAME
        assert request.model_spec.signature_name == features.SERVING_SIGNATURE
        outputs = serve(examples=tf.make_ndarray(request.inputs[features.SERVING_INPUT]))
        assert outputs[features.OOV_COUNT].shape[0] == len(
            request.inputs[features.SERVING_INPUT].string_val
        )
    # The second request holds one unknown id per behavior (3 behaviors).
    second = serve(examples=tf.make_ndarray(requests[1].inputs[features.SERVING_INPUT]))
    assert second[features.OOV_COUNT].numpy().tolist() == [3]


def test_given_histories_are_written(export_dir):
    histories = [{features.CLICK: ["i1", "i2"]}, {features.PURCHASE: ["i3"]}, {}]
    requests = _requests(
        warmup.write_warmup_requests(export_dir, model_name=MODEL_NAME, histories=histories)
    )
    assert len(requests) == 4
    assert len(requests[-1].inputs[features.SERVING_INPUT].string_val) == 3
    example = tf.train.Example.FromString(requests[0].inputs[features.SERVING_INPUT].string_val[0])
    assert list(example.features.feature[features.items_key(features.CLICK)].bytes_list.value) == [
        b"i1",
        b"i2",
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"histories": [{"cart": ["i1"]}]}, "'cart'"),
        ({"histories": []}, "1 to 999 users"),
        ({"histories": [{}] * 1000}, "1 to 999 users"),
    ],
)
def test_bad_arguments_are_clear_errors(export_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        warmup.write_warmup_requests(export_dir, model_name=MODEL_NAME, **kwargs)


def test_a_folder_without_an_export_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="export it again"):
        warmup.write_warmup_requests(tmp_path, model_name=MODEL_NAME)


def _failed_load_status(base):
    """The ``ModelVersionStatus`` of the one version under ``base``, which must fail."""
    from serving.model_server import ModelServer

    model_server = ModelServer(base, MODEL_NAME, poll_wait_seconds=0)
    model_server.start()
    try:
        assert model_server.current is None
        return model_server.get_model_status(
            get_model_status_pb2.GetModelStatusRequest(model_spec={"name": MODEL_NAME})
        ).model_version_status[0]
    finally:
        model_server.stop()


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b"this is not a TFRecord file",
            ": corrupted record at 0 (Is this even a TFRecord file?);",
        ),
        (None, "record 1 does not parse as a PredictionLog"),
    ],
    ids=["not-tfrecord", "not-prediction-log"],
)
def test_a_corrupt_warmup_file_is_named_in_the_load_error(
    tmp_path, model_template, content, reason
):
    from tests.serving.conftest import publish

    version = publish(model_template, tmp_path, 4)
    path = warmup.warmup_file(version)
    if content is None:  # a valid TFRecord file whose record is no PredictionLog
        with tf.io.TFRecordWriter(str(path)) as writer:
            writer.write(b"\xff\xff\xff\xff")
    else:
        path.write_bytes(content)
    status = _failed_load_status(tmp_path)
    assert status.version == 4 and status.state == get_model_status_pb2.ModelVersionStatus.END
    error = status.status.error_message
    assert (
        "failed: assets.extra/tf_serving_warmup_requests of version 4 of model bvae "
        f"({path}) is not a valid TFRecord file of PredictionLog records: " in error
    ), error
    assert reason in error, error


def test_a_warmup_request_that_fails_is_named_with_its_file(tmp_path, model_template):
    from tensorflow_serving.apis import predict_pb2

    from tests.serving.conftest import publish

    version = publish(model_template, tmp_path, 4)
    path = warmup.warmup_file(version)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "nope"
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(request)
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(log.SerializeToString())
    status = _failed_load_status(tmp_path)
    error = status.status.error_message
    assert "warm-up request 1 of assets.extra/tf_serving_warmup_requests of version 4" in error
    assert 'Serving signature key "nope" not found' in error, error
