"""Data check: the ExampleGen alone on a log, with its accounting, in seconds.

:func:`run` runs the ExampleGen's Beam pipeline on the in-memory DirectRunner (no
TFX orchestration, no MLMD, no examples kept) and returns its accounting record;
:func:`format_report` prints where every row went, the events and users per split
and behavior and the cut timestamps. The command line, which reads the pipeline
config, is ``python -m pipeline.data_check``.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from bvae_tf import features
from components.multi_behavior_example_gen import accounting, checks, inputs, transforms
from components.multi_behavior_example_gen.config import ExampleGenConfig

#: Beam options of the check: the DirectRunner in this process.
BEAM_OPTIONS: tuple[str, ...] = ("--runner=DirectRunner", "--direct_running_mode=in_memory")


def run(config: ExampleGenConfig, work_dir: str) -> dict[str, Any]:
    """Runs the ExampleGen's Beam pipeline and returns its accounting record.

    Args:
      config: the ExampleGen configuration.
      work_dir: folder for the accounting file (the examples are not written).

    Returns:
      The accounting record (``accounting.build_record``); not checked.

    Raises:
      ValueError: if the input path is missing or holds no data file, a header lacks
        a configured column, or a file cannot be read (each names the path).
    """
    files, skipped = inputs.resolve_input_files(config)
    uri = os.path.join(work_dir, accounting.ACCOUNTING_FILE)
    with beam.Pipeline(options=PipelineOptions(list(BEAM_OPTIONS))) as pipeline:
        _ = pipeline | "GenerateExamples" >> transforms.GenerateExamples(
            config, files, uri, skipped
        )
    with open(uri, encoding="utf-8") as f:
        return json.load(f)


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    try:
        moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC)
    except (OverflowError, OSError, ValueError):
        return f"{timestamp}"
    return f"{timestamp} ({moment.strftime('%Y-%m-%dT%H:%M:%SZ')})"


def _table(rows: Sequence[Sequence[Any]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    return [
        "  "
        + "  ".join(
            str(v).rjust(w) if i else str(v).ljust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]


def format_report(record: Mapping[str, Any]) -> str:
    """A short readable summary of an accounting record.

    Lists the rows read and where they went (a sum), rejections by reason with the
    first rejected lines, the filters, the cold-user step, the cut timestamps (unix
    seconds and UTC) and the users and events per split and behavior.
    """
    config = record["config"]
    target = config["target_behavior"]
    files = record["input_files"]
    lines = [f"Input: {config['input_base']} ({len(files)} file{'s' if len(files) != 1 else ''})"]
    lines.append(f"Rows: {accounting.describe_flow(record)}")
    rejected = {r: n for r, n in record["rows_rejected"].items() if n}
    if rejected:
        lines.append(
            "  rejected: " + ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items()))
        )
        for reason in sorted(rejected):
            first = checks.shorten_locations(record["rejected_samples"][reason])
            lines.append(f"    {reason}: first at {first}")
    if config.get("timestamp_window"):
        start, end = config["timestamp_window"]
        lines.append(f"  plausible timestamps: [{_when(start)}, {_when(end)})")
    lines.append(f"  blank lines skipped: {record['blank_lines']}")
    for name, unit in (("item_filter", "items"), ("user_filter", "users")):
        step = record[name]
        if step["min_target_events"]:
            lines.append(
                f"  {name.replace('_', ' ')} (min {step['min_target_events']} {target} "
                f"events): {step[f'{unit}_dropped']} {unit} dropped with "
                f"{step['events_dropped']} events, {step[f'{unit}_kept']} kept"
            )
        else:
            lines.append(f"  {name.replace('_', ' ')}: off")
    cold = record["cold_eval_users"]
    if cold["enabled"]:
        share = "-" if cold["event_share"] is None else f"{cold['event_share']:.1%}"
        lines.append(
            f"  cold-user step: {cold['users_dropped'][features.EVAL]} eval and "
            f"{cold['users_dropped'][features.TEST]} test users dropped with "
            f"{cold['events_dropped']} events ({share} of eval/test events; limit "
            f"{config['max_cold_event_share']:.1%})"
        )
    else:
        lines.append("  cold-user step: off")

    split = record["split"]
    method = split["method"]
    if split["boundaries"] is not None:
        method += f" {split['boundaries']}"
        if split["method"] == "time_fractions":
            method += f", timeline trim {config['timeline_trim']}"
    lines.append(f"Split: {method}")
    if split["first_timestamp"] is not None:
        lines.append(
            f"  events from {_when(split['first_timestamp'])} to {_when(split['last_timestamp'])}"
        )
    if split["cut_timestamps"] is not None:
        eval_cut, test_cut = split["cut_timestamps"]
        lines.append(f"  eval from {_when(eval_cut)}")
        lines.append(f"  test from {_when(test_cut)}")
    behaviors = list(config["behaviors"])
    eval_only = set(config.get("eval_only_behaviors") or ())
    header = ["", "users", "events"] + [
        b + (" (eval only)" if b in eval_only else "") for b in behaviors
    ]
    rows = [header]
    for name in features.SPLITS:
        stats = record["splits"][name]
        rows.append(
            [name, stats["examples"], stats["events"]]
            + [stats["events_per_behavior"][b] for b in behaviors]
        )
    lines += _table(rows)
    return "\n".join(lines)
