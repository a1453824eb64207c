"""Benchmark: how many epochs a warm-started JD run needs to reach the cold run's
valid NDCG@5 (``training.warm_start``, ``bvae_tf/warm_start.py``).

::

    python benchmarks/warm_start_jd.py [--output_root out/warm-start-jd] [--shift_days 8]

Two spans of the raw JD log (``../shared/data/bvae/JD_events.csv.gz``):

* **day 1** (the earlier span): the events before the paper's test cut point
  (1523145600), split with both cut points moved ``--shift_days`` earlier;
* **day 2**: the whole log with the paper's cut points (``pipeline/config/jd.json``).

Three local pipeline runs, each resumable (a finished run is read back, not repeated):
day 1 cold, then day 2 **warm** in the same pipeline (its Trainer starts from day 1's
blessed model: items still in the vocabulary keep their rows), and day 2 **cold** in a
second pipeline root. Same config, seed and budget (200 epochs, patience 20) for both
day-2 runs. The gate's absolute bound is off (day 1 must be blessed to be a base
model); drift is checked with ``action: warn`` and reported.

Prints, from both day-2 Trainers' per-epoch history (``fit_result.json``): the cold
run's best valid selection score (sum over behaviors of valid NDCG@5) and its epoch,
the first epoch where the warm run reaches it, the same per behavior, the first epoch
of each run reaching 90-100% of the cold best, both runs' test NDCG@5 and training
seconds. Writes them to ``<output_root>/warm_start.json``.
Skips with a message when the JD log is absent.
"""

import argparse
import csv
import gzip
import json
import os
import pathlib
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # Keras 2 before anything imports TensorFlow
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import logging

from benchmarks import shared_data
from bvae_tf import features
from pipeline import configs, jd, local_runner, report

REPO = pathlib.Path(__file__).resolve().parents[1]
JD_LOG = shared_data.JD_EVENTS
DAY = 86_400
SELECTION = "selection_score"
#: Shares of the cold run's best valid selection score whose first epoch is reported
#: (the per-epoch valid score moves by about 1% from epoch to epoch near the top).
SHARES = (0.9, 0.95, 0.97, 0.98, 0.99, 1.0)


def write_day1_log(source: pathlib.Path, target: pathlib.Path, before: int) -> int:
    """Copies the rows of ``source`` with ``timestamp < before`` to ``target`` (gzip CSV);
    returns the number of rows written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    kept = 0
    partial = target.with_suffix(".partial")
    with gzip.open(source, "rt", newline="") as fin, gzip.open(partial, "wt", newline="") as fout:
        reader = csv.DictReader(fin)
        writer = csv.DictWriter(fout, fieldnames=reader.fieldnames)
        writer.writeheader()
        for row in reader:
            if int(row["timestamp"]) < before:
                writer.writerow(row)
                kept += 1
    partial.rename(target)
    return kept


def run_once(name: str, root: pathlib.Path, overrides: list[str]) -> dict:
    """Runs the JD pipeline with ``overrides`` unless ``<root>/<name>.json`` exists;
    returns the run summary with the Trainer's ``fit_result.json`` under ``fit``."""
    done = root / f"{name}.json"
    if done.exists():
        print(f"{name}: done before, read back from {done}")
        return json.loads(done.read_text())
    config = configs.load_config(jd.DEFAULT_CONFIG, overrides)
    print(f"{name}: running the JD pipeline (input {config.data['input_base']}) ...", flush=True)
    local_runner.run(config)
    summary = report.summarize(config.resolved_metadata_path, config.pipeline_name)
    fit_file = pathlib.Path(summary["tensorboard_logdir"]).parent / "fit_result.json"
    summary["fit"] = json.loads(fit_file.read_text())
    done.write_text(json.dumps(summary, indent=1, default=str))
    print(f"{name}: {report.format_summary(summary).splitlines()[0]}")
    return summary


def first_epoch_reaching(history: list[dict], key: str, target: float) -> int | None:
    """The first epoch (1-based) whose ``key`` is >= ``target``; None if none does."""
    for record in history:
        if record.get(key, float("-inf")) >= target:
            return int(record["epoch"])
    return None


