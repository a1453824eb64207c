"""Each Beam step of the multi-behavior ExampleGen alone (TestPipeline + assert_that)."""

import gzip

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from bvae_tf import features
from components.multi_behavior_example_gen import accounting, transforms
from components.multi_behavior_example_gen.config import ExampleGenConfig

pytestmark = pytest.mark.unit

P, C, F = features.PURCHASE, features.CLICK, features.FAVORITE


def _merged(pcoll):
    return pcoll | beam.CombineGlobally(accounting.MergeSummariesFn())


def _expect_summary(expected: dict):
    def check(actual):
        assert len(actual) == 1
        got = {k: v for k, v in actual[0].items() if v}
        assert got == expected

    return check


def _decode(serialized: bytes) -> dict:
    example = tf.train.Example.FromString(serialized)
    return {
        k: [v.decode() for v in f.bytes_list.value] for k, f in example.features.feature.items()
    }


def test_read_raw_log_reads_gz_shards_and_counts_per_file(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"user_id,item_id,behavior,timestamp\nu1,i1,pv,1\nu1,i2,x,2\n")
    with gzip.open(tmp_path / "b.csv.gz", "wb") as f:
        f.write(b"user_id,item_id,behavior,timestamp\nu2,i1,buy,3\n\nu2,i3,pv,bad\n")
    config = ExampleGenConfig(input_base=str(tmp_path), timestamp_window=None)
    files = [str(tmp_path / "a.csv"), str(tmp_path / "b.csv.gz")]
    with test_pipeline.TestPipeline() as p:
        events, summaries, samples = p | beam.Create(files) | transforms.ReadRawLog(config)
        assert_that(
            events,
            equal_to([("u1", "i1", C, 1, ""), ("u2", "i1", P, 3, "")]),
            label="events",
        )
        assert_that(
            _merged(summaries),
            _expect_summary(
                {
                    accounting.FILES_READ: 2,
                    accounting.ROWS_READ: 4,
                    accounting.BLANK_LINES: 1,
                    accounting.rejected_key("unknown_behavior"): 1,
                    accounting.rejected_key("bad_timestamp"): 1,
                }
            ),
            label="summary",
        )
        assert_that(
            samples,
            equal_to(
                [
                    ("unknown_behavior", (files[0], 3, 3)),
                    ("bad_timestamp", (files[1], 4, 4)),
                ]
            ),
            label="samples",
        )


def test_deduplicate_keeps_the_earliest_and_counts_the_rest():
    events = [
        ("u1", "i1", C, 30, ""),
        ("u1", "i1", C, 10, ""),  # earliest click of (u1, i1) -> kept
        ("u1", "i1", C, 20, ""),
        ("u1", "i1", P, 40, ""),  # other behavior: kept
        ("u2", "i1", C, 5, ""),
        ("u2", "i1", C, 5, ""),  # identical tie: one kept
    ]
    with test_pipeline.TestPipeline() as p:
        out, summaries = p | beam.Create(events) | transforms.Deduplicate()
        assert_that(
            out,
            equal_to([("u1", "i1", C, 10, ""), ("u1", "i1", P, 40, ""), ("u2", "i1", C, 5, "")]),
            label="events",
        )
        assert_that(
            _merged(summaries), _expect_summary({accounting.DUPLICATES: 3}), label="summary"
        )


def test_deduplicate_release_prefers_the_earlier_split():
    events = [("u1", "i1", C, 1, features.TEST), ("u1", "i1", C, 7, features.TRAIN)]
    with test_pipeline.TestPipeline() as p:
        out, _ = p | beam.Create(events) | transforms.Deduplicate()
        assert_that(out, equal_to([("u1", "i1", C, 7, features.TRAIN)]))


def test_filter_items_drops_items_below_the_target_threshold():
    # i1: 2 purchases (kept with min 2); i2: 1 purchase + 2 clicks (dropped, 3 events);
    # i3: clicks only (dropped, 1 event).
    events = [
        ("u1", "i1", P, 1, ""),
        ("u2", "i1", P, 2, ""),
        ("u1", "i1", C, 3, ""),
        ("u1", "i2", P, 4, ""),
        ("u1", "i2", C, 5, ""),
        ("u2", "i2", C, 6, ""),
        ("u3", "i3", C, 7, ""),
    ]
    with test_pipeline.TestPipeline() as p:
        out, summaries = p | beam.Create(events) | transforms.FilterItems(2, P)
        assert_that(out, equal_to(events[:3]), label="events")
        assert_that(
            _merged(summaries),
            _expect_summary(
                {
                    accounting.ITEMS_KEPT: 1,
                    accounting.ITEMS_DROPPED: 2,
                    accounting.ITEM_EVENTS_DROPPED: 4,
                }
            ),
            label="summary",
        )


