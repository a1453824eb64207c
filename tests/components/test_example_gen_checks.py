"""Data the multi-behavior ExampleGen must refuse before training: implausible
timestamps, a timeline stretched by an outlier, empty splits, a cold-user step that
drops most held-out events, behaviors without train events; and messages whose counts
sum."""

import io
import re

import pytest

from bvae_tf import features
from components.multi_behavior_example_gen import accounting, parsing, transforms
from components.multi_behavior_example_gen.config import ExampleGenConfig
from tests.components.example_gen_testing import run_executor

pytestmark = pytest.mark.unit

P, C, F, CART = features.PURCHASE, features.CLICK, features.FAVORITE, features.CART
#: 2023-11-14T22:13:20Z, unix seconds.
T0 = 1_700_000_000
DAY = 86_400
HEADER = "user_id,item_id,behavior,timestamp\n"
FILTERS_OFF = {"min_item_target_events": 0, "min_user_target_events": 0}
#: Purchase and click (what the grid logs hold), item and user filters off.
BASE = {"behaviors": [P, C], **FILTERS_OFF}


def grid_rows(users=10, clicks_only=()):
    """10 days x ``users``: user u on day d acts on item i<d> at T0 + d days + u minutes,
    a purchase on even days and a click on odd ones (clicks only for ``clicks_only``)."""
    rows = []
    for day in range(10):
        for u in range(users):
            label = "pv" if day % 2 or u in clicks_only else "buy"
            rows.append(f"u{u},i{day},{label},{T0 + day * DAY + u * 60}")
    return rows


def write_log(path, rows):
    path.write_text(HEADER + "\n".join(rows) + "\n")
    return path


def assert_split_sum(message):
    """The "of the N events that reached the time split, a are train, b eval, c test and
    the cold-user step dropped d" clause of a message sums: a + b + c + d = N."""
    found = re.search(
        r"of the (\d+) events that reached the time split, (\d+) are train, (\d+) eval, "
        r"(\d+) test and the cold-user step dropped (\d+)",
        message,
    )
    assert found, message
    total, *parts = map(int, found.groups())
    assert total == sum(parts), message
    return parts


# --- implausible timestamps ---------------------------------------------------------


def _parse(rows, window):
    parser = parsing.RawLogParser(
        ("user_id", "item_id", "behavior", "timestamp"),
        features.DEFAULT_RAW_BEHAVIOR_MAPPING,
        (P, C),
        window,
    )
    text = parsing.open_text(io.BytesIO((HEADER + "\n".join(rows) + "\n").encode()))
    return list(parser.parse(text, "log.csv"))[:-1]


def test_timestamps_outside_the_window_are_rejected_as_implausible():
    rows = ["u1,i1,buy,0", "u1,i2,buy,-5", "u1,i3,buy,100", "u1,i4,buy,199", "u1,i5,buy,200"]
    out = _parse(rows, (100, 200))  # [start, end): 100 and 199 in, 200 out
    assert [o[3] for o in out if not isinstance(o, parsing.Rejection)] == [100, 199]
    assert [o for o in out if isinstance(o, parsing.Rejection)] == [
        parsing.Rejection(parsing.IMPLAUSIBLE_TIMESTAMP, 2, 2),
        parsing.Rejection(parsing.IMPLAUSIBLE_TIMESTAMP, 3, 3),
        parsing.Rejection(parsing.IMPLAUSIBLE_TIMESTAMP, 6, 6),
    ]
    # Without a window only the calendar limits apply.
    assert all(not isinstance(o, parsing.Rejection) for o in _parse(rows, None))


def test_the_default_window_accepts_the_shipped_logs_and_refuses_zero_and_milliseconds():
    start, end = ExampleGenConfig(input_base="x").timestamp_window
    jd_first, jd_last = 1517443219, 1523836799  # JD_events.csv.gz, 2018-02-01..04-15
    synthetic_start = 1704067200  # components.synthetic_logs.DEFAULT_START, 2024
    assert start <= jd_first and jd_last < end and start <= synthetic_start < end
    for implausible in (0, -5, 1522454400000):
        assert not start <= implausible < end


