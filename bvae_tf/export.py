"""The exported model's contract, written and read in one place.

:func:`export_serving_model` writes a SavedModel whose signatures carry the Transform
graph, so clients send raw item ids; :func:`read_export_info` reads back what the
export records about itself; :func:`padded_to_sparse` undoes the padding of
``transform_features``. Names come from ``bvae_tf.features``.

``serving_default`` (names in ``bvae_tf.features``)::

    inputs:  examples        string  [batch]     serialized tf.Examples; only
                                                 <b>_items (raw ids) are read
    outputs: <b>_item_ids    string  [batch, K]  top-K raw item ids of behavior b,
                                                 the user's own <b>_items excluded
             <b>_scores      float32 [batch, K]  their decoder logits, descending
             oov_count       int64   [batch]     ids dropped as unknown, all behaviors
             unknown_feature_count int64 [batch] feature keys outside the Example
                                                 format (user_id, <b>_items, <b>_heldout
                                                 of the model's behaviors)

With ``approximate_top_k`` in the model's config, ``serving_default`` ranks the items
of an inverted-file index's probed leaves only (``bvae_tf.approximate``, built here
from the trained decoders); the other signatures stay exact.

``transform_features`` (evaluation tooling)::

    inputs:  examples        string  [batch]     serialized tf.Examples with
                                                 <b>_items and optionally <b>_heldout
    outputs: <b>_items, <b>_heldout              int64 [batch, max_len] vocabulary
                                                 indices, each row padded with -1
             <b>_items_oov, <b>_heldout_oov      int64 [batch] unknown ids dropped

``score_items`` (offline evaluation and batch scoring; the pipeline's evaluator
scores every model, old blessed ones included, through its own graph)::

    inputs:  <b>_items       int64   [batch, None]      vocabulary indices, rows padded
                                                         with -1 (transform_features)
    outputs: <b>_logits      float32 [batch, num_items]  decoder logits of behavior b

``rank_heldout`` (the pipeline's TFMA Evaluator: ``components.tfma_ranking``)::

    inputs:  examples        string  [batch]     serialized tf.Examples with
                                                 <b>_items and <b>_heldout (raw ids)
    outputs: <b>_heldout_ranks int64 [batch, H]  1-based rank of each held-out item
                                                 that can be hit, in the ranking of
                                                 all items without the user's own
                                                 <b>_items (ties against the model:
                                                 ``bvae_tf.metrics``); 0 pads a row
             <b>_num_heldout int64   [batch]     |H|: held-out ids, unknown ones
                                                 included (never hit)

  only for the behaviors whose ``<b>_heldout`` the Transform's raw schema holds.

``assets.extra/bvae_export.json`` (:data:`EXPORT_INFO_FILE`), written with the model::

    {"format": 1, "behaviors": [...],        # in the model's order
     "top_k": K, "num_items": m,
     "item_vocabulary": "assets/item_vocabulary",   # line i = raw id of item index i
     "signatures": {"serve": ..., "transform": ..., "score": ..., "rank": ...}}

The evaluator, the server's tooling and the benchmarks read the behavior order and
the vocabulary from it (:func:`read_export_info`), never from signature names.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import tensorflow as tf
from absl import logging

from bvae_tf import config as bvae_config
from bvae_tf import features
from bvae_tf import metrics as metrics_lib

if TYPE_CHECKING:  # the export functions only use the objects they are given
    import tensorflow_transform as tft

    from bvae_tf import model as model_lib

#: A user's history: behavior -> raw item ids (``str`` or ``bytes``), oldest first.
History = Mapping[str, Sequence[str | bytes]]
#: Padding of the dense ``transform_features`` outputs (and ``score_items`` inputs).
PADDING = features.TRANSFORM_PADDING
#: The export's description of itself, relative to the SavedModel directory.
EXPORT_INFO_FILE = os.path.join("assets.extra", "bvae_export.json")  # in ASSETS_EXTRA
_FORMAT = 1
#: TF Serving's warm-up file, replayed when a version loads ("SavedModel Warmup").
ASSETS_EXTRA = "assets.extra"
WARMUP_FILENAME = "tf_serving_warmup_requests"
#: TF Serving refuses a warm-up file with more records than this.
MAX_WARMUP_RECORDS = 1000
#: An item id no vocabulary holds: exercises the unknown-id path during warm-up.
_UNKNOWN_ITEM = "__warmup_unknown_item__"


@dataclasses.dataclass(frozen=True)
class ExportInfo:
    """What an export records about itself (:data:`EXPORT_INFO_FILE`).

    Attributes:
      behaviors: the behaviors, in the model's order.
      top_k: K of ``serving_default``.
      num_items: size of the item vocabulary (``score_items`` logits width).
      item_vocabulary: path of the vocabulary file (line ``i``: raw id of index ``i``).
      model_config: the exported model's ``BVAEConfig.to_dict()``; None for an export
        that did not record it (a stand-in model, or one made before it was recorded).
    """

    behaviors: tuple[str, ...]
    top_k: int
    num_items: int
    item_vocabulary: str
    model_config: dict[str, Any] | None = dataclasses.field(default=None, hash=False)

    def item_ids(self) -> list[str]:
        """Raw item ids by vocabulary index."""
        with tf.io.gfile.GFile(self.item_vocabulary, "r") as f:
            return [line.rstrip("\n") for line in f]


def read_export_info(export_dir: str) -> ExportInfo:
    """Reads :data:`EXPORT_INFO_FILE` of an export.

    Args:
      export_dir: a SavedModel written by :func:`export_serving_model` (local or a
        ``tf.io.gfile`` URI).

    Raises:
      ValueError: if the file is missing (an export made before the file existed: export
        the model again), unreadable, or not of a known format.
    """
    path = os.path.join(export_dir, EXPORT_INFO_FILE)
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            values = json.load(f)
    except (tf.errors.NotFoundError, FileNotFoundError) as e:
        raise ValueError(
            f"{export_dir} has no {EXPORT_INFO_FILE}: it was not exported by "
            "bvae_tf.export.export_serving_model of this version; export it again"
        ) from e
    except (tf.errors.OpError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from e
    if not isinstance(values, dict) or values.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a format-{_FORMAT} export description: {values!r}")
    return ExportInfo(
        behaviors=features.validate_behaviors(values["behaviors"]),
        top_k=int(values["top_k"]),
        num_items=int(values["num_items"]),
        item_vocabulary=os.path.join(export_dir, values["item_vocabulary"]),
        model_config=values.get("model_config"),
    )


def write_export_info(
    export_dir: str,
    behaviors,
    top_k: int,
    num_items: int,
    vocabulary_file: str,
    *,
    model_config: Mapping[str, Any] | None = None,
) -> None:
    """Writes :data:`EXPORT_INFO_FILE` into a SavedModel directory.

    :func:`export_serving_model` calls it; another exporter of the same contract (a
    stand-in model) may too.

    Args:
      export_dir: the SavedModel directory (its ``assets/`` holds the vocabulary).
      behaviors: the behaviors in the model's order.
      top_k: K of ``serving_default``.
      num_items: the vocabulary size.
      vocabulary_file: the vocabulary file the export copied into ``assets/``.
      model_config: the model's settings (``BVAEConfig.to_dict()``, JSON values), read
        back by a warm start (``bvae_tf.warm_start``); None: not recorded.

    Raises:
      ValueError: if ``assets/`` holds no file of that name.
    """
    vocabulary = os.path.join("assets", os.path.basename(vocabulary_file))
    if not tf.io.gfile.exists(os.path.join(export_dir, vocabulary)):
        raise ValueError(f"the export {export_dir} holds no {vocabulary}")
    values: dict[str, Any] = {
        "format": _FORMAT,
        "behaviors": list(behaviors),
        "top_k": top_k,
        "num_items": num_items,
        "item_vocabulary": vocabulary,
        "signatures": {
            "serve": features.SERVING_SIGNATURE,
            "transform": features.TRANSFORM_SIGNATURE,
            "score": features.SCORE_SIGNATURE,
            "rank": features.RANK_SIGNATURE,
        },
        **({"model_config": dict(model_config)} if model_config is not None else {}),
    }
    path = os.path.join(export_dir, EXPORT_INFO_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(values, indent=1) + "\n")


def _exported_config(model) -> dict[str, Any] | None:
    """The settings an export records: ``BVAEConfig.to_dict()`` with the boost the
    model scores with (``choose_boost`` may have set it after the configuration); None
    for a model without a ``BVAEConfig``."""
    if not hasattr(model, "bvae_config"):
        return None
    settings = model.bvae_config.to_dict()
    boost = getattr(model, "cross_behavior_boost", None)
    if boost is not None:
        settings["cross_behavior_boost"] = [float(v) for v in boost.numpy()]
    return settings


def _decode_field(buffers: tf.Tensor, message_type: str, field: str):
    """``tf.io.decode_proto`` of one string field, ``(counts [n, 1], values [n, max])``,
    for any ``n`` (the op refuses an empty batch: one empty message is decoded along)."""
    counts, (values,) = tf.io.decode_proto(
        tf.concat([buffers, [""]], 0), message_type, [field], [tf.string]
    )
    return counts[:-1], values[:-1]


def example_format_keys(behaviors: Sequence[str]) -> list[str]:
    """The feature keys of the project's tf.Example format for ``behaviors``:
    ``user_id``, ``<b>_items`` (what ``serving_default`` reads) and ``<b>_heldout``."""
    return [
        features.USER_ID,
        *(features.items_key(b) for b in behaviors),
        *(features.heldout_key(b) for b in behaviors),
    ]


def unknown_feature_count(examples: tf.Tensor, known: Sequence[str]) -> tf.Tensor:
    """Per serialized tf.Example, how many of its feature keys are not in ``known``.

    ``tf.io.parse_example`` ignores keys it was not asked for, so a misspelt history
    key (``purchase_item``, a raw label ``buy_items``) would pass as an empty history;
    ``serving_default`` returns this count so that a caller can see it. The keys are
    read with ``tf.io.decode_proto`` (``tensorflow.Example`` -> ``Features`` -> the
    ``feature`` map's entries).

    Args:
      examples: ``[batch]`` string, serialized ``tf.train.Example`` protos.
      known: the keys not counted (`example_format_keys`).

    Returns:
      ``[batch]`` int64.

    Raises:
      tf.errors.InvalidArgumentError: (when run) on a string that is not an Example.
    """
    features_proto = _decode_field(examples, "tensorflow.Example", "features")[1]
    counts, entries = _decode_field(
        tf.reshape(features_proto, [-1]), "tensorflow.Features", "feature"
    )
    entries = tf.RaggedTensor.from_tensor(entries, lengths=tf.reshape(counts, [-1]))
    keys = _decode_field(entries.flat_values, "tensorflow.Features.FeatureEntry", "key")[1]
    keys = tf.reshape(keys, [-1])
    unknown = tf.reduce_all(tf.not_equal(keys[:, None], tf.constant(list(known))[None, :]), 1)
    return tf.reduce_sum(tf.cast(entries.with_flat_values(unknown), tf.int64), axis=1)


def export_serving_model(
    model: model_lib.BVAE,
    tf_transform_output: tft.TFTransformOutput,
    export_dir: str,
    top_k: int = features.DEFAULT_TOP_K,
) -> str:
    """Saves ``model`` with the ``serving_default``, ``transform_features`` and
    ``score_items`` signatures of the module docstring (Transform graph and item
    vocabulary inside) and :data:`EXPORT_INFO_FILE`.

    Args:
      model: a trained BVAE over the Transform output's item vocabulary.
      tf_transform_output: the Transform output the model was trained on.
      export_dir: SavedModel directory to write.
      top_k: K of ``serving_default``, in ``[1, num_items]``.

    Returns:
      ``export_dir``.

    Raises:
      ValueError: if ``top_k`` is out of range or the vocabulary size differs from
        the model's ``num_items``.
    """
    behaviors = tuple(model.behaviors)
    vocab_size = tf_transform_output.vocabulary_size_by_name(features.ITEM_VOCABULARY)
    if vocab_size != model.num_items:
        raise ValueError(
            f"the item vocabulary has {vocab_size} items but the model scores {model.num_items}"
        )
    bvae_config.check_top_k(top_k, model.num_items)

    # Keras saves a subclassed model only once it has been called on inputs.
    model(
        {
            features.items_key(b): tf.SparseTensor(
                tf.zeros([0, 2], tf.int64), tf.zeros([0], tf.int64), [0, 0]
            )
            for b in behaviors
        }
    )
    if getattr(model, "bvae_config", None) and model.bvae_config.approximate_top_k:
        # serving_default ranks the probed items only: no [d, m] copy of the tables.
        model.attach_approximate_top_k()
    else:
        for decoder in getattr(model, "decoders", ()):  # closed-form baselines have none
            decoder.add_serving_layout()
    model.tft_layer = tf_transform_output.transform_features_layer()
    model.item_ids = tf.lookup.StaticHashTable(
        tf.lookup.TextFileInitializer(
            tf_transform_output.vocabulary_file_by_name(features.ITEM_VOCABULARY),
            key_dtype=tf.int64,
            key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
            value_dtype=tf.string,
            value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
        ),
        default_value="",
    )
    raw_spec = tf_transform_output.raw_feature_spec()
    items_spec = {features.items_key(b): raw_spec[features.items_key(b)] for b in behaviors}
    eval_spec = dict(items_spec)
    for b in behaviors:
        if features.heldout_key(b) in raw_spec:
            eval_spec[features.heldout_key(b)] = raw_spec[features.heldout_key(b)]
    examples_spec = tf.TensorSpec([None], tf.string, name=features.SERVING_INPUT)

    @tf.function(input_signature=[examples_spec])
    def serve(examples):
        parsed = tf.io.parse_example(examples, items_spec)
        transformed = model.tft_layer(parsed)
        inputs = {features.items_key(b): transformed[features.items_key(b)] for b in behaviors}
        outputs = {}
        for b, (scores, items) in model.recommend(inputs, k=top_k).items():
            outputs[features.item_ids_output(b)] = model.item_ids.lookup(items)
            outputs[features.scores_output(b)] = scores
        outputs[features.OOV_COUNT] = tf.add_n(
            [
                tf.reshape(transformed[features.oov_key(features.items_key(b))], [-1])
                for b in behaviors
            ]
        )
        # after the parse, so that a malformed Example fails with parse_example's error
        with tf.control_dependencies(tf.nest.flatten(parsed, expand_composites=True)):
            outputs[features.UNKNOWN_FEATURE_COUNT] = unknown_feature_count(
                examples, example_format_keys(behaviors)
            )
        return outputs

    @tf.function(input_signature=[examples_spec])
    def transform_features(examples):
        transformed = model.tft_layer(tf.io.parse_example(examples, eval_spec))
        return {
            key: tf.sparse.to_dense(value, default_value=PADDING)
            if isinstance(value, tf.SparseTensor)
            else value
            for key, value in transformed.items()
        }

    score_spec = {
        features.items_key(b): tf.TensorSpec([None, None], tf.int64, name=features.items_key(b))
        for b in behaviors
    }

    @tf.function(input_signature=[score_spec])
    def score_items(padded):
        logits = model({key: padded_to_sparse(value) for key, value in padded.items()})
        return {features.logits_output(b): logits[b] for b in behaviors}

    ranked = [b for b in behaviors if features.heldout_key(b) in eval_spec]

    @tf.function(input_signature=[examples_spec])
    def rank_heldout(examples):
        transformed = model.tft_layer(tf.io.parse_example(examples, eval_spec))
        outputs = {}
        for b, (rows, ranks, count) in metrics_lib.model_ranks(model, transformed, ranked).items():
            per_user = tf.RaggedTensor.from_value_rowids(
                ranks, rows, nrows=tf.size(count, out_type=tf.int64)
            )
            outputs[features.heldout_ranks_output(b)] = per_user.to_tensor(
                default_value=features.RANK_PADDING
            )
            outputs[features.num_heldout_output(b)] = count
        return outputs

    # Serving and evaluation use the signatures only; without the per-layer Keras
    # traces the SavedModel is smaller and loads faster (reload it with
    # ``tf.saved_model.load``, not ``tf.keras.models.load_model``).
    model.save(
        export_dir,
        save_format="tf",
        save_traces=False,
        signatures={
            features.SERVING_SIGNATURE: serve.get_concrete_function(),
            features.TRANSFORM_SIGNATURE: transform_features.get_concrete_function(),
            features.SCORE_SIGNATURE: score_items.get_concrete_function(),
            **({features.RANK_SIGNATURE: rank_heldout.get_concrete_function()} if ranked else {}),
        },
    )
    write_export_info(
        export_dir,
        behaviors,
        top_k,
        model.num_items,
        tf_transform_output.vocabulary_file_by_name(features.ITEM_VOCABULARY),
        model_config=_exported_config(model),
    )
    logging.info("Serving model (top %d per behavior) exported to %s.", top_k, export_dir)
    return export_dir


def padded_to_sparse(padded: tf.Tensor) -> tf.SparseTensor:
    """Inverse of the ``transform_features`` padding: ``[batch, max_len]`` int64 rows
    padded with -1 -> ``[batch, None]`` SparseTensor of the indices."""
    return tf.RaggedTensor.from_tensor(padded, padding=PADDING).to_sparse()


# --- the serving_default input format and TF Serving warm-up requests -------------------
def normalize_item_id(item: str | bytes) -> bytes:
    """An item id as the ExampleGen writes it: surrounding whitespace stripped, UTF-8.

    The ExampleGen strips the ids it reads (``str.strip``), so ``"  i17  "`` is the
    item ``i17`` in the model's vocabulary. ``bytes`` ids are decoded as UTF-8 and
    stripped the same way; ``bytes`` that are not UTF-8 (the ExampleGen never writes
    such an id) only lose surrounding ASCII whitespace.

    Args:
      item: a raw item id.

    Returns:
      The stripped id, UTF-8 encoded; ``b""`` when it was only whitespace.

    Raises:
      ValueError: if ``item`` is neither ``str`` nor ``bytes``.
    """
    if isinstance(item, str):
        return item.strip().encode("utf-8")
    if isinstance(item, bytes):
        try:
            return item.decode("utf-8").strip().encode("utf-8")
        except UnicodeDecodeError:
            return item.strip()
    raise ValueError(f"item ids must be str or bytes, got {item!r}")


def history_example(history: History) -> tf.train.Example:
    """One user's tf.Example: a bytes feature ``<b>_items`` per behavior ``b``.

    Item ids are normalised as the ExampleGen does (:func:`normalize_item_id`):
    surrounding whitespace is stripped. An id that is only whitespace becomes the
    empty id, which no vocabulary holds (the ExampleGen rejects events with an empty
    id), so the model counts it in ``oov_count``.

    Args:
      history: behavior -> the user's raw item ids (``str`` or ``bytes``) for it,
        oldest first. Behaviors may be missing (no items).

    Raises:
      ValueError: naming the behavior, if an item id is not ``str``/``bytes``.
    """
    feature = {}
    for behavior, items in history.items():
        if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
            kind = "the string" if isinstance(items, str | bytes) else type(items).__name__
            raise ValueError(
                f"history[{behavior!r}] must be a list of item ids, got {kind} {items!r}"
            )
        values = []
        for item in items:
            if not isinstance(item, str | bytes):
                raise ValueError(
                    f"item ids must be str or bytes; history[{behavior!r}] holds {item!r}"
                )
            values.append(normalize_item_id(item))
        feature[features.items_key(behavior)] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=values)
        )
    return tf.train.Example(features=tf.train.Features(feature=feature))


def serialize_histories(
    histories: Sequence[History], behaviors: Sequence[str] | None = None
) -> list[bytes]:
    """Serialized tf.Examples for users' histories.

    Args:
      histories: one mapping behavior -> raw item ids per user (a list of them, even
        for one user).
      behaviors: the model's behaviors; when given, any other key is an error (the
        model would silently ignore it).

    Returns:
      One serialized tf.Example (``bytes``) per history, in order.

    Raises:
      ValueError: naming what was given, if ``histories`` is not a sequence of
        mappings (one user's mapping given alone, a list of item ids); naming the
        behavior or item id that is not accepted.
    """
    if isinstance(histories, Mapping | str | bytes) or not isinstance(histories, Iterable):
        hint = " (one user: [history])" if isinstance(histories, Mapping) else ""
        raise ValueError(
            "histories must be a list of mappings behavior -> list of item ids, one per "
            f"user{hint}; got {_described(histories)}"
        )
    result = []
    for index, history in enumerate(histories):
        if not isinstance(history, Mapping):
            raise ValueError(
                f"histories[{index}] must be a mapping behavior -> list of item ids (one "
                f"user's history), got {_described(history)}"
            )
        if behaviors is not None:
            check_behaviors(history, behaviors)
        result.append(history_example(history).SerializeToString())
    return result


def _described(value: object) -> str:
    """``value`` for an error message: its type and its ``repr``, cut at 80 characters."""
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'…' if len(text) > 80 else ''}"


def check_behaviors(history: History, behaviors: Sequence[str]) -> None:
    """Checks that a history names only the model's behaviors (the model would
    silently ignore any other).

    Raises:
      ValueError: naming the behaviors that are not served.
    """
    unknown = [behavior for behavior in history if behavior not in behaviors]
    if unknown:
        raise ValueError(
            f"behavior(s) {unknown} are not served by the model; "
            f"its behaviors are {list(behaviors)}"
        )


def warmup_file(saved_model_dir: str | os.PathLike) -> pathlib.Path:
    """Path of TF Serving's warm-up file inside a SavedModel directory."""
    return pathlib.Path(saved_model_dir) / ASSETS_EXTRA / WARMUP_FILENAME


