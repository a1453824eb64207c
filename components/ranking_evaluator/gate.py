"""The blessing rule of ``RankingEvaluator``: absolute bounds and no regression.

Metrics are named ``<metric>@<K>`` with ``<metric>`` one of ``precision``,
``recall``, ``ndcg``, ``hit_rate`` (``bvae_tf.metrics.METRICS``; the definitions of
``bvae_tf.metrics``), per behavior.
A candidate is blessed when, on the evaluation split,

* every absolute bound holds: ``value >= lower_bounds[behavior][metric]`` (the key
  ``"*"`` sets a bound for every behavior; a behavior's own entry wins), and
* if a baseline (the latest blessed model) exists, for every behavior and every
  metric of ``regression_metrics``: ``value >= baseline_value - regression_tolerance``
  (an absolute tolerance; 0 forbids any drop).

A behavior with no scored user (no held-out item in the split) cannot show that it
meets a bound, so every check on it fails. Without a baseline only the absolute
bounds apply (the first model is "rubber-stamped" as TFX's Evaluator does).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bvae_tf import features
from bvae_tf import metrics as metrics_lib
from bvae_tf.config import reject_unknown

METRIC_NAMES: tuple[str, ...] = tuple(metrics_lib.METRICS)
DEFAULT_KS: tuple[int, ...] = tuple(metrics_lib.DEFAULT_KS)
#: Lower-bound key that applies to every behavior.
ALL_BEHAVIORS = "*"
#: Per-behavior entries with the numbers of users scored / not scored (not metrics).
USERS_KEY = "num_users"
EXCLUDED_KEY = "num_excluded"
_METRIC_RE = re.compile(r"^(" + "|".join(METRIC_NAMES) + r")@([1-9][0-9]*)$")

Metrics = Mapping[str, Mapping[str, float]]  # behavior -> metric@K -> value (+ "users")


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
        raise ValueError(
            f"metric {name!r} must look like '<metric>@<K>' with metric in {list(METRIC_NAMES)}"
        )
    return match.group(1), int(match.group(2))


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class GateConfig:
    """What the evaluator computes and how it decides the blessing.

    Attributes:
      ks: cut-offs K computed for every metric (each >= 1).
      lower_bounds: behavior (or ``"*"``) -> ``metric@K`` -> minimum value.
      regression_metrics: ``metric@K`` names that must not drop against the
        baseline by more than ``regression_tolerance``.
      regression_tolerance: allowed absolute drop (>= 0).
      eval_split: split the gate is decided on.
      report_splits: splits scored once and reported, never gated (e.g. test).
      batch_size: users per scoring batch.
    """

    ks: Sequence[int] = DEFAULT_KS
    lower_bounds: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    regression_metrics: Sequence[str] = (metric_name("ndcg", 5),)
    regression_tolerance: float = 0.0
    eval_split: str = features.EVAL
    report_splits: Sequence[str] = (features.TEST,)
    batch_size: int = 500

    def __post_init__(self) -> None:
        ks = tuple(self.ks)
        if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
            raise ValueError(f"ks must be integers >= 1, got {list(self.ks)}")
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
                self._check_k(name)
                bounds[behavior][name] = _number(f"lower_bounds[{behavior!r}][{name!r}]", value)
        object.__setattr__(self, "lower_bounds", bounds)
        if isinstance(self.regression_metrics, str):
            raise ValueError(
                f"regression_metrics must be a list of names, got {self.regression_metrics!r}"
            )
        regression = tuple(self.regression_metrics)
        for name in regression:
            self._check_k(name)
        object.__setattr__(self, "regression_metrics", regression)
        tolerance = _number("regression_tolerance", self.regression_tolerance)
        if tolerance < 0:
            raise ValueError(f"regression_tolerance must be >= 0, got {tolerance!r}")
        object.__setattr__(self, "regression_tolerance", tolerance)
        report = tuple(self.report_splits)
        for split in (self.eval_split, *report):
            if split not in features.SPLITS:
                raise ValueError(f"split {split!r} must be one of {list(features.SPLITS)}")
        if self.eval_split in report:
            raise ValueError(f"eval_split {self.eval_split!r} must not also be a report split")
        object.__setattr__(self, "report_splits", report)
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")

    def _check_k(self, name: str) -> None:
        _, k = parse_metric_name(name)
        if k not in self.ks:
            raise ValueError(f"metric {name!r} uses K={k}, which is not in ks {list(self.ks)}")

    def bounds_for(self, behavior: str) -> dict[str, float]:
        """The absolute bounds that apply to ``behavior``."""
        return {**self.lower_bounds.get(ALL_BEHAVIORS, {}), **self.lower_bounds.get(behavior, {})}

    def to_json(self) -> str:
        """The configuration as a JSON string (a component execution property)."""
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
          ValueError: on unknown keys or bad values.
        """
        if not isinstance(values, Mapping):
            raise ValueError(f"gate config must be a mapping, got {values!r}")
        reject_unknown("gate config keys", values, cls)
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Check:
    """One comparison of the gate."""

    behavior: str
    metric: str
    kind: str  # "lower_bound" or "no_regression"
    value: float | None
    threshold: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        value = "no scored users" if self.value is None else f"{self.value:.6f}"
        verdict = "ok" if self.passed else "FAILED"
        comparison = f"{value} >= {self.threshold:.6f}"
        return f"{self.behavior} {self.metric} {comparison} ({self.kind}): {verdict}"


