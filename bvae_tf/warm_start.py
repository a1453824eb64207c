"""Warm start: a new model starts from an exported one, item rows matched by item id.

A daily run trains on a new log span whose item vocabulary differs from yesterday's:
some items are new, some are gone. :func:`warm_start` copies an export's weights
(``bvae_tf.export``, e.g. the latest blessed model) into a freshly built model of
the same settings:

* a weight without an item axis (gates, biases of the latent layers, the β-annealing
  step) is copied as is, so β continues where the base model's ramp stopped;
* along an item axis (rows of the sparse encoders' kernels, the decoders' item
  embeddings and biases, the item path's per-item weights), the row of every item
  that is in both vocabularies is copied from the base model; items new in this
  vocabulary keep their fresh initialisation; items only in the base vocabulary are
  dropped.

An item axis is an axis whose size is the base vocabulary's size in the base model
and the new vocabulary's size in the new model. The optimizer starts fresh (Adam's
moments are not part of an export). The cross-behavior boost
(``BVAEConfig.cross_behavior_boost``) is not carried: it acts at scoring time only and
comes from this run's configuration or its own choice on the eval split, so a base
model with or without one fits a model with or without one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from bvae_tf import export, features


@dataclasses.dataclass(frozen=True)
class WarmStartReport:
    """What :func:`warm_start` carried over.

    Attributes:
      items_kept: items of the new vocabulary found in the base vocabulary.
      items_new: items of the new vocabulary the base model did not know (fresh rows).
      items_dropped: items of the base vocabulary not in the new one.
      weights_copied: weights copied whole (no item axis).
      weights_remapped: weights with an item axis, rows matched by item id.
    """

    items_kept: int
    items_new: int
    items_dropped: int
    weights_copied: int
    weights_remapped: int


def _empty_batch(behaviors: Sequence[str]) -> dict[str, tf.SparseTensor]:
    return {
        features.items_key(b): tf.SparseTensor(
            tf.zeros([0, 2], tf.int64), tf.zeros([0], tf.int64), [0, 0]
        )
        for b in behaviors
    }


def _suffix(name: str) -> str:
    """A weight's name without the model's own (uniquified) name: ``mu0/kernel:0``."""
    return name.split("/", 1)[1] if "/" in name else name


def _ambiguous_sizes(config) -> set[int]:
    """Sizes of non-item axes an item axis could be confused with."""
    c = len(config.behaviors)
    return {config.latent_dim, 2 * config.latent_dim, c, c + 1}


def _warn_on_other_latent_dims(base_config, config, base_export_dir: str) -> bool:
    """Logs a warning when the base model's per-behavior latent sizes
    (``BVAEConfig.latent_dims``) differ from this run's; returns whether they do.

    The weights have the same shapes either way (the sizes are masks, not narrower
    layers), so the copy goes ahead; but a coordinate a behavior did not use in the
    base model was never trained for it and starts from its base value (its initial
    one), and one it no longer uses is ignored. An export that did not record its
    settings (``base_config`` None) is not checked.
    """
    if base_config is None:
        return False
    c = len(config.behaviors)
    base_width = base_config.get("latent_dim", config.latent_dim)
    base_dims = tuple(base_config.get("latent_dims") or (base_width,) * c)
    dims = tuple(config.latent_dims or (config.latent_dim,) * c)
    if base_dims == dims:
        return False
    logging.warning(
        "warm start from %s: the base model's per-behavior latent sizes %s differ from "
        "this run's %s (behaviors %s); the weights are carried over, but a coordinate a "
        "behavior did not use in the base model starts untrained for it.",
        base_export_dir,
        list(base_dims),
        list(dims),
        list(config.behaviors),
    )
    return True


def _differences(base_config: dict, config) -> str:
    """The model settings that differ from the base model's, as ``model.x a -> b``."""
    ignored = {"num_items", "seed", "cross_behavior_boost"}
    values = dataclasses.asdict(config)
    changed = [
        f"model.{key} {base_config[key]!r} -> {values[key]!r}"
        for key in sorted(base_config)
        if key in values and key not in ignored and _plain(base_config[key]) != _plain(values[key])
    ]
    return ", ".join(changed) if changed else "model section"


def _plain(value):
    """A setting as JSON would read it back (tuples as lists)."""
    return list(map(_plain, value)) if isinstance(value, list | tuple) else value


