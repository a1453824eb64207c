"""Helpers shared by the multi-behavior ExampleGen tests: run Do(), read the splits,
and a plain-Python reference of the default component on the synthetic log."""

import collections
import json
import math
import os

import pytest
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts

from bvae_tf import features
from components import synthetic_logs
from components.multi_behavior_example_gen import accounting, executor

P = features.PURCHASE

IN_MEMORY = ["--direct_running_mode=in_memory"]


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


def reference_examples(events, *, min_item, min_user, fractions, trim, drop_cold, behaviors):
    """Plain-Python rendition of the paper's steps i-v, for cross-checking; the
    timeline runs from the event at rank floor(trim * n) to the one at n - 1 - that."""
    first = {}
    for user, item, behavior, t in events:
        key = (user, item, behavior)
        first[key] = min(first.get(key, t), t)
    buys = collections.Counter(i for (_, i, b) in first if b == P)
    kept = {k: t for k, t in first.items() if buys[k[1]] >= min_item}
    buys = collections.Counter(u for (u, _, b) in kept if b == P)
    kept = {k: t for k, t in kept.items() if buys[k[0]] >= min_user}
    times = sorted(kept.values())
    skip = math.floor(trim * len(times))
    low, high = times[skip], times[len(times) - 1 - skip]
    cut_eval, cut_test = (low + f * (high - low) for f in fractions)
    per_user = collections.defaultdict(
        lambda: {s: collections.defaultdict(list) for s in features.SPLITS}
    )
    for (user, item, behavior), t in sorted(kept.items(), key=lambda kv: (kv[1], kv[0][1])):
        split = "train" if t < cut_eval else "eval" if t < cut_test else "test"
        per_user[user][split][behavior].append(item)
    out = {s: {} for s in features.SPLITS}
    for user, lists in per_user.items():
        train = {features.items_key(b): lists["train"][b] for b in behaviors}
        if any(train.values()):
            out["train"][user] = {"user_id": [user], **train}
        if drop_cold and not lists["train"][P]:
            continue
        for split in ("eval", "test"):
            held = {features.heldout_key(b): lists[split][b] for b in behaviors}
            if any(held.values()):
                out[split][user] = {"user_id": [user], **train, **held}
    return out, (cut_eval, cut_test)


def assert_matches_the_reference(record, splits, config, summary):
    """The default component's output on the log of ``synthetic_logs.write_log(path,
    config)`` (which returned ``summary``) equals :func:`reference_examples`, and its
    accounting record counts every row."""
    label_map = dict(features.DEFAULT_RAW_BEHAVIOR_MAPPING)
    events = [(u, i, label_map[b], t) for u, i, b, t in synthetic_logs.generate_events(config)]
    expected, cuts = reference_examples(
        events,
        min_item=10,
        min_user=5,
        fractions=(0.8, 0.9),
        trim=0.01,
        drop_cold=True,
        behaviors=features.DEFAULT_BEHAVIORS,
    )
    for split in features.SPLITS:
        assert splits[split] == expected[split], split
    assert record["split"]["cut_timestamps"] == pytest.approx(list(cuts))

    # The default filters leave a usable dataset on the default synthetic log.
    assert len(splits["train"]) >= 250
    assert len(splits["eval"]) >= 150 and len(splits["test"]) >= 150

    # Accounting: every generated bad row is rejected, nothing else, and the identity holds.
    assert record["rows_read"] == summary["rows"]
    assert record["rows_rejected"] == {
        **dict.fromkeys(record["rows_rejected"], 0),
        **summary["bad_rows"],
    }
    assert record["blank_lines"] == 1
    assert accounting.identity_gap(record) == 0 and record["identity_holds"]
    for split in features.SPLITS:
        stats = record["splits"][split]
        assert stats["examples"] == len(splits[split])
        key = features.items_key if split == "train" else features.heldout_key
        assert stats["events"] == sum(
            len(ex[key(b)]) for ex in splits[split].values() for b in features.DEFAULT_BEHAVIORS
        )
    assert record["splits"]["train"]["max_timestamp"] < record["splits"]["eval"]["min_timestamp"]
    assert record["splits"]["eval"]["max_timestamp"] < record["splits"]["test"]["min_timestamp"]
