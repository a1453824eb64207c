"""Peak memory of the EASE forms on a synthetic multi-behavior log.

Each form fits a grid (every lambda and diagonal) and scores every user, in its own
child process, so that its peak resident set size (``ru_maxrss``) is its own:

- ``dense``: :func:`bvae_tf.baselines.ease.fit_grid`, all targets in one model
  (one ``m x m`` ``B_b`` per target);
- ``sequential``: the same, one target per model, freed before the next;
- ``factored``: :func:`bvae_tf.baselines.ease.fit_factored` (no ``B_b``; one ``P``).

Prints, per form, the peak RSS in GB and in units of one float32 ``m x m`` matrix
(above the process's baseline after imports and data), the wall time of fitting and
scoring every user in batches of 500, and the largest score difference from the first
form on 16 users (the forms compute the same scores).

    python benchmarks/ease_memory.py                    # 8,000 items, 10,000 users
    python benchmarks/ease_memory.py --items 30947 --users 20000 --forms factored
    python benchmarks/ease_memory.py --dtype float64    # the experiment's default dtype

The figures in units of ``m^2`` are ``bvae_tf.baselines.ease.PEAK_UNITS``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
FORMS = ("dense", "sequential", "factored")
BEHAVIORS = ("purchase", "click", "favorite")


def synthetic(users: int, items: int, per_user: int, seed: int):
    """``{behavior: [users, items] CSR 0/1}``: Zipf-popular items, ``per_user`` clicks
    per user and a fifth as many purchases and favourites (seeded)."""
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, items + 1) ** 0.8
    weights /= weights.sum()
    out = {}
    counts = (max(per_user // 5, 1), per_user, max(per_user // 5, 1))
    for b, count in zip(BEHAVIORS, counts, strict=True):
        cols = rng.choice(items, size=(users, count), p=weights)
        rows = np.repeat(np.arange(users), count)
        matrix = sp.csr_matrix(
            (np.ones(rows.size, np.float32), (rows, cols.ravel())), (users, items)
        )
        matrix.data[:] = 1.0
        out[b] = matrix
    return out


def child(args) -> dict:
    """One form's fit and scoring; returns its figures (run in a fresh process)."""
    import gc

    import numpy as np

    from bvae_tf import data as D
    from bvae_tf import features as F
    from bvae_tf.baselines import ease as E

    train = synthetic(args.users, args.items, args.per_user, args.seed)
    tables = {F.items_key(b): m for b, m in train.items()}
    batches = list(D._csr_dataset(np.arange(args.users), tables, 500, False, 0))
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    scores = {}
    if args.form == "factored":
        path = E.fit_factored(
            BEHAVIORS, args.items, train, args.l2, diagonals=E.DIAGONALS, dtype=np.dtype(args.dtype)
        )
    else:
        groups = [(b,) for b in BEHAVIORS] if args.form == "sequential" else None
        path = E.fit_grid(
            BEHAVIORS,
            args.items,
            train,
            args.l2,
            diagonals=E.DIAGONALS,
            dtype=np.dtype(args.dtype),
            groups=groups,
        )
    for l2, diagonal, model in path:
        for i, batch in enumerate(batches):  # every user scored, as an evaluation does
            for b, value in model(batch).items():
                if i == 0:  # a few users' scores: kept copies would count as the form's
                    scores[f"{l2}/{diagonal}/{b}"] = value[:16].numpy()
        del model
        gc.collect()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    np.savez(args.scores, **scores)
    return {"baseline_bytes": baseline, "peak_bytes": peak, "seconds": seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=8000)
    p.add_argument("--users", type=int, default=10000)
    p.add_argument("--per-user", type=int, default=20, help="clicks per user")
    p.add_argument("--l2", type=float, nargs="+", default=[50.0, 500.0])
    p.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--dtype",
        choices=("float32", "float64"),
        default="float32",
        help="float type of the Gram matrix and its inverse (the experiment's --ease-dtype)",
    )
    p.add_argument("--form", choices=FORMS, help=argparse.SUPPRESS)  # the child's
    p.add_argument("--scores", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.form:
        print(json.dumps(child(args)))
        return 0
    import tempfile

    import numpy as np

    unit = 4 * args.items**2
    print(
        f"EASE, {args.items:,} items x {args.users:,} users, 3 targets, "
        f"{len(args.l2)} lambda x 2 diagonals, {args.dtype} "
        f"(one m x m float32 = {unit / 1e9:.2f} GB)"
    )
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for form in args.forms:
            scores = os.path.join(tmp, f"{form}.npz")
            cmd = [
                sys.executable,
                __file__,
                *(argv or sys.argv[1:]),
                "--form",
                form,
                "--scores",
                scores,
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(
                    f"{form}: failed (exit {done.returncode})\n{done.stderr[-2000:]}",
                    file=sys.stderr,
                )
                return 1
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            values = dict(np.load(scores))
            if reference is None:
                reference, diff = values, 0.0
            else:
                diff = max(float(np.abs(values[k] - reference[k]).max()) for k in reference)
            above = figures["peak_bytes"] - figures["baseline_bytes"]
            rows.append((form, figures["peak_bytes"], above, figures["seconds"], diff))
    header = ("form", "peak RSS", "above base", "in m^2", "seconds", "max |diff|")
    print("{:<11} {:>9} {:>11} {:>7} {:>8} {:>11}".format(*header))
    for form, peak, above, seconds, diff in rows:
        print(
            f"{form:<11} {peak / 1e9:>8.2f}G {above / 1e9:>10.2f}G {above / unit:>7.2f} "
            f"{seconds:>8.1f} {diff:>11.2e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
