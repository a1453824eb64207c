"""Row parsing and configuration of the multi-behavior ExampleGen (no Beam)."""

import io
import re

import pytest

from bvae_tf import features
from components.multi_behavior_example_gen import config as config_lib
from components.multi_behavior_example_gen import parsing

pytestmark = pytest.mark.unit

COLUMNS = ("user_id", "item_id", "behavior", "timestamp")


def _parse(data: bytes, behaviors=("purchase", "click", "favorite", "cart"), mapping=None):
    mapping = features.DEFAULT_RAW_BEHAVIOR_MAPPING if mapping is None else mapping
    parser = parsing.RawLogParser(COLUMNS, mapping, behaviors)
    out = list(parser.parse(parsing.open_text(io.BytesIO(data)), "log.csv"))
    summary = out[-1]
    assert isinstance(summary, parsing.FileSummary)
    events = [o for o in out[:-1] if not isinstance(o, parsing.Rejection)]
    rejections = [o for o in out[:-1] if isinstance(o, parsing.Rejection)]
    return events, rejections, summary


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1522454400", 1522454400),
        ("1522454400.5", 1522454400.5),
        ("1.522454401e9", 1522454401),  # exponent form with every whole-second digit
        ("1.522454400000000000e+09", 1522454400),  # numpy.savetxt's default
        ("2018-03-31T00:00:00Z", 1522454400),
        ("2018-03-31T08:00:00+08:00", 1522454400),
        ("2018-03-31 00:00:00", 1522454400),  # no offset: UTC
    ],
)
def test_parse_timestamp_accepts_unix_seconds_and_iso(text, expected):
    value = parsing.parse_timestamp(text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "text", ["", "yesterday", "nan", "inf", "2018-13-01", "1.70407E+09", "1.5e9"]
)
def test_parse_timestamp_rejects_with_the_value_named(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parsing.parse_timestamp(text)


def test_tricky_but_valid_csv_is_read_exactly():
    data = (
        b"\xef\xbb\xbfuser_id,item_id,behavior,timestamp\r\n"  # BOM + CRLF
        b"u1,i1,pv,100\r\n"
        b"\r\n"  # blank line
        b'u2,"i,2",BUY,200\r\n'  # quoted comma, upper-case label
        b'u3,"i 3", Fav ,2018-03-31T00:00:00Z\n'  # padding, ISO
        b"  u4  ,i4  ,cart,300   \n"  # trailing and leading spaces
        b"\n"
    )
    events, rejections, summary = _parse(data)
    assert rejections == []
    assert events == [
        ("u1", "i1", "click", 100, ""),
        ("u2", "i,2", "purchase", 200, ""),
        ("u3", "i 3", "favorite", 1522454400, ""),
        ("u4", "i4", "cart", 300, ""),
    ]
    assert summary == parsing.FileSummary(rows_read=4, blank_lines=2, behavior_not_kept=0)


def test_an_id_with_a_control_character_is_rejected_and_counted():
    data = (
        b"user_id,item_id,behavior,timestamp\n"
        b'u1,"i\n1",pv,100\n'  # a quoted line break: Transform's vocabulary drops it
        b"u2,i\t2,pv,100\n"
        b'"u\r3",i3,pv,100\n'
        b"u4,i4,pv,100\n"
    )
    events, rejections, summary = _parse(data)
    assert events == [("u4", "i4", "click", 100, "")]
    assert rejections == [
        parsing.Rejection(parsing.CONTROL_CHARACTER_ID, 2, 3),
        parsing.Rejection(parsing.CONTROL_CHARACTER_ID, 4, 4),
        parsing.Rejection(parsing.CONTROL_CHARACTER_ID, 5, 6),
    ]
    assert summary.rows_read == 4
    text = parsing.open_text(io.BytesIO(b"1 1\x000\n2 20\n"))
    assert list(parsing.parse_release_file(text, "click", "train"))[:2] == [
        parsing.Rejection(parsing.CONTROL_CHARACTER_ID, 1, 1),
        ("2", "20", "click", 2, "train"),
    ]


def test_columns_are_found_by_name_in_any_order():
    data = b"timestamp,extra,behavior,item_id,user_id\n5,x,buy,i9,u9\n"
    events, rejections, _ = _parse(data)
    assert rejections == []
    assert events == [("u9", "i9", "purchase", 5, "")]


def test_every_rejection_reason_is_counted_with_its_lines_and_spares_other_rows():
    data = (
        b"user_id,item_id,behavior,timestamp\n"
        b"u1,i1,pv,1\n"  # line 2: ok
        b"u1,i1,pv\n"  # 3: wrong column count (short)
        b"u2,i2,pv,2,extra\n"  # 4: wrong column count (long)
        b"u3,i3,pv,soon\n"  # 5: bad timestamp
        b" ,i4,pv,4\n"  # 6: empty user id
        b"u5,,pv,5\n"  # 7: empty item id
        b"u6,i6,share,6\n"  # 8: unknown label
        b"u7,i\xff7,pv,7\n"  # 9: undecodable bytes
        # 10-11: wrong count over two lines: only line 10 is rejected for it, then
        # line 11 is read on its own (user '8"', label '8': unknown behavior).
        b'u8,"i\n8",buy,8,x\n'
        b"u9,i9,buy,9\n"  # 12: ok
    )
    events, rejections, summary = _parse(data)
    assert events == [("u1", "i1", "click", 1, ""), ("u9", "i9", "purchase", 9, "")]
    assert rejections == [
        parsing.Rejection(parsing.WRONG_COLUMN_COUNT, 3, 3),
        parsing.Rejection(parsing.WRONG_COLUMN_COUNT, 4, 4),
        parsing.Rejection(parsing.BAD_TIMESTAMP, 5, 5),
        parsing.Rejection(parsing.EMPTY_ID, 6, 6),
        parsing.Rejection(parsing.EMPTY_ID, 7, 7),
        parsing.Rejection(parsing.UNKNOWN_BEHAVIOR, 8, 8),
        parsing.Rejection(parsing.UNDECODABLE_BYTES, 9, 9),
        parsing.Rejection(parsing.WRONG_COLUMN_COUNT, 10, 10),
        parsing.Rejection(parsing.UNKNOWN_BEHAVIOR, 11, 11),
    ]
    assert summary.rows_read == 11
    assert summary.rows_read == len(events) + len(rejections)


def test_mapped_behavior_not_kept_is_counted_not_rejected():
    data = b"user_id,item_id,behavior,timestamp\nu1,i1,cart,1\nu1,i1,buy,2\n"
    events, rejections, summary = _parse(data, behaviors=("purchase", "click"))
    assert events == [("u1", "i1", "purchase", 2, "")]
    assert rejections == []
    assert summary.behavior_not_kept == 1


def test_header_without_a_configured_column_names_file_and_column():
    with pytest.raises(ValueError, match=r"log\.csv.*\['timestamp'\]"):
        _parse(b"user_id,item_id,behavior,time\nu1,i1,pv,1\n")


@pytest.mark.parametrize("sep", [";", "\t"])
def test_a_semicolon_or_tab_separated_file_is_named_as_such(sep):
    header = sep.join(["user_id", "item_id", "behavior", "timestamp"])
    with pytest.raises(ValueError, match="is it ';' or tab separated"):
        _parse(f"{header}\nu1{sep}i1{sep}pv{sep}1\n".encode())
    with pytest.raises(ValueError) as plain:  # a comma-separated wrong name: no hint
        _parse(b"user_id,item_id,behavior,time\nu1,i1,pv,1\n")
    assert "separated" not in str(plain.value)


def test_a_utf16_file_is_named_as_not_utf8():
    data = "user_id,item_id,behavior,timestamp\nu1,i1,pv,1\n".encode("utf-16")
    with pytest.raises(ValueError, match=r"the file is not UTF-8 text \(UTF-16"):
        _parse(data)
    with pytest.raises(ValueError) as plain:  # a UTF-8 header with a wrong name: no hint
        _parse(b"user_id,item_id,behavior,time\nu1,i1,pv,1\n")
    assert "UTF-8" not in str(plain.value)


def test_empty_file_yields_only_a_summary():
    events, rejections, summary = _parse(b"")
    assert (events, rejections) == ([], [])
    assert summary == parsing.FileSummary(0, 0, 0)


def test_release_file_lines():
    text = parsing.open_text(io.BytesIO(b"1 10\n2 20\r\n\n3\n4 4\xff0\n5 50 9\n"))
    out = list(parsing.parse_release_file(text, "click", "eval"))
    assert out == [
        ("1", "10", "click", 1, "eval"),
        ("2", "20", "click", 2, "eval"),
        parsing.Rejection(parsing.WRONG_COLUMN_COUNT, 4, 4),
        parsing.Rejection(parsing.UNDECODABLE_BYTES, 5, 5),
        parsing.Rejection(parsing.WRONG_COLUMN_COUNT, 6, 6),
        parsing.FileSummary(rows_read=5, blank_lines=1, behavior_not_kept=0),
    ]


# --- configuration ----------------------------------------------------------------------


def test_config_defaults_follow_the_format():
    raw = config_lib.ExampleGenConfig(input_base="x.csv")
    assert raw.behaviors == features.DEFAULT_BEHAVIORS
    # The default labels, and each behavior name as a label of itself.
    assert raw.behavior_mapping == {
        **features.DEFAULT_RAW_BEHAVIOR_MAPPING,
        **{b: b for b in features.DEFAULT_RAW_BEHAVIOR_MAPPING.values()},
    }
    assert raw.split_boundaries == (0.8, 0.9)
    release = config_lib.ExampleGenConfig(input_base="d", input_format="release")
    assert release.behavior_mapping == dict(features.RELEASE_BEHAVIOR_MAPPING)
    assert release.behaviors == features.DEFAULT_BEHAVIORS


def test_behavior_names_are_raw_labels_of_themselves_unless_mapped_otherwise():
    config = config_lib.ExampleGenConfig(
        input_base="x.csv", behavior_mapping={"pv": "click", "click": "purchase", "Buy": "purchase"}
    )
    assert config.behavior_mapping == {
        "pv": "click",
        "click": "purchase",
        "buy": "purchase",
        "purchase": "purchase",
    }
    default = config_lib.ExampleGenConfig(input_base="x.csv").behavior_mapping
    events, rejections, _ = _parse(
        b"user_id,item_id,behavior,timestamp\nu1,i1,purchase,1\nu1,i2,Favorite,2\nu1,i3,fav,3\n",
        mapping=default,
    )
    assert events == [
        ("u1", "i1", "purchase", 1, ""),
        ("u1", "i2", "favorite", 2, ""),
        ("u1", "i3", "favorite", 3, ""),
    ]
    assert rejections == []
    release = config_lib.ExampleGenConfig(input_base="d", input_format="release")
    assert "purchase" not in release.behavior_mapping  # file-name prefixes stay as given


def test_config_lowercases_raw_labels_and_decodes_json_properties():
    config = config_lib.ExampleGenConfig.from_exec_properties(
        {
            "input_base": "x.csv",
            "behavior_mapping": '{" Buy ": "purchase", "PV": "click"}',
            "behaviors": '["click", "purchase"]',
            "split_boundaries": "[10, 20]",
            "split_method": "cut_timestamps",
            "drop_cold_eval_users": 0,
            "version": None,
        }
    )
    assert config.behavior_mapping == {
        "buy": "purchase",
        "pv": "click",
        "purchase": "purchase",
        "click": "click",
    }
    assert config.behaviors == ("click", "purchase")
    assert config.split_boundaries == (10, 20)
    assert config.drop_cold_eval_users is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_base": ""}, "input_base"),
        ({"input_format": "parquet"}, "'parquet'"),
        ({"user_column": "item_id"}, "distinct"),
        ({"behavior_mapping": {"buy": "purchase", "BUY": "click"}}, "'BUY'"),
        ({"behavior_mapping": {"buy": "pur chase"}}, "'pur chase'"),
        ({"behaviors": ["purchase", "share"]}, "'share'"),
        ({"target_behavior": "view"}, "'view'"),
        ({"min_item_target_events": -1}, "-1"),
        ({"min_user_target_events": 2.5}, "2.5"),
        ({"split_method": "hash"}, "'hash'"),
        ({"split_boundaries": [0.9, 0.8]}, r"\[0.9, 0.8\]"),
        ({"split_boundaries": [0.8, 1.2]}, r"\(0, 1\)"),
        ({"split_boundaries": [0.8]}, r"\[0.8\]"),
        ({"split_boundaries": [0.8, float("nan")]}, "nan"),
        ({"drop_cold_eval_users": "yes"}, "'yes'"),
    ],
)
def test_config_rejects_bad_values_naming_them(kwargs, message):
    args = {"input_base": "x.csv", **kwargs}
    with pytest.raises(ValueError, match=message):
        config_lib.ExampleGenConfig(**args)


def test_cut_timestamps_need_not_be_fractions():
    config = config_lib.ExampleGenConfig(
        input_base="x", split_method="cut_timestamps", split_boundaries=(1522454400, 1523145600)
    )
    assert config.split_boundaries == (1522454400, 1523145600)