def test_group_and_filter_users_sorts_by_time_and_drops_light_buyers():
    events = [
        ("u1", "i2", P, 20, ""),
        ("u1", "i1", P, 10, ""),
        ("u1", "i3", C, 10, ""),
        ("u2", "i1", P, 5, ""),
        ("u2", "i1", C, 1, ""),
    ]
    with test_pipeline.TestPipeline() as p:
        out, summaries = p | beam.Create(events) | transforms.GroupAndFilterUsers(2, P)
        assert_that(
            out,
            equal_to([("u1", [(10, "i1", P, ""), (10, "i3", C, ""), (20, "i2", P, "")])]),
            label="users",
        )
        assert_that(
            _merged(summaries),
            _expect_summary(
                {
                    accounting.USERS_KEPT: 1,
                    accounting.USERS_DROPPED: 1,
                    accounting.USER_EVENTS_DROPPED: 2,
                }
            ),
            label="summary",
        )


USERS = [
    ("u1", [(0, "i1", P, ""), (40, "i2", C, ""), (100, "i3", P, "")]),
    ("u2", [(80, "i1", C, ""), (90, "i2", C, "")]),
]


@pytest.mark.parametrize(
    ("method", "boundaries", "expected"),
    [
        ("cut_timestamps", (50, 95), (50, 95)),
        # span 0..100 -> 0 + 0.8 * 100, 0 + 0.9 * 100
        ("time_fractions", (0.8, 0.9), (80.0, 90.0)),
        # 5 events sorted 0, 40, 80, 90, 100: ranks floor(0.4 * 5) = 2 -> 80 and
        # floor(0.7 * 5) = 3 -> 90
        ("event_fractions", (0.4, 0.7), (80, 90)),
    ],
)
def test_compute_cuts(method, boundaries, expected):
    config = ExampleGenConfig(input_base="x", split_method=method, split_boundaries=boundaries)
    with test_pipeline.TestPipeline() as p:
        cuts = p | beam.Create(USERS) | transforms.ComputeCuts(config)
        assert_that(cuts, equal_to([expected]))


def test_event_fraction_cuts_send_ties_to_the_later_split():
    # 10 events, 6 of them at t=5: rank floor(0.5 * 10) = 5 falls in the tie -> cut 5,
    # so only the 2 events before t=5 are train.
    histogram = {1: 1, 2: 1, 5: 6, 9: 2}
    assert transforms.event_fraction_cuts(histogram, (0.5, 0.9)) == (5, 9)
    assert transforms.event_fraction_cuts({}, (0.5, 0.9)) is None
    assert transforms.time_fraction_cuts(None, (0.5, 0.9)) is None


def test_split_and_encode_cut_rule_schema_and_empty_lists():
    users = [
        (
            "u1",
            [
                (10, "i1", P, ""),
                (20, "i2", C, ""),
                (50, "i3", P, ""),  # exactly at the eval cut -> eval
                (70, "i4", C, ""),
                (90, "i5", F, ""),  # exactly at the test cut -> test
            ],
        ),
    ]
    config = ExampleGenConfig(input_base="x", behaviors=(P, C, F))
    with test_pipeline.TestPipeline() as p:
        cuts = p | "Cuts" >> beam.Create([(50, 90)])
        splits, summaries = p | beam.Create(users) | transforms.SplitAndEncode(cuts, config)
        train_items = {"purchase_items": ["i1"], "click_items": ["i2"], "favorite_items": []}
        assert_that(
            splits["train"] | "DecodeTrain" >> beam.Map(_decode),
            equal_to([{"user_id": ["u1"], **train_items}]),
            label="train",
        )
        assert_that(
            splits["eval"] | "DecodeEval" >> beam.Map(_decode),
            equal_to(
                [
                    {
                        "user_id": ["u1"],
                        **train_items,
                        "purchase_heldout": ["i3"],
                        "click_heldout": ["i4"],
                        "favorite_heldout": [],
                    }
                ]
            ),
            label="eval",
        )
        assert_that(
            splits["test"] | "DecodeTest" >> beam.Map(_decode),
            equal_to(
                [
                    {
                        "user_id": ["u1"],
                        **train_items,
                        "purchase_heldout": [],
                        "click_heldout": [],
                        "favorite_heldout": ["i5"],
                    }
                ]
            ),
            label="test",
        )
        assert_that(
            _merged(summaries),
            _expect_summary(
                {
                    accounting.split_users_key("train"): 1,
                    accounting.split_users_key("eval"): 1,
                    accounting.split_users_key("test"): 1,
                    accounting.split_events_key("train", P): 1,
                    accounting.split_events_key("train", C): 1,
                    accounting.split_events_key("eval", P): 1,
                    accounting.split_events_key("eval", C): 1,
                    accounting.split_events_key("test", F): 1,
                    accounting.min_timestamp_key("train"): 10,
                    accounting.max_timestamp_key("train"): 20,
                    accounting.min_timestamp_key("eval"): 50,
                    accounting.max_timestamp_key("eval"): 70,
                    accounting.min_timestamp_key("test"): 90,
                    accounting.max_timestamp_key("test"): 90,
                    # every event that reached the split
                    accounting.min_timestamp_key(accounting.ALL_EVENTS): 10,
                    accounting.max_timestamp_key(accounting.ALL_EVENTS): 90,
                }
            ),
            label="summary",
        )


