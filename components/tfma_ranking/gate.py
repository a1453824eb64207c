"""The blessing gate as a TFMA ``EvalConfig``: thresholds, slices, the two models.

Metrics are named ``<behavior>/<metric>@<K>`` in TFMA (``metric.RankingMetric``) with
``<metric>`` one of ``precision``, ``recall``, ``ndcg``, ``hit_rate``
(``bvae_tf.metrics.METRICS``, whose definitions they are). The gate's keys
(``GateConfig``) keep the meaning they had: a candidate is blessed when, on the
evaluation split, over all its users (the overall slice),

* every absolute bound holds: ``value >= lower_bounds[behavior][metric]`` (the key
  ``"*"`` sets a bound for every behavior; a behavior's own entry wins) -- a TFMA
  ``GenericValueThreshold(lower_bound=...)``, and
* if a baseline (the latest blessed model, TFX's ``LatestBlessedModelStrategy``)
  exists, for every behavior and every metric of ``regression_metrics``:
  ``value >= baseline_value - regression_tolerance`` -- a TFMA
  ``GenericChangeThreshold(direction=HIGHER_IS_BETTER, absolute=-tolerance)``.

A behavior with no scored user (no held-out item in the split) has a ``NaN``
value, so every check on it fails. Without a baseline only the absolute bounds apply
(TFX's Evaluator "rubber-stamps" change thresholds for the first model). Every
configuration also requires at least one evaluation example (``example_count >=
1``), so the Evaluator always validates and always writes a blessing.

Slices (reported, never gated): overall; users by activity, i.e. their number of
train events over all behaviors in buckets (``activity_buckets``, lower edges,
default 1-4, 5-19, 20+; TFMA SQL slicing on the raw ``<b>_items`` features, no model
change needed); and any ``slices`` the user names by feature keys of the examples.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bvae_tf import features
from bvae_tf import metrics as metrics_lib
from bvae_tf.config import reject_unknown

METRIC_NAMES: tuple[str, ...] = tuple(metrics_lib.METRICS)
DEFAULT_KS: tuple[int, ...] = tuple(metrics_lib.DEFAULT_KS)
#: Lower-bound key that applies to every behavior.
ALL_BEHAVIORS = "*"
#: The slice feature of the activity buckets (``SlicingSpec.slice_keys_sql``).
ACTIVITY = "activity"
#: Default lower edges of the activity buckets: 1-4, 5-19, 20+ train events.
DEFAULT_ACTIVITY_BUCKETS: tuple[int, ...] = (1, 5, 20)
#: Largest cut-off K (a top-K list, not a catalog) and activity bucket edge.
MAX_K = 10_000
MAX_BUCKET_EDGE = 10**9
#: Names of the candidate and baseline models in the EvalConfig and the results.
CANDIDATE = "candidate"
BASELINE = "baseline"
#: The Evaluator's ``module_path``: its ``custom_eval_shared_model`` checks the
#: ``rank_heldout`` signature before TFMA loads a model.
MODEL_LOADER = "components.tfma_ranking.model_loader"
#: TFMA's built-in example count, gated ``>= 1``.
EXAMPLE_COUNT = "example_count"
_METRIC_RE = re.compile(r"^(" + "|".join(METRIC_NAMES) + r")@([1-9][0-9]*)$")
_REMOVED_KEYS = {
    "batch_size": "TFMA batches the examples itself; remove evaluation.batch_size",
}


def metric_name(metric: str, k: int) -> str:
    """``metric_name("ndcg", 5) == "ndcg@5"`` (``bvae_tf.metrics.metric_key``)."""
    return metrics_lib.metric_key(metric, k)


def parse_metric_name(name: str) -> tuple[str, int]:
    """Splits ``"ndcg@5"`` into ``("ndcg", 5)``.

    Raises:
      ValueError: if ``name`` is not ``<precision|recall|ndcg|hit_rate>@<K>``.
    """
    match = _METRIC_RE.match(name) if isinstance(name, str) else None
    if not match:
        metric, at, k = name.partition("@") if isinstance(name, str) else ("", "", "")
        if at and k.isdigit() and int(k) >= 1 and metric not in METRIC_NAMES:
            raise ValueError(
                f"metric {name!r}: unknown metric {metric!r}; known: {list(METRIC_NAMES)}"
            )
        raise ValueError(
            f"metric {name!r} must look like '<metric>@<K>' with metric in {list(METRIC_NAMES)}"
        )
    return match.group(1), int(match.group(2))


def _number(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not math.isfinite(value)
    ):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _is_list(values: Any) -> bool:
    return isinstance(values, Sequence) and not isinstance(values, str | bytes)


def _positive_ints(name: str, values: Any, allow_empty: bool, limit: int) -> tuple[int, ...]:
    if not _is_list(values):
        raise TypeError(f"{name} must be a list of integers, got {values!r}")
    out = tuple(values)
    if (not out and not allow_empty) or any(
        isinstance(v, bool) or not isinstance(v, int | np.integer) or not 1 <= v <= limit
        for v in out
    ):
        raise ValueError(f"{name} must be integers in [1, {limit:,}], got {list(values)}")
    return tuple(int(v) for v in out)


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """What the Evaluator computes, how it slices, and how it decides the blessing.

    Attributes:
      ks: cut-offs K computed for every metric (each >= 1).
      lower_bounds: behavior (or ``"*"``) -> ``metric@K`` -> minimum value.
      regression_metrics: ``metric@K`` names that must not drop against the
        baseline by more than ``regression_tolerance``.
      regression_tolerance: allowed absolute drop (>= 0).
      eval_split: split the gate is decided on.
      report_splits: splits scored once and reported, never gated (e.g. test).
      activity_buckets: increasing lower edges (train events over all behaviors) of
        the activity slices; ``[]``: no activity slices.
      slices: extra slices, each a list of feature keys of the examples
        (``tfma.SlicingSpec(feature_keys=...)``).
    """

    ks: Sequence[int] = DEFAULT_KS
    lower_bounds: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    regression_metrics: Sequence[str] = (metric_name("ndcg", 5),)
    regression_tolerance: float = 0.0
    eval_split: str = features.EVAL
    report_splits: Sequence[str] = (features.TEST,)
    activity_buckets: Sequence[int] = DEFAULT_ACTIVITY_BUCKETS
    slices: Sequence[Sequence[str]] = ()

    def __post_init__(self) -> None:
        ks = _positive_ints("ks", self.ks, allow_empty=False, limit=MAX_K)
        object.__setattr__(self, "ks", tuple(sorted(set(ks))))
        bounds: dict[str, dict[str, float]] = {}
        if not isinstance(self.lower_bounds, Mapping):
            raise ValueError(f"lower_bounds must be a mapping, got {self.lower_bounds!r}")
        for behavior, per_metric in self.lower_bounds.items():
            if behavior != ALL_BEHAVIORS:
                features.validate_behaviors([behavior])
            if not isinstance(per_metric, Mapping):
                raise ValueError(
                    f"lower_bounds[{behavior!r}] must map metric names to values, "
                    f"got {per_metric!r}"
                )
            bounds[behavior] = {}
            for name, value in per_metric.items():
                self._check_k(name, f"lower_bounds[{behavior!r}]")
                bounds[behavior][name] = _number(f"lower_bounds[{behavior!r}][{name!r}]", value)
        object.__setattr__(self, "lower_bounds", bounds)
        if not _is_list(self.regression_metrics):
            raise ValueError(
                f"regression_metrics must be a list of names, got {self.regression_metrics!r}"
            )
        regression = tuple(self.regression_metrics)
        for name in regression:
            self._check_k(name, "regression_metrics")
        object.__setattr__(self, "regression_metrics", regression)
        tolerance = _number("regression_tolerance", self.regression_tolerance)
        if tolerance < 0:
            raise ValueError(f"regression_tolerance must be >= 0, got {tolerance!r}")
        object.__setattr__(self, "regression_tolerance", tolerance)
        if not _is_list(self.report_splits):
            raise ValueError(f"report_splits must be a list of splits, got {self.report_splits!r}")
        report = tuple(self.report_splits)
        for split in (self.eval_split, *report):
            if split not in features.SPLITS:
                raise ValueError(f"split {split!r} must be one of {list(features.SPLITS)}")
        if self.eval_split in report or len(set(report)) != len(report):
            raise ValueError(
                f"report_splits {list(report)} must be distinct and must not hold "
                f"eval_split {self.eval_split!r}"
            )
        object.__setattr__(self, "report_splits", report)
        buckets = _positive_ints(
            "activity_buckets", self.activity_buckets, allow_empty=True, limit=MAX_BUCKET_EDGE
        )
        if list(buckets) != sorted(set(buckets)):
            raise ValueError(f"activity_buckets must be increasing, got {list(buckets)}")
        object.__setattr__(self, "activity_buckets", buckets)
        if isinstance(self.slices, str) or not isinstance(self.slices, Sequence):
            raise ValueError(f"slices must be a list of lists of feature keys, got {self.slices!r}")
        slices = []
        for keys in self.slices:
            if (
                isinstance(keys, str)
                or not isinstance(keys, Sequence)
                or not keys
                or not all(isinstance(k, str) and k for k in keys)
            ):
                raise ValueError(
                    f"each of slices must be a non-empty list of feature keys, got {keys!r}"
                )
            slices.append(tuple(keys))
        object.__setattr__(self, "slices", tuple(slices))

    def _check_k(self, name: str, where: str) -> None:
        _, k = parse_metric_name(name)
        if k not in self.ks:
            raise ValueError(
                f"metric {name!r} of {where} uses K={k}, which is not in ks {list(self.ks)} "
                f"(add {k} to ks, or change {where.partition('[')[0]}; the default "
                "lower_bounds and regression_metrics use ndcg@5)"
            )

    def bounds_for(self, behavior: str) -> dict[str, float]:
        """The absolute bounds that apply to ``behavior``."""
        return {**self.lower_bounds.get(ALL_BEHAVIORS, {}), **self.lower_bounds.get(behavior, {})}

    def to_json(self) -> str:
        """The configuration as a JSON string."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> GateConfig:
        """Parses ``to_json`` output; ``None`` or ``""`` gives the defaults.

        Raises:
          ValueError: if the JSON is malformed or holds unknown keys or bad values.
        """
        if not text:
            return cls()
        try:
            values = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"gate config must be JSON, got {text!r}") from e
        return cls.from_dict(values)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> GateConfig:
        """Builds the config from a plain mapping (e.g. a pipeline config section).

        Raises:
          ValueError: on unknown or removed keys, or bad values.
          TypeError: where a list is expected and something else is given.
        """
        if not isinstance(values, Mapping):
            raise ValueError(f"gate config must be a mapping, got {values!r}")
        for key, why in _REMOVED_KEYS.items():
            if key in values:
                raise ValueError(f"gate config key {key!r} is no longer used: {why}")
        reject_unknown("gate config keys", values, cls)
        return cls(**values)


