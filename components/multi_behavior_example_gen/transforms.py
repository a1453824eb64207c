"""The Beam steps of the multi-behavior ExampleGen, each testable alone.

parse + validate (``ReadRawLog`` / ``ReadRelease``) -> ``Deduplicate`` (keep the
earliest event of each (user, item, behavior)) -> ``FilterItems`` (paper step ii) ->
``GroupAndFilterUsers`` (step iii, one shuffle by user) -> ``ComputeCuts`` (step iv)
-> ``SplitAndEncode`` (step iv, step v, one tf.Example per user and split).

Every step that reads, drops or splits rows also returns a PCollection of summaries
(small ``dict[str, int | float]``, see ``accounting.py``) so that every row is
accounted for.
Keys of keyed steps are plain ``str``. No step collects data on the driver or keeps
global Python state, so the same code runs on any Beam runner.

Events are plain tuples ``(user, item, behavior, timestamp, split)`` (``parsing.py``).
A user's grouped events are ``(user, [(timestamp, item, behavior, split), ...])``
sorted by (timestamp, item, behavior).
"""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

import apache_beam as beam
import pyarrow as pa
from absl import logging
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tfx_bsl.coders import example_coder

from bvae_tf import features
from components.multi_behavior_example_gen import accounting, parsing
from components.multi_behavior_example_gen.config import (
    CUT_TIMESTAMPS,
    EVENT_FRACTIONS,
    TIME_FRACTIONS,
    ExampleGenConfig,
)

SUMMARY = "summary"
SAMPLES = "samples"
#: A rejected record spanning this many physical lines is logged as a warning. Records
#: rejected for their shape are re-read line by line (``parsing.RawLogParser``), so
#: this only flags a well-formed record whose quoted fields hold that many newlines.
_LONG_RECORD_LINES = 100

UserEvents = tuple[str, list[tuple[Any, str, str, str]]]


_GZIP_MAGIC = b"\x1f\x8b"


def _open_binary(path: str) -> IO[bytes]:
    """Opens a file, decompressing it when it starts with the gzip magic bytes.

    The content decides, not the name, so ``x.CSV.GZ`` or a gzipped ``x.csv`` read as
    gzip and a plain file named ``x.csv.gz`` reads as text. Streams that cannot seek
    fall back to the name (``.gz``/``.gzip``).
    """
    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if raw.seekable():
        gzipped = raw.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC
        raw.seek(0)
    else:
        gzipped = path.lower().endswith((".gz", ".gzip"))
    if gzipped:
        return gzip.GzipFile(fileobj=raw, mode="rb")
    return raw


class _ParseFileFn(beam.DoFn):
    """Parses whole files; emits events, one summary per file and rejection samples."""

    def __init__(self, config: ExampleGenConfig) -> None:
        self._config = config

    def _parse(self, element: Any, text: IO[str]) -> Iterator[Any]:
        raise NotImplementedError

    def _path(self, element: Any) -> str:
        return element

    def process(self, element: Any) -> Iterator[Any]:
        path = self._path(element)
        try:
            yield from self._process_file(element, path)
        except (OSError, EOFError, zlib.error) as e:
            # A corrupt or truncated .gz, or an I/O failure: fail naming the file.
            raise ValueError(f"{path}: cannot read the file: {e}") from e

    def _process_file(self, element: Any, path: str) -> Iterator[Any]:
        counts = dict.fromkeys(parsing.REJECTION_REASONS, 0)
        with _open_binary(path) as binary, parsing.open_text(binary) as text:
            for out in self._parse(element, text):
                if isinstance(out, parsing.Rejection):
                    counts[out.reason] += 1
                    if out.last_line - out.first_line >= _LONG_RECORD_LINES:
                        logging.warning(
                            "%s: rejected record spans lines %d-%d",
                            path,
                            out.first_line,
                            out.last_line,
                        )
                    if counts[out.reason] <= accounting.SAMPLES_PER_REASON:
                        yield beam.pvalue.TaggedOutput(
                            SAMPLES, (out.reason, (path, out.first_line, out.last_line))
                        )
                elif not isinstance(out, parsing.FileSummary):
                    yield out
                else:
                    summary = {
                        accounting.FILES_READ: 1,
                        accounting.ROWS_READ: out.rows_read,
                        accounting.BLANK_LINES: out.blank_lines,
                        accounting.BEHAVIOR_NOT_KEPT: out.behavior_not_kept,
                    }
                    for reason, count in counts.items():
                        summary[accounting.rejected_key(reason)] = count
                    yield beam.pvalue.TaggedOutput(SUMMARY, summary)


