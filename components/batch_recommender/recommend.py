"""Batch recommendation: top-K per behavior for every user, as files a shop loads.

The Beam job behind ``BatchRecommender`` (and ``python -m components.batch_recommender``):

1. read the ExampleGen's examples (every split, or the ones given);
2. merge each user's history over the splits: for every behavior ``b`` the union of
   ``<b>_items`` (train history) and ``<b>_heldout`` (the eval / test periods), i.e.
   everything the user did up to the end of the log;
3. optionally keep only the users of a given list (a listed user absent from the log
   is recommended for from an empty history, and counted);
4. run the exported model's ``serving_default`` signature (``bvae_tf.export``) on
   batches of those histories: top-K raw item ids and scores per behavior, the
   user's own items of that behavior excluded;
5. write one row per (user, behavior, rank): ``user_id, behavior, rank, item_id,
   score`` (rank 1 is the best) as CSV with a header, and/or GZIP TFRecord files of
   one ``tf.train.Example`` per (user, behavior) with ``user_id``, ``behavior``,
   ``item_ids`` (best first) and ``scores`` (a list per user loads straight into a
   key-value store; one example per row made the job 2.3 times slower on JD), plus
   ``summary.json`` (counts; ``rows`` counts (user, behavior, rank) rows;
   ``users_without_history_ids``: the first listed users without history, sorted).

The same SavedModel that is served answers here, so batch and online
recommendations agree for the same history. The job is not the stock
``BulkInferrer``: that writes ``PredictionLog`` protos of one split's examples, while
a shop needs rows per user from the whole history.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np

from bvae_tf import features
from components.batch_recommender.options import (
    CSV,
    DEFAULT_BATCH_SIZE,
    FORMATS,
    TFRECORD,
    check_arguments,
)

#: Columns of every output row, in order.
COLUMNS = ("user_id", "behavior", "rank", "item_id", "score")
CSV_PREFIX = "recommendations"
SUMMARY_FILE = "summary.json"
#: How many ids of listed users without history ``summary.json`` names (sorted, first).
WITHOUT_HISTORY_IDS = 10


def example_history(serialized: bytes, behaviors: Sequence[str]) -> tuple[str, dict[str, set]]:
    """One ExampleGen example -> ``(user_id, {behavior: set of raw item ids})``.

    Args:
      serialized: a serialized ``tf.train.Example`` with ``user_id`` and, per
        behavior, ``<b>_items`` and (eval / test splits) ``<b>_heldout`` bytes features.
      behaviors: the model's behaviors; other features are ignored.

    Raises:
      ValueError: if the record is no ``tf.train.Example``, has no ``user_id`` (not an
        ExampleGen example), or holds an id that is not UTF-8.
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        feature = tf.train.Example.FromString(serialized).features.feature
    except DecodeError as e:
        raise ValueError(f"a record that is no tf.train.Example ({e}): {serialized[:40]!r}") from e
    ids = feature[features.USER_ID].bytes_list.value if features.USER_ID in feature else []
    if len(ids) != 1:
        raise ValueError(f"an example without exactly one {features.USER_ID!r}: {list(ids)}")

    def text(value: bytes, key: str) -> str:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(
                f"an example whose {key!r} holds an id that is not UTF-8: {value!r}"
            ) from None

    user = text(ids[0], features.USER_ID)
    history = {}
    for b in behaviors:
        items = set()
        for key in (features.items_key(b), features.heldout_key(b)):
            if key in feature:
                items.update(text(v, key) for v in feature[key].bytes_list.value)
        history[b] = items
    return user, history


class MergeHistories(beam.CombineFn):
    """Union of one user's histories over splits: ``{behavior: set}`` -> sorted lists."""

    def create_accumulator(self) -> dict[str, set]:
        return {}

    def add_input(self, accumulator, history: Mapping[str, set]):
        for behavior, items in history.items():
            accumulator.setdefault(behavior, set()).update(items)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged: dict[str, set] = {}
        for accumulator in accumulators:
            self.add_input(merged, accumulator)
        return merged

    def extract_output(self, accumulator) -> dict[str, list[str]]:
        return {b: sorted(items) for b, items in accumulator.items()}


