"""Checks of an accounting record that stop a run before training.

The executor and the data-check command (``python -m
components.multi_behavior_example_gen``) call ``check_record`` on the record of a run
(``accounting.py``). Every problem is one message whose counts sum: the events named in
it add up to the total it names.

Problems (``data_problems``):

* no train example (the only one reported then: everything else follows from it);
* an eval or test split without example;
* the cold-user step (paper step v) dropping more than ``max_cold_event_share`` of the
  eval and test events it sees;
* a behavior without train event that is not in ``eval_only_behaviors``, and an
  evaluation-only behavior without eval event (the evaluator would score no user).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bvae_tf import features
from components.multi_behavior_example_gen import accounting, parsing


def _reached(record: Mapping[str, Any]) -> int:
    """Events that reached the time split (kept + dropped by the cold-user step)."""
    return record["events_kept"] + record["cold_eval_users"]["events_dropped"]


def _split_sum(record: Mapping[str, Any]) -> str:
    """``"of the N events that reached the time split, a are train, b eval, c test and
    the cold-user step dropped d"`` (a + b + c + d = N)."""
    splits = record["splits"]
    return (
        f"of the {_reached(record)} events that reached the time split, "
        f"{splits[features.TRAIN]['events']} are train, {splits[features.EVAL]['events']} "
        f"eval, {splits[features.TEST]['events']} test and the cold-user step dropped "
        f"{record['cold_eval_users']['events_dropped']}"
    )


def _timeline(record: Mapping[str, Any]) -> str:
    split = record["split"]
    if split["cut_timestamps"] is None:
        return ""
    eval_cut, test_cut = split["cut_timestamps"]
    return (
        f" (events from {split['first_timestamp']} to {split['last_timestamp']}, cuts: "
        f"eval from {eval_cut}, test from {test_cut}; unix seconds)"
    )


def _no_train_message(record: Mapping[str, Any], input_base: str) -> str:
    valid = record["rows_read"] - record["rows_rejected_total"]
    kept = record["events_kept"]
    cold = record["cold_eval_users"]["events_dropped"]
    cuts = record["split"]["cut_timestamps"]
    reached = kept + cold
    if reached and cuts:
        placement = (
            f" None of the {reached} events that reached the time split lies before the "
            f"eval cut {cuts[0]} (earliest: {record['split']['first_timestamp']}; an event "
            f"exactly at a cut goes to the later split)."
        )
    elif reached:
        placement = f" None of the {reached} events that reached the split is in a train file."
    else:
        placement = ""
    target = record["config"]["target_behavior"]
    return (
        f"no train example left from {input_base!r}: of {valid} valid rows, "
        f"{record['behavior_not_kept']} have a behavior not kept, "
        f"{record['duplicates_dropped']} are duplicates, the item filter dropped "
        f"{record['item_filter']['events_dropped']} events, the user filter "
        f"{record['user_filter']['events_dropped']} and the cold-user step {cold} "
        f"(eval/test events of users without a train {target} event); {kept} events are "
        f"kept.{placement} Lower min_item_target_events/min_user_target_events or move "
        f"split_boundaries"
    )


def _empty_split_message(record: Mapping[str, Any], split: str) -> str:
    if record["split"]["cut_timestamps"] is None:
        fix = "the release holds no kept row of this split"
    elif record["config"]["split_method"] == "cut_timestamps":
        fix = "move split_boundaries inside the events' time range"
    else:
        fix = "look for stray timestamps (timestamp_window, timeline_trim) or move split_boundaries"
    return f"split {split!r} holds no example: {_split_sum(record)}{_timeline(record)}; {fix}"


def _cold_share_message(record: Mapping[str, Any]) -> str | None:
    cold = record["cold_eval_users"]
    share = cold["event_share"]
    limit = record["config"]["max_cold_event_share"]
    if share is None or share <= limit:
        return None
    splits = record["splits"]
    kept_heldout = splits[features.EVAL]["events"] + splits[features.TEST]["events"]
    target = record["config"]["target_behavior"]
    return (
        f"the cold-user step (drop_cold_eval_users) dropped {cold['events_dropped']} of the "
        f"{cold['events_dropped'] + kept_heldout} eval/test events ({share:.1%}, more than "
        f"max_cold_event_share {limit:.1%}; {kept_heldout} kept): "
        f"{cold['users_dropped'][features.EVAL]} eval and "
        f"{cold['users_dropped'][features.TEST]} test users have no train {target} "
        f"event; {_split_sum(record)}{_timeline(record)}. Look for stray timestamps or "
        f"move split_boundaries, lower min_user_target_events, or raise "
        f"max_cold_event_share"
    )


