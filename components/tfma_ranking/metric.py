"""Full-ranking Prec/Rec/NDCG/HR@K per behavior as a TFMA metric (one example per user).

TFMA's built-in ``NDCG`` wants one example per (query, candidate) pair. Here each
example is one user: the exported model's ``rank_heldout`` signature
(``bvae_tf.export``) ranks the user's held-out items of every behavior among all
items, the user's own train items of that behavior excluded, with ties broken
against the model; the metric reads those ranks and ``|H|`` from the predictions
and turns them into ``bvae_tf.metrics.metrics_from_ranks`` values, the same pure
function the experiments and the Trainer use. Users without held-out items of a
behavior are not scored and are counted (``<b>/num_excluded``).

One computation per model accumulates every behavior and cut-off (sums of per-user
values, counts); each named metric (``purchase/ndcg@5``, ``click/num_users``, ...)
is derived from it, so an ``EvalConfig`` may hold one ``MetricConfig`` per metric,
each with its own ``MetricThreshold``, without ranking twice.

A behavior with no scored user in a slice has no value for its metrics there: the
value is ``NaN`` and the threshold check on it fails (TFMA's validator treats a
``NaN`` metric as failing, as ``components.tfma_ranking.config`` relies on).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types

from bvae_tf import features
from bvae_tf import metrics as metrics_lib

#: Per-behavior counts, metrics like the others (``<b>/num_users``).
USERS = "num_users"
EXCLUDED = "num_excluded"
COUNTS: tuple[str, ...] = (USERS, EXCLUDED)
#: Examples buffered before their ranks are turned into metric sums.
_FLUSH_EVERY = 1024


def metric_name(behavior: str, metric: str) -> str:
    """``metric_name("purchase", "ndcg@5") == "purchase/ndcg@5"``: a TFMA metric name."""
    return f"{behavior}/{metric}"


class _Accumulator:
    """Per behavior: sums of per-user values and counts, plus examples not yet summed."""

    __slots__ = ("excluded", "pending", "sums", "users")

    def __init__(self, behaviors: Sequence[str]):
        self.sums = {b: {} for b in behaviors}
        self.users = dict.fromkeys(behaviors, 0)
        self.excluded = dict.fromkeys(behaviors, 0)
        # behavior -> list of (ranks [h] int64, |H|) of examples not yet summed
        self.pending = {b: [] for b in behaviors}


class _RankingStatsCombiner(beam.CombineFn):
    """Combines the ``rank_heldout`` predictions of one model into metric sums."""

    def __init__(self, key: metric_types.MetricKey, behaviors: Sequence[str], ks: Sequence[int]):
        self._key = key
        self._behaviors = tuple(behaviors)
        self._ks = tuple(ks)

    def create_accumulator(self) -> _Accumulator:
        return _Accumulator(self._behaviors)

    def _predictions(self, element: metric_types.StandardMetricInputs) -> dict[str, Any]:
        predictions = element.get_predictions(model_name=self._key.model_name)
        if not isinstance(predictions, dict):
            raise ValueError(
                f"the model's predictions must be the outputs of its {features.RANK_SIGNATURE!r} "
                f"signature (a dict), got {type(predictions).__name__}; set the model spec's "
                f"signature_name to {features.RANK_SIGNATURE!r}"
            )
        return predictions

    def add_input(
        self, accumulator: _Accumulator, element: metric_types.StandardMetricInputs
    ) -> _Accumulator:
        predictions = self._predictions(element)
        for b in self._behaviors:
            ranks_key, count_key = features.heldout_ranks_output(b), features.num_heldout_output(b)
            if ranks_key not in predictions or count_key not in predictions:
                raise ValueError(
                    f"the model's {features.RANK_SIGNATURE!r} outputs lack {ranks_key!r} or "
                    f"{count_key!r} (it has {sorted(predictions)}): does the model rank "
                    f"behavior {b!r}, and do the examples hold {features.heldout_key(b)!r}?"
                )
            ranks = np.asarray(predictions[ranks_key], np.int64).reshape(-1)
            count = int(np.asarray(predictions[count_key]).reshape(-1)[0])
            accumulator.pending[b].append((ranks[ranks > 0], count))
        if len(accumulator.pending[self._behaviors[0]]) >= _FLUSH_EVERY:
            self._flush(accumulator)
        return accumulator

    def _flush(self, accumulator: _Accumulator) -> None:
        for b, pending in accumulator.pending.items():
            if not pending:
                continue
            rows = np.concatenate(
                [np.full(len(r), i, np.int64) for i, (r, _) in enumerate(pending)]
            )
            ranks = np.concatenate([r for r, _ in pending]).astype(np.float64)
            counts = np.array([c for _, c in pending], np.int64)
            per_user = metrics_lib.metrics_from_ranks(rows, ranks, counts, self._ks)
            sums = accumulator.sums[b]
            for name, values in per_user.items():
                sums[name] = sums.get(name, 0.0) + float(values.sum())
            scored = int((counts > 0).sum())
            accumulator.users[b] += scored
            accumulator.excluded[b] += len(counts) - scored
            accumulator.pending[b] = []

    def merge_accumulators(self, accumulators: Iterable[_Accumulator]) -> _Accumulator:
        accumulators = iter(accumulators)
        result = next(accumulators)
        for other in accumulators:
            for b in self._behaviors:
                for name, value in other.sums[b].items():
                    result.sums[b][name] = result.sums[b].get(name, 0.0) + value
                result.users[b] += other.users[b]
                result.excluded[b] += other.excluded[b]
                result.pending[b].extend(other.pending[b])
        if len(result.pending[self._behaviors[0]]) >= _FLUSH_EVERY:
            self._flush(result)
        return result

    def compact(self, accumulator: _Accumulator) -> _Accumulator:
        self._flush(accumulator)
        return accumulator

    def extract_output(self, accumulator: _Accumulator) -> dict[metric_types.MetricKey, Any]:
        self._flush(accumulator)
        stats = {}
        for b in self._behaviors:
            users = accumulator.users[b]
            values = {
                metrics_lib.metric_key(m, k): accumulator.sums[b].get(
                    metrics_lib.metric_key(m, k), 0.0
                )
                / users
                if users
                else float("nan")
                for k in self._ks
                for m in metrics_lib.METRICS
            }
            values[USERS] = float(users)
            values[EXCLUDED] = float(accumulator.excluded[b])
            stats[b] = values
        return {self._key: stats}


def _stats_key(
    model_name: str, behaviors: Sequence[str], ks: Sequence[int]
) -> metric_types.MetricKey:
    # One shared computation per model (TFMA de-duplicates equal computations); the
    # leading "_" keeps the intermediate dict out of the written metrics.
    name = "_bvae_ranking_stats:" + ",".join(behaviors) + ":" + ",".join(map(str, ks))
    return metric_types.MetricKey(name=name, model_name=model_name)


def _computations(  # noqa: PLR0917 -- TFMA passes the arguments it finds in the signature
    name: str = "",
    behavior: str = "",
    metric: str = "",
    behaviors: Sequence[str] = (),
    ks: Sequence[int] = metrics_lib.DEFAULT_KS,
    model_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    sub_keys: Sequence[Any] | None = None,
    example_weighted: bool = False,
) -> metric_types.MetricComputations:
    del output_names, sub_keys  # one output dict, no sub keys
    behaviors = tuple(behaviors)
    ks = tuple(sorted(set(int(k) for k in ks)))
    computations: metric_types.MetricComputations = []
    for model_name in model_names or [""]:
        stats = _stats_key(model_name, behaviors, ks)
        key = metric_types.MetricKey(
            name=name, model_name=model_name, example_weighted=example_weighted
        )
        computations.append(
            metric_types.MetricComputation(
                keys=[stats],
                preprocessors=None,
                combiner=_RankingStatsCombiner(stats, behaviors, ks),
            )
        )

        def result(metrics, key=key, stats=stats):
            return {key: metrics[stats][behavior][metric]}

        computations.append(metric_types.DerivedMetricComputation(keys=[key], result=result))
    return computations


class RankingMetric(metric_types.Metric):
    """One behavior's ``<metric>@<K>`` (or its user counts) as a TFMA metric.

    In an ``EvalConfig``::

        MetricConfig(class_name="RankingMetric", module="components.tfma_ranking.metric",
                     config='{"behavior": "purchase", "metric": "ndcg@5",
                              "behaviors": ["purchase", "click"], "ks": [5, 10]}')

    Args:
      behavior: the behavior scored (one of ``behaviors``).
      metric: ``"<precision|recall|ndcg|hit_rate>@<K>"`` with ``K`` in ``ks``, or
        ``"num_users"`` / ``"num_excluded"``.
      behaviors: every behavior the evaluation scores (the shared computation's).
      ks: every cut-off the evaluation computes.
      name: the metric name (default ``"<behavior>/<metric>"``).

    Raises:
      ValueError: on an unknown metric, a K not in ``ks``, or a behavior not in
        ``behaviors``.
    """

    def __init__(
        self,
        behavior: str = "",
        metric: str = "",
        behaviors: Sequence[str] = (),
        ks: Sequence[int] = metrics_lib.DEFAULT_KS,
        name: str | None = None,
    ):
        behaviors = list(behaviors)
        ks = sorted({int(k) for k in ks})
        known = list(COUNTS) + [
            metrics_lib.metric_key(m, k) for k in ks for m in metrics_lib.METRICS
        ]
        if behavior not in behaviors:
            raise ValueError(f"behavior {behavior!r} is not one of the evaluated {behaviors}")
        if metric not in known:
            raise ValueError(f"metric {metric!r} must be one of {known}")
        super().__init__(
            _computations,
            name=name or metric_name(behavior, metric),
            behavior=behavior,
            metric=metric,
            behaviors=behaviors,
            ks=ks,
        )

    def to_json(self) -> str:
        """The ``MetricConfig.config`` that rebuilds this metric."""
        return json.dumps(self.get_config(), sort_keys=True)


metric_types.register_metric(RankingMetric)
