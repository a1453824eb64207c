"""Reading the Evaluator's TFMA output back: per-slice ranking metrics, the gate's checks.

``read(uri)`` turns an Evaluator's ``ModelEvaluation`` directory (what
``tfma.load_eval_result`` reads) into plain dicts for the run summary and
``metrics.md``; ``blessing_message`` says why a model was or was not blessed, from
``tfma.load_validation_result``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bvae_tf import metrics as metrics_lib
from components.tfma_ranking import gate as gate_lib
from components.tfma_ranking import metric as metric_lib

#: TFMA's metrics files: ``metrics-00000-of-00001.tfrecord`` (not ``metrics.md``).
_METRICS_PREFIX = "metrics-"
#: The overall slice's name in ``read``'s output.
OVERALL = "overall"

PerBehavior = dict[str, dict[str, float]]  # behavior -> metric (or count) -> value


def slice_name(slice_key: Sequence[tuple[str, Any]]) -> str:
    """``()`` -> ``"overall"``; ``(("activity", "1-4"),)`` -> ``"activity=1-4"``."""
    if not slice_key:
        return OVERALL
    return ", ".join(f"{k}={v.decode() if isinstance(v, bytes) else v}" for k, v in slice_key)


def _slice_key(proto) -> tuple[tuple[str, Any], ...]:
    out = []
    for single in proto.single_slice_keys:
        kind = single.WhichOneof("kind")
        out.append((single.column, getattr(single, kind) if kind else None))
    return tuple(out)


def slice_sort_key(name: str) -> tuple:
    """Overall first; then by feature, numeric values by their leading number
    (``activity=1-4`` before ``activity=5-19`` before ``activity=20+``)."""
    feature, _, value = name.partition("=")
    digits = len(value) - len(value.lstrip("0123456789"))
    number = int(value[:digits]) if digits else -1
    return (name != OVERALL, feature, number, value)


def read(uri: str) -> dict[str, Any]:
    """The ranking metrics of an Evaluator output, per model and slice.

    Args:
      uri: the ``ModelEvaluation`` artifact's directory.

    Returns:
      ``{"models": {model: {slice: {behavior: {"ndcg@5": v, ..., "num_users": n,
      "num_excluded": m}}}}, "example_count": {model: {slice: n}},
      "validation": {"ok": bool, "failures": [text, ...]} | None}``; models are
      ``gate.CANDIDATE`` and, when one was compared, ``gate.BASELINE``; slices
      ``"overall"`` first, then as ``slice_name`` writes them.

    Raises:
      ValueError: if ``uri`` holds no readable, non-empty TFMA metrics.
    """
    import tensorflow as tf
    import tensorflow_model_analysis as tfma

    names = tf.io.gfile.listdir(uri) if tf.io.gfile.isdir(uri) else []
    if not any(n.startswith(_METRICS_PREFIX) for n in names):
        raise ValueError(f"{uri} holds no TFMA metrics (is it an Evaluator's evaluation?)")
    models: dict[str, dict[str, PerBehavior]] = {}
    counts: dict[str, dict[str, float]] = {}
    try:
        loaded = list(tfma.load_metrics(uri))
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"cannot read the TFMA metrics in {uri}: {e}") from e
    if not loaded:
        raise ValueError(f"the TFMA metrics in {uri} are empty")
    for per_slice in loaded:
        name = slice_name(_slice_key(per_slice.slice_key))
        for entry in per_slice.metric_keys_and_values:
            key = entry.key
            if key.is_diff or not entry.value.HasField("double_value"):
                continue
            model = key.model_name or gate_lib.CANDIDATE
            value = entry.value.double_value.value
            if key.name == gate_lib.EXAMPLE_COUNT:
                counts.setdefault(model, {})[name] = value
                continue
            behavior, _, metric = key.name.partition("/")
            if not metric:
                continue
            per_model = models.setdefault(model, {})
            values = per_model.setdefault(name, {}).setdefault(behavior, {})
            values[metric] = int(value) if metric in metric_lib.COUNTS else value
    for per_model in models.values():
        ordered = sorted(per_model, key=slice_sort_key)
        per_model_sorted = {s: per_model[s] for s in ordered}
        per_model.clear()
        per_model.update(per_model_sorted)
    validation = None
    if any(n.startswith("validations") for n in names):
        result = tfma.load_validation_result(uri)
        validation = {
            "ok": bool(result.validation_ok),
            "failures": [
                describe_failure(slice_name(_slice_key(f.slice_key)), failure)
                for f in result.metric_validations_per_slice
                for failure in f.failures
            ],
        }
    return {"models": models, "example_count": counts, "validation": validation}


def describe_failure(slice_label: str, failure) -> str:
    """One failed check as text: ``"purchase/ndcg@5 0.0412 < 0.1 (overall)"``."""
    key, value = failure.metric_key, failure.metric_value.double_value.value
    threshold = failure.metric_threshold
    if threshold.HasField("value_threshold"):
        bound = threshold.value_threshold.lower_bound.value
        rule = f"{_number(value)} >= {bound:g} failed"
    else:
        rule = f"change {_number(value)} >= {threshold.change_threshold.absolute.value:g} failed"
    kind = "change vs the baseline" if key.is_diff else "value"
    return f"{key.name} {rule} ({kind}, {slice_label})"


def _number(value: float) -> str:
    return "NaN (no scored users)" if math.isnan(value) else f"{value:.6f}"


def blessing_message(validation: Mapping[str, Any] | None, has_baseline: bool) -> str:
    """Why the model was (not) blessed, from ``read(...)["validation"]``."""
    against = "against the latest blessed model" if has_baseline else "no baseline"
    if validation is None:
        return "not validated (no thresholds configured)"
    if validation["ok"]:
        return f"blessed ({against})"
    return f"not blessed ({against}): " + "; ".join(validation["failures"])


def markdown(
    splits: Mapping[str, Mapping[str, PerBehavior]],
    ks: Sequence[int],
    baseline: Mapping[str, PerBehavior] | None = None,
    message: str | None = None,
) -> str:
    """Markdown tables: one per split and slice (and the baseline's, when given)."""
    names = [metrics_lib.metric_key(m, k) for k in ks for m in metrics_lib.METRICS]
    lines: list[str] = []
    tables = [
        (f"{split} split, {s}", per)
        for split, slices in splits.items()
        for s, per in slices.items()
    ]
    if baseline:
        tables += [(f"baseline, {s}", per) for s, per in baseline.items()]
    for title, per_behavior in tables:
        lines += [f"### {title}", "", "| behavior | users | " + " | ".join(names) + " |"]
        lines.append("|---" * (len(names) + 2) + "|")
        for b, values in per_behavior.items():
            cells = " | ".join(f"{values.get(n, float('nan')):.4f}" for n in names)
            lines.append(f"| {b} | {values.get(metric_lib.USERS, 0)} | {cells} |")
        lines.append("")
    if message:
        lines += ["### gate", "", message, ""]
    return "\n".join(lines) + "\n"
