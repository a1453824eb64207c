"""Benchmark: BVAE on a large synthetic catalog (sampled softmax, lazy sparse updates,
chunked top-K).

::

    python benchmarks/large_catalog.py [--items 1000000] [--users 200000]
        [--negatives 2000] [--chunk 65536] [--epochs 2] [--eval-users 2000]
        [--serve-repeats 100] [--probes 0.05 0.1] [--recall-users 500]

The defaults need about 13 GB of memory and several minutes on 2 cores; e.g.
``--items 20000 --users 3000 --chunk 5000 --serve-repeats 20`` runs in half a minute.

A seeded generator writes the train histories of ``--users`` users over ``--items``
items for purchase, click and favourite: item popularity follows a Zipf law
(exponent 1.1), each user has a Poisson(``--clicks``) number of clicks, and purchases
and favourites are drawn from that user's clicks. The model is BVAE (d = 100 by
default) with ``sampled_softmax=--negatives`` (uniform negatives per decoder and step),
``sparse_updates=True`` (``optimizers.LazyAdam``) and
``top_k_chunk_size=--chunk``.

Prints: the data size and generation time; per epoch, the wall time and users/s; the
process's peak resident memory (targets: one epoch within 16 GB on 2 cores); then the
time of ``metrics.evaluate`` (the early-stopping and experiment evaluation: every
held-out item ranked among all items, the user's own items excluded) over
``--eval-users`` users with held-out items (a second seeded draw from the same law,
a quarter of the clicks), in chunks of ``--chunk`` items (``top_k_chunk_size``: the
``[B, items]`` logits are never formed), users/s and the peak memory after it; then
the latency of ``recommend`` (top 10 for each of the 3 behaviors, the user's own items
excluded) for one user over the whole catalog, as the serving signature computes it
(with the export's serving layout), median and p99 over ``--serve-repeats`` calls after
a warm-up (target p99 <= 50 ms), scoring the catalog at once and in chunks of
``--chunk`` items (the chunked path bounds the memory of large batches; for one user
it copies each chunk's columns and is slower); then the same through the
inverted-file index of ``approximate_top_k=p`` for each ``p`` of ``--probes``
(``bvae_tf.approximate``: about that share of the catalog scored per query), its
build time, latency and its
recall@10 against the exact top 10 over ``--recall-users`` users (the mean share of
each user's exact top 10, own items excluded, that the index returns). The load
average before and after is printed: other work on the cores inflates the figures.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np
import scipy.sparse as sp

from bvae_tf import features as F

BEHAVIORS = (F.PURCHASE, F.CLICK, F.FAVORITE)


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synthetic_histories(
    num_users: int, num_items: int, clicks: float, seed: int, catalog_seed: int | None = None
) -> dict[str, sp.csr_matrix]:
    """``{behavior: [num_users, num_items] 0/1 csr float32}`` (module docstring); the
    items' popularity ranks come from ``catalog_seed`` (default ``seed``), so draws with
    other seeds and the same catalog seed share the popular items."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, num_items + 1) ** 1.1
    popularity = np.cumsum(weights / weights.sum())
    # Popular items spread over the index range (the first draw of `seed`'s generator).
    catalog_rng = rng if catalog_seed is None else np.random.default_rng(catalog_seed)
    items_of = catalog_rng.permutation(num_items)
    counts = np.maximum(rng.poisson(clicks, num_users), 1)
    rows = np.repeat(np.arange(num_users), counts)
    cols = items_of[np.minimum(np.searchsorted(popularity, rng.random(rows.size)), num_items - 1)]
    click = sp.csr_matrix(
        (np.ones(rows.size, np.float32), (rows, cols)), shape=(num_users, num_items)
    )
    click.data[:] = 1.0  # repeated (user, item) pairs
    out = {F.CLICK: click}
    for behavior, share in ((F.PURCHASE, 0.15), (F.FAVORITE, 0.1)):
        coo = click.tocoo()
        keep = rng.random(coo.nnz) < share
        out[behavior] = sp.csr_matrix(
            (coo.data[keep], (coo.row[keep], coo.col[keep])), shape=click.shape
        )
    return {b: out[b] for b in BEHAVIORS}


