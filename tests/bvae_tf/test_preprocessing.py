"""Tests for the Transform preprocessing_fn: one vocabulary, OOV dropped and counted."""

import pathlib

import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

import bvae_tf  # noqa: F401
from bvae_tf import features, preprocessing

pytestmark = pytest.mark.unit

BEHAVIORS = ("purchase", "click")
RAW_SPEC = {
    features.USER_ID: tf.io.FixedLenFeature([], tf.string),
    **{features.items_key(b): tf.io.VarLenFeature(tf.string) for b in BEHAVIORS},
    **{features.heldout_key(b): tf.io.VarLenFeature(tf.string) for b in BEHAVIORS},
}

# Train items: a appears 4x, b 2x, c 1x (u3 has no click history at all).
TRAIN = [
    {"user_id": b"u1", "purchase_items": [b"a"], "click_items": [b"a", b"b"],
     "purchase_heldout": [], "click_heldout": []},
    {"user_id": b"u2", "purchase_items": [b"b"], "click_items": [b"a", b"c"],
     "purchase_heldout": [], "click_heldout": []},
    {"user_id": b"u3", "purchase_items": [b"a"], "click_items": [],
     "purchase_heldout": [], "click_heldout": []},
]  # fmt: skip
# Eval rows: "z" and "y" were never seen in train.
EVAL = [
    {"user_id": b"u1", "purchase_items": [b"a", b"z"], "click_items": [b"y", b"b", b"z"],
     "purchase_heldout": [b"c", b"y"], "click_heldout": [b"z"]},
]  # fmt: skip


def _analyze_and_transform(tmp_path: pathlib.Path, custom_config=None):
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))

    def fn(inputs):
        return preprocessing.preprocessing_fn(inputs, custom_config)

    with tft_beam.Context(temp_dir=str(tmp_path / "tft_tmp"), force_tf_compat_v1=False):
        (_, _), transform_fn = (TRAIN, metadata) | tft_beam.AnalyzeAndTransformDataset(
            fn, output_record_batches=False
        )
        transformed_eval, _ = ((EVAL, metadata), transform_fn) | tft_beam.TransformDataset()
        output_dir = str(tmp_path / "transform_output")
        _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    return tft.TFTransformOutput(output_dir), list(transformed_eval)


@pytest.fixture(scope="module")
def default_transform(tmp_path_factory):
    return _analyze_and_transform(tmp_path_factory.mktemp("default"))


def test_one_vocabulary_over_all_behaviors_oov_dropped_and_counted(default_transform):
    output, rows = default_transform
    vocab = output.vocabulary_by_name(features.ITEM_VOCABULARY)
    # Frequencies a=4, b=2, c=1 -> most frequent first.
    assert vocab == [b"a", b"b", b"c"]
    (row,) = rows
    assert list(row["purchase_items"]) == [0]  # a; z dropped
    assert row["purchase_items_oov"] == 1
    assert list(row["click_items"]) == [1]  # b; y and z dropped
    assert row["click_items_oov"] == 2
    assert list(row["purchase_heldout"]) == [2]  # c; y dropped
    assert row["purchase_heldout_oov"] == 1
    assert list(row["click_heldout"]) == []
    assert row["click_heldout_oov"] == 1
    spec = output.transformed_feature_spec()
    assert spec["purchase_items"] == tf.io.VarLenFeature(tf.int64)
    assert spec["click_items_oov"] == tf.io.FixedLenFeature([], tf.int64)


def test_frequency_threshold_moves_rare_items_out_of_vocabulary(tmp_path):
    output, rows = _analyze_and_transform(
        tmp_path, {"vocab_frequency_threshold": 2, "behaviors": list(BEHAVIORS)}
    )
    assert output.vocabulary_by_name(features.ITEM_VOCABULARY) == [b"a", b"b"]
    (row,) = rows
    assert list(row["purchase_heldout"]) == []  # c is now unknown
    assert row["purchase_heldout_oov"] == 2


def test_serving_path_needs_only_items_features(default_transform):
    output, _ = default_transform
    layer = output.transform_features_layer()
    raw = tf.io.parse_example(
        [
            tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "purchase_items": tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[b"c", b"q", b"a"])
                        ),
                        "click_items": tf.train.Feature(bytes_list=tf.train.BytesList()),
                    }
                )
            ).SerializeToString()
        ],
        {features.items_key(b): tf.io.VarLenFeature(tf.string) for b in BEHAVIORS},
    )
    out = layer(raw)
    assert set(out) == {"purchase_items", "purchase_items_oov", "click_items", "click_items_oov"}
    assert tf.sparse.to_dense(out["purchase_items"]).numpy().tolist() == [[2, 0]]
    assert out["purchase_items_oov"].numpy().tolist() == [1]
    assert out["click_items"].values.numpy().tolist() == []


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"vocab_frequency_threshold": 0}, "vocab_frequency_threshold"),
        ({"vocab_frequency_threshold": 1.5}, "vocab_frequency_threshold"),
        ({"behaviors": ["purchase", "cart"]}, "cart"),
    ],
)
def test_bad_config_is_a_clear_error(config, message):
    inputs = {features.items_key(b): tf.sparse.from_dense(tf.constant([[b"a"]])) for b in BEHAVIORS}
    with pytest.raises(ValueError, match=message):
        preprocessing.preprocessing_fn(inputs, config)
