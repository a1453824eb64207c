"""Row-level parsing of raw event logs and of the released pre-split files.

Pure Python, no Beam: the Beam steps in ``transforms.py`` call these per file.

A parsed event is the plain tuple ``(user, item, behavior, timestamp, split)``:
``user``/``item`` are the raw ids as ``str`` (stripped), ``behavior`` a canonical
behavior name, ``timestamp`` unix seconds (``int`` when integral, else ``float``; for
the release format the 1-based line number, which orders a file's events) and
``split`` ``""`` for raw logs (split later by time) or the split name the release file
gives.

Raw-log CSV conventions (RFC 4180 via the ``csv`` module): the first non-blank record
of each file is the header (a UTF-8 BOM is ignored); columns are found by name, extra
columns are ignored; CRLF or LF line ends; quoted fields may hold commas, quotes and
newlines; blank lines are skipped (counted, not rows); fields are stripped of
surrounding spaces; behavior labels match case-insensitively. Bytes that are not UTF-8
reject only the record that holds them. Quoting is strict: text after a closing quote
or a quote left open at the end of the file makes the record malformed. A record that
spans several lines (a quoted field holding newlines) and is rejected for its shape
(wrong column count, malformed CSV) is taken for a stray quote: only its first line is
rejected and reading resumes at the next line, so one stray quote never swallows the
rows after it.
"""

from __future__ import annotations

import csv
import datetime
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, NamedTuple

# Rejection reasons (keys of the accounting record).
WRONG_COLUMN_COUNT = "wrong_column_count"
BAD_TIMESTAMP = "bad_timestamp"
#: A readable timestamp outside the configured window of plausible event times.
IMPLAUSIBLE_TIMESTAMP = "implausible_timestamp"
EMPTY_ID = "empty_id"
UNKNOWN_BEHAVIOR = "unknown_behavior"
UNDECODABLE_BYTES = "undecodable_bytes"
#: The ``csv`` module refused the record (e.g. a field over ``csv.field_size_limit``).
MALFORMED_CSV = "malformed_csv"
#: A user or item id holding a control character (a quoted line break, a tab, NUL, ...).
#: Transform's text vocabulary leaves out every id with a line break
#: (``tft.analyzers.get_vocab_newline_characters_regex``), so its events would vanish
#: unnoticed at training and it could never be served; other control characters in an
#: id are corruption, not identity.
CONTROL_CHARACTER_ID = "control_character_id"
#: A record repeating the file's header (its fields, stripped, equal the header's
#: names, case-insensitively): files joined with ``cat`` each keep their header line.
REPEATED_HEADER = "repeated_header"
REJECTION_REASONS: tuple[str, ...] = (
    WRONG_COLUMN_COUNT,
    BAD_TIMESTAMP,
    EMPTY_ID,
    UNKNOWN_BEHAVIOR,
    UNDECODABLE_BYTES,
    MALFORMED_CSV,
    IMPLAUSIBLE_TIMESTAMP,
    CONTROL_CHARACTER_ID,
    REPEATED_HEADER,
)

Event = tuple[str, str, str, int | float, str]


class Rejection(NamedTuple):
    """A record that was not turned into an event.

    Attributes:
      reason: one of ``REJECTION_REASONS``.
      first_line: 1-based physical line where the record starts.
      last_line: 1-based physical line where it ends (> first_line for quoted newlines).
    """

    reason: str
    first_line: int
    last_line: int


class FileSummary(NamedTuple):
    """What one file held.

    Attributes:
      rows_read: records after the header, blank lines excluded.
      blank_lines: blank lines skipped.
      behavior_not_kept: valid rows whose behavior is mapped but not kept.
    """

    rows_read: int
    blank_lines: int
    behavior_not_kept: int


#: Timestamps outside the calendar years 1..9999 (``datetime``'s range), unix seconds,
#: are rejected: such values are unit mistakes (e.g. milliseconds) or corruption, and
#: one of them would stretch the time span that ``time_fractions`` cuts.
MIN_TIMESTAMP = -62135596800  # 0001-01-01T00:00:00Z
MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z

# Bytes that are not UTF-8 decode to lone surrogates U+DC80..U+DCFF under the
# "surrogateescape" error handler.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
# Unicode category Cc (C0 and C1 controls, DEL), and the line and paragraph separators
# that ``str.splitlines`` also breaks at.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Unix seconds: ASCII digits only (``int``/``float`` alone would also take "1_000",
# non-ASCII digits, "nan" and "inf").
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
#: Rejections for the shape of a record, after which a multi-line record is re-read
#: line by line (see the module docstring).
_SHAPE_REASONS = frozenset({WRONG_COLUMN_COUNT, MALFORMED_CSV})


def _has_undecodable(text: str) -> bool:
    return _UNDECODABLE.search(text) is not None


