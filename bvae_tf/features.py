"""The one home of feature, split, signature and output names.

Everything that crosses a component boundary is named here: the ExampleGen writes
these features, Transform and the Trainer read them, the exported model's
signatures use these names and ``serving/`` imports them (it never copies them).
This module imports nothing heavy, so the gRPC client can use it without TensorFlow.

Per-user tf.Example written by the ExampleGen (raw ids stay strings)::

    user_id            bytes  [1]         the raw user id
    <b>_items          bytes  [n_b]       raw item ids the user did behavior b on in
                                          the train split, ordered by time (unix s)
    <b>_heldout        bytes  [h_b]       eval/test examples only: the items of b in
                                          that split (the ranking targets)

After Transform (vocabulary over all behaviors' train items)::

    <b>_items          int64  VarLen      item indices in [0, num_items); OOV dropped
    <b>_heldout        int64  VarLen      likewise
    <b>_items_oov      int64  [1]         count of ids dropped as out-of-vocabulary
    <b>_heldout_oov    int64  [1]         likewise

The exported model's signatures use the names below; they are described, with
dtypes and shapes, in ``bvae_tf.export``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# --- behaviors -----------------------------------------------------------------------
#: Canonical behavior names used throughout the product, in the paper's priority order.
PURCHASE = "purchase"
CLICK = "click"
FAVORITE = "favorite"
CART = "cart"
DEFAULT_BEHAVIORS: tuple[str, ...] = (PURCHASE, CLICK, FAVORITE, CART)
DEFAULT_TARGET_BEHAVIOR = PURCHASE

#: Behavior labels of raw event logs (e.g. JData / Taobao logs) -> canonical names.
DEFAULT_RAW_BEHAVIOR_MAPPING: Mapping[str, str] = {
    "buy": PURCHASE,
    "pv": CLICK,
    "fav": FAVORITE,
    "cart": CART,
}

#: File-name prefixes of the paper's released pre-split format -> canonical names.
RELEASE_BEHAVIOR_MAPPING: Mapping[str, str] = {
    "target": PURCHASE,
    "click": CLICK,
    "favourite": FAVORITE,
    "cart": CART,
}

# --- splits --------------------------------------------------------------------------
TRAIN = "train"
EVAL = "eval"
TEST = "test"
SPLITS: tuple[str, ...] = (TRAIN, EVAL, TEST)
#: Split suffixes of the released files (``<behavior>_<suffix>``) -> our split names.
RELEASE_SPLIT_MAPPING: Mapping[str, str] = {"train": TRAIN, "valid": EVAL, "test": TEST}

# --- tf.Example features ---------------------------------------------------------------
USER_ID = "user_id"
#: Experiment datasets only (``bvae_tf.data``, ``with_user_index=True``): the user's
#: 0-based row, int64 ``[B]``, read by the transductive baselines (EHCF, NGCF), which
#: learn one embedding per training user and so cannot score unseen users.
USER_INDEX = "user_index"
ITEMS_SUFFIX = "_items"
HELDOUT_SUFFIX = "_heldout"
OOV_SUFFIX = "_oov"


def items_key(behavior: str) -> str:
    """Feature with the user's train items of ``behavior`` (raw bytes / int64 indices)."""
    return f"{behavior}{ITEMS_SUFFIX}"


def heldout_key(behavior: str) -> str:
    """Feature with the eval/test split's items of ``behavior`` (ranking targets)."""
    return f"{behavior}{HELDOUT_SUFFIX}"


def oov_key(feature_key: str) -> str:
    """Transformed feature counting the ids of ``feature_key`` dropped as unknown."""
    return f"{feature_key}{OOV_SUFFIX}"


def validate_behaviors(behaviors: Sequence[str]) -> tuple[str, ...]:
    """Checks a behavior list and returns it as a tuple.

    Args:
      behaviors: one or more distinct, non-empty names made of letters, digits and
        ``_`` (they become feature-name prefixes and file names).

    Raises:
      ValueError: if the list is empty, has duplicates or an unusable name.
    """
    result = tuple(behaviors)
    if not result:
        raise ValueError("behaviors must name at least one behavior, got an empty list")
    if len(set(result)) != len(result):
        raise ValueError(f"behaviors must be distinct, got {list(result)}")
    for name in result:
        if not isinstance(name, str) or not name or not name.replace("_", "").isalnum():
            raise ValueError(
                f"behavior name {name!r} must be a non-empty string of letters, digits and '_'"
            )
    return result