class _ParseRawLogFileFn(_ParseFileFn):
    def __init__(self, config: ExampleGenConfig) -> None:
        super().__init__(config)
        self._parser = parsing.RawLogParser(
            config.columns, config.behavior_mapping, config.behaviors, config.timestamp_window
        )

    def _parse(self, element: str, text: IO[str]) -> Iterator[Any]:
        return self._parser.parse(text, element)


class _ParseReleaseFileFn(_ParseFileFn):
    def _path(self, element: tuple[str, str, str]) -> str:
        return element[0]

    def _parse(self, element: tuple[str, str, str], text: IO[str]) -> Iterator[Any]:
        _, behavior, split = element
        return parsing.parse_release_file(text, behavior, split)


def _read(files: beam.pvalue.PCollection, parse_fn: beam.DoFn):
    outputs = (
        files
        # Spread the files over the workers before the per-file work.
        | "Reshuffle" >> beam.Reshuffle()
        | "Parse" >> beam.ParDo(parse_fn).with_outputs(SUMMARY, SAMPLES, main="events")
    )
    return outputs.events, outputs[SUMMARY], outputs[SAMPLES]


@beam.ptransform_fn
def ReadRawLog(files: beam.pvalue.PCollection, config: ExampleGenConfig):
    """Parses and validates raw-log CSV files.

    Args:
      files: file paths (``str``), each read whole (quoted newlines stay intact;
        ``.gz`` decompressed).
      config: the component's configuration.

    Returns:
      ``(events, summaries, samples)``: parsed events; one summary per file (rows
      read, blank lines, rejections per reason, behavior not kept); the first
      ``accounting.SAMPLES_PER_REASON`` rejections per reason and file as
      ``(reason, (path, first_line, last_line))``.
    """
    return _read(files, _ParseRawLogFileFn(config))


@beam.ptransform_fn
def ReadRelease(files: beam.pvalue.PCollection, config: ExampleGenConfig):
    """Parses released ``<prefix>_<suffix>`` files of ``user item`` lines.

    Args:
      files: ``(path, behavior, split)`` tuples.
      config: the component's configuration.

    Returns:
      As ``ReadRawLog``; event timestamps are line numbers, splits come from the file.
    """
    return _read(files, _ParseReleaseFileFn(config))


class _EarliestFn(beam.CombineFn):
    """Counts the events of a key and keeps the smallest ``(split_rank, timestamp)``."""

    def create_accumulator(self) -> tuple[int, Any]:
        return 0, None

    def add_input(self, accumulator: tuple[int, Any], value: Any) -> tuple[int, Any]:
        count, best = accumulator
        return count + 1, value if best is None or value < best else best

    def merge_accumulators(self, accumulators: Iterable[tuple[int, Any]]) -> tuple[int, Any]:
        count, best = 0, None
        for other_count, other in accumulators:
            count += other_count
            if other is not None and (best is None or other < best):
                best = other
        return count, best

    def extract_output(self, accumulator: tuple[int, Any]) -> tuple[int, Any]:
        return accumulator


def _split_rank(split: str) -> int:
    return features.SPLITS.index(split) if split else 0


def _emit_deduplicated(element: tuple[tuple[str, str, str], tuple[int, Any]]):
    (user, item, behavior), (count, (_, timestamp, split)) = element
    if count > 1:
        yield beam.pvalue.TaggedOutput(SUMMARY, {accounting.DUPLICATES: count - 1})
    yield user, item, behavior, timestamp, split


@beam.ptransform_fn
def Deduplicate(events: beam.pvalue.PCollection):
    """Keeps the earliest event of each (user, item, behavior) (paper step i).

    Tie rule: events are ordered by (split, timestamp) (split only matters for the
    release format, where earlier splits win); events that tie are identical in every
    output field, so which one is kept cannot change the output.

    Returns:
      ``(events, summaries)`` with ``duplicates_dropped`` counted.
    """
    outputs = (
        events
        | "KeyByTriple" >> beam.Map(lambda e: ((e[0], e[1], e[2]), (_split_rank(e[4]), e[3], e[4])))
        | "Earliest" >> beam.CombinePerKey(_EarliestFn())
        | "Emit" >> beam.FlatMap(_emit_deduplicated).with_outputs(SUMMARY, main="events")
    )
    return outputs.events, outputs[SUMMARY]