@dataclasses.dataclass(frozen=True)
class GateResult:
    """The decision: ``blessed`` and every check behind it."""

    blessed: bool
    checks: tuple[Check, ...]
    has_baseline: bool

    @property
    def message(self) -> str:
        failed = [c.describe() for c in self.checks if not c.passed]
        baseline = "against the latest blessed model" if self.has_baseline else "no baseline"
        if self.blessed:
            return f"blessed: {len(self.checks)} checks passed ({baseline})"
        return f"not blessed ({baseline}): " + "; ".join(failed)


def _value(metrics: Metrics, behavior: str, name: str) -> float | None:
    per_behavior = metrics.get(behavior)
    if not per_behavior or not per_behavior.get(USERS_KEY, 0):
        return None
    if name not in per_behavior:
        raise ValueError(f"metric {name!r} of behavior {behavior!r} was not computed")
    return float(per_behavior[name])


def decide(config: GateConfig, candidate: Metrics, baseline: Metrics | None) -> GateResult:
    """Applies the gate to the candidate's (and baseline's) eval-split metrics.

    Args:
      config: the gate.
      candidate: behavior -> ``{"users": n, "ndcg@5": ..., ...}`` of the new model.
      baseline: the same for the latest blessed model, or ``None``.

    Returns:
      The decision with every check, in behavior order.

    Raises:
      ValueError: if a bound names a behavior the model does not rank, or a metric
        that was not computed.
    """
    unknown = sorted(b for b in config.lower_bounds if b != ALL_BEHAVIORS and b not in candidate)
    if unknown:
        raise ValueError(
            f"lower_bounds name behaviors {unknown} that the model does not rank "
            f"({sorted(candidate)})"
        )
    checks: list[Check] = []
    for behavior in candidate:
        for name, bound in sorted(config.bounds_for(behavior).items()):
            value = _value(candidate, behavior, name)
            passed = value is not None and value >= bound
            checks.append(Check(behavior, name, "lower_bound", value, bound, passed))
        if baseline is None:
            continue
        for name in config.regression_metrics:
            value = _value(candidate, behavior, name)
            reference = _value(baseline, behavior, name)
            if reference is None:  # the baseline did not rank it: nothing to regress from
                continue
            threshold = reference - config.regression_tolerance
            passed = value is not None and value >= threshold
            checks.append(Check(behavior, name, "no_regression", value, threshold, passed))
    return GateResult(
        blessed=all(c.passed for c in checks),
        checks=tuple(checks),
        has_baseline=baseline is not None,
    )
