"""Benchmark: the multi-behavior ExampleGen on the real JD event log, end to end.

Runs the executor (parse, dedup, filters, time split, tf.Example encoding, gzipped
TFRecord writing, accounting) on ``../shared/data/bvae/JD_events.csv.gz`` (477,676
rows) under Beam's DirectRunner, in-memory and multi-processing with 2 workers, and
prints the median wall time of the repeats, rows/s and the accounting counts.

Configurations:
  release  cut points 1522454400 / 1523145600, filters and step v off: reproduces the
           released JD split (checked by tests/components/test_example_gen_jd.py).
  paper    the paper's preprocessing: items with < 20 purchases dropped, users with
           < 5 purchases dropped, 80 % / 90 % of the timeline, step v on.

Target: <= 60 s per run on 2 cores.

    .venv/bin/python benchmarks/example_gen_jd.py [--repeats 3] [--events PATH]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

from absl import logging

import bvae_tf  # noqa: F401  -- Keras 2 before TensorFlow loads

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
from benchmarks.shared_data import JD_EVENTS as DEFAULT_EVENTS  # noqa: E402

MODES = {
    "in_memory": ["--direct_running_mode=in_memory"],
    "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
}
CONFIGS = {
    "release": {
        "min_item_target_events": 0,
        "min_user_target_events": 0,
        "drop_cold_eval_users": False,
        "split_method": "cut_timestamps",
        "split_boundaries": [1522454400.0, 1523145600.0],
        "eval_only_behaviors": ["cart"],  # JD has no cart event before the first cut
    },
    "paper": {
        "min_item_target_events": 20,
        "min_user_target_events": 5,
        "drop_cold_eval_users": True,
        "split_method": "time_fractions",
        "split_boundaries": [0.8, 0.9],
        "eval_only_behaviors": ["cart"],
    },
}


def run_once(events: pathlib.Path, beam_args: list[str], config: dict) -> tuple[float, dict]:
    from tfx.dsl.components.base import base_beam_executor
    from tfx.types import standard_artifacts

    from components.multi_behavior_example_gen import accounting, executor

    out = pathlib.Path(tempfile.mkdtemp(prefix="example_gen_jd_"))
    try:
        examples = standard_artifacts.Examples()
        examples.uri = str(out)
        context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_args)
        start = time.perf_counter()
        executor.Executor(context).Do(
            {}, {"examples": [examples]}, {"input_base": str(events), **config}
        )
        seconds = time.perf_counter() - start
        record = json.loads((out / accounting.ACCOUNTING_FILE).read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return seconds, record


def describe(record: dict) -> str:
    splits = record["splits"]
    lines = [
        f"  rows read {record['rows_read']}, rejected {record['rows_rejected_total']}, "
        f"duplicates {record['duplicates_dropped']}, behavior not kept "
        f"{record['behavior_not_kept']}",
        f"  item filter (>= {record['item_filter']['min_target_events']} purchases): "
        f"{record['item_filter']['items_dropped']} items / "
        f"{record['item_filter']['events_dropped']} events dropped, "
        f"{record['item_filter']['items_kept']} items kept",
        f"  user filter (>= {record['user_filter']['min_target_events']} purchases): "
        f"{record['user_filter']['users_dropped']} users / "
        f"{record['user_filter']['events_dropped']} events dropped, "
        f"{record['user_filter']['users_kept']} users kept",
        f"  step v: users dropped {record['cold_eval_users']['users_dropped']}, events "
        f"{record['cold_eval_users']['events_dropped']}",
        f"  cuts {record['split']['cut_timestamps']}, events kept {record['events_kept']}, "
        f"identity holds: {record['identity_holds']}",
    ]
    for split, stats in splits.items():
        lines.append(
            f"  {split:5s} examples {stats['examples']:6d}  events {stats['events']:7d}  "
            f"{stats['events_per_behavior']}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=pathlib.Path, default=DEFAULT_EVENTS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated")
    args = parser.parse_args()
    if not args.events.is_file():
        raise SystemExit(f"JD event log not found at {args.events}")
    logging.set_verbosity(logging.WARNING)
    for config_name in args.configs.split(","):
        for mode in args.modes.split(","):
            times = []
            record: dict = {}
            for repeat in range(args.repeats):
                seconds, record = run_once(args.events, MODES[mode], CONFIGS[config_name])
                times.append(seconds)
                print(
                    f"  [{config_name} {mode}] run {repeat + 1}/{args.repeats}: {seconds:.1f} s",
                    flush=True,
                )
            median = statistics.median(times)
            print(
                f"example_gen_jd config={config_name} mode={mode} rows={record['rows_read']} "
                f"median_s={median:.1f} rows_per_s={record['rows_read'] / median:,.0f} "
                f"runs_s={[round(t, 1) for t in times]} target_s=60 "
                f"{'OK' if median <= 60 else 'MISSED'}",
                flush=True,
            )
        print(describe(record), flush=True)


if __name__ == "__main__":
    main()