class _FilterItemGroupFn(beam.DoFn):
    def __init__(self, min_target_events: int, target_behavior: str) -> None:
        self._min = min_target_events
        self._target = target_behavior

    def process(self, element: tuple[str, Iterable[Any]]) -> Iterator[Any]:
        _, events = element
        events = list(events)
        targets = sum(1 for e in events if e[2] == self._target)
        if targets < self._min:
            yield beam.pvalue.TaggedOutput(
                SUMMARY,
                {accounting.ITEMS_DROPPED: 1, accounting.ITEM_EVENTS_DROPPED: len(events)},
            )
            return
        yield beam.pvalue.TaggedOutput(SUMMARY, {accounting.ITEMS_KEPT: 1})
        yield from events


@beam.ptransform_fn
def FilterItems(events: beam.pvalue.PCollection, min_target_events: int, target_behavior: str):
    """Drops all events of items with fewer than ``min_target_events`` target events.

    Paper step ii (20 purchases for JD, 10 for UB), counted after deduplication, over
    the whole log (before the split). ``min_target_events == 0`` keeps every item.

    Returns:
      ``(events, summaries)`` with items dropped/kept and events dropped.
    """
    outputs = (
        events
        | "KeyByItem" >> beam.Map(lambda e: (e[1], e))
        | "GroupByItem" >> beam.GroupByKey()
        | "Filter"
        >> beam.ParDo(_FilterItemGroupFn(min_target_events, target_behavior)).with_outputs(
            SUMMARY, main="events"
        )
    )
    return outputs.events, outputs[SUMMARY]


class _FilterUserGroupFn(beam.DoFn):
    def __init__(self, min_target_events: int, target_behavior: str) -> None:
        self._min = min_target_events
        self._target = target_behavior

    def process(self, element: tuple[str, Iterable[Any]]) -> Iterator[Any]:
        user, events = element
        events = sorted(events)
        targets = sum(1 for e in events if e[2] == self._target)
        if targets < self._min:
            yield beam.pvalue.TaggedOutput(
                SUMMARY,
                {accounting.USERS_DROPPED: 1, accounting.USER_EVENTS_DROPPED: len(events)},
            )
            return
        yield beam.pvalue.TaggedOutput(SUMMARY, {accounting.USERS_KEPT: 1})
        yield user, events


@beam.ptransform_fn
def GroupAndFilterUsers(
    events: beam.pvalue.PCollection, min_target_events: int, target_behavior: str
):
    """Groups events per user and drops users with too few target events (step iii).

    ``min_target_events == 0`` keeps every user.

    Returns:
      ``(user_events, summaries)``: ``(user, [(timestamp, item, behavior, split)])``
      sorted by (timestamp, item, behavior); users dropped/kept and events dropped.
    """
    outputs = (
        events
        | "KeyByUser" >> beam.Map(lambda e: (e[0], (e[3], e[1], e[2], e[4])))
        | "GroupByUser" >> beam.GroupByKey()
        | "Filter"
        >> beam.ParDo(_FilterUserGroupFn(min_target_events, target_behavior)).with_outputs(
            SUMMARY, main="user_events"
        )
    )
    return outputs.user_events, outputs[SUMMARY]


class _TimeSpanFn(beam.CombineFn):
    """``(min, max)`` timestamp over users' event lists; ``None`` when there is none."""

    def create_accumulator(self) -> tuple[Any, Any] | None:
        return None

    def add_input(self, accumulator, events: Sequence[tuple[Any, ...]]):
        if not events:
            return accumulator
        return self.merge_accumulators([accumulator, (events[0][0], events[-1][0])])

    def merge_accumulators(self, accumulators):
        spans = [a for a in accumulators if a is not None]
        if not spans:
            return None
        return min(s[0] for s in spans), max(s[1] for s in spans)

    def extract_output(self, accumulator):
        return accumulator


class _TimestampHistogramFn(beam.CombineFn):
    """Counts of events per distinct timestamp (memory: one entry per distinct value)."""

    def create_accumulator(self) -> dict[Any, int]:
        return {}

    def add_input(self, accumulator: dict[Any, int], events: Sequence[tuple[Any, ...]]):
        for event in events:
            accumulator[event[0]] = accumulator.get(event[0], 0) + 1
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[dict[Any, int]]) -> dict[Any, int]:
        merged: dict[Any, int] = {}
        for accumulator in accumulators:
            for timestamp, count in accumulator.items():
                merged[timestamp] = merged.get(timestamp, 0) + count
        return merged

    def extract_output(self, accumulator: dict[Any, int]) -> dict[Any, int]:
        return accumulator