def test_one_row_at_zero_or_minus_five_is_rejected_and_leaves_the_split_unchanged(tmp_path):
    clean = write_log(tmp_path / "clean.csv", grid_rows())
    dirty = write_log(tmp_path / "dirty.csv", [*grid_rows(), "u0,i0,buy,0", "u1,i1,pv,-5"])
    expected, expected_splits, _ = run_executor(tmp_path / "clean", input_base=str(clean), **BASE)
    record, splits, _ = run_executor(tmp_path / "dirty", input_base=str(dirty), **BASE)
    assert record["rows_rejected"]["implausible_timestamp"] == 2
    assert record["rejected_samples"]["implausible_timestamp"] == [f"{dirty}:102", f"{dirty}:103"]
    assert record["rows_read"] == 102 and record["identity_holds"]
    assert record["split"]["cut_timestamps"] == expected["split"]["cut_timestamps"]
    assert splits == expected_splits
    # 100 events: 80 train (days 0-7), 10 eval (day 8), 10 test (day 9).
    assert [record["splits"][s]["events"] for s in features.SPLITS] == [80, 10, 10]


# --- a timeline robust to outliers --------------------------------------------------


def test_trimmed_span_skips_the_trim_share_at_each_end():
    # 10 events at 1..10 and one at 1000: k = floor(0.1 * 11) = 1 -> ranks 1 and 9.
    histogram = {t: 1 for t in range(1, 11)} | {1000: 1}
    assert transforms.trimmed_span(histogram, 0.1) == (2, 10)
    assert transforms.trimmed_span(histogram, 0.0) == (1, 1000)
    # Ties: 4 events at 5; k = floor(0.25 * 6) = 1 -> ranks 1 and 4 both at 5.
    assert transforms.trimmed_span({1: 1, 5: 4, 9: 1}, 0.25) == (5, 5)
    assert transforms.trimmed_span({}, 0.1) is None


def test_an_outlier_inside_the_window_does_not_stretch_the_timeline(tmp_path):
    # 100 grid events + a click at 2000-01-01 (plausible, but 24 years early); n = 101,
    # k = floor(0.01 * 101) = 1: the span runs from rank 1 (T0) to rank 99 (the second
    # latest grid event, day 9 user 8: T0 + 9 days + 480 s).
    log = write_log(tmp_path / "log.csv", [*grid_rows(), "u0,i99,pv,946684800"])
    record, _, _ = run_executor(tmp_path / "out", input_base=str(log), **BASE)
    span = 9 * DAY + 480
    assert record["split"]["cut_timestamps"] == pytest.approx([T0 + 0.8 * span, T0 + 0.9 * span])
    # The outlier is a train click of u0: 81 train, 10 eval, 10 test events.
    assert [record["splits"][s]["events"] for s in features.SPLITS] == [81, 10, 10]
    assert record["split"]["first_timestamp"] == 946684800


def test_a_stretched_timeline_fails_naming_the_cold_user_step_and_the_empty_splits(tmp_path):
    # The same outlier with the min-max span (timeline_trim=0): both cuts fall years
    # before the grid (2019 and 2021), so all 100 grid events are test events of users
    # without a train purchase (the only train event is the outlier click), and the
    # cold-user step drops all of them.
    log = write_log(tmp_path / "log.csv", [*grid_rows(), "u0,i99,pv,946684800"])
    with pytest.raises(ValueError) as error:
        run_executor(tmp_path / "out", input_base=str(log), timeline_trim=0, **BASE)
    message = str(error.value)
    assert "split 'eval' holds no example" in message
    assert "split 'test' holds no example" in message
    assert "dropped 100 of the 100 eval/test events (100.0%, more than" in message
    assert "max_cold_event_share 50.0%" in message
    assert assert_split_sum(message) == [1, 0, 0, 100]


