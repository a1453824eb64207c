"""The local server serves a model exported by ``bvae_tf.trainer`` like the stand-in."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from bvae_tf import export, features, trainer
from bvae_tf import model as model_lib
from bvae_tf.export import write_warmup_requests
from serving.client import ServingClient
from serving.client_requests import serialize_histories
from serving.server import LocalServer
from serving.versions import BatchingOptions
from tests.pipeline import tiny
from tests.serving.conftest import assert_same_ranking

pytestmark = pytest.mark.e2e

TOP_K = 4


@pytest.fixture(scope="module")
def real_base(tmp_path_factory, tiny_pipeline_data):
    """``<base>/bvae/1``: a BVAE trained one epoch on the tiny pipeline data, exported."""
    data = tiny_pipeline_data
    output = tft.TFTransformOutput(data.transform_output)
    num_items = output.vocabulary_size_by_name(features.ITEM_VOCABULARY)
    model = model_lib.build_model(
        model_lib.BVAEConfig(behaviors=tiny.BEHAVIORS, num_items=num_items, latent_dim=8)
    )
    dataset = trainer.examples_dataset(
        data.transformed_files(features.TRAIN), output.transformed_feature_spec(), batch_size=16
    )
    model.fit(dataset, epochs=1, verbose=0)
    base = tmp_path_factory.mktemp("models")
    staging = base / "bvae" / ".tmp-1"
    export.export_serving_model(model, output, str(staging), top_k=TOP_K)
    write_warmup_requests(staging, model_name="bvae")
    staging.rename(base / "bvae" / "1")
    return base, data


def test_real_export_is_served_like_the_model(real_base):
    base, data = real_base
    histories = [
        {b: [tiny.item(i) for i in range(3)] for b in tiny.BEHAVIORS},
        {},
        {tiny.BEHAVIORS[0]: [tiny.item(5), "never-seen"]},
    ]
    serialized = serialize_histories(histories)
    serve = tf.saved_model.load(str(base / "bvae" / "1")).signatures[features.SERVING_SIGNATURE]
    direct = {k: v.numpy() for k, v in serve(examples=tf.constant(serialized)).items()}
    with (
        LocalServer(base, "bvae", port=0, batching=BatchingOptions(max_batch_size=8)) as server,
        ServingClient(server.target, model_name="bvae") as client,
    ):
        assert client.behaviors() == tuple(
            b for b in features.DEFAULT_BEHAVIORS if b in tiny.BEHAVIORS
        )
        results = client.recommend(histories, batch_size=2)
        for row, result in enumerate(results):
            for b in tiny.BEHAVIORS:
                ids = direct[features.item_ids_output(b)][row]
                scores = direct[features.scores_output(b)][row]
                expected = [
                    (i.decode(), float(s))
                    for i, s in zip(ids, scores, strict=True)
                    if s != float("-inf")
                ]
                assert_same_ranking(result.items[b], expected)
                assert len(result.items[b]) == TOP_K  # 30 items: none excluded past K
        own = {tiny.item(i) for i in range(3)}
        assert all(not own & {i for i, _ in results[0].items[b]} for b in tiny.BEHAVIORS)
        assert [r.oov_count for r in results] == [0, 0, 1]
        assert client.recommend_examples(data.serialized(features.EVAL)[:1])[0].model_version == 1
        assert client.predict({features.SERVING_INPUT: []}).outputs[features.OOV_COUNT].shape == (
            0,
        )
        # Bytes parse_example takes as an empty example but that are no tf.Example: every
        # signature refuses them alike, naming the row (serving_default's decode_proto
        # refused them, the others answered for an empty history).
        for signature in (
            features.SERVING_SIGNATURE,
            features.TRANSFORM_SIGNATURE,
            features.RANK_SIGNATURE,
        ):
            with (
                ServingClient(server.target, model_name="bvae", signature_name=signature) as other,
                pytest.raises(grpc.RpcError) as info,
            ):
                other.predict({features.SERVING_INPUT: [serialized[0], b"\x00\x00"]})
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, signature
            assert info.value.details().startswith(
                "Could not parse example input: examples[1] (2 bytes) is not a serialized "
                "tf.Example"
            ), info.value.details()


def test_padded_signatures_answer_a_split_call_as_the_model_does(real_base):
    """``transform_features`` (rows padded to the longest) through a server that splits
    calls into 8-row slices: users of different history lengths in one call."""
    base, _ = real_base
    b = tiny.BEHAVIORS[0]
    histories = [{b: [tiny.item(0)]}] * 8 + [{b: [tiny.item(i) for i in range(3)]}] * 4
    serialized = serialize_histories(histories)
    model = tf.saved_model.load(str(base / "bvae" / "1"))
    direct = model.signatures[features.TRANSFORM_SIGNATURE](examples=tf.constant(serialized))
    with (
        LocalServer(base, "bvae", port=0, batching=BatchingOptions(max_batch_size=8)) as server,
        ServingClient(
            server.target, model_name="bvae", signature_name=features.TRANSFORM_SIGNATURE
        ) as client,
    ):
        outputs = client.predict({features.SERVING_INPUT: serialized}).outputs
    assert set(outputs) == set(direct)
    for key, value in direct.items():
        np.testing.assert_array_equal(outputs[key], value.numpy(), err_msg=key)
    assert outputs[features.items_key(b)].shape == (12, 3)