def time_fraction_cuts(
    span: tuple[float, float] | None, fractions: Sequence[float]
) -> tuple[float, ...] | None:
    """Cuts at ``t_lo + f * (t_hi - t_lo)`` for each fraction ``f`` (paper step iv).

    Args:
      span: ``(t_lo, t_hi)`` unix seconds (``trimmed_span``), or ``None``.
      fractions: the ``split_boundaries`` fractions.

    Returns:
      The cut timestamps (unix seconds), or ``None`` when ``span`` is ``None``.
    """
    if span is None:
        return None
    low, high = span
    return tuple(low + f * (high - low) for f in fractions)


def trimmed_span(histogram: dict[Any, int], trim: float) -> tuple[Any, Any] | None:
    """The timeline of the events without their ``trim`` share at each end.

    Args:
      histogram: event count per timestamp (unix seconds).
      trim: share in ``[0, 0.5)``.

    Returns:
      ``(t_lo, t_hi)``: with the ``n`` events sorted by time and
      ``k = floor(trim * n)``, the timestamps at 0-based ranks ``k`` and ``n - 1 - k``;
      ``None`` when there is no event.
    """
    total = sum(histogram.values())
    if total == 0:
        return None
    skip = math.floor(trim * total)
    low_rank, high_rank = skip, total - 1 - skip
    low = high = None
    seen = 0
    for timestamp in sorted(histogram):
        seen += histogram[timestamp]
        if low is None and seen > low_rank:
            low = timestamp
        if seen > high_rank:
            high = timestamp
            break
    return low, high


def event_fraction_cuts(
    histogram: dict[Any, int], fractions: Sequence[float]
) -> tuple[float, ...] | None:
    """For each ``f``, the timestamp of the event at 0-based rank ``floor(f * n)``."""
    total = sum(histogram.values())
    if total == 0:
        return None
    cuts = []
    for fraction in fractions:
        rank = math.floor(fraction * total)
        seen = 0
        for timestamp in sorted(histogram):
            seen += histogram[timestamp]
            if seen > rank:
                cuts.append(timestamp)
                break
    return tuple(cuts)


@beam.ptransform_fn
def ComputeCuts(user_events: beam.pvalue.PCollection, config: ExampleGenConfig):
    """The ``(eval start, test start)`` cut timestamps as a one-element PCollection.

    ``None`` for the release format (split by file) and when no event is left.
    ``time_fractions`` with ``timeline_trim > 0`` and ``event_fractions`` combine a
    histogram of the timestamps (memory: one entry per distinct timestamp).
    """
    if config.splits_from_files:
        return user_events.pipeline | "NoCuts" >> beam.Create([None])
    if config.split_method == CUT_TIMESTAMPS:
        return user_events.pipeline | "FixedCuts" >> beam.Create([config.split_boundaries])
    events = user_events | "Events" >> beam.Values()
    if config.split_method == TIME_FRACTIONS and config.timeline_trim == 0:
        return (
            events
            | "TimeSpan" >> beam.CombineGlobally(_TimeSpanFn())
            | "Cuts" >> beam.Map(time_fraction_cuts, config.split_boundaries)
        )
    if config.split_method == TIME_FRACTIONS:
        return (
            events
            | "Histogram" >> beam.CombineGlobally(_TimestampHistogramFn())
            | "TrimmedSpan" >> beam.Map(trimmed_span, config.timeline_trim)
            | "Cuts" >> beam.Map(time_fraction_cuts, config.split_boundaries)
        )
    if config.split_method == EVENT_FRACTIONS:
        return (
            events
            | "Histogram" >> beam.CombineGlobally(_TimestampHistogramFn())
            | "Cuts" >> beam.Map(event_fraction_cuts, config.split_boundaries)
        )
    raise ValueError(f"unknown split_method {config.split_method!r}")


_BYTES_LISTS = pa.large_list(pa.large_binary())
#: Users encoded per Arrow batch (tfx_bsl's C++ tf.Example encoder).
_MAX_ENCODE_BATCH = 1000