# --- empty splits and the cold-user step --------------------------------------------


def test_a_split_that_ends_empty_is_an_error_with_the_numbers(tmp_path):
    log = write_log(tmp_path / "log.csv", grid_rows())
    # Days 0-4 train, days 5-9 eval, nothing from day 20 on.
    cuts = [T0 + 5 * DAY, T0 + 20 * DAY]
    with pytest.raises(ValueError, match=r"split 'test' holds no example") as error:
        run_executor(
            tmp_path / "out",
            input_base=str(log),
            split_method="cut_timestamps",
            split_boundaries=cuts,
            **BASE,
        )
    message = str(error.value)
    assert assert_split_sum(message) == [50, 50, 0, 0]
    assert f"events from {T0} to {T0 + 9 * DAY + 540}" in message
    assert "move split_boundaries inside the events' time range" in message
    assert "split 'eval'" not in message


def test_a_cold_user_step_dropping_most_held_out_events_is_an_error(tmp_path):
    # Users u4-u9 never buy: their 12 eval/test events (days 8 and 9) are dropped,
    # u0-u3 keep 8: 12 of 20 = 60 % > 50 %.
    log = write_log(tmp_path / "log.csv", grid_rows(clicks_only=range(4, 10)))
    with pytest.raises(ValueError, match="cold-user step") as error:
        run_executor(tmp_path / "out", input_base=str(log), **BASE)
    message = str(error.value)
    assert "dropped 12 of the 20 eval/test events (60.0%" in message
    assert "8 kept): 6 eval and 6 test users have no train purchase event" in message
    assert assert_split_sum(message) == [80, 4, 4, 12]
    # A higher limit accepts the same data.
    record, _, _ = run_executor(
        tmp_path / "ok", input_base=str(log), max_cold_event_share=0.6, **BASE
    )
    assert record["cold_eval_users"]["event_share"] == pytest.approx(0.6)
    assert record["cold_eval_users"]["events_dropped"] == 12


# --- behaviors without train events -------------------------------------------------


def test_a_behavior_without_train_events_stops_the_run_naming_the_fix(tmp_path):
    # buy/pv only: favorite and cart (default behaviors) have no event at all.
    log = write_log(tmp_path / "log.csv", grid_rows())
    with pytest.raises(ValueError) as error:
        run_executor(tmp_path / "out", input_base=str(log), **FILTERS_OFF)
    message = str(error.value)
    assert "behavior(s) ['favorite', 'cart'] have no train event" in message
    assert "cart: train 0, eval 0, test 0 events" in message
    assert "Remove them from data.behaviors, or list them in data.eval_only_behaviors" in message
    # Evaluation-only, they still need eval events, or the evaluator scores nobody.
    with pytest.raises(ValueError, match=r"evaluation-only behavior\(s\) \['cart'\] have no eval"):
        run_executor(
            tmp_path / "out2",
            input_base=str(log),
            behaviors=[P, C, CART],
            eval_only_behaviors=[CART],
            **FILTERS_OFF,
        )


