"""Benchmark: what the inverted-file index (``approximate_top_k``) costs in accuracy on JD.

::

    python benchmarks/approximate_jd.py [--data ../shared/data/bvae/JD] [--epochs 40]
        [--probes 0.02 0.05 0.1 0.2] [--seed 0]

Trains BVAE (defaults, d = 100) on the released JD train split for at most
``--epochs`` epochs, selected on valid NDCG@5 (``training.fit``), then for every test
user and behavior takes the top 10 (the user's own train items of that behavior
excluded) exactly and through an IVF index (``bvae_tf.approximate``) probing each
share of ``--probes`` of the catalog. Prints per behavior and probe: recall@10 (the
mean share of the exact top 10 that the index returns) and test NDCG@5 of both lists
(honest protocol: one model, selected on valid). The exact NDCG@5 is also computed
by ``metrics.evaluate`` as a check of this script's own computation. Skips with a
message when the data is absent.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import shared_data  # noqa: E402


def ndcg_at_5(top: np.ndarray, heldout: list[set[int]]) -> float:
    """Mean NDCG@5 of ``[n, >=5]`` ranked lists against each user's held-out items
    (users with none are skipped)."""
    discount = 1.0 / np.log2(np.arange(2, 7))
    scores = []
    for items, truth in zip(top[:, :5], heldout, strict=True):
        if truth:
            dcg = sum(discount[r] for r, i in enumerate(items) if int(i) in truth)
            scores.append(dcg / discount[: min(5, len(truth))].sum())
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(shared_data.JD_RELEASE))
    parser.add_argument("--epochs", type=int, default=40, help="at most this many epochs")
    parser.add_argument("--probes", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.epochs < 1 or not all(0.0 < p <= 1.0 for p in args.probes):
        parser.error("--epochs must be >= 1 and every probe in (0, 1]")
    if not pathlib.Path(args.data).is_dir():
        print(f"skipped: JD release not found at {args.data}")
        return

    import tensorflow as tf

    from bvae_tf import data as D
    from bvae_tf import features as F
    from bvae_tf import metrics as M
    from bvae_tf import model as Mo
    from bvae_tf import training

    data = D.load_release(args.data)
    config = Mo.BVAEConfig(behaviors=data.behaviors, num_items=data.num_items, seed=args.seed)
    model = Mo.build_model(config)
    start = time.perf_counter()
    fit = training.fit(
        model,
        D.train_dataset(data, seed=args.seed),
        D.eval_dataset(data, F.EVAL),
        epochs=args.epochs,
        patience=args.epochs,
        verbose=1,
    )
    print(
        f"BVAE on JD ({data.num_items:,} items): {args.epochs} epochs in "
        f"{time.perf_counter() - start:.0f} s, best valid epoch {fit.best_epoch}"
    )
    reference = M.evaluate(model, D.eval_dataset(data, F.TEST))

    users = data.split_users(F.TEST)
    heldout = {
        b: [set(data.matrix(F.TEST, b)[u].indices.tolist()) for u in users] for b in data.behaviors
    }
    train = {F.items_key(b): data.matrix(F.TRAIN, b)[users] for b in data.behaviors}
    batches = [
        {
            key: tf.sparse.reorder(
                tf.SparseTensor(
                    np.stack(m[i : i + 500].nonzero(), axis=1).astype(np.int64),
                    m[i : i + 500].indices.astype(np.int64),
                    [m[i : i + 500].shape[0], data.num_items],
                )
            )
            for key, m in train.items()
        }
        for i in range(0, len(users), 500)
    ]
    recommend = tf.function(lambda batch: model.recommend(batch, k=10))

    def top10() -> dict[str, np.ndarray]:
        out = [{b: v[1].numpy() for b, v in recommend(batch).items()} for batch in batches]
        return {b: np.concatenate([o[b] for o in out]) for b in data.behaviors}

    exact = top10()
    rows = [("exact", 1.0, {b: 1.0 for b in data.behaviors}, exact)]
    for probe in args.probes:
        model.attach_approximate_top_k(probe)
        recommend = tf.function(lambda batch: model.recommend(batch, k=10))
        approx = top10()
        recall = {
            b: float(
                np.mean(
                    [len(set(a) & set(e)) / 10 for a, e in zip(approx[b], exact[b], strict=True)]
                )
            )
            for b in data.behaviors
        }
        rows.append(
            (
                f"IVF, {model.approximate_indexes[0].num_probed} of "
                f"{model.approximate_indexes[0].num_leaves} leaves",
                probe,
                recall,
                approx,
            )
        )

    print(
        f"{len(users):,} test users; metrics.evaluate NDCG@5 (exact): "
        + ", ".join(f"{b} {reference.behaviors[b].metrics['ndcg@5']:.4f}" for b in data.behaviors)
    )
    print("| ranking | probed share | behavior | recall@10 vs exact | test NDCG@5 |")
    print("|---|---|---|---|---|")
    for name, probe, recall, top in rows:
        for b in data.behaviors:
            print(
                f"| {name} | {probe:.0%} | {b} | {recall[b]:.3f} | "
                f"{ndcg_at_5(top[b], heldout[b]):.4f} |"
            )


if __name__ == "__main__":
    main()
