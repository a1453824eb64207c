"""Helpers shared by the multi-behavior ExampleGen tests: run Do(), read the splits."""

import json
import os

import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts

from bvae_tf import features
from components.multi_behavior_example_gen import accounting, executor

IN_MEMORY = ["--direct_running_mode=in_memory"]
MULTI_PROCESSING = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def run_executor(out_dir, beam_args=IN_MEMORY, **exec_properties):
    """Runs Do(); returns (accounting record, {split: {user: features}}, artifact)."""
    examples = standard_artifacts.Examples()
    examples.uri = str(out_dir)
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_args)
    executor.Executor(context).Do({}, {"examples": [examples]}, exec_properties)
    with open(os.path.join(out_dir, accounting.ACCOUNTING_FILE)) as f:
        record = json.load(f)
    return record, read_splits(out_dir), examples


def read_splits(out_dir):
    splits = {}
    for split in features.SPLITS:
        folder = os.path.join(out_dir, f"Split-{split}")
        users = {}
        for name in sorted(os.listdir(folder)):
            assert name.startswith("data_tfrecord-") and name.endswith(".gz")
            for raw in tf.data.TFRecordDataset(os.path.join(folder, name), "GZIP"):
                feats = tf.train.Example.FromString(raw.numpy()).features.feature
                decoded = {k: [v.decode() for v in f.bytes_list.value] for k, f in feats.items()}
                user = decoded["user_id"][0]
                assert user not in users, f"two {split} examples for {user}"
                users[user] = decoded
        splits[split] = users
    return splits