def compare(cold: dict, warm: dict, behaviors: list[str]) -> dict:
    """Epochs the warm run needs to reach the cold run's best valid scores."""
    cold_fit, warm_fit = cold["fit"], warm["fit"]
    cold_best = max(cold_fit["history"], key=lambda r: r[SELECTION])
    rows = {}
    for key in [SELECTION] + [f"valid/{b}/ndcg@5" for b in behaviors]:
        target = cold_best[key]
        rows[key] = {
            "cold_best_selected": target,
            "cold_epoch": first_epoch_reaching(cold_fit["history"], key, target),
            "warm_epoch": first_epoch_reaching(warm_fit["history"], key, target),
            "warm_best": max(r[key] for r in warm_fit["history"]),
        }
    shares = {}
    for share in SHARES:
        target = share * cold_best[SELECTION]
        shares[f"{share:.2f}"] = {
            run: first_epoch_reaching(fit["history"], SELECTION, target)
            for run, fit in (("cold", cold_fit), ("warm", warm_fit))
        }
    test = {
        run: {b: s["evaluation"]["splits"][features.TEST][b]["ndcg@5"] for b in behaviors}
        for run, s in (("cold", cold), ("warm", warm))
    }
    return {
        "selection": rows,
        "epochs_to_share_of_cold_best": shares,
        "epochs_run": {"cold": cold_fit["epochs_run"], "warm": warm_fit["epochs_run"]},
        "best_epoch": {"cold": cold_fit["best_epoch"], "warm": warm_fit["best_epoch"]},
        "train_seconds": {"cold": cold_fit["train_seconds"], "warm": warm_fit["train_seconds"]},
        "test_ndcg@5": test,
        "warm_start": warm_fit.get("warm_start"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_root", default="out/warm-start-jd")
    parser.add_argument("--shift_days", type=int, default=8)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    if not JD_LOG.exists():
        print(f"skipped: the JD event log is absent ({JD_LOG})")
        return
    logging.set_verbosity(logging.WARNING)
    root = pathlib.Path(args.output_root).resolve()
    base = configs.load_config(jd.DEFAULT_CONFIG)
    valid_cut, test_cut = base.data["split_boundaries"]
    shift = args.shift_days * DAY
    day1_log = root / "data" / "JD_events-day1.csv.gz"
    if not day1_log.exists():
        rows = write_day1_log(JD_LOG, day1_log, before=test_cut)
        print(f"day 1 log: {rows} rows before {test_cut} in {day1_log}")
    common = [
        *args.overrides,
        'evaluation.lower_bounds={"*": {"ndcg@5": 0.0}}',
        "training.warm_start=true",
    ]
    warm_root = [f"output_root={root / 'warm'}", "drift.enabled=true", "drift.action=warn"]
    run_once(
        "day1",
        root,
        [
            *common,
            *warm_root,
            f"data.input_base={day1_log}",
            f"data.split_boundaries=[{valid_cut - shift}, {test_cut - shift}]",
        ],
    )
    warm = run_once("day2_warm", root, [*common, *warm_root])
    cold = run_once("day2_cold", root, [*args.overrides, f"output_root={root / 'cold'}"])
    result = compare(cold, warm, list(base.behaviors))
    result["drift"] = warm.get("drift")
    (root / "warm_start.json").write_text(json.dumps(result, indent=1))
    print()
    print(f"{'valid (day 2)':<26}{'cold best':>10}{'cold ep.':>9}{'warm ep.':>9}{'warm best':>10}")
    for key, row in result["selection"].items():
        print(
            f"{key:<26}{row['cold_best_selected']:>10.4f}{row['cold_epoch']:>9}"
            f"{row['warm_epoch']!s:>9}{row['warm_best']:>10.4f}"
        )
    print("first epoch reaching a share of the cold run's best valid selection score:")
    for share, epochs in result["epochs_to_share_of_cold_best"].items():
        print(f"  {share}: cold {epochs['cold']}, warm {epochs['warm']}")
    print(
        f"epochs run: cold {result['epochs_run']['cold']}, warm {result['epochs_run']['warm']}; "
        f"train seconds: cold {result['train_seconds']['cold']:.0f}, "
        f"warm {result['train_seconds']['warm']:.0f}"
    )
    for run, values in result["test_ndcg@5"].items():
        print(f"test NDCG@5 {run}: " + ", ".join(f"{b} {v:.4f}" for b, v in values.items()))
    print(f"written: {root / 'warm_start.json'}")


if __name__ == "__main__":
    main()
