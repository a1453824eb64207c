"""Real-data checks on JD (../shared/data/bvae): the time split reproduces the release."""

import collections

import pytest

from bvae_tf import features
from tests.components.example_gen_testing import run_executor

pytestmark = pytest.mark.slow

#: Released JD cut points (unix seconds): eval starts, test starts.
JD_CUTS = [1522454400.0, 1523145600.0]


def released_triples(jd_dir):
    """``{split: {(user, item, behavior)}}`` from the released ``<prefix>_<suffix>`` files."""
    triples = collections.defaultdict(set)
    for prefix, behavior in features.RELEASE_BEHAVIOR_MAPPING.items():
        for suffix, split in features.RELEASE_SPLIT_MAPPING.items():
            path = jd_dir / f"{prefix}_{suffix}"
            for line in path.read_text().splitlines():
                user, item = line.split()
                triples[split].add((user, item, behavior))
    return triples


def written_triples(splits):
    triples = collections.defaultdict(set)
    for split, users in splits.items():
        for user, example in users.items():
            for behavior in features.DEFAULT_BEHAVIORS:
                key = features.items_key if split == features.TRAIN else features.heldout_key
                triples[split].update((user, item, behavior) for item in example[key(behavior)])
    return triples


def check_eval_inputs_are_train_items(splits):
    for split in (features.EVAL, features.TEST):
        for user, example in splits[split].items():
            train = splits[features.TRAIN].get(user)
            for behavior in features.DEFAULT_BEHAVIORS:
                key = features.items_key(behavior)
                assert example[key] == (train[key] if train else []), (split, user, behavior)


def test_time_split_of_jd_events_equals_the_released_files(jd_events, jd_dir, tmp_path):
    record, splits, _ = run_executor(
        tmp_path,
        input_base=str(jd_events),
        min_item_target_events=0,
        min_user_target_events=0,
        drop_cold_eval_users=False,
        split_method="cut_timestamps",
        split_boundaries=JD_CUTS,
        eval_only_behaviors=[features.CART],  # JD has no cart train event
    )
    expected = released_triples(jd_dir)
    got = written_triples(splits)
    for split in features.SPLITS:
        assert got[split] == expected[split], split
    check_eval_inputs_are_train_items(splits)
    assert record["splits"][features.TRAIN]["events_per_behavior"][features.CART] == 0
    assert record["rows_read"] == 477_676
    assert record["duplicates_dropped"] == 477_676 - 341_748
    assert record["events_kept"] == 341_748
    assert record["identity_holds"]


def test_release_import_of_jd_equals_the_released_files(jd_dir, tmp_path):
    record, splits, _ = run_executor(
        tmp_path,
        input_base=str(jd_dir),
        input_format="release",
        min_item_target_events=0,
        min_user_target_events=0,
        drop_cold_eval_users=False,
        eval_only_behaviors=[features.CART],  # cart_train is empty
    )
    expected = released_triples(jd_dir)
    got = written_triples(splits)
    for split in features.SPLITS:
        assert got[split] == expected[split], split
    check_eval_inputs_are_train_items(splits)
    assert record["duplicates_dropped"] == 0 and record["identity_holds"]
