"""The accounting record: where every input row went.

Each Beam step emits small *summaries* (``dict[str, int | float]``) that one global
combine merges (``MergeSummariesFn``); ``build_record`` turns the merged summary into
the JSON record written next to the splits (``accounting.json``) and attached to the
``Examples`` artifact as custom properties.

The record satisfies (checked by ``check_identity``)::

    rows_read == rows_rejected_total + behavior_not_kept + duplicates_dropped
                 + item_filter.events_dropped + user_filter.events_dropped
                 + cold_eval_users.events_dropped + events_kept

where ``events_kept`` sums the events of the three splits (train items of train
examples, held-out items of eval/test examples).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import apache_beam as beam

from bvae_tf import features
from components.multi_behavior_example_gen import parsing
from components.multi_behavior_example_gen.config import RELEASE

#: File written into the ``Examples`` artifact directory, beside ``Split-*``.
ACCOUNTING_FILE = "accounting.json"
#: Custom property of the ``Examples`` artifact holding the whole record (JSON).
ACCOUNTING_PROPERTY = "accounting"
#: Prefix of the integer custom properties that copy the record's main figures.
PROPERTY_PREFIX = "accounting_"
#: 2: ``implausible_timestamp`` rejections, ``split.first_timestamp`` /
#: ``split.last_timestamp`` and ``cold_eval_users.event_share``.
SCHEMA_VERSION = 2
#: Rejected records listed per reason (the first ones by file and line).
SAMPLES_PER_REASON = 5

# Summary keys.
FILES_READ = "files_read"
ROWS_READ = "rows_read"
BLANK_LINES = "blank_lines"
BEHAVIOR_NOT_KEPT = "behavior_not_kept"
DUPLICATES = "duplicates_dropped"
ITEMS_DROPPED = "item_filter/items_dropped"
ITEMS_KEPT = "item_filter/items_kept"
ITEM_EVENTS_DROPPED = "item_filter/events_dropped"
USERS_DROPPED = "user_filter/users_dropped"
USERS_KEPT = "user_filter/users_kept"
USER_EVENTS_DROPPED = "user_filter/events_dropped"
COLD_EVENTS_DROPPED = "cold_eval_users/events_dropped"
#: Pseudo split of ``min_timestamp_key``/``max_timestamp_key``: every event that
#: reaches the time split (before the cold-user step).
ALL_EVENTS = "all"
_MIN_PREFIX = "min/"
_MAX_PREFIX = "max/"


def rejected_key(reason: str) -> str:
    return f"rejected/{reason}"


def cold_users_key(split: str) -> str:
    return f"cold_eval_users/users_dropped/{split}"


def split_users_key(split: str) -> str:
    return f"split/{split}/users"


def split_events_key(split: str, behavior: str) -> str:
    return f"split/{split}/events/{behavior}"


def min_timestamp_key(split: str) -> str:
    return f"{_MIN_PREFIX}timestamp/{split}"


def max_timestamp_key(split: str) -> str:
    return f"{_MAX_PREFIX}timestamp/{split}"


def merge_summaries(left: dict[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
    """Merges ``right`` into ``left``: ``min/`` keys by min, ``max/`` by max, others sum."""
    for key, value in right.items():
        if key not in left:
            left[key] = value
        elif key.startswith(_MIN_PREFIX):
            left[key] = min(left[key], value)
        elif key.startswith(_MAX_PREFIX):
            left[key] = max(left[key], value)
        else:
            left[key] += value
    return left


class MergeSummariesFn(beam.CombineFn):
    """Combines summary dicts into one (see ``merge_summaries``)."""

    def create_accumulator(self) -> dict[str, Any]:
        return {}

    def add_input(self, accumulator: dict[str, Any], summary: Mapping[str, Any]):
        return merge_summaries(accumulator, summary)

    def merge_accumulators(self, accumulators: Iterable[dict[str, Any]]) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for accumulator in accumulators:
            merge_summaries(merged, accumulator)
        return merged

    def extract_output(self, accumulator: dict[str, Any]) -> dict[str, Any]:
        return accumulator


def _location(path: str, first_line: int, last_line: int) -> str:
    lines = str(first_line) if first_line == last_line else f"{first_line}-{last_line}"
    return f"{path}:{lines}"


def build_record(
    summary: Mapping[str, Any],
    *,
    samples: Iterable[tuple[str, Sequence[tuple[str, int, int]]]],
    cuts: Sequence[float] | None,
    config: Mapping[str, Any],
    input_files: Sequence[str],
    skipped_files: Sequence[str] = (),
) -> dict[str, Any]:
    """Assembles the accounting record (JSON types only).

    Args:
      summary: the merged summary of the run.
      samples: ``(reason, [(path, first_line, last_line), ...])`` per rejection reason.
      cuts: the ``(eval start, test start)`` timestamps used, unix seconds; ``None`` for
        the release format (split by file) and when no event was left to cut.
      config: ``ExampleGenConfig.to_json_dict()``.
      input_files: the files read.
      skipped_files: release files of behaviors not kept (not read).

    Returns:
      The record; see ``docs/multi_behavior_example_gen.md`` for its schema.
    """
    get = summary.get
    from_files = config["input_format"] == RELEASE
    behaviors = list(config["behaviors"])
    rejected = {reason: int(get(rejected_key(reason), 0)) for reason in parsing.REJECTION_REASONS}
    sample_map = {
        reason: [_location(*loc) for loc in sorted(locations)] for reason, locations in samples
    }
    splits: dict[str, Any] = {}
    for split in features.SPLITS:
        per_behavior = {b: int(get(split_events_key(split, b), 0)) for b in behaviors}
        splits[split] = {
            "examples": int(get(split_users_key(split), 0)),
            "events": sum(per_behavior.values()),
            "events_per_behavior": per_behavior,
            "min_timestamp": get(min_timestamp_key(split)),
            "max_timestamp": get(max_timestamp_key(split)),
        }
    cold_dropped = int(get(COLD_EVENTS_DROPPED, 0))
    # Eval and test events that reached the cold-user step.
    cold_seen = cold_dropped + sum(splits[s]["events"] for s in features.SPLITS[1:])
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "config": dict(config),
        "input_files": list(input_files),
        "skipped_files": list(skipped_files),
        "files_read": int(get(FILES_READ, 0)),
        "rows_read": int(get(ROWS_READ, 0)),
        "blank_lines": int(get(BLANK_LINES, 0)),
        "rows_rejected": rejected,
        "rows_rejected_total": sum(rejected.values()),
        "rejected_samples": {r: sample_map.get(r, []) for r in parsing.REJECTION_REASONS},
        "behavior_not_kept": int(get(BEHAVIOR_NOT_KEPT, 0)),
        "duplicates_dropped": int(get(DUPLICATES, 0)),
        "item_filter": {
            "min_target_events": config["min_item_target_events"],
            "items_dropped": int(get(ITEMS_DROPPED, 0)),
            # null when the filter is off (it did not run, so nothing was counted)
            "items_kept": int(get(ITEMS_KEPT, 0)) if config["min_item_target_events"] else None,
            "events_dropped": int(get(ITEM_EVENTS_DROPPED, 0)),
        },
        "user_filter": {
            "min_target_events": config["min_user_target_events"],
            "users_dropped": int(get(USERS_DROPPED, 0)),
            "users_kept": int(get(USERS_KEPT, 0)) if config["min_user_target_events"] else None,
            "events_dropped": int(get(USER_EVENTS_DROPPED, 0)),
        },
        "cold_eval_users": {
            "enabled": config["drop_cold_eval_users"],
            "users_dropped": {
                split: int(get(cold_users_key(split), 0)) for split in features.SPLITS[1:]
            },
            "events_dropped": cold_dropped,
            "event_share": cold_dropped / cold_seen if cold_seen else None,
        },
        "split": {
            "method": "release_files" if from_files else config["split_method"],
            "boundaries": None if from_files else list(config["split_boundaries"]),
            "cut_timestamps": None if cuts is None else list(cuts),
            "first_timestamp": get(min_timestamp_key(ALL_EVENTS)),
            "last_timestamp": get(max_timestamp_key(ALL_EVENTS)),
        },
        "splits": splits,
        "events_kept": sum(s["events"] for s in splits.values()),
    }
    record["identity_holds"] = identity_gap(record) == 0
    return record


def identity_gap(record: Mapping[str, Any]) -> int:
    """``rows_read`` minus everything accounted for (0 when nothing was lost)."""
    accounted = (
        record["rows_rejected_total"]
        + record["behavior_not_kept"]
        + record["duplicates_dropped"]
        + record["item_filter"]["events_dropped"]
        + record["user_filter"]["events_dropped"]
        + record["cold_eval_users"]["events_dropped"]
        + record["events_kept"]
    )
    return record["rows_read"] - accounted


def describe_flow(record: Mapping[str, Any]) -> str:
    """Where the rows went, as one line whose terms sum to ``rows_read``."""
    return (
        f"{record['rows_read']} rows read = {record['rows_rejected_total']} rejected + "
        f"{record['behavior_not_kept']} behavior not kept + "
        f"{record['duplicates_dropped']} duplicates + "
        f"{record['item_filter']['events_dropped']} item filter + "
        f"{record['user_filter']['events_dropped']} user filter + "
        f"{record['cold_eval_users']['events_dropped']} cold-user step + "
        f"{record['events_kept']} kept"
    )


def flat_properties(record: Mapping[str, Any]) -> dict[str, int]:
    """The record's main figures as ``accounting_<name>`` integer properties."""
    figures = {
        "rows_read": record["rows_read"],
        "rows_rejected": record["rows_rejected_total"],
        "behavior_not_kept": record["behavior_not_kept"],
        "duplicates_dropped": record["duplicates_dropped"],
        "item_filter_events_dropped": record["item_filter"]["events_dropped"],
        "user_filter_events_dropped": record["user_filter"]["events_dropped"],
        "cold_eval_users_events_dropped": record["cold_eval_users"]["events_dropped"],
        "events_kept": record["events_kept"],
    }
    for split, stats in record["splits"].items():
        figures[f"{split}_examples"] = stats["examples"]
        figures[f"{split}_events"] = stats["events"]
    return {f"{PROPERTY_PREFIX}{name}": int(value) for name, value in figures.items()}


def dumps(record: Mapping[str, Any]) -> str:
    """The record as stable, indented JSON."""
    return json.dumps(record, indent=2, sort_keys=True)
