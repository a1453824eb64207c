"""Hostile input for the multi-behavior ExampleGen: stray quotes, absurd timestamps,
mislabelled or corrupt gzip, odd paths. Each case either fails with an error naming
the path or is a counted rejection that spares every other row."""

import gzip
import io
import re

import apache_beam as beam
import pytest
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to

from bvae_tf import features
from components.multi_behavior_example_gen import accounting, inputs, parsing, transforms
from components.multi_behavior_example_gen.config import ExampleGenConfig
from tests.components.example_gen_testing import run_executor

pytestmark = pytest.mark.unit

P, C = features.PURCHASE, features.CLICK
HEADER = b"user_id,item_id,behavior,timestamp\n"
COLUMNS = ("user_id", "item_id", "behavior", "timestamp")
FILTERS_OFF = {
    "min_item_target_events": 0,
    "min_user_target_events": 0,
    "drop_cold_eval_users": False,
    # The hand-written logs use small timestamps (seconds after 1970-01-01): window off
    # (an empty list; an absent or None execution property means the default window).
    "timestamp_window": [],
}


def _parse(data: bytes):
    parser = parsing.RawLogParser(COLUMNS, features.DEFAULT_RAW_BEHAVIOR_MAPPING, (P, C))
    *out, summary = parser.parse(parsing.open_text(io.BytesIO(data)), "log.csv")
    events = [o for o in out if not isinstance(o, parsing.Rejection)]
    rejections = [o for o in out if isinstance(o, parsing.Rejection)]
    assert summary.rows_read == len(events) + len(rejections)
    return events, rejections


def test_a_stray_quote_rejects_only_its_own_line():
    data = HEADER + (
        b"u0,i0,buy,5\n"  # 2: ok
        b'u1,"i1,buy,10\n'  # 3: stray quote, closed by line 5: two fields -> rejected
        b"u2,i2,buy,20\n"  # 4: ok
        b'"\n'  # 5: a lone quote, closed on line 7 and followed by text -> malformed
        b"u3,i3,buy,30\n"  # 6: ok
        b'u4,"i4,buy,40\n'  # 7: quote still open at the end of the file -> malformed
        b"u5,i5,buy,50\n"  # 8: ok
    )
    events, rejections = _parse(data)
    assert [e[0] for e in events] == ["u0", "u2", "u3", "u5"]
    assert events[1] == ("u2", "i2", P, 20, "")
    assert rejections == [
        parsing.Rejection(parsing.WRONG_COLUMN_COUNT, 3, 3),
        parsing.Rejection(parsing.MALFORMED_CSV, 5, 5),
        parsing.Rejection(parsing.MALFORMED_CSV, 7, 7),
    ]


def test_a_valid_quoted_newline_is_still_one_record():
    # One record of lines 2-3, rejected for the line break in its id (an id Transform's
    # vocabulary would drop); the row after it is read.
    events, rejections = _parse(HEADER + b'u1,"i\n1",buy,10\nu2,i2,buy,20\n')
    assert rejections == [parsing.Rejection(parsing.CONTROL_CHARACTER_ID, 2, 3)]
    assert events == [("u2", "i2", P, 20, "")]


def test_a_header_repeated_inside_the_file_is_its_own_rejection():
    # Two files joined with cat: the second header (spaced and upper-cased here) is
    # named as such, not taken for a row with an unknown behavior.
    second = b" USER_ID ,item_id,Behavior,timestamp\n"
    data = HEADER + b"u1,i1,buy,10\n" + second + b"u2,i2,buy,20\n"
    events, rejections = _parse(data)
    assert [e[0] for e in events] == ["u1", "u2"]
    assert rejections == [parsing.Rejection(parsing.REPEATED_HEADER, 3, 3)]


def test_text_after_a_closing_quote_is_malformed_not_glued_to_the_id():
    events, rejections = _parse(HEADER + b'u1,"i1"x,buy,10\nu2,i2,buy,20\n')
    assert events == [("u2", "i2", P, 20, "")]
    assert rejections == [parsing.Rejection(parsing.MALFORMED_CSV, 2, 2)]


def test_a_quoted_field_over_the_csv_field_limit_spares_the_rows_after_it():
    # Lines 2-201 hold one 200 kB quoted field (over csv.field_size_limit()), line 202
    # closes it, line 203 is a valid row.
    data = HEADER + b'u1,"i' + (b"x" * 1000 + b"\n") * 200 + b'",buy,10\nu2,i2,buy,20\n'
    events, rejections = _parse(data)
    assert events == [("u2", "i2", P, 20, "")]
    assert len(rejections) == 201
    assert all(r.first_line == r.last_line for r in rejections)
    assert rejections[0] == parsing.Rejection(parsing.MALFORMED_CSV, 2, 2)


