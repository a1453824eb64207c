"""Would selecting the epoch per behavior on valid beat selecting it on the sum?

Reads result files of ``bvae_tf.experiment --paper-protocol`` (their per-epoch
``curve`` holds valid and test NDCG@5 of every behavior) and prints, per row (the file
name without ``_s<seed>``), the mean over seeds of test NDCG@5 at three epochs:

- ``sum``: the epoch of the best valid NDCG@5 summed over behaviors (what every run
  selects; read from the curve, so without a ``--boost-grid`` boost);
- ``per behavior``: for each behavior, the epoch of its own best valid NDCG@5 (the
  honest counterpart of the paper protocol, which picks it on test);
- ``paper``: the epoch of the best test NDCG@5 (optimistic; for reference).

No training::

    python scripts/per_behavior_selection.py [docs/results/jd]

Exits 1 when the folder holds no such file, 2 (naming the file) on one that cannot be
read or lacks what its curve should hold.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from bvae_tf import experiment as E


def _test_at(curve: list[dict], behavior: str, key: str) -> float:
    """Test NDCG@5 of ``behavior`` at the epoch of ``curve`` with the largest ``key``."""
    return max(curve, key=lambda epoch: epoch[key])[f"test/{behavior}/ndcg@5"]


def _scores(result: dict) -> tuple[list[str], list[list[list[float]]]]:
    """A result's behaviors and, per run with per-epoch test scores, its test NDCG@5 at
    the three epochs (sum, per behavior, paper).

    Raises:
      ValueError: on a result without behaviors or runs, or a curve without the
        selected epoch or a behavior's valid and test NDCG@5.
    """
    names, runs = result.get("behaviors"), result.get("runs")
    if not (isinstance(names, list) and names and isinstance(runs, list)):
        raise ValueError("no 'behaviors' list or 'runs' list")
    out = []
    for run in runs:
        curve, best = E.curve_rows(run.get("curve")), run.get("best_epoch")
        if not curve or not best or f"test/{names[0]}/ndcg@5" not in curve[0]:
            continue  # not a --paper-protocol run
        at_best = next((e for e in curve if e.get("epoch") == best), None)
        if at_best is None:
            raise ValueError(f"its curve has no epoch {best!r} (its best_epoch)")
        try:
            out.append(
                [
                    [at_best[f"test/{b}/ndcg@5"] for b in names],
                    [_test_at(curve, b, f"valid/{b}/ndcg@5") for b in names],
                    [_test_at(curve, b, f"test/{b}/ndcg@5") for b in names],
                ]
            )
        except KeyError as e:
            raise ValueError(f"an epoch of its curve lacks {e}") from e
    return names, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folder", nargs="?", default="docs/results/jd", help="folder of result JSON files"
    )
    folder = parser.parse_args(argv).folder
    if not pathlib.Path(folder).is_dir():
        parser.error(f"{folder!r} is not a folder")
    rows: dict[str, list] = defaultdict(list)
    behaviors: dict[str, list[str]] = {}
    for path in sorted(pathlib.Path(folder).glob("*_s[0-9]*.json")):
        try:
            result = json.loads(path.read_text())
            if not isinstance(result, dict):
                raise ValueError("not a result object")
            names, scores = _scores(result)
        except (OSError, ValueError) as e:
            parser.error(f"{str(path)!r}: {e}")
        if scores:
            row = re.sub(r"_s\d+$", "", path.stem)
            rows[row].extend(scores)
            behaviors[row] = names
    if not rows:
        print(f"no result file with per-epoch test scores in {folder}", file=sys.stderr)
        return 1
    print("test NDCG@5, mean over seeds (behaviors in each row's order)")
    print(f"{'row':28s} {'seeds':>5s}  {'sum':24s} {'per behavior':24s} {'paper':24s}")
    for row, values in rows.items():
        means = np.mean(np.array(values), axis=0)
        cells = [" / ".join(f"{v:.4f}" for v in m) for m in means]
        print(f"{row:28s} {len(values):5d}  {cells[0]:24s} {cells[1]:24s} {cells[2]:24s}")
    print("behaviors: " + ", ".join(sorted({" / ".join(b) for b in behaviors.values()})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
