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
"""

from __future__ import annotations

import json
import pathlib
import re
import sys
from collections import defaultdict

import numpy as np


def _test_at(curve: list[dict], behavior: str, key: str) -> float:
    """Test NDCG@5 of ``behavior`` at the epoch of ``curve`` with the largest ``key``."""
    return max(curve, key=lambda epoch: epoch[key])[f"test/{behavior}/ndcg@5"]


def main(folder: str = "docs/results/jd") -> int:
    rows: dict[str, list] = defaultdict(list)
    behaviors: dict[str, list[str]] = {}
    for path in sorted(pathlib.Path(folder).glob("*_s[0-9]*.json")):
        result = json.loads(path.read_text())
        row = re.sub(r"_s\d+$", "", path.stem)
        for run in result.get("runs", []):
            curve, best = run.get("curve"), run.get("best_epoch")
            names = result["behaviors"]
            if not curve or not best or f"test/{names[0]}/ndcg@5" not in curve[0]:
                continue
            at_best = next(e for e in curve if e["epoch"] == best)

            rows[row].append(
                [
                    [at_best[f"test/{b}/ndcg@5"] for b in names],
                    [_test_at(curve, b, f"valid/{b}/ndcg@5") for b in names],
                    [_test_at(curve, b, f"test/{b}/ndcg@5") for b in names],
                ]
            )
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
    sys.exit(main(*sys.argv[1:]))