def write_warmup_requests(
    saved_model_dir: str | os.PathLike,
    *,
    model_name: str,
    histories: Sequence[History] | None = None,
) -> pathlib.Path:
    """Writes ``assets.extra/tf_serving_warmup_requests`` into an export.

    TF Serving replays this TFRecord file of ``tensorflow.serving.PredictionLog``
    records when it loads a version, before the version takes traffic, so the first
    real requests do not pay for lazy initialisation ("SavedModel Warmup" in the TF
    Serving guide); the local server (``serving``) does the same. One
    ``serving_default`` Predict request per history (a batch of 1) and one with all
    histories together are written, their tf.Examples made by
    :func:`serialize_histories` as the client's are. Call it on the export before it
    is published, so the version folder appears complete.

    Args:
      saved_model_dir: a SavedModel written by :func:`export_serving_model`.
      model_name: ``model_spec.name`` of the requests (the served model's name).
      histories: users as behavior -> raw item ids. Default: a user with no items and
        a user with one unknown item id per behavior of the export.

    Returns:
      Path of the written file.

    Raises:
      ValueError: if the export does not describe itself (:func:`read_export_info`),
        a history names a behavior the model does not serve, or more than
        ``MAX_WARMUP_RECORDS - 1`` histories are given.
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    behaviors = read_export_info(str(saved_model_dir)).behaviors
    if histories is None:
        histories = [{}, {behavior: [_UNKNOWN_ITEM] for behavior in behaviors}]
    histories = list(histories)
    if not histories or len(histories) + 1 > MAX_WARMUP_RECORDS:
        raise ValueError(
            f"histories must hold 1 to {MAX_WARMUP_RECORDS - 1} users, got {len(histories)}"
        )
    batches = [[history] for history in histories]
    if len(histories) > 1:
        batches.append(histories)
    path = warmup_file(saved_model_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch in batches:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = features.SERVING_SIGNATURE
            request.inputs[features.SERVING_INPUT].CopyFrom(
                tf.make_tensor_proto(serialize_histories(batch, behaviors), dtype=tf.string)
            )
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path