#: One user's example before encoding: ``(user, train lists, heldout lists or None)``,
#: lists keyed by behavior, item ids in time order.
ExampleRow = tuple[str, dict[str, list[str]], dict[str, list[str]] | None]


def _binary_lists(lists: Iterable[Iterable[str]]) -> pa.Array:
    return pa.array([[v.encode("utf-8") for v in values] for values in lists], _BYTES_LISTS)


def encode_examples(rows: Sequence[ExampleRow], behaviors: Sequence[str]) -> list[bytes]:
    """Serializes users' tf.Examples (schema in ``bvae_tf.features``).

    Every ``<b>_items`` (and, for rows with held-out lists, every ``<b>_heldout``) of
    ``behaviors`` is written, as an empty bytes list when the user has no such item.
    Encoding goes through tfx_bsl's C++ ``RecordBatchToExamplesEncoder``.

    Args:
      rows: ``(user, items, heldout)``: raw user id; behavior -> train item ids in time
        order; behavior -> the split's item ids in time order, or ``None`` (train).
        All rows must agree on whether ``heldout`` is ``None``.
      behaviors: the configured behaviors.

    Returns:
      Serialized ``tf.train.Example`` s, in the order of ``rows``.
    """
    if not rows:
        return []
    columns = {features.USER_ID: _binary_lists([row[0]] for row in rows)}
    for behavior in behaviors:
        columns[features.items_key(behavior)] = _binary_lists(
            row[1].get(behavior, ()) for row in rows
        )
    if rows[0][2] is not None:
        for behavior in behaviors:
            columns[features.heldout_key(behavior)] = _binary_lists(
                row[2].get(behavior, ()) for row in rows
            )
    batch = pa.RecordBatch.from_arrays(list(columns.values()), list(columns))
    return example_coder.RecordBatchToExamplesEncoder().encode(batch)


class _SplitFn(beam.DoFn):
    def __init__(self, config: ExampleGenConfig) -> None:
        self._target = config.target_behavior
        self._drop_cold = config.drop_cold_eval_users
        self._from_files = config.splits_from_files

    def _split_of(self, timestamp: Any, split: str, cuts: Sequence[float] | None) -> str:
        if self._from_files:
            return split
        if timestamp < cuts[0]:
            return features.TRAIN
        if timestamp < cuts[1]:
            return features.EVAL
        return features.TEST

    def process(self, element: UserEvents, cuts: Sequence[float] | None) -> Iterator[Any]:
        user, events = element
        lists: dict[str, dict[str, list[str]]] = {s: {} for s in features.SPLITS}
        spans: dict[str, list[Any]] = {}
        for timestamp, item, behavior, given_split in events:
            split = self._split_of(timestamp, given_split, cuts)
            lists[split].setdefault(behavior, []).append(item)
            span = spans.setdefault(split, [timestamp, timestamp])
            span[0] = min(span[0], timestamp)
            span[1] = max(span[1], timestamp)
        summary: dict[str, Any] = {}
        if events and not self._from_files:
            summary[accounting.min_timestamp_key(accounting.ALL_EVENTS)] = events[0][0]
            summary[accounting.max_timestamp_key(accounting.ALL_EVENTS)] = events[-1][0]
        train = lists[features.TRAIN]
        if self._drop_cold and not train.get(self._target):
            for split in features.SPLITS[1:]:
                if lists[split]:
                    summary[accounting.cold_users_key(split)] = 1
                    summary[accounting.COLD_EVENTS_DROPPED] = summary.get(
                        accounting.COLD_EVENTS_DROPPED, 0
                    ) + sum(len(v) for v in lists[split].values())
                    lists[split] = {}
        for split in features.SPLITS:
            if not lists[split]:
                continue
            summary[accounting.split_users_key(split)] = 1
            for behavior, items in lists[split].items():
                summary[accounting.split_events_key(split, behavior)] = len(items)
            if not self._from_files:
                summary[accounting.min_timestamp_key(split)] = spans[split][0]
                summary[accounting.max_timestamp_key(split)] = spans[split][1]
            heldout = None if split == features.TRAIN else lists[split]
            yield beam.pvalue.TaggedOutput(split, (user, train, heldout))
        yield beam.pvalue.TaggedOutput(SUMMARY, summary)