def recommendation_rows(
    user_ids: Sequence[str], outputs: Mapping[str, Any], behaviors: Sequence[str]
) -> Iterable[tuple[str, str, int, str, float]]:
    """Rows ``(user_id, behavior, rank, item_id, score)`` of one ``serving_default`` call.

    Args:
      user_ids: the batch's users, in the order of the examples sent.
      outputs: the signature's outputs as NumPy arrays: ``<b>_item_ids`` bytes
        ``[batch, K]`` and ``<b>_scores`` float32 ``[batch, K]`` (descending).
      behaviors: behaviors to write.

    A score of ``-inf`` marks an excluded item (the user already did ``b`` on it); the
    signature returns one only where fewer than K items are left to recommend, and such
    ranks are not written: that user's list for ``b`` is shorter than K.
    """
    for b in behaviors:
        ids = outputs[features.item_ids_output(b)]
        scores = outputs[features.scores_output(b)]
        for row, user in enumerate(user_ids):
            for rank, (item, score) in enumerate(zip(ids[row], scores[row], strict=True), 1):
                if score == -np.inf:  # descending: the rest are excluded too
                    break
                yield user, b, rank, item.decode("utf-8"), float(score)


class _Recommend(beam.DoFn):
    """Batches of ``(user_id, serialized history example)`` -> the batch's list of rows
    (SavedModel loaded once per worker)."""

    def __init__(self, model_dir: str, behaviors: Sequence[str]):
        self._model_dir = model_dir
        self._behaviors = tuple(behaviors)
        self._serve = None

    def setup(self):
        import tensorflow as tf

        loaded = tf.saved_model.load(self._model_dir)
        self._serve = loaded.signatures[features.SERVING_SIGNATURE]
        self._loaded = loaded  # keeps the signature's variables alive

    def process(self, batch):
        import tensorflow as tf

        users = [user for user, _ in batch]
        out = self._serve(**{features.SERVING_INPUT: tf.constant([ex for _, ex in batch])})
        arrays = {key: value.numpy() for key, value in out.items()}
        # One element per batch, not per row: the runner's cost per element would
        # dominate (a JD run writes 320,700 rows).
        yield list(recommendation_rows(users, arrays, self._behaviors))


def csv_line(row: Sequence[Any]) -> str:
    """One CSV line (no newline) of a row; ids with commas or quotes are quoted (RFC
    4180, Python's ``csv``); the float32 score with 7 significant digits."""
    user, behavior, rank, item, score = row
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([user, behavior, rank, item, f"{score:.7g}"])
    return buffer.getvalue()


def list_examples(rows: Sequence[Sequence[Any]]) -> Iterable[bytes]:
    """Rows -> one serialized ``tf.train.Example`` per (user, behavior): ``user_id``,
    ``behavior`` (bytes), ``item_ids`` (bytes, best first: rank = position + 1) and
    ``scores`` (float). Rows of one user and behavior must be consecutive and in rank
    order, as :func:`recommendation_rows` yields them."""
    import itertools

    import tensorflow as tf

    def text(values):
        return tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[v.encode("utf-8") for v in values])
        )

    for (user, behavior), grouped in itertools.groupby(rows, key=lambda r: (r[0], r[1])):
        group = list(grouped)
        feature = {
            "user_id": text([user]),
            "behavior": text([behavior]),
            "item_ids": text([r[3] for r in group]),
            "scores": tf.train.Feature(float_list=tf.train.FloatList(value=[r[4] for r in group])),
        }
        yield tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _history_example(history: Mapping[str, Sequence[str]]) -> bytes:
    from bvae_tf import export

    return export.history_example(history).SerializeToString()


def _select(element, requested: bool):
    """CoGroupByKey of histories and the requested users -> kept ``(user, history)``;
    users left out and listed users without history are tagged (counted)."""
    user, grouped = element
    histories = list(grouped["history"])
    if requested and not list(grouped["requested"]):
        yield beam.pvalue.TaggedOutput("not_requested", user)
        return
    if not histories:
        yield beam.pvalue.TaggedOutput("without_history", user)
        yield user, {}
        return
    yield user, histories[0]


def _count(tag: str):
    return beam.combiners.Count.Globally() | f"Name{tag}" >> beam.Map(lambda n: (tag, n))