def _id_problem(user: str, item: str) -> str | None:
    """The rejection reason of a record's stripped ids, or None when both are fine."""
    if not user or not item:
        return EMPTY_ID
    if _CONTROL.search(user) or _CONTROL.search(item):
        return CONTROL_CHARACTER_ID
    return None


def open_text(binary: IO[bytes]) -> io.TextIOWrapper:
    """Wraps a binary stream as text: UTF-8, BOM dropped, bad bytes kept escaped."""
    return io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")


def parse_timestamp(text: str) -> int | float:
    """Parses unix seconds or an ISO-8601 date-time.

    Args:
      text: e.g. ``"1522454400"``, ``"1522454400.5"``, ``"1.522454401e9"``,
        ``"2018-03-31T00:00:00Z"``, ``"2018-03-31 08:00:00+08:00"``; ISO values without
        an offset are UTC. Unix seconds are ASCII digits with an optional sign,
        fraction and exponent.

    Returns:
      Unix seconds, ``int`` when integral, in ``[MIN_TIMESTAMP, MAX_TIMESTAMP]``.

    Raises:
      ValueError: if the text is neither, lies outside the years 1..9999, or is in
        exponent form with fewer significant digits than its whole seconds have
        (``"1.70407E+09"``, a spreadsheet's rounding: read as is it would move every
        time by up to hours).
    """
    value: float
    if _INTEGER.fullmatch(text):
        value = int(text)
    elif _DECIMAL.fullmatch(text):
        value = float(text)
        mantissa, _, exponent = text.lower().partition("e")
        digits = len(mantissa.lstrip("+-").replace(".", "").lstrip("0"))
        whole = len(str(int(abs(value)))) if 1 <= abs(value) <= MAX_TIMESTAMP else 0
        if exponent and digits < whole:
            raise ValueError(
                f"timestamp {text!r} in exponent form keeps {digits} significant digits, "
                f"fewer than the {whole} of its whole seconds (rounded, e.g. by a "
                "spreadsheet): write the column as whole numbers"
            )
    else:
        try:
            moment = datetime.datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=datetime.UTC)
            value = moment.timestamp()
        except (ValueError, OverflowError) as e:
            raise ValueError(f"timestamp {text!r} is neither unix seconds nor ISO-8601") from e
    if not MIN_TIMESTAMP <= value <= MAX_TIMESTAMP:
        raise ValueError(
            f"timestamp {text!r} lies outside the years 1..9999 "
            f"([{MIN_TIMESTAMP}, {MAX_TIMESTAMP}] unix seconds)"
        )
    return int(value) if isinstance(value, int) or value.is_integer() else value


class _Lines:
    """The physical lines of a text stream for ``csv.reader``, with push-back.

    Lines are numbered from 1. ``csv.reader`` pulls one line at a time and never reads
    ahead, so the lines pulled since ``start_record`` are exactly the current record's.
    """

    def __init__(self, text: Iterable[str]) -> None:
        self._text = iter(text)
        self._pushed: list[str] = []  # lines to serve again, last first
        self.record: list[str] = []
        self.next_number = 1

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._pushed.pop() if self._pushed else next(self._text)
        self.record.append(line)
        self.next_number += 1
        return line

    def start_record(self) -> int:
        """Starts a record; returns the number of its first line."""
        self.record = []
        return self.next_number

    def push_back_tail(self) -> None:
        """Makes every line of the current record but the first to be read again."""
        tail = self.record[1:]
        self._pushed.extend(reversed(tail))
        self.next_number -= len(tail)
        self.record = self.record[:1]


