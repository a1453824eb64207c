"""Drift between two spans of the log: this run's statistics against the previous run's.

A shop retrains every day; before a model is trained on today's span, the
validator compares the train split's statistics (StatisticsGen, TFDV) with those of
the latest earlier run and, past a threshold, stops the run (or warns) naming the
drifted feature and its distance:

* ``item_frequency``: per behavior, the L-infinity distance between the two spans'
  distributions of item ids in ``<b>_items`` (TFDV's drift comparator,
  ``drift_comparator.infinity_norm`` on the feature, computed over its rank
  histogram);
* ``behavior_mix``: the L-infinity distance between the two spans' shares of train
  events per behavior (``tot_num_values`` of each ``<b>_items`` over their sum);
* ``events_per_user``: per behavior, the relative change of the mean number of train
  events per user who has any (``avg_num_values`` of ``<b>_items``):
  ``|now - before| / before``.

Thresholds of ``None`` turn a measure off. Every measurement, drifted or not, is
returned so that runs can record it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from bvae_tf import features

ACTIONS = ("fail", "warn")
ITEM_FREQUENCY = "item_frequency"
BEHAVIOR_MIX = "behavior_mix"
EVENTS_PER_USER = "events_per_user"


@dataclasses.dataclass(frozen=True)
class DriftConfig:
    """The ``drift`` config section.

    Attributes:
      enabled: compare with the previous run's statistics (default off).
      action: ``"fail"`` (stop the run before Transform) or ``"warn"`` (log and go on).
      item_frequency: L-infinity threshold on each ``<b>_items`` value distribution.
      behavior_mix: L-infinity threshold on the behavior shares of train events.
      events_per_user: threshold on the relative change of events per user.
      split: the split compared (the train split holds every user's history).

    Raises:
      ValueError: on an unknown action, a threshold that is not ``None`` or in
        ``[0, inf)``, or a split that is not one of ``features.SPLITS``.
    """

    enabled: bool = False
    action: str = "fail"
    item_frequency: float | None = 0.3
    behavior_mix: float | None = 0.1
    events_per_user: float | None = 0.5
    split: str = features.TRAIN

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"drift.enabled must be a bool, got {self.enabled!r}")
        if self.action not in ACTIONS:
            raise ValueError(f"drift.action must be one of {list(ACTIONS)}, got {self.action!r}")
        for name in (ITEM_FREQUENCY, BEHAVIOR_MIX, EVENTS_PER_USER):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(
                    f"drift.{name} must be null or a finite number >= 0, got {value!r}"
                )
        if self.split not in features.SPLITS:
            raise ValueError(f"drift.split must be one of {list(features.SPLITS)}")


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One distance between the two spans.

    Attributes:
      measure: ``item_frequency``, ``behavior_mix`` or ``events_per_user``.
      feature: the feature (``<b>_items``) or ``"behaviors"`` for the mix.
      distance: the distance (see the module docstring).
      threshold: its threshold.
      detail: what moved (e.g. the shares before and now, or the item that moved most).
    """

    measure: str
    feature: str
    distance: float
    threshold: float
    detail: str = ""

    @property
    def drifted(self) -> bool:
        return self.distance > self.threshold

    def describe(self) -> str:
        return (
            f"{self.feature} ({self.measure}): distance {self.distance:.4f} > threshold "
            f"{self.threshold:g}; {self.detail}"
        )


def _features(stats: statistics_pb2.DatasetFeatureStatisticsList):
    if len(stats.datasets) != 1:
        raise ValueError(f"expected statistics of one dataset, got {len(stats.datasets)}")
    return {".".join(f.path.step) or f.name: f for f in stats.datasets[0].features}


def _common(feature) -> statistics_pb2.CommonStatistics:
    kind = feature.WhichOneof("stats")
    return getattr(feature, kind).common_stats if kind else statistics_pb2.CommonStatistics()


def _item_frequency(current, previous, schema, behaviors, threshold) -> list[Measurement]:
    import tensorflow_data_validation as tfdv

    with_drift = schema_pb2.Schema()
    with_drift.CopyFrom(schema)
    wanted = {features.items_key(b) for b in behaviors}
    for feature in with_drift.feature:
        if feature.name in wanted:
            feature.drift_comparator.infinity_norm.threshold = threshold
    anomalies = tfdv.validate_statistics(current, with_drift, previous_statistics=previous)
    out = []
    for info in anomalies.drift_skew_info:
        name = ".".join(info.path.step)
        for measured in info.drift_measurements:
            detail = ""
            if name in anomalies.anomaly_info:
                text = anomalies.anomaly_info[name].description
                detail = text.rsplit(". ", 1)[-1] if "maximum difference" in text else ""
            out.append(Measurement(ITEM_FREQUENCY, name, float(measured.value), threshold, detail))
    return out


def measure(
    current: statistics_pb2.DatasetFeatureStatisticsList,
    previous: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    behaviors: Sequence[str],
    config: DriftConfig,
) -> list[Measurement]:
    """Every drift measurement of ``current`` against ``previous`` (one split each).

    Args:
      current: this run's statistics of ``config.split``.
      previous: the previous run's statistics of the same split.
      schema: the run's schema (``<b>_items`` features).
      behaviors: the modelled behaviors.
      config: thresholds (``None`` skips a measure).

    Returns:
      The measurements (``Measurement.drifted`` marks those above their threshold).

    Raises:
      ValueError: if a statistics list does not hold exactly one dataset.
    """
    now, before = _features(current), _features(previous)
    out: list[Measurement] = []
    if config.item_frequency is not None:
        out += _item_frequency(current, previous, schema, behaviors, config.item_frequency)
    keys = [features.items_key(b) for b in behaviors]
    if config.behavior_mix is not None:
        totals_now = [_common(now[k]).tot_num_values if k in now else 0 for k in keys]
        totals_before = [_common(before[k]).tot_num_values if k in before else 0 for k in keys]
        if sum(totals_now) and sum(totals_before):
            shares_now = [t / sum(totals_now) for t in totals_now]
            shares_before = [t / sum(totals_before) for t in totals_before]
            gaps = [abs(a - b) for a, b in zip(shares_now, shares_before, strict=True)]
            detail = ", ".join(
                f"{b} {p:.3f} -> {n:.3f}"
                for b, p, n in zip(behaviors, shares_before, shares_now, strict=True)
            )
            out.append(
                Measurement(BEHAVIOR_MIX, "behaviors", max(gaps), config.behavior_mix, detail)
            )
    if config.events_per_user is not None:
        for b, key in zip(behaviors, keys, strict=True):
            if key not in now or key not in before:
                continue
            was, is_ = _common(before[key]).avg_num_values, _common(now[key]).avg_num_values
            if was > 0:
                out.append(
                    Measurement(
                        EVENTS_PER_USER,
                        key,
                        abs(is_ - was) / was,
                        config.events_per_user,
                        f"mean {b} events per user {was:.2f} -> {is_:.2f}",
                    )
                )
    return out


def to_json(measurements: Sequence[Measurement]) -> list[dict[str, Any]]:
    """JSON-ready records (``drifted`` included)."""
    return [{**dataclasses.asdict(m), "drifted": m.drifted} for m in measurements]


def config_from(section: Mapping[str, Any] | None) -> DriftConfig:
    """``DriftConfig`` from the config's ``drift`` section (unknown keys are errors)."""
    section = dict(section or {})
    known = {f.name for f in dataclasses.fields(DriftConfig)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"drift: unknown key(s) {unknown}; known: {sorted(known)}")
    return DriftConfig(**section)