def activity_label(lower: int, upper: int | None) -> str:
    """The slice value of the bucket ``[lower, upper)``: ``"1-4"``, ``"20+"``."""
    if upper is None:
        return f"{lower}+"
    return str(lower) if upper == lower + 1 else f"{lower}-{upper - 1}"


def activity_sql(behaviors: Sequence[str], buckets: Sequence[int]) -> str:
    """The ``SlicingSpec.slice_keys_sql`` of the activity slices.

    Each example's train events (the lengths of its ``<b>_items`` lists, summed over
    ``behaviors``) fall into one bucket of ``buckets`` (lower edges); users below the
    first edge get ``"0"`` when it is 1, else ``"<first"``.

    Raises:
      ValueError: if ``buckets`` is empty or not increasing integers >= 1, or two
        behaviors differ only in letter case.
    """
    buckets = _positive_ints("activity_buckets", buckets, allow_empty=False, limit=MAX_BUCKET_EDGE)
    if list(buckets) != sorted(set(buckets)):
        raise ValueError(f"activity_buckets must be increasing, got {list(buckets)}")
    columns = [features.items_key(b) for b in features.validate_behaviors(behaviors)]
    folded = [c.casefold() for c in columns]
    if len(set(folded)) != len(folded):
        # TFMA's SQL slicing (ZetaSQL) matches column names ignoring case: two such
        # features would abort the Evaluator's process.
        raise ValueError(
            f"behaviors {list(behaviors)} differ only in letter case; the Evaluator's "
            "activity slices cannot tell their features apart: rename one, or set "
            "evaluation.activity_buckets to []"
        )
    # Quoted identifiers: any behavior name (a leading digit, non-ASCII letters).
    total = " + ".join(f"IFNULL(ARRAY_LENGTH(`{c}`), 0)" for c in columns)
    below = "0" if buckets[0] == 1 else f"<{buckets[0]}"
    cases = [f"WHEN n < {buckets[0]} THEN '{below}'"]
    for lower, upper in zip(buckets, (*buckets[1:], None), strict=True):
        label = activity_label(lower, upper)
        cases.append(f"WHEN n < {upper} THEN '{label}'" if upper else f"ELSE '{label}'")
    return (
        f"SELECT STRUCT(CASE {' '.join(cases)} END AS {ACTIVITY}) "
        f"FROM (SELECT {total} AS n FROM UNNEST([example]))"
    )