# --- Transform -------------------------------------------------------------------------
#: Name of the item vocabulary file written by Transform (``tft.vocabulary``).
ITEM_VOCABULARY = "item_vocabulary"

# --- exported model signatures ----------------------------------------------------------
SERVING_SIGNATURE = "serving_default"
TRANSFORM_SIGNATURE = "transform_features"
#: Input of ``serving_default``: ``[batch] string`` serialized tf.Examples.
SERVING_INPUT = "examples"
#: Output of ``serving_default``: ``[batch] int64`` ids dropped as unknown (all behaviors).
OOV_COUNT = "oov_count"
#: Output of ``serving_default``: ``[batch] int64`` feature keys of each tf.Example
#: outside the Example format (``user_id``, ``<b>_items``, ``<b>_heldout`` of the
#: model's behaviors): a misspelt history key such as ``purchase_item`` would otherwise
#: pass unseen as an empty history.
UNKNOWN_FEATURE_COUNT = "unknown_feature_count"
#: Default number of items returned per behavior.
DEFAULT_TOP_K = 10


def item_ids_output(behavior: str) -> str:
    """``serving_default`` output: ``[batch, K] string`` top-K raw item ids of behavior."""
    return f"{behavior}_item_ids"


def scores_output(behavior: str) -> str:
    """``serving_default`` output: ``[batch, K] float32`` scores of those items."""
    return f"{behavior}_scores"


#: Signature of the exported model for offline evaluation and batch scoring (what the
#: pipeline's evaluator calls, so an old blessed model is scored by its own graph):
#: inputs ``<b>_items`` ``[batch, None] int64`` vocabulary indices (rows padded with
#: -1, as ``transform_features`` outputs them), outputs ``<b>_logits``.
SCORE_SIGNATURE = "score_items"


def logits_output(behavior: str) -> str:
    """``score_items`` output: ``[batch, num_items] float32`` logits of behavior b."""
    return f"{behavior}_logits"


#: Signature of the exported model for the TFMA Evaluator: inputs ``examples``
#: ``[batch] string`` (with ``<b>_heldout``), outputs ``heldout_ranks_output(b)`` and
#: ``num_heldout_output(b)`` (``bvae_tf.export``).
RANK_SIGNATURE = "rank_heldout"


#: The value that pads the rows of ``transform_features``' ``[batch, max_len]``
#: outputs (and of ``score_items``' inputs).
TRANSFORM_PADDING = -1
#: The value that pads the rows of ``rank_heldout``'s ``[batch, H]`` ranks.
RANK_PADDING = 0


def padded_outputs(signature: str) -> dict[str, int]:
    """How the exported signature ``signature`` pads its variable-width
    ``[batch, width]`` outputs, as ``{output name suffix: pad value}``: ``"_items"``
    and ``"_heldout"`` of ``transform_features``, ``"_heldout_ranks"`` of
    ``rank_heldout``; ``{}`` for the other signatures (fixed widths)."""
    if signature == TRANSFORM_SIGNATURE:
        return {"_items": TRANSFORM_PADDING, "_heldout": TRANSFORM_PADDING}
    if signature == RANK_SIGNATURE:
        return {"_heldout_ranks": RANK_PADDING}
    return {}


def heldout_ranks_output(behavior: str) -> str:
    """``rank_heldout`` output: ``[batch, H] int64`` 1-based ranks of held-out items
    (0 pads a row; an item that cannot be hit has no entry)."""
    return f"{behavior}_heldout_ranks"


def num_heldout_output(behavior: str) -> str:
    """``rank_heldout`` output: ``[batch] int64`` held-out ids per user, unknown ones
    included."""
    return f"{behavior}_num_heldout"