def warm_start(model, base_export_dir: str, item_ids: Sequence[str]) -> WarmStartReport:
    """Copies ``base_export_dir``'s weights into ``model`` (module docstring).

    Args:
      model: a BVAE-family model (``model_lib.build_model``) over ``item_ids``; built
        here if it is not built yet.
      base_export_dir: a SavedModel written by ``export.export_serving_model`` with
        the same behaviors and model settings (its ``num_items`` may differ).
      item_ids: the new vocabulary: raw item id of each item index of ``model``.

    Returns:
      A :class:`WarmStartReport`.

    Raises:
      ValueError: if the export's behaviors or ``latent_dim`` differ, its weights do
        not fit the model's settings (the differing settings are named), ``item_ids``
        does not match the model's ``num_items``, or a vocabulary size equals a
        non-item axis size (the item axes cannot be told apart; train this run cold).
    """
    from bvae_tf import model as model_lib

    config = model.bvae_config
    if len(item_ids) != config.num_items:
        raise ValueError(
            f"warm start: {len(item_ids)} item ids for a model of {config.num_items} items"
        )
    info = export.read_export_info(base_export_dir)
    if tuple(info.behaviors) != tuple(config.behaviors):
        raise ValueError(
            f"warm start: the base model's behaviors {list(info.behaviors)} differ from "
            f"this run's {list(config.behaviors)}; train cold (training.warm_start=false)"
        )
    base_config = info.model_config or {}
    if base_config.get("latent_dim", config.latent_dim) != config.latent_dim:
        raise ValueError(
            f"warm start: the base model's model.latent_dim is {base_config['latent_dim']}, "
            f"this run's {config.latent_dim} (tuned or set); the layers' shapes differ, so "
            f"no weight carries over: keep latent_dim {base_config['latent_dim']}, or train "
            "cold (training.warm_start=false)"
        )
    _warn_on_other_latent_dims(info.model_config, config, base_export_dir)
    old_m, new_m = info.num_items, config.num_items
    ambiguous = {old_m, new_m} & _ambiguous_sizes(config)
    if ambiguous:
        raise ValueError(
            f"warm start: a vocabulary of {sorted(ambiguous)} items has the size of a "
            "latent axis, so item rows cannot be told apart; train this run cold"
        )
    base = model_lib.build_model(
        dataclasses.replace(config, num_items=old_m, cross_behavior_boost=None)
    )
    base(_empty_batch(config.behaviors))
    checkpoint = os.path.join(base_export_dir, "variables", "variables")
    try:
        base.load_weights(checkpoint).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise ValueError(
            f"warm start: the weights in {base_export_dir} do not fit this run's model "
            f"settings ({_differences(base_config, config)}): {e}"
        ) from e
    if not model.built:
        model(_empty_batch(config.behaviors))

    old_ids = info.item_ids()
    position = {item: i for i, item in enumerate(old_ids)}
    new_rows = np.array([i for i, item in enumerate(item_ids) if item in position], np.int64)
    old_rows = np.array([position[item_ids[i]] for i in new_rows], np.int64)
    copied = remapped = 0
    boost = getattr(model, "cross_behavior_boost", None)
    weights = [w for w in model.weights if boost is None or w is not boost]
    if len(base.weights) != len(weights):
        raise ValueError(
            f"warm start: the base model has {len(base.weights)} weights, this run's "
            f"model {len(weights)}; the model settings differ"
        )
    # Same settings, same construction order: the weights pair up one to one.
    for old, weight in zip(base.weights, weights, strict=True):
        name = _suffix(weight.name)
        if _suffix(old.name) != name:
            raise ValueError(
                f"warm start: weight {name!r} pairs with the base model's "
                f"{_suffix(old.name)!r}; the model settings differ"
            )
        source = old.numpy()
        target = weight.numpy()
        axes = [
            a
            for a in range(target.ndim)
            if source.shape[a] == old_m and target.shape[a] == new_m and source.ndim == target.ndim
        ]
        if not axes:
            if source.shape != target.shape:
                raise ValueError(
                    f"warm start: weight {name!r} has shape {source.shape} in the base model "
                    f"and {target.shape} here"
                )
            weight.assign(source)
            copied += 1
            continue
        into = [np.arange(n) for n in target.shape]
        out_of = [np.arange(n) for n in source.shape]
        for a in axes:
            into[a], out_of[a] = new_rows, old_rows
        value = target.copy()
        value[np.ix_(*into)] = source[np.ix_(*out_of)]
        weight.assign(value)
        remapped += 1
    report = WarmStartReport(
        items_kept=len(new_rows),
        items_new=new_m - len(new_rows),
        items_dropped=old_m - len(new_rows),
        weights_copied=copied,
        weights_remapped=remapped,
    )
    logging.info(
        "Warm start from %s: %d items kept, %d new, %d dropped; %d weights copied, "
        "%d remapped by item id.",
        base_export_dir,
        report.items_kept,
        report.items_new,
        report.items_dropped,
        report.weights_copied,
        report.weights_remapped,
    )
    return report
