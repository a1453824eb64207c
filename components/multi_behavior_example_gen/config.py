"""Validated configuration of the multi-behavior ExampleGen.

One frozen dataclass holds every parameter of the component. The component builds it
at pipeline-definition time (so bad arguments fail early, with the value named) and
the executor rebuilds it from the execution properties, whose list and dict values
arrive either as Python objects or as JSON strings depending on the orchestrator.

Split semantics (all timestamps are unix seconds, UTC):

* ``cut_timestamps`` ``(c_eval, c_test)``: an event at time ``t`` goes to train if
  ``t < c_eval``, to eval if ``c_eval <= t < c_test`` and to test if ``t >= c_test``.
  **An event exactly at a cut goes to the later split.**
* ``time_fractions`` ``(f_eval, f_test)``: cuts at ``t_lo + f * (t_hi - t_lo)`` over
  the events kept after deduplication and filtering (the paper's "80 % / 90 % of the
  timeline", BVAE RecSys 2023, Sec. 4.1 step iv), then as above. The timeline is
  measured robustly: with the ``n`` kept events sorted by time and
  ``k = floor(timeline_trim * n)``, ``t_lo`` is the timestamp at 0-based rank ``k``
  and ``t_hi`` the one at rank ``n - 1 - k`` (default: the 1st and 99th percentile
  events), so a few stray timestamps cannot stretch it; ``timeline_trim = 0`` gives
  the paper's min-max span.
* ``event_fractions`` ``(f_eval, f_test)``: with the kept events sorted by time and
  ``n`` of them, the cut ``c`` is the timestamp of the event at 0-based rank
  ``floor(f * n)``; then as above, so events tied with that timestamp go to the later
  split and the train share can be slightly below ``f``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from bvae_tf import features

RAW_LOG = "raw_log"
RELEASE = "release"
INPUT_FORMATS: tuple[str, ...] = (RAW_LOG, RELEASE)

CUT_TIMESTAMPS = "cut_timestamps"
TIME_FRACTIONS = "time_fractions"
EVENT_FRACTIONS = "event_fractions"
SPLIT_METHODS: tuple[str, ...] = (CUT_TIMESTAMPS, TIME_FRACTIONS, EVENT_FRACTIONS)

DEFAULT_USER_COLUMN = "user_id"
DEFAULT_ITEM_COLUMN = "item_id"
DEFAULT_BEHAVIOR_COLUMN = "behavior"
DEFAULT_TIMESTAMP_COLUMN = "timestamp"
#: Paper step ii uses 20 (JD) and 10 (UB); 10 keeps most of the synthetic log.
DEFAULT_MIN_ITEM_TARGET_EVENTS = 10
#: Paper step iii.
DEFAULT_MIN_USER_TARGET_EVENTS = 5
DEFAULT_SPLIT_METHOD = TIME_FRACTIONS
#: Paper step iv: train = first 80 % of the timeline, eval = 80-90 %, test = the rest.
DEFAULT_SPLIT_BOUNDARIES: tuple[float, float] = (0.8, 0.9)
#: Plausible event times, ``[start, end)`` unix seconds: 1990-01-01T00:00:00Z (before
#: the earliest public interaction logs, MovieLens 1995 and Amazon reviews 1996) to
#: 2100-01-01T00:00:00Z. Zero, negative and millisecond timestamps fall outside.
DEFAULT_TIMESTAMP_WINDOW: tuple[int, int] = (631152000, 4102444800)
#: Share of the kept events, at each end of the timeline, that ``time_fractions``
#: ignores when it measures the time span (1st to 99th percentile).
DEFAULT_TIMELINE_TRIM = 0.01
#: The cold-user step (paper step v) may drop at most this share of eval/test events.
DEFAULT_MAX_COLD_EVENT_SHARE = 0.5


def default_behavior_mapping(input_format: str) -> dict[str, str]:
    """The behavior mapping used when none is given.

    Args:
      input_format: ``"raw_log"`` (raw labels such as ``pv``) or ``"release"`` (file
        prefixes such as ``target``).

    Raises:
      ValueError: if ``input_format`` is unknown.
    """
    if input_format == RAW_LOG:
        return dict(features.DEFAULT_RAW_BEHAVIOR_MAPPING)
    if input_format == RELEASE:
        return dict(features.RELEASE_BEHAVIOR_MAPPING)
    raise ValueError(f"input_format must be one of {list(INPUT_FORMATS)}, got {input_format!r}")


def _decode_json(value: Any) -> Any:
    """A list or mapping setting as given, or decoded from its JSON text (component
    parameters arrive as strings); other text is returned as is, for the setting's own
    check to name ("behaviors must be a list of names, got 'purchase'")."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _check_share(name: str, value: Any, *, upper: float, closed: bool) -> float:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0.0
        and (value <= upper if closed else value < upper)
    )
    if not ok:
        interval = f"[0, {upper}]" if closed else f"[0, {upper})"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class ExampleGenConfig:
    """Every parameter of the multi-behavior ExampleGen, checked.

    Attributes:
      input_base: raw log: a CSV file (``.gz`` allowed), a folder of shards (its files
        not starting with ``.`` or ``_``) or a glob; release: the folder of
        ``<prefix>_{train,valid,test}`` files.
      input_format: ``"raw_log"`` or ``"release"`` (pre-split, imported as is).
      user_column, item_column, behavior_column, timestamp_column: CSV header names.
      behavior_mapping: raw label -> behavior name. Raw-log labels are matched after
        stripping and lower-casing, and each behavior name of the mapping is also a
        label of itself unless the mapping gives that label another behavior; release
        keys are file-name prefixes. ``None`` means the format's default
        (``features.DEFAULT_RAW_BEHAVIOR_MAPPING`` or
        ``features.RELEASE_BEHAVIOR_MAPPING``).
      behaviors: behaviors written as features, in order. ``None`` means every
        behavior of the mapping (canonical order first). Events of a mapped label
        whose behavior is not listed are dropped and counted.
      target_behavior: the behavior the filters count (paper: purchase).
      min_item_target_events: drop items with fewer target events (0 = off).
      min_user_target_events: drop users with fewer target events (0 = off).
      split_method: ``cut_timestamps``, ``time_fractions`` or ``event_fractions``
        (module docstring); ignored by the release format.
      split_boundaries: two increasing values: cut timestamps (unix s) or fractions
        in ``(0, 1)``.
      drop_cold_eval_users: paper step v: drop the eval/test events of users without
        train target events.
      timestamp_window: ``(start, end)``: raw-log rows with a timestamp outside
        ``[start, end)`` (unix seconds) are rejected as ``implausible_timestamp``;
        ``None`` or ``[]`` turns the check off. Ignored by the release format.
      timeline_trim: share in ``[0, 0.5)`` of the kept events ignored at each end of
        the timeline when ``time_fractions`` measures it (module docstring).
      max_cold_event_share: share in ``[0, 1]`` of the eval and test events that the
        cold-user step may drop before the run fails (1 = never fails).
      eval_only_behaviors: behaviors allowed to have no train event (they are still
        evaluated); a subset of ``behaviors`` without the target behavior.
    """

    input_base: str
    input_format: str = RAW_LOG
    user_column: str = DEFAULT_USER_COLUMN
    item_column: str = DEFAULT_ITEM_COLUMN
    behavior_column: str = DEFAULT_BEHAVIOR_COLUMN
    timestamp_column: str = DEFAULT_TIMESTAMP_COLUMN
    behavior_mapping: Mapping[str, str] | None = None
    behaviors: Sequence[str] | None = None
    target_behavior: str = features.DEFAULT_TARGET_BEHAVIOR
    min_item_target_events: int = DEFAULT_MIN_ITEM_TARGET_EVENTS
    min_user_target_events: int = DEFAULT_MIN_USER_TARGET_EVENTS
    split_method: str = DEFAULT_SPLIT_METHOD
    split_boundaries: Sequence[float] = DEFAULT_SPLIT_BOUNDARIES
    drop_cold_eval_users: bool = True
    timestamp_window: Sequence[float] | None = DEFAULT_TIMESTAMP_WINDOW
    timeline_trim: float = DEFAULT_TIMELINE_TRIM
    max_cold_event_share: float = DEFAULT_MAX_COLD_EVENT_SHARE
    eval_only_behaviors: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.input_base, str) or not self.input_base.strip():
            raise ValueError(f"input_base must be a non-empty path, got {self.input_base!r}")
        if self.input_format not in INPUT_FORMATS:
            raise ValueError(
                f"input_format must be one of {list(INPUT_FORMATS)}, got {self.input_format!r}"
            )
        columns = self.columns
        for column in columns:
            if not isinstance(column, str) or not column.strip():
                raise ValueError(f"column names must be non-empty strings, got {column!r}")
        if len(set(columns)) != len(columns):
            raise ValueError(f"column names must be distinct, got {list(columns)}")

        mapping = _decode_json(self.behavior_mapping)
        if mapping is None:
            mapping = default_behavior_mapping(self.input_format)
        if not isinstance(mapping, Mapping) or not mapping:
            raise ValueError(f"behavior_mapping must be a non-empty mapping, got {mapping!r}")
        normalized: dict[str, str] = {}
        for label, behavior in mapping.items():
            if not isinstance(label, str) or not label.strip():
                raise ValueError(f"behavior_mapping labels must be non-empty, got {label!r}")
            features.validate_behaviors([behavior])
            key = label.strip().lower() if self.input_format == RAW_LOG else label
            if normalized.get(key, behavior) != behavior:
                raise ValueError(
                    f"behavior_mapping maps label {label!r} to both "
                    f"{normalized[key]!r} and {behavior!r}"
                )
            normalized[key] = behavior
        if self.input_format == RAW_LOG:
            # A raw label that already is a behavior name of the mapping needs no entry
            # ("purchase" in a log labelled purchase/click/favorite); a label the
            # mapping gives explicitly keeps its entry.
            for behavior in list(normalized.values()):
                normalized.setdefault(behavior.lower(), behavior)
        object.__setattr__(self, "behavior_mapping", normalized)

        mapped = list(dict.fromkeys(normalized.values()))
        behaviors = _decode_json(self.behaviors)
        if behaviors is None:
            canonical = [b for b in features.DEFAULT_BEHAVIORS if b in mapped]
            behaviors = canonical + [b for b in mapped if b not in canonical]
        if isinstance(behaviors, str | bytes) or not isinstance(behaviors, Sequence):
            raise ValueError(
                f"behaviors must be a list of names, got {behaviors!r} (in JSON, e.g. "
                '--set \'data.behaviors=["purchase", "click"]\')'
            )
        behaviors = features.validate_behaviors(behaviors)
        for behavior in behaviors:
            if behavior not in mapped:
                raise ValueError(
                    f"behavior {behavior!r} is not produced by behavior_mapping {normalized}"
                )
        object.__setattr__(self, "behaviors", behaviors)
        if self.target_behavior not in behaviors:
            raise ValueError(
                f"target_behavior {self.target_behavior!r} must be one of {list(behaviors)}"
            )

        _check_count("min_item_target_events", self.min_item_target_events)
        _check_count("min_user_target_events", self.min_user_target_events)
        if not isinstance(self.drop_cold_eval_users, bool):
            raise ValueError(
                f"drop_cold_eval_users must be a bool, got {self.drop_cold_eval_users!r}"
            )

        if self.split_method not in SPLIT_METHODS:
            raise ValueError(
                f"split_method must be one of {list(SPLIT_METHODS)}, got {self.split_method!r}"
            )
        boundaries = _decode_json(self.split_boundaries)
        if (
            isinstance(boundaries, str | bytes)
            or not isinstance(boundaries, Sequence)
            or len(boundaries) != 2
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in boundaries
            )
        ):
            raise ValueError(
                f"split_boundaries must be two finite numbers (eval start, test start), "
                f"got {boundaries!r}"
            )
        first, second = boundaries
        if not first < second:
            raise ValueError(f"split_boundaries must increase, got {list(boundaries)}")
        if self.split_method != CUT_TIMESTAMPS and not 0.0 < first < second < 1.0:
            raise ValueError(
                f"{self.split_method} split_boundaries must lie in (0, 1), got {list(boundaries)}"
            )
        object.__setattr__(self, "split_boundaries", (first, second))

        window = _decode_json(self.timestamp_window)
        if window is not None and not (isinstance(window, Sequence) and len(window) == 0):
            if (
                isinstance(window, str | bytes)
                or not isinstance(window, Sequence)
                or len(window) != 2
                or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                    for v in window
                )
                or not window[0] < window[1]
            ):
                raise ValueError(
                    "timestamp_window must be two increasing finite numbers [start, end) "
                    f"(unix seconds), or null to turn the check off; got {window!r}"
                )
            window = (window[0], window[1])
        else:
            window = None
        object.__setattr__(self, "timestamp_window", window)
        _check_share("timeline_trim", self.timeline_trim, upper=0.5, closed=False)
        _check_share("max_cold_event_share", self.max_cold_event_share, upper=1.0, closed=True)

        eval_only = _decode_json(self.eval_only_behaviors)
        if (
            isinstance(eval_only, str | bytes)
            or not isinstance(eval_only, Sequence)
            or not all(isinstance(b, str) for b in eval_only)
        ):
            raise ValueError(
                f"eval_only_behaviors must be a list of behavior names, got {eval_only!r}"
            )
        if len(set(eval_only)) != len(eval_only):
            raise ValueError(f"eval_only_behaviors must be distinct, got {list(eval_only)}")
        for behavior in eval_only:
            if behavior not in behaviors:
                raise ValueError(
                    f"eval_only_behaviors names {behavior!r}, which is not one of "
                    f"behaviors {list(behaviors)}"
                )
            if behavior == self.target_behavior:
                raise ValueError(
                    f"eval_only_behaviors must not hold the target behavior "
                    f"{self.target_behavior!r}: the filters and step v count its train events"
                )
        object.__setattr__(self, "eval_only_behaviors", tuple(eval_only))

    @property
    def columns(self) -> tuple[str, str, str, str]:
        """The (user, item, behavior, timestamp) column names."""
        return (self.user_column, self.item_column, self.behavior_column, self.timestamp_column)

    @property
    def splits_from_files(self) -> bool:
        """Whether the split is given by the input files (release) instead of by time."""
        return self.input_format == RELEASE

    def to_json_dict(self) -> dict[str, Any]:
        """The configuration as plain JSON types (for the accounting record)."""
        record = dataclasses.asdict(self)
        record["behavior_mapping"] = dict(self.behavior_mapping or {})
        record["behaviors"] = list(self.behaviors or ())
        record["split_boundaries"] = list(self.split_boundaries)
        record["timestamp_window"] = (
            None if self.timestamp_window is None else list(self.timestamp_window)
        )
        record["eval_only_behaviors"] = list(self.eval_only_behaviors)
        return record

    @classmethod
    def from_exec_properties(cls, exec_properties: Mapping[str, Any]) -> ExampleGenConfig:
        """Builds the config from a component's execution properties.

        Properties absent or ``None`` take the dataclass defaults (an empty
        ``timestamp_window`` list turns that check off); JSON strings are decoded for
        the list/dict parameters.

        Raises:
          ValueError: as the constructor.
        """
        kwargs: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            value = exec_properties.get(field.name)
            if value is None:
                continue
            if field.name == "drop_cold_eval_users" and isinstance(value, int):
                value = bool(value)
            kwargs[field.name] = value
        return cls(**kwargs)