def test_an_evaluation_only_behavior_may_lack_train_events(tmp_path):
    # Carts on days 8 (eval) and 9 (test) only, as JD's released cart files.
    carts = [f"u{u},i{u},cart,{T0 + day * DAY + 30}" for day in (8, 9) for u in range(3)]
    log = write_log(tmp_path / "log.csv", grid_rows() + carts)
    arguments = {"input_base": str(log), "behaviors": [P, C, CART], **FILTERS_OFF}
    with pytest.raises(ValueError, match=r"\['cart'\] have no train event \(cart: train 0, eval 3"):
        run_executor(tmp_path / "out", **arguments)
    record, splits, _ = run_executor(tmp_path / "ok", eval_only_behaviors=[CART], **arguments)
    assert record["splits"]["train"]["events_per_behavior"][CART] == 0
    assert record["splits"]["eval"]["events_per_behavior"][CART] == 3
    assert splits["eval"]["u1"]["cart_heldout"] == ["i1"]
    assert record["config"]["eval_only_behaviors"] == [CART]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (["share"], "not one of behaviors"),
        ([P], "must not hold the target behavior"),
        ([CART, CART], "must be distinct"),
        ('"cart"', "must be a list"),
    ],
)
def test_eval_only_behaviors_are_checked(value, match):
    with pytest.raises(ValueError, match=match):
        ExampleGenConfig(input_base="x", eval_only_behaviors=value)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"timestamp_window": [10, 5]}, "timestamp_window"),
        ({"timestamp_window": [0]}, "timestamp_window"),
        ({"timestamp_window": "[0, nan]"}, "timestamp_window must be two increasing"),
        ({"timeline_trim": 0.5}, r"timeline_trim must be a number in \[0, 0.5\)"),
        ({"timeline_trim": -0.1}, "timeline_trim"),
        ({"max_cold_event_share": 1.5}, r"max_cold_event_share must be a number in \[0, 1.0\]"),
        ({"max_cold_event_share": True}, "max_cold_event_share"),
    ],
)
def test_new_parameters_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ExampleGenConfig(input_base="x", **kwargs)


def test_an_empty_window_from_the_execution_properties_turns_the_check_off():
    assert ExampleGenConfig.from_exec_properties({"input_base": "x"}).timestamp_window == (
        631152000,
        4102444800,
    )
    config = ExampleGenConfig.from_exec_properties({"input_base": "x", "timestamp_window": []})
    assert config.timestamp_window is None
    assert config.to_json_dict()["timestamp_window"] is None


# --- messages whose counts sum ------------------------------------------------------


def test_no_train_example_message_counts_the_cold_user_step_and_sums(tmp_path):
    # 17 rows: 15 purchases after the eval cut (5 users x 3), one favorite (behavior
    # not kept) and one repeat (duplicate). Every user is cold: step v drops all 15.
    rows = [f"u{u},i{k},buy,{T0 + (k + 1) * DAY + u}" for u in range(5) for k in range(3)]
    rows += [f"u0,i0,fav,{T0 + DAY}", f"u0,i0,buy,{T0 + 5 * DAY}"]
    log = write_log(tmp_path / "log.csv", rows)
    with pytest.raises(ValueError, match="no train example left") as error:
        run_executor(
            tmp_path / "out",
            input_base=str(log),
            behaviors=[P, C],
            split_method="cut_timestamps",
            split_boundaries=[T0, T0 + 10 * DAY],
            **FILTERS_OFF,
        )
    message = str(error.value)
    found = re.search(
        r"of (\d+) valid rows, (\d+) have a behavior not kept, (\d+) are duplicates, the "
        r"item filter dropped (\d+) events, the user filter (\d+) and the cold-user step "
        r"(\d+) \(eval/test events of users without a train purchase event\); (\d+) events "
        r"are kept",
        message,
    )
    assert found, message
    valid, *parts = map(int, found.groups())
    assert valid == 17 and parts == [1, 1, 0, 0, 15, 0]
    assert valid == sum(parts)
    assert f"None of the 15 events that reached the time split lies before the eval cut {T0}" in (
        message
    )
    assert f"(earliest: {T0 + DAY};" in message


def test_the_flow_line_sums_to_the_rows_read():
    record = {
        "rows_read": 20,
        "rows_rejected_total": 2,
        "behavior_not_kept": 1,
        "duplicates_dropped": 3,
        "item_filter": {"events_dropped": 4},
        "user_filter": {"events_dropped": 5},
        "cold_eval_users": {"events_dropped": 1},
        "events_kept": 4,
    }
    line = accounting.describe_flow(record)
    total, *parts = map(int, re.findall(r"\d+", line))
    assert total == 20 == sum(parts)