def _behavior_messages(record: Mapping[str, Any]) -> list[str]:
    config = record["config"]
    eval_only = set(config.get("eval_only_behaviors") or ())
    splits = record["splits"]

    def counts(behavior: str) -> str:
        return ", ".join(
            f"{s} {splits[s]['events_per_behavior'][behavior]}" for s in features.SPLITS
        )

    messages = []
    untrained = [
        b
        for b in config["behaviors"]
        if b not in eval_only and splits[features.TRAIN]["events_per_behavior"][b] == 0
    ]
    if untrained:
        detail = "; ".join(f"{b}: {counts(b)} events" for b in untrained)
        messages.append(
            f"behavior(s) {untrained} have no train event ({detail}), so the model "
            f"has nothing to learn them from. Remove them from data.behaviors, or list "
            f"them in data.eval_only_behaviors to evaluate them without train events"
        )
    unscored = [
        b
        for b in config["behaviors"]
        if b in eval_only and splits[features.EVAL]["events_per_behavior"][b] == 0
    ]
    if unscored:
        detail = "; ".join(f"{b}: {counts(b)} events" for b in unscored)
        messages.append(
            f"evaluation-only behavior(s) {unscored} have no eval event either ({detail}), "
            f"so the evaluator scores no user for them. Remove them from data.behaviors"
        )
    return messages


def data_problems(record: Mapping[str, Any], input_base: str) -> list[str]:
    """What makes the run's data unfit for training, one message per problem.

    Args:
      record: an accounting record (``accounting.build_record``) with at least one
        valid row.
      input_base: the input path, named in the messages.

    Returns:
      Messages (empty when the data is fit); with no train example, only that one.
    """
    if record["splits"][features.TRAIN]["examples"] == 0:
        return [_no_train_message(record, input_base)]
    problems = [
        _empty_split_message(record, split)
        for split in features.SPLITS[1:]
        if record["splits"][split]["examples"] == 0
    ]
    cold = _cold_share_message(record)
    if cold:
        problems.append(cold)
    return problems + _behavior_messages(record)


#: The config keys that decide each rejection (named in the all-rejected error).
_REJECTION_FIXES = {
    parsing.IMPLAUSIBLE_TIMESTAMP: "outside data.timestamp_window (unix seconds; "
    "null turns the check off)",
    parsing.UNKNOWN_BEHAVIOR: "not a key of data.behavior_mapping",
    parsing.WRONG_COLUMN_COUNT: "check the file's delimiter and header, and "
    "data.user_column / item_column / behavior_column / timestamp_column",
    parsing.BAD_TIMESTAMP: "data.timestamp_column must hold unix seconds (e.g. 1522454400) "
    "or ISO-8601 date-times (e.g. 2018-03-31T08:00:00+08:00; without an offset read as "
    "UTC); milliseconds lie past the year 9999 (divide by 1000), and exponent forms "
    "rounded by a spreadsheet (1.70407E+09) are refused",
    parsing.CONTROL_CHARACTER_ID: "user and item ids may not hold control characters "
    "(a quoted line break, a tab)",
    parsing.REPEATED_HEADER: "the header line appears again inside the file (files "
    "joined with cat?): keep one header per file, or give the files separately",
}


def _mapping_in_force(record: Mapping[str, Any]) -> str:
    """`` (labels known: ...)``: the raw labels the run accepted, and how to add others."""
    mapping = (record.get("config") or {}).get("behavior_mapping") or {}
    if not mapping:
        return ""
    known = ", ".join(f"{label}->{behavior}" for label, behavior in sorted(mapping.items()))
    return f" (labels known: {known}; add the file's labels to it as label: behavior name)"


def shorten_locations(locations: Sequence[str]) -> str:
    """``"f.csv:2, f.csv:3"`` -> ``"f.csv lines 2, 3"`` when all are in one file."""
    files = {location.rpartition(":")[0] for location in locations}
    if len(files) != 1 or not all(":" in location for location in locations):
        return ", ".join(locations)
    lines = ", ".join(location.rpartition(":")[2] for location in locations)
    return f"{files.pop()} line{'s' if len(locations) > 1 else ''} {lines}"


def check_record(record: Mapping[str, Any], input_base: str) -> None:
    """Raises when the record is inconsistent or its data unfit for training.

    Args:
      record: the accounting record of a run.
      input_base: the input path, named in the messages.

    Raises:
      RuntimeError: if the accounting identity does not hold (rows lost).
      ValueError: if no row is valid, or ``data_problems`` finds any (all listed,
        one per line).
    """
    gap = accounting.identity_gap(record)
    if gap:
        raise RuntimeError(f"accounting identity broken: {gap} rows of {input_base!r} unaccounted")
    valid = record["rows_read"] - record["rows_rejected_total"]
    if record["rows_read"] == 0:
        raise ValueError(
            f"no rows in {input_base!r}: its files are empty or hold only a header line"
        )
    if valid <= 0:
        reasons = [
            f"{n} {reason} (first at {shorten_locations(record['rejected_samples'][reason])})"
            + (f": {_REJECTION_FIXES[reason]}" if reason in _REJECTION_FIXES else "")
            + (_mapping_in_force(record) if reason == parsing.UNKNOWN_BEHAVIOR else "")
            for reason, n in sorted(record["rows_rejected"].items())
            if n
        ]
        raise ValueError(
            f"no valid rows in {input_base!r}: {record['rows_read']} rows read, all "
            f"rejected: {'; '.join(reasons) or 'none'}"
        )
    problems = data_problems(record, input_base)
    if len(problems) == 1:
        raise ValueError(problems[0])
    if problems:
        raise ValueError(
            f"{len(problems)} problems with the data of {input_base!r}:\n"
            + "\n".join(f"- {p}" for p in problems)
        )