def test_train_items_keep_time_order_not_id_order():
    users = [("u1", [(1, "i9", C, ""), (2, "i1", C, ""), (3, "i5", C, ""), (4, "i0", P, "")])]
    config = ExampleGenConfig(input_base="x", behaviors=(P, C))
    with test_pipeline.TestPipeline() as p:
        cuts = p | "Cuts" >> beam.Create([(100, 200)])
        splits, _ = p | beam.Create(users) | transforms.SplitAndEncode(cuts, config)
        assert_that(
            splits["train"] | beam.Map(_decode),
            equal_to(
                [{"user_id": ["u1"], "purchase_items": ["i0"], "click_items": ["i9", "i1", "i5"]}]
            ),
        )


@pytest.mark.parametrize("drop_cold", [True, False])
def test_step_v_drops_eval_and_test_of_users_without_train_purchases(drop_cold):
    users = [
        # warm: a train purchase -> keeps its eval example
        ("warm", [(1, "i1", P, ""), (60, "i2", C, "")]),
        # cold: train clicks only -> eval and test dropped under step v
        ("cold", [(1, "i1", C, ""), (60, "i2", P, ""), (95, "i3", C, "")]),
    ]
    config = ExampleGenConfig(input_base="x", behaviors=(P, C), drop_cold_eval_users=drop_cold)
    with test_pipeline.TestPipeline() as p:
        cuts = p | "Cuts" >> beam.Create([(50, 90)])
        splits, summaries = p | beam.Create(users) | transforms.SplitAndEncode(cuts, config)
        users_of = {
            s: splits[s] | f"Users{s}" >> beam.Map(lambda b: _decode(b)["user_id"][0])
            for s in features.SPLITS
        }
        assert_that(users_of["train"], equal_to(["warm", "cold"]), label="train")
        assert_that(
            users_of["eval"],
            equal_to(["warm"] if drop_cold else ["warm", "cold"]),
            label="eval",
        )
        assert_that(users_of["test"], equal_to([] if drop_cold else ["cold"]), label="test")
        cold = (
            {
                accounting.cold_users_key("eval"): 1,
                accounting.cold_users_key("test"): 1,
                accounting.COLD_EVENTS_DROPPED: 2,
            }
            if drop_cold
            else {}
        )

        def check(actual):
            got = {k: v for k, v in actual[0].items() if k.startswith("cold_eval_users") and v}
            assert got == cold

        assert_that(_merged(summaries), check, label="summary")


def test_release_split_comes_from_the_files():
    users = [("u1", [(1, "i1", P, "train"), (2, "i2", P, "test"), (3, "i3", C, "train")])]
    config = ExampleGenConfig(input_base="x", input_format="release", behaviors=(P, C))
    with test_pipeline.TestPipeline() as p:
        cuts = p | transforms.ComputeCuts(config)
        splits, _ = p | beam.Create(users) | transforms.SplitAndEncode(cuts, config)
        assert_that(
            splits["test"] | beam.Map(_decode),
            equal_to(
                [
                    {
                        "user_id": ["u1"],
                        "purchase_items": ["i1"],
                        "click_items": ["i3"],
                        "purchase_heldout": ["i2"],
                        "click_heldout": [],
                    }
                ]
            ),
        )
