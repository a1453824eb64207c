"""Share of a released dataset's target (purchase) interactions, and of one more
behavior's, whose item the same user touched in *train* under another behavior: in
the train split and in the test split (the figures of docs/RESULTS.md, "A faster
path does not help on JD").

::

    python scripts/overlap_shares.py ../shared/data/bvae/JD
    python scripts/overlap_shares.py ../shared/data/bvae/UB

Reads the release's ``<behavior>_<split>`` files (``user item`` per line); a
behavior without a train file is skipped. Exits 2 when the folder has no
``target_train``.
"""

from __future__ import annotations

import pathlib
import sys

BEHAVIORS = ("target", "click", "favourite", "cart")


def _pairs(path: pathlib.Path) -> set[tuple[str, str]]:
    with path.open() as f:
        return {tuple(line.split()[:2]) for line in f if len(line.split()) >= 2}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not (pathlib.Path(argv[0]) / "target_train").is_file():
        print(
            "usage: python scripts/overlap_shares.py RELEASE_DIR (with target_train)",
            file=sys.stderr,
        )
        return 2
    root = pathlib.Path(argv[0])
    train = {b: _pairs(root / f"{b}_train") for b in BEHAVIORS if (root / f"{b}_train").is_file()}
    for behavior, own in train.items():
        others = set().union(*(pairs for b, pairs in train.items() if b != behavior))
        shares = []
        for split in ("train", "test"):
            pairs = _pairs(root / f"{behavior}_{split}") if split == "test" else own
            if pairs:
                shares.append(f"{split} {len(pairs & others) / len(pairs):.1%} of {len(pairs):,}")
        print(f"{behavior}: touched in train under another behavior: " + "; ".join(shares))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