@beam.ptransform_fn
def SplitAndEncode(
    user_events: beam.pvalue.PCollection,
    cuts: beam.pvalue.PCollection,
    config: ExampleGenConfig,
):
    """Splits each user's events, applies step v and writes one tf.Example per split.

    Train: one example per user with train events. Eval/test: one example per user
    with events in that split (after step v), carrying the user's train ``<b>_items``
    and the split's ``<b>_heldout``.

    Args:
      user_events: output of ``GroupAndFilterUsers``.
      cuts: output of ``ComputeCuts`` (a side input).
      config: the component's configuration.

    Returns:
      ``({split: serialized tf.Examples}, summaries)``.
    """
    outputs = user_events | "Split" >> beam.ParDo(
        _SplitFn(config), beam.pvalue.AsSingleton(cuts)
    ).with_outputs(SUMMARY, *features.SPLITS)
    behaviors = tuple(config.behaviors)
    encoded = {
        split: (
            outputs[split]
            | f"Batch[{split}]" >> beam.BatchElements(max_batch_size=_MAX_ENCODE_BATCH)
            | f"Encode[{split}]" >> beam.FlatMap(encode_examples, behaviors)
        )
        for split in features.SPLITS
    }
    return encoded, outputs[SUMMARY]


def _write_accounting(
    _: None,
    *,
    uri: str,
    config: dict[str, Any],
    input_files: list[str],
    skipped_files: list[str],
    summary: dict[str, Any],
    samples: list[tuple[str, list[tuple[str, int, int]]]],
    cuts: Sequence[float] | None,
) -> None:
    record = accounting.build_record(
        summary,
        samples=samples,
        cuts=cuts,
        config=config,
        input_files=input_files,
        skipped_files=skipped_files,
    )
    with FileSystems.create(uri) as f:
        f.write(accounting.dumps(record).encode("utf-8"))


@beam.ptransform_fn
def GenerateExamples(
    pipeline: beam.Pipeline,
    config: ExampleGenConfig,
    input_files: Sequence[Any],
    accounting_uri: str,
    skipped_files: Sequence[str] = (),
):
    """The whole ExampleGen: files -> ``{split: serialized tf.Examples}``.

    Also writes the accounting record (JSON) to ``accounting_uri``.

    Args:
      pipeline: the Beam pipeline.
      config: the component's configuration.
      input_files: raw log: paths; release: ``(path, behavior, split)`` tuples.
      accounting_uri: where the accounting JSON goes.
      skipped_files: release files not read (behaviors not kept), for the record.

    Returns:
      ``{split: PCollection of serialized tf.Example}`` for ``features.SPLITS``.
    """
    files = pipeline | "Files" >> beam.Create(list(input_files))
    if config.splits_from_files:
        events, read_summary, samples = files | "ReadRelease" >> ReadRelease(config)
    else:
        events, read_summary, samples = files | "ReadRawLog" >> ReadRawLog(config)
    events, dedup_summary = events | "Deduplicate" >> Deduplicate()
    summaries = [read_summary, dedup_summary]
    if config.min_item_target_events > 0:
        events, item_summary = events | "FilterItems" >> FilterItems(
            config.min_item_target_events, config.target_behavior
        )
        summaries.append(item_summary)
    user_events, user_summary = events | "GroupAndFilterUsers" >> GroupAndFilterUsers(
        config.min_user_target_events, config.target_behavior
    )
    cuts = user_events | "ComputeCuts" >> ComputeCuts(config)
    splits, split_summary = user_events | "SplitAndEncode" >> SplitAndEncode(cuts, config)
    summaries += [user_summary, split_summary]
    summary = (
        summaries
        | "FlattenSummaries" >> beam.Flatten()
        | "MergeSummaries" >> beam.CombineGlobally(accounting.MergeSummariesFn())
    )
    sample_lists = samples | "FirstRejections" >> beam.combiners.Top.SmallestPerKey(
        accounting.SAMPLES_PER_REASON
    )
    _ = (
        pipeline
        | "AccountingSeed" >> beam.Create([None])
        | "WriteAccounting"
        >> beam.Map(
            _write_accounting,
            uri=accounting_uri,
            config=config.to_json_dict(),
            input_files=[f if isinstance(f, str) else f[0] for f in input_files],
            skipped_files=list(skipped_files),
            summary=beam.pvalue.AsSingleton(summary),
            samples=beam.pvalue.AsList(sample_lists),
            cuts=beam.pvalue.AsSingleton(cuts),
        )
    )
    return splits