class RawLogParser:
    """Turns the records of one raw-log CSV file into events and rejections.

    Args:
      columns: (user, item, behavior, timestamp) header names.
      behavior_mapping: lower-cased raw label -> behavior name.
      behaviors: behaviors kept; mapped labels of other behaviors are counted in
        ``FileSummary.behavior_not_kept``.
      timestamp_window: ``(start, end)`` unix seconds: rows with a timestamp outside
        ``[start, end)`` are rejected as ``IMPLAUSIBLE_TIMESTAMP``; ``None``: no check
        beyond the calendar limits of ``parse_timestamp``.
    """

    def __init__(
        self,
        columns: tuple[str, str, str, str],
        behavior_mapping: Mapping[str, str],
        behaviors: Iterable[str],
        timestamp_window: tuple[float, float] | None = None,
    ) -> None:
        self._columns = columns
        self._mapping = dict(behavior_mapping)
        self._kept = frozenset(behaviors)
        self._window = timestamp_window

    def _header_indices(self, header: list[str], path: str) -> tuple[int, int, int, int]:
        names = [name.strip() for name in header]
        missing = [c for c in self._columns if c not in names]
        if missing:
            # UTF-16 (a BOM of FF FE or FE FF, a NUL byte beside every ASCII letter) or
            # another encoding reads as escaped bytes and NULs under UTF-8.
            hint = (
                "; the file is not UTF-8 text (UTF-16, as some spreadsheet exports write? "
                "save it as UTF-8 CSV)"
                if any(_has_undecodable(name) or "\x00" in name for name in names)
                else ""
            )
            if not hint and len(names) == 1 and (";" in names[0] or "\t" in names[0]):
                hint = "; the file is read as comma-separated: is it ';' or tab separated?"
            raise ValueError(
                f"{path}: header {names} lacks column(s) {missing} (expected "
                f"{list(self._columns)}){hint}"
            )
        repeated = [c for c in self._columns if names.count(c) > 1]
        if repeated:
            raise ValueError(f"{path}: header {names} repeats column(s) {repeated}")
        user, item, behavior, timestamp = (names.index(c) for c in self._columns)
        return user, item, behavior, timestamp

    def parse(self, text: IO[str], path: str) -> Iterator[Event | Rejection | FileSummary]:
        """Yields events and rejections in file order, then one ``FileSummary``.

        Args:
          text: the file as text (see ``open_text``).
          path: its name, for error messages.

        Raises:
          ValueError: if the header is unreadable, lacks a configured column or repeats
            one (names the file).
        """
        lines = _Lines(text)
        reader = csv.reader(lines, strict=True)
        rows_read = blank_lines = not_kept = 0
        indices: tuple[int, int, int, int] | None = None
        width = 0
        header: list[str] = []
        while True:
            first_line = lines.start_record()
            try:
                record: list[str] | None = next(reader)
            except StopIteration:
                break
            except csv.Error:
                record = None
            if record is not None and (not record or (len(record) == 1 and not record[0].strip())):
                blank_lines += 1
                continue
            if indices is None:
                if record is None:
                    raise ValueError(f"{path}: unreadable CSV header (line {first_line})")
                indices = self._header_indices(record, path)
                width = len(record)
                header = [name.strip().lower() for name in record]
                continue
            rows_read += 1
            if record is None:
                result: Event | str = MALFORMED_CSV
            elif [field.strip().lower() for field in record] == header:
                result = REPEATED_HEADER
            else:
                result = self._to_event(record, width, indices)
            if isinstance(result, str):
                if result in _SHAPE_REASONS and len(lines.record) > 1:
                    lines.push_back_tail()
                yield Rejection(result, first_line, lines.next_number - 1)
            elif result[2] in self._kept:
                yield result
            else:
                not_kept += 1
        yield FileSummary(rows_read, blank_lines, not_kept)

    def _to_event(
        self, record: list[str], width: int, indices: tuple[int, int, int, int]
    ) -> Event | str:
        """The record's event, or the reason it is rejected (checked in this order)."""
        if len(record) != width:
            return WRONG_COLUMN_COUNT
        if _has_undecodable("".join(record)):
            return UNDECODABLE_BYTES
        user_i, item_i, behavior_i, timestamp_i = indices
        user = record[user_i].strip()
        item = record[item_i].strip()
        bad_id = _id_problem(user, item)
        if bad_id:
            return bad_id
        behavior = self._mapping.get(record[behavior_i].strip().lower())
        if behavior is None:
            return UNKNOWN_BEHAVIOR
        timestamp = self._timestamp(record[timestamp_i].strip())
        if isinstance(timestamp, str):
            return timestamp
        return (user, item, behavior, timestamp, "")

    def _timestamp(self, text: str) -> int | float | str:
        """Unix seconds, or the rejection reason (bad, then implausible)."""
        try:
            timestamp = parse_timestamp(text)
        except ValueError:
            return BAD_TIMESTAMP
        if self._window is not None and not self._window[0] <= timestamp < self._window[1]:
            return IMPLAUSIBLE_TIMESTAMP
        return timestamp


def parse_release_file(
    text: IO[str], behavior: str, split: str
) -> Iterator[Event | Rejection | FileSummary]:
    """Parses one released ``<prefix>_<suffix>`` file of ``user item`` lines.

    Args:
      text: the file as text (see ``open_text``).
      behavior: the canonical behavior of the file.
      split: the split name of the file (``features.SPLITS``).

    Yields:
      Events (timestamp = 1-based line number) and rejections in file order, then
      one ``FileSummary``.
    """
    rows_read = blank_lines = 0
    for line_number, line in enumerate(text, start=1):
        fields = line.split()
        if not fields:
            blank_lines += 1
            continue
        rows_read += 1
        if len(fields) != 2:
            yield Rejection(WRONG_COLUMN_COUNT, line_number, line_number)
        elif _has_undecodable(line):
            yield Rejection(UNDECODABLE_BYTES, line_number, line_number)
        elif _id_problem(fields[0], fields[1]):
            yield Rejection(CONTROL_CHARACTER_ID, line_number, line_number)
        else:
            yield (fields[0], fields[1], behavior, line_number, split)
    yield FileSummary(rows_read, blank_lines, 0)