@pytest.mark.parametrize(
    "text",
    [
        "9" * 400,  # an integer too large for a float
        "1e308",
        "1e999",
        "1522454400000",  # milliseconds
        "-62135596801",  # one second before 0001-01-01T00:00:00Z
        "253402300800",  # one second after 9999-12-31T23:59:59Z
        "0001-01-01T00:00:00+01:00",  # year 0 in UTC
        "1_000",
        "\u0661\u0662\u0663",  # Arabic-Indic digits
        "0x10",
    ],
)
def test_timestamps_outside_the_calendar_or_not_ascii_digits_are_rejected(text):
    with pytest.raises(ValueError, match="timestamp"):
        parsing.parse_timestamp(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-62135596800", -62135596800),
        ("253402300799.0", 253402300799),
        ("9999-12-31T23:59:59Z", 253402300799),
        ("-1.5", -1.5),
        ("+7", 7),
        (".5", 0.5),
    ],
)
def test_timestamps_at_the_calendar_limits_are_kept(text, expected):
    value = parsing.parse_timestamp(text)
    assert value == expected
    assert type(value) is type(expected)


def test_a_header_repeating_a_configured_column_fails_naming_it():
    with pytest.raises(ValueError, match=r"log\.csv.*repeats column\(s\) \['user_id'\]"):
        _parse(b"user_id,item_id,behavior,timestamp,user_id\nu1,i1,buy,10,u9\n")


def test_an_existing_path_with_glob_characters_is_read_literally(tmp_path):
    literal = tmp_path / "events[1].csv"
    literal.write_bytes(HEADER)
    (tmp_path / "events1.csv").write_bytes(HEADER)  # what the glob would match
    files, _ = inputs.resolve_input_files(ExampleGenConfig(input_base=str(literal)))
    assert files == [str(literal)]


def test_compression_is_read_from_the_content_not_the_name(tmp_path):
    (tmp_path / "a.csv").write_bytes(gzip.compress(HEADER + b"u1,i1,buy,1\n"))
    (tmp_path / "b.CSV.GZ").write_bytes(gzip.compress(HEADER + b"u2,i2,buy,2\n"))
    (tmp_path / "c.csv.gz").write_bytes(HEADER + b"u3,i3,buy,3\n")  # not gzipped
    files = sorted(str(p) for p in tmp_path.iterdir())
    config = ExampleGenConfig(input_base=str(tmp_path), timestamp_window=None)
    with test_pipeline.TestPipeline() as p:
        events, _, _ = p | beam.Create(files) | transforms.ReadRawLog(config)
        assert_that(
            events,
            equal_to([("u1", "i1", P, 1, ""), ("u2", "i2", P, 2, ""), ("u3", "i3", P, 3, "")]),
        )


@pytest.mark.parametrize(
    "content",
    [
        b"\x1f\x8b\x08\x00garbage-garbage-garbage",
        gzip.compress(HEADER + b"u1,i1,buy,1\n" * 200)[:-30],
    ],
    ids=["corrupt", "truncated"],
)
def test_an_unreadable_gzip_fails_naming_the_file(tmp_path, content):
    path = tmp_path / "events.csv.gz"
    path.write_bytes(content)
    config = ExampleGenConfig(input_base=str(path))
    with (
        pytest.raises(ValueError, match=re.escape(f"{path}: cannot read the file")),
        test_pipeline.TestPipeline() as p,
    ):
        _ = p | beam.Create([str(path)]) | transforms.ReadRawLog(config)


def test_the_record_of_a_raw_log_without_events_keeps_its_split_method():
    config = ExampleGenConfig(input_base="x.csv").to_json_dict()
    record = accounting.build_record({}, samples=[], cuts=None, config=config, input_files=[])
    assert record["split"]["method"] == "time_fractions"
    assert record["split"]["boundaries"] == [0.8, 0.9]
    assert record["split"]["cut_timestamps"] is None


