"""Tiny raw and transformed example sets (the pipeline's on-disk layout) for tests.

``build(root)`` writes, like the ExampleGen and Transform components would:

* ``root/raw/Split-{train,eval,test}/data.tfrecord.gz``: per-user raw tf.Examples
  (``user_id``, ``<b>_items``; eval/test also ``<b>_heldout``, some ids unknown);
* ``root/transform_output``: the Transform output of ``bvae_tf.preprocessing``
  analyzed on the raw train split;
* ``root/transformed/Split-{train,eval,test}/data.tfrecord.gz``: transformed examples.
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

import bvae_tf  # noqa: F401
from bvae_tf import features, preprocessing

BEHAVIORS = ("purchase", "click")
NUM_USERS = 48
NUM_ITEMS = 30
#: Held-out ids that never occur in train (dropped and counted as unknown).
UNKNOWN_ITEMS = ("unknown-1", "unknown-2")
RAW_SPEC = {
    features.USER_ID: tf.io.VarLenFeature(tf.string),
    **{features.items_key(b): tf.io.VarLenFeature(tf.string) for b in BEHAVIORS},
    **{features.heldout_key(b): tf.io.VarLenFeature(tf.string) for b in BEHAVIORS},
}


def item(i: int) -> str:
    return f"item-{i:03d}"


def _raw_rows(seed: int = 0) -> dict[str, list[dict[str, list[bytes]]]]:
    """Users prefer one of three item blocks; eval/test hold later items of it."""
    rng = np.random.default_rng(seed)
    rows = {split: [] for split in features.SPLITS}
    for u in range(NUM_USERS):
        block = u % 3
        pool = np.arange(block * 10, block * 10 + 10)
        items = {
            b: sorted(rng.choice(pool, size=rng.integers(1, 5), replace=False)) for b in BEHAVIORS
        }
        if u == 0:
            items["click"] = []  # a user without clicks
        user = {features.USER_ID: [f"user-{u}".encode()]}
        user.update(
            {features.items_key(b): [item(i).encode() for i in v] for b, v in items.items()}
        )
        rows[features.TRAIN].append(dict(user))
        for split in (features.EVAL, features.TEST):
            example = dict(user)
            for b in BEHAVIORS:
                free = [i for i in pool if i not in items[b]]
                chosen = sorted(rng.choice(free, size=rng.integers(0, 3), replace=False))
                heldout = [item(i).encode() for i in chosen]
                if u % 7 == 1:
                    heldout.append(UNKNOWN_ITEMS[u % 2].encode())
                example[features.heldout_key(b)] = heldout
            rows[split].append(example)
    return rows


def serialize(row: dict[str, list[bytes]]) -> bytes:
    feature = {
        key: tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        for key, values in row.items()
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write(path: pathlib.Path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for record in records:
            writer.write(record)


@dataclasses.dataclass(frozen=True)
class TinyData:
    root: pathlib.Path
    raw_rows: dict

    @property
    def transform_output(self) -> str:
        return str(self.root / "transform_output")

    def raw_files(self, split: str) -> list[str]:
        return [str(self.root / "raw" / f"Split-{split}" / "data.tfrecord.gz")]

    def transformed_files(self, split: str) -> list[str]:
        return [str(self.root / "transformed" / f"Split-{split}" / "data.tfrecord.gz")]

    def transformed_batch(self, split: str, output: tft.TFTransformOutput) -> dict:
        """Every transformed example of a split as one batch (``trainer.examples_dataset``)."""
        from bvae_tf import trainer

        dataset = trainer.examples_dataset(
            self.transformed_files(split), output.transformed_feature_spec(), batch_size=1000
        )
        return next(iter(dataset))

    @property
    def raw_examples_uri(self) -> str:
        return str(self.root / "raw")

    def serialized(self, split: str) -> list[bytes]:
        return [serialize(r) for r in self.raw_rows[split]]


def build(root: pathlib.Path) -> TinyData:
    """Writes the raw, Transform and transformed outputs under ``root``."""
    rows = _raw_rows()
    for split in features.SPLITS:
        _write(
            root / "raw" / f"Split-{split}" / "data.tfrecord.gz",
            (serialize(r) for r in rows[split]),
        )
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))

    def complete(row):
        return {key: row.get(key, []) for key in RAW_SPEC}

    def fn(inputs):
        return preprocessing.preprocessing_fn(inputs, {"behaviors": list(BEHAVIORS)})

    # TF1-compatible graph, as the pipeline's Transform writes it.
    with tft_beam.Context(temp_dir=str(root / "tft_tmp"), force_tf_compat_v1=True):
        train = [complete(r) for r in rows[features.TRAIN]]
        (transformed_train, transformed_metadata), transform_fn = (
            train,
            metadata,
        ) | tft_beam.AnalyzeAndTransformDataset(fn, output_record_batches=False)
        transformed = {features.TRAIN: list(transformed_train)}
        for split in (features.EVAL, features.TEST):
            data = [complete(r) for r in rows[split]]
            out, _ = ((data, metadata), transform_fn) | tft_beam.TransformDataset()
            transformed[split] = list(out)
        _ = transform_fn | tft_beam.WriteTransformFn(str(root / "transform_output"))
    # Transform also records the raw schema (TFTransformOutput.raw_feature_spec).
    metadata_io.write_metadata(metadata, str(root / "transform_output" / "metadata"))
    coder = tft.coders.ExampleProtoCoder(transformed_metadata.schema)
    for split, instances in transformed.items():
        _write(
            root / "transformed" / f"Split-{split}" / "data.tfrecord.gz",
            (coder.encode(i) for i in instances),
        )
    return TinyData(root, rows)