def heldout_histories(
    train: dict[str, sp.csr_matrix], num_users: int, clicks: float, seed: int, catalog_seed: int
) -> dict[str, sp.csr_matrix]:
    """Held-out items of the first ``num_users`` users (a second draw from the law of
    :func:`synthetic_histories`, with ``clicks`` mean clicks, ``seed`` and the train
    data's ``catalog_seed``, minus each user's train items of the behavior),
    ``{behavior: [n, m] 0/1 csr float32}`` like ``train``."""
    num_rows, num_items = next(iter(train.values())).shape
    num_users = min(num_users, num_rows)
    drawn = synthetic_histories(num_users, num_items, clicks, seed, catalog_seed)
    pad = sp.csr_matrix((num_rows - num_users, num_items), dtype=np.float32)
    out = {}
    for behavior, drawn_rows in drawn.items():
        matrix = sp.vstack([drawn_rows, pad], format="csr")
        out[behavior] = (matrix - matrix.multiply(train[behavior])).tocsr()
        out[behavior].eliminate_zeros()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000, help="catalog size")
    parser.add_argument("--users", type=int, default=200_000, help="users with a history")
    parser.add_argument("--clicks", type=float, default=20.0, help="mean clicks per user")
    parser.add_argument("--latent-dim", type=int, default=100, help="d")
    parser.add_argument("--batch-size", type=int, default=500, help="users per step")
    parser.add_argument(
        "--negatives", type=int, default=2000, help="sampled_softmax: negatives per step"
    )
    parser.add_argument("--chunk", type=int, default=65536, help="top_k_chunk_size (serving)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs (the first traces)")
    parser.add_argument(
        "--eval-users", type=int, default=2000, help="users scored by metrics.evaluate"
    )
    parser.add_argument("--eval-batch-size", type=int, default=500, help="users per batch")
    parser.add_argument("--serve-repeats", type=int, default=100, help="timed recommend calls")
    parser.add_argument("--seed", type=int, default=0, help="data and model seed")
    parser.add_argument(
        "--probes",
        type=float,
        nargs="+",
        default=[0.05, 0.1],
        help="approximate_top_k values: shares of the catalog probed",
    )
    parser.add_argument(
        "--recall-users", type=int, default=500, help="users of the recall@10 measurement"
    )
    args = parser.parse_args()
    if args.eval_users < 0 or args.eval_batch_size < 1:
        parser.error("--eval-users must be >= 0 and --eval-batch-size >= 1")
    if not all(0.0 < p <= 1.0 for p in args.probes) or args.recall_users < 1:
        parser.error("every --probes value must be in (0, 1] and --recall-users >= 1")

    import tensorflow as tf

    from bvae_tf import data as D
    from bvae_tf import metrics as M
    from bvae_tf import model as Mo
    from bvae_tf import training

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    histories = synthetic_histories(args.users, args.items, args.clicks, args.seed)
    events = {b: m.nnz for b, m in histories.items()}
    print(
        f"data: {args.users:,} users x {args.items:,} items, train events {events} "
        f"({time.perf_counter() - start:.1f} s to generate)"
    )
    heldout = heldout_histories(
        histories, args.eval_users, args.clicks / 4, args.seed + 1, args.seed
    )
    dataset = D.MultiBehaviorData(
        behaviors=BEHAVIORS,
        num_users=args.users,
        num_items=args.items,
        splits={F.TRAIN: histories, F.EVAL: heldout},
    )
    train = D.train_dataset(dataset, batch_size=args.batch_size, seed=args.seed)
    config = Mo.BVAEConfig(
        behaviors=BEHAVIORS,
        num_items=args.items,
        latent_dim=args.latent_dim,
        sampled_softmax=args.negatives,
        sparse_updates=True,
        top_k_chunk_size=args.chunk,
        seed=args.seed,
    )
    model = Mo.build_model(config)
    training.build_for_fit(model, train)
    users = len(dataset.train_users())
    print(f"model: BVAE d={args.latent_dim}, {model.count_params():,} weights (float32)")
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        history = model.fit(train, epochs=1, verbose=0)
        seconds = time.perf_counter() - start
        loss = history.history["loss"][-1]
        print(
            f"epoch {epoch}: {seconds:.1f} s, {users / seconds:,.0f} users/s, loss {loss:.2f}"
            f"{' (includes tracing)' if epoch == 1 else ''}; peak RSS {_peak_rss_gb():.2f} GB"
        )

    eval_ds = D.eval_dataset(dataset, F.EVAL, batch_size=args.eval_batch_size)
    scored = len(dataset.split_users(F.EVAL))
    for _ in range(2 if scored else 0):  # the first call traces the ranking function
        start = time.perf_counter()
        result = M.evaluate(model, eval_ds)
        seconds = time.perf_counter() - start
    if scored:
        ndcg = {b: round(r.metrics["ndcg@10"], 4) for b, r in result.behaviors.items()}
        print(
            f"metrics.evaluate, {scored:,} users x {args.items:,} items in chunks of "
            f"{model.eval_chunk_size or args.items:,}: {seconds:.1f} s, "
            f"{scored / seconds:,.0f} users/s (after a tracing call); ndcg@10 {ndcg}; "
            f"peak RSS {_peak_rss_gb():.2f} GB"
        )
    else:
        print("metrics.evaluate: skipped (no user with held-out items: --eval-users 0)")

    for decoder in model.decoders:  # as the export does (bvae_tf.export)
        decoder.add_serving_layout()
    one_user = next(iter(D.train_dataset(dataset, batch_size=1, shuffle=False)))

    def time_recommend(what: str) -> None:
        serve = tf.function(lambda batch: model.recommend(batch, k=10))
        serve(one_user)  # trace
        latencies = []
        for _ in range(args.serve_repeats):
            start = time.perf_counter()
            out = serve(one_user)
            _ = {b: v[1].numpy() for b, v in out.items()}
            latencies.append((time.perf_counter() - start) * 1000)
        print(
            f"recommend, 1 user, top 10 x {len(BEHAVIORS)} behaviors over {args.items:,} "
            f"items, {what}: median {np.median(latencies):.1f} ms, "
            f"p99 {np.percentile(latencies, 99):.1f} ms over {args.serve_repeats} calls"
        )

    for chunk in (None, args.chunk):
        for layer in model.top_k_layers:
            layer.chunk_size = chunk
        time_recommend("whole catalog at once" if chunk is None else f"chunks of {chunk:,} items")

    # The exact top 10 of --recall-users users (chunked), then the index's.
    recall_batch = next(
        iter(D.train_dataset(dataset, batch_size=min(args.recall_users, users), shuffle=False))
    )
    exact = {b: v[1].numpy() for b, v in model.recommend(recall_batch, k=10).items()}
    for probe in args.probes:
        start = time.perf_counter()
        model.attach_approximate_top_k(probe)
        built = time.perf_counter() - start
        index = model.approximate_indexes[0]
        print(
            f"IVF index (approximate_top_k={probe}): {index.num_leaves:,} leaves, "
            f"{index.num_probed} probed per query, built for {len(BEHAVIORS)} decoders in "
            f"{built:.1f} s"
        )
        time_recommend(f"IVF index probing {probe:.0%} of the catalog")
        approx = {b: v[1].numpy() for b, v in model.recommend(recall_batch, k=10).items()}
        recall = {
            b: round(
                float(
                    np.mean(
                        [
                            len(set(a) & set(e)) / 10
                            for a, e in zip(approx[b], exact[b], strict=True)
                        ]
                    )
                ),
                3,
            )
            for b in BEHAVIORS
        }
        print(
            f"recall@10 of the IVF index against the exact top 10, "
            f"{len(exact[BEHAVIORS[0]])} users: {recall}"
        )
    print(
        f"peak RSS {_peak_rss_gb():.2f} GB (target <= 16 GB); load average "
        f"{load_before:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