def build(
    pipeline: beam.Pipeline,
    example_patterns: Sequence[str],
    model_dir: str,
    output_dir: str,
    *,
    behaviors: Sequence[str],
    users: Sequence[str] | None = None,
    formats: Sequence[str] = FORMATS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> None:
    """Adds the batch recommendation job to ``pipeline`` (see the module docstring).

    Args:
      pipeline: the Beam pipeline (run by the caller).
      example_patterns: file patterns of GZIP TFRecords of ExampleGen examples.
      model_dir: a SavedModel with ``serving_default`` (``bvae_tf.export``).
      output_dir: folder of the output files (``recommendations-*.csv``,
        ``recommendations-*.tfrecord.gz``, :data:`SUMMARY_FILE`).
      behaviors: the model's behaviors (``bvae_tf.export.read_export_info``).
      users: only these user ids (a listed user missing from the examples gets the
        ranking of an empty history); ``None``: every user of the examples.
      formats: any of :data:`FORMATS`.
      batch_size: histories per model call (at most).

    Raises:
      ValueError: on an unknown format, no format, or a batch size below 1.
    """
    check_arguments(formats, batch_size)
    behaviors = tuple(behaviors)
    histories = (
        pipeline
        | "Patterns" >> beam.Create(list(example_patterns))
        | "ReadExamples"
        >> beam.io.ReadAllFromTFRecord(compression_type=beam.io.filesystem.CompressionTypes.GZIP)
        | "History" >> beam.Map(example_history, behaviors)
        | "MergeSplits" >> beam.CombinePerKey(MergeHistories())
    )
    requested = pipeline | "Users" >> beam.Create([(u, True) for u in dict.fromkeys(users or ())])
    selected = (
        {"history": histories, "requested": requested}
        | "Join" >> beam.CoGroupByKey()
        | "Select"
        >> beam.FlatMap(_select, users is not None).with_outputs(
            "without_history", "not_requested", main="kept"
        )
    )
    row_batches = (
        selected.kept
        | "Serialize" >> beam.MapTuple(lambda user, history: (user, _history_example(history)))
        | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=batch_size)
        | "Recommend" >> beam.ParDo(_Recommend(model_dir, behaviors))
    )
    prefix = os.path.join(output_dir, CSV_PREFIX)
    if CSV in formats:
        _ = (
            row_batches
            # One text element per batch, its lines joined (WriteToText adds the last
            # newline).
            | "CsvLines" >> beam.Map(lambda rows: "\n".join(map(csv_line, rows)))
            | "SkipEmpty" >> beam.Filter(bool)
            | "WriteCsv"
            >> beam.io.WriteToText(prefix, file_name_suffix=".csv", header=",".join(COLUMNS))
        )
    if TFRECORD in formats:
        _ = (
            row_batches
            | "ListExamples" >> beam.FlatMap(list_examples)
            | "WriteTfrecord"
            >> beam.io.WriteToTFRecord(
                prefix,
                file_name_suffix=".tfrecord.gz",
                compression_type=beam.io.filesystem.CompressionTypes.GZIP,
            )
        )
    counts = [
        selected.kept | "CountUsers" >> _count("users"),
        selected.without_history | "CountWithoutHistory" >> _count("users_without_history"),
        # Which listed users had no history: the first few ids in sorted order.
        selected.without_history
        | "FirstWithoutHistory" >> beam.combiners.Top.Smallest(WITHOUT_HISTORY_IDS)
        | "NameFirstWithoutHistory" >> beam.Map(lambda ids: ("users_without_history_ids", ids)),
        selected.not_requested | "CountNotRequested" >> _count("users_not_requested"),
        row_batches
        | "RowsPerBatch" >> beam.Map(len)
        | "SumRows" >> beam.CombineGlobally(sum)
        | "NameRows" >> beam.Map(lambda n: ("rows", n)),
    ]
    summary = {"behaviors": list(behaviors), "formats": list(formats), "columns": list(COLUMNS)}
    _ = (
        counts
        | "Counts" >> beam.Flatten()
        | "OneList" >> beam.combiners.ToList()
        | "WriteSummary"
        >> beam.Map(_write_summary, os.path.join(output_dir, SUMMARY_FILE), summary)
    )


def _write_summary(counts, path: str, summary: Mapping[str, Any]) -> None:
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({**summary, **dict(sorted(counts))}, f, indent=2, sort_keys=True)


def read_summary(output_dir: str) -> dict[str, Any]:
    """The :data:`SUMMARY_FILE` of a finished job."""
    import tensorflow as tf

    with tf.io.gfile.GFile(os.path.join(output_dir, SUMMARY_FILE)) as f:
        return json.load(f)
