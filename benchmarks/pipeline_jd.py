"""Benchmark: the JD pipeline end to end on this machine, time per component.

::

    python benchmarks/pipeline_jd.py [--repeats 1] [--output_root out/bench-jd] [--set k=v ...]

Each repeat runs the whole local pipeline (``pipeline/config/jd.json``) from scratch
(fresh output root, cache off) and reads every component's wall time back from
MLMD. Prints per repeat and the median: total seconds, seconds per component, the
1-minute load average before and after (other work on the cores slows the run), and
the peak resident memory of this process and its children, and the Trainer's parts
from its ``fit_result.json`` (training steps, per-epoch evaluation, the epoch loop's
remainder, the boost choice, the export). Target: <= 10 min on 2 cores. Then the test
table next to the paper's numbers.
"""

import argparse
import json
import os
import pathlib
import resource
import shutil
import statistics
import sys
import time

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # Keras 2 before anything imports TensorFlow
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import logging

from bvae_tf import features
from pipeline import configs, jd, local_runner, report
from pipeline import pipeline as pipeline_lib


def _peak_rss_gib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 2**20


def _trainer_parts(summary: dict) -> str:
    """One line: the Trainer's timed parts, from the run's ``fit_result.json``."""
    fit_file = pathlib.Path(summary["tensorboard_logdir"]).parent / "fit_result.json"
    with open(fit_file) as f:
        fit = json.load(f)
    parts = fit.get("seconds", {})
    train, evaluation = fit["train_seconds"], fit["eval_seconds"]
    loop = parts.get("fit", float("nan")) - train - evaluation
    return (
        f"  Trainer parts: {fit['epochs_run']} epochs: train steps {train:.1f} s, "
        f"per-epoch eval {evaluation:.1f} s, the rest of fit {loop:.1f} s; "
        f"boost choice {parts.get('boost_choice', 0.0):.1f} s, "
        f"export {parts.get('export', float('nan')):.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--output_root", default="out/bench-jd")
    parser.add_argument("--config", default=jd.DEFAULT_CONFIG)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    logging.set_verbosity(logging.WARNING)
    totals, per_component, summary = [], {}, None
    for repeat in range(args.repeats):
        root = pathlib.Path(args.output_root) / f"run{repeat}"
        shutil.rmtree(root, ignore_errors=True)
        config = configs.load_config(
            args.config, [*args.overrides, f"output_root={root}", "enable_cache=false"]
        )
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        local_runner.run(config)
        total = time.perf_counter() - start
        load_after = os.getloadavg()[0]
        summary = report.summarize(config.resolved_metadata_path, config.pipeline_name)
        totals.append(total)
        print(
            f"repeat {repeat + 1}: {total:.1f} s end to end "
            f"(load avg {load_before:.2f} -> {load_after:.2f}, peak RSS {_peak_rss_gib():.2f} GiB)"
        )
        for node_id in pipeline_lib.NODE_IDS:
            info = summary["components"].get(node_id)
            if info:
                per_component.setdefault(node_id, []).append(info["seconds"])
                print(f"  {node_id:<32}{info['seconds']:>8.1f} s  {info['state']}")
        print(_trainer_parts(summary))
    print(
        f"median end to end over {len(totals)} run(s): {statistics.median(totals):.1f} s "
        f"(target <= 600 s on 2 cores, {os.cpu_count()} cores here)"
    )
    for node_id, values in per_component.items():
        print(f"  {node_id:<32}{statistics.median(values):>8.1f} s")
    print()
    print(report.format_summary(summary))
    print()
    print(jd.paper_table(summary["evaluation"]["splits"][features.TEST]))


if __name__ == "__main__":
    main()