def slicing_specs(gate: GateConfig, behaviors: Sequence[str]) -> list:
    """Overall, the activity buckets and the named slices, as ``tfma.SlicingSpec``s."""
    import tensorflow_model_analysis as tfma

    specs = [tfma.SlicingSpec()]
    if gate.activity_buckets:
        specs.append(
            tfma.SlicingSpec(slice_keys_sql=activity_sql(behaviors, gate.activity_buckets))
        )
    specs += [tfma.SlicingSpec(feature_keys=list(keys)) for keys in gate.slices]
    return specs


def _overall_only(threshold) -> list:
    """The threshold as a ``PerSliceMetricThreshold`` of the overall slice (the other
    slices are reported, not gated); ``[]`` for none."""
    import tensorflow_model_analysis as tfma

    if threshold is None:
        return []
    return [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)]


def eval_config(gate: GateConfig, behaviors: Sequence[str], gated: bool = True):
    """The ``tfma.EvalConfig`` of the pipeline's Evaluator.

    Args:
      gate: the gate.
      behaviors: the behaviors the model ranks (the pipeline's ``data.behaviors``).
      gated: thresholds and the baseline model (the eval split's Evaluator); without
        them the config only reports (the test split's).

    Returns:
      ``tfma.EvalConfig`` with the candidate (and baseline) on the exported
      ``rank_heldout`` signature, a ``RankingMetric`` per behavior and metric
      (``<b>/<metric>@K`` for every K, ``<b>/num_users``, ``<b>/num_excluded``) and
      the slices of :func:`slicing_specs`.

    Raises:
      ValueError: if a bound names a behavior not in ``behaviors``.
    """
    import tensorflow_model_analysis as tfma

    from components.tfma_ranking import metric as metric_lib

    behaviors = list(features.validate_behaviors(behaviors))
    unknown = sorted(b for b in gate.lower_bounds if b != ALL_BEHAVIORS and b not in behaviors)
    if unknown:
        raise ValueError(
            f"lower_bounds name behaviors {unknown} that the model does not rank ({behaviors})"
        )
    spec = {"signature_name": features.RANK_SIGNATURE, "model_type": "tf_generic"}
    model_specs = [tfma.ModelSpec(name=CANDIDATE, **spec)]
    if gated:
        model_specs.append(tfma.ModelSpec(name=BASELINE, is_baseline=True, **spec))
    names = [*metric_lib.COUNTS] + [metric_name(m, k) for k in gate.ks for m in METRIC_NAMES]
    configs = []
    for b in behaviors:
        bounds = gate.bounds_for(b) if gated else {}
        regression = set(gate.regression_metrics) if gated else set()
        for name in names:
            metric = metric_lib.RankingMetric(
                behavior=b, metric=name, behaviors=behaviors, ks=gate.ks
            )
            threshold = None
            if name in bounds or name in regression:
                threshold = tfma.MetricThreshold()
                if name in bounds:
                    threshold.value_threshold.lower_bound.value = bounds[name]
                if name in regression:
                    threshold.change_threshold.direction = tfma.MetricDirection.HIGHER_IS_BETTER
                    threshold.change_threshold.absolute.value = -gate.regression_tolerance
            configs.append(
                tfma.MetricConfig(
                    class_name=type(metric).__name__,
                    module=metric_lib.__name__,
                    config=metric.to_json(),
                    per_slice_thresholds=_overall_only(threshold),
                )
            )
    count = None
    if gated:
        count = tfma.MetricThreshold()
        count.value_threshold.lower_bound.value = 1
    configs.append(
        tfma.MetricConfig(class_name="ExampleCount", per_slice_thresholds=_overall_only(count))
    )
    return tfma.EvalConfig(
        model_specs=model_specs,
        metrics_specs=[tfma.MetricsSpec(metrics=configs)],
        slicing_specs=slicing_specs(gate, behaviors),
    )