def test_a_hostile_log_keeps_every_good_row_and_the_identity(tmp_path):
    rows = [
        b"u1,i1,buy,100",  # 2
        b"u1,i2,pv,200",  # 3
        b"u2,i3,buy,400",  # 4
        b"u2,i4,buy,1522454400000",  # 5: milliseconds -> bad timestamp
        b"u3,i1,buy," + b"9" * 400,  # 6: too large for a float -> bad timestamp
        b"u3,i2,buy,1e308",  # 7: bad timestamp
        b"u3,i5,buy,1000",  # 8
        b'u2,"i3,buy,300',  # 9: stray quote, never closed -> malformed, line 9 only
        b"u1,i6,pv,950",  # 10
        b"u2,i7,pv,850",  # 11
    ]
    log = tmp_path / "in" / "log.csv"
    log.parent.mkdir()
    log.write_bytes(b"\xef\xbb\xbf" + HEADER.replace(b"\n", b"\r\n") + b"\r\n".join(rows))
    record, splits, _ = run_executor(
        tmp_path / "out", input_base=str(log), behaviors=[P, C], **FILTERS_OFF
    )
    # Kept events span [100, 1000]: cuts 100 + 0.8 * 900 = 820 and 100 + 0.9 * 900 = 910.
    assert record["split"]["cut_timestamps"] == pytest.approx([820, 910])
    assert record["rows_read"] == 10
    assert record["rows_rejected_total"] == 4
    assert record["rejected_samples"]["bad_timestamp"] == [f"{log}:{n}" for n in (5, 6, 7)]
    assert record["rejected_samples"]["malformed_csv"] == [f"{log}:9"]
    assert record["events_kept"] == 6
    assert record["identity_holds"]
    assert splits["train"] == {
        "u1": {"user_id": ["u1"], "purchase_items": ["i1"], "click_items": ["i2"]},
        "u2": {"user_id": ["u2"], "purchase_items": ["i3"], "click_items": []},
    }
    assert splits["eval"] == {
        "u2": {
            "user_id": ["u2"],
            "purchase_items": ["i3"],
            "click_items": [],
            "purchase_heldout": [],
            "click_heldout": ["i7"],
        }
    }
    assert set(splits["test"]) == {"u1", "u3"}
    assert splits["test"]["u1"]["click_heldout"] == ["i6"]
    assert splits["test"]["u3"]["purchase_heldout"] == ["i5"]


def test_events_all_at_one_time_fail_naming_the_cut(tmp_path):
    log = tmp_path / "log.csv"
    log.write_bytes(HEADER + b"u1,i1,buy,10\nu2,i2,buy,10\nu1,i3,pv,10\n")
    # time_fractions over a zero span: both cuts are 10, so every event is test.
    message = (
        r"3 events are kept\. None of the 3 events that reached the time split lies before "
        r"the eval cut 10\.0 \(earliest: 10;"
    )
    with pytest.raises(ValueError, match=message):
        run_executor(tmp_path / "out", input_base=str(log), **FILTERS_OFF)


def test_files_and_folders_that_are_not_read_are_logged(tmp_path, caplog):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.csv").write_bytes(HEADER)
    (tmp_path / "raw" / "2018-04").mkdir()  # not read: no recursion
    files, _ = inputs.resolve_input_files(ExampleGenConfig(input_base=str(tmp_path / "raw")))
    assert files == [str(tmp_path / "raw" / "a.csv")]
    (tmp_path / "release").mkdir()
    (tmp_path / "release" / "target_train").write_bytes(b"1 2\n")
    (tmp_path / "release" / "favorite_train").write_bytes(b"1 3\n")  # prefix is "favourite"
    config = ExampleGenConfig(input_base=str(tmp_path / "release"), input_format="release")
    files, skipped = inputs.resolve_input_files(config)
    assert files == [(str(tmp_path / "release" / "target_train"), P, features.TRAIN)]
    assert skipped == []
    assert "folders not read" in caplog.text and "2018-04" in caplog.text
    assert "files not read" in caplog.text and "favorite_train" in caplog.text


def test_a_remote_input_that_cannot_be_listed_is_named(monkeypatch):
    import tensorflow as tf

    class Unreachable:
        @staticmethod
        def isdir(path):
            raise tf.errors.FailedPreconditionError(
                None, None, f"Could not resolve host: www.googleapis.com\n when reading {path}"
            )

    monkeypatch.setattr(inputs, "_filesystem", lambda path: Unreachable)
    config = ExampleGenConfig(input_base="gs://bucket/events")
    with pytest.raises(
        ValueError, match=r"^input_base 'gs://bucket/events' cannot be listed: Could not resolve"
    ):
        inputs.resolve_input_files(config)


def test_a_local_glob_lists_its_data_files_only(tmp_path):
    for name in ("a.csv", "b.csv", ".hidden.csv", "_SUCCESS.csv", "c.txt"):
        (tmp_path / name).write_bytes(HEADER)
    (tmp_path / "d.csv").mkdir()
    files, skipped = inputs.resolve_input_files(
        ExampleGenConfig(input_base=str(tmp_path / "*.csv"))
    )
    assert files == [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    assert skipped == []
