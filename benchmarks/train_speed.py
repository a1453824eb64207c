"""BVAE training/evaluation speed and memory on the released JD data.

    python benchmarks/train_speed.py [--data ../shared/data/bvae/JD] [--epochs 5]
        [--quality-epochs 150] [--jit-compile] [--precision mixed_float16] [--floor]

Prints (median of repeats, after a warm-up epoch that traces the graphs):

- median_epoch_s: one training epoch (3 behaviors, d = 100, batch 500 by default);
- eval_valid_test_s: full-ranking evaluation of the valid and the test split, all
  behaviors (median of ``--eval-repeats``);
- peak_rss_gb: the process's peak resident memory;
- decoder_floor_epoch_s: a lower bound on the full-softmax epoch -- the three
  ``[rows, m] x d`` products (forward, two backward) and the softmax of every decoder
  alone, timed at ``--batch-size`` rows in the compute dtype (median of repeats) and
  summed over the rows one epoch decodes (the users with train items of each
  behavior, as ``losses.nll_on_rows_with_targets`` does); nothing else of a step
  (encoders, gates, Adam, the input pipeline) is counted;
- with ``--quality-epochs N``: trains up to N epochs from scratch, scoring test every
  epoch, and prints the wall time (training plus validation, as in a real run) until
  test NDCG@5 first reaches the paper's BVAE value, per behavior and for all at once.

The machine load (``os.getloadavg``) is printed before and after: other processes'
CPU use inflates the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks import shared_data
from bvae_tf import features as F

#: The paper's JD BVAE NDCG@5 (test split, mean of 3 runs).
PAPER_NDCG5 = {F.PURCHASE: 0.0743, F.CLICK: 0.0551, F.FAVORITE: 0.0859}


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def decoder_floor_epoch_s(data, batch_size: int, latent_dim: int, compute_dtype: str) -> dict:
    """Times one decoder step's dense work at ``batch_size`` rows and scales it to the
    rows an epoch decodes (see the module docstring). Returns the figures as a dict."""
    import numpy as np
    import tensorflow as tf

    dtype = tf.bfloat16 if compute_dtype == "bfloat16" else tf.float32
    rng = np.random.default_rng(0)
    m, d = data.num_items, latent_dim + 1  # the bias column of layers.ItemDecoder
    q = tf.cast(rng.normal(size=(batch_size, d)), dtype)
    table = tf.cast(rng.normal(size=(m, d)) * 0.1, dtype)
    probs = tf.nn.softmax(tf.matmul(q, table, transpose_b=True))
    parts = {
        "forward product": tf.function(lambda: tf.matmul(q, table, transpose_b=True)),
        "softmax": tf.function(lambda: tf.nn.softmax(probs)),
        "d_queries product": tf.function(lambda: tf.matmul(probs, table)),
        "d_table product": tf.function(lambda: tf.matmul(probs, q, transpose_a=True)),
    }
    per_step_ms = {}
    for name, fn in parts.items():
        fn().numpy()  # trace
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(20):
                out = fn()
            out.numpy()
            runs.append((time.perf_counter() - start) / 20 * 1000)
        per_step_ms[name] = statistics.median(runs)
    rows = {b: int((data.matrix(F.TRAIN, b).getnnz(axis=1) > 0).sum()) for b in data.behaviors}
    step_ms = sum(per_step_ms.values())
    product_ms = step_ms - per_step_ms["softmax"]
    return {
        "dtype": dtype.name,
        "ms_per_batch_of_rows": per_step_ms,
        "decoded_rows_per_epoch": rows,
        "floor_epoch_s": step_ms / 1000 * sum(rows.values()) / batch_size,
        "gflops": 3 * 2 * batch_size * m * d / (product_ms / 1000) / 1e9,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(shared_data.JD_RELEASE))
    p.add_argument("--epochs", type=int, default=5, help="timed epochs after the warm-up")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--eval-batch-size", type=int, default=2000)
    p.add_argument("--eval-repeats", type=int, default=5)
    p.add_argument("--latent-dim", type=int, default=100)
    p.add_argument("--gate-mode", default="gated", choices=("gated", "reference"))
    p.add_argument(
        "--precision", default="float32", choices=("float32", "mixed_float16", "mixed_bfloat16")
    )
    p.add_argument("--jit-compile", action="store_true")
    p.add_argument("--quality-epochs", type=int, default=0)
    p.add_argument(
        "--optimizer-jit",
        action="store_true",
        help="Keras' Adam compiled by XLA instead of the fused Adam kernel (the default)",
    )
    p.add_argument(
        "--sparse-updates", action="store_true", help="LazyAdam: only the batch's item rows"
    )
    p.add_argument(
        "--sampled-softmax", type=int, default=0, help="uniform negatives per decoder and step"
    )
    p.add_argument(
        "--floor",
        action="store_true",
        help="also time the decoders' products and softmax alone (decoder_floor_epoch_s)",
    )
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    # Checked before the data is read and the warm-up runs (minutes on JD).
    lows = {"epochs": 1, "batch_size": 1, "eval_batch_size": 1, "eval_repeats": 1}
    lows |= {"latent_dim": 1, "quality_epochs": 0, "sampled_softmax": 0}
    for name, low in lows.items():
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    if args.json and not pathlib.Path(args.json).resolve().parent.is_dir():
        p.error(f"--json {args.json!r}: its folder does not exist")

    import tensorflow as tf

    from bvae_tf import data as D
    from bvae_tf import metrics as M
    from bvae_tf import model as Mo
    from bvae_tf import training as T

    load_before = os.getloadavg()
    data = D.load_release(args.data)
    cfg = Mo.BVAEConfig(
        behaviors=data.behaviors,
        num_items=data.num_items,
        latent_dim=args.latent_dim,
        gate_mode=args.gate_mode,
        precision=args.precision,
        jit_compile=args.jit_compile,
        sparse_updates=args.sparse_updates,
        sampled_softmax=args.sampled_softmax,
    )
    model = Mo.build_model(cfg, optimizer_jit_compile=args.optimizer_jit)
    train = D.train_dataset(data, args.batch_size, seed=0)
    valid = D.eval_dataset(data, F.EVAL, args.eval_batch_size)
    test = D.eval_dataset(data, F.TEST, args.eval_batch_size)

    epoch_seconds: list[float] = []

    class Timer(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(time.perf_counter() - self.start)

    model.fit(train, epochs=1, verbose=0, callbacks=[Timer()])
    warmup = epoch_seconds.pop()
    model.fit(train, epochs=args.epochs, verbose=0, callbacks=[Timer()])
    M.evaluate(model, valid)
    M.evaluate(model, test)
    eval_seconds = []
    for _ in range(args.eval_repeats):
        start = time.perf_counter()
        M.evaluate(model, valid)
        M.evaluate(model, test)
        eval_seconds.append(time.perf_counter() - start)
    figures = {
        "device": "GPU" if tf.config.list_physical_devices("GPU") else f"CPU x{os.cpu_count()}",
        "config": {k: v for k, v in cfg.to_dict().items() if k not in ("behaviors",)},
        "batch_size": args.batch_size,
        "steps_per_epoch": -(-len(data.train_users()) // args.batch_size),
        "warmup_epoch_s": warmup,
        "epoch_s": epoch_seconds,
        "median_epoch_s": statistics.median(epoch_seconds),
        "eval_valid_test_s": statistics.median(eval_seconds),
        "eval_runs_s": eval_seconds,
    }
    if args.quality_epochs:
        tf.keras.backend.clear_session()
        model = Mo.build_model(cfg, optimizer_jit_compile=args.optimizer_jit)
        result = T.fit(
            model,
            train,
            valid,
            epochs=args.quality_epochs,
            patience=args.quality_epochs,
            monitor_datasets={"test": test},
            verbose=1,
        )
        elapsed, reached = 0.0, {}
        for record in result.history:
            elapsed += record["train_seconds"] + record["eval_seconds"]
            for b, target in PAPER_NDCG5.items():
                if b not in reached and record.get(f"test/{b}/ndcg@5", 0.0) >= target:
                    reached[b] = {"epoch": int(record["epoch"]), "seconds": elapsed}
            if len(reached) == len(PAPER_NDCG5) and "all" not in reached:
                reached["all"] = {"epoch": int(record["epoch"]), "seconds": elapsed}
        figures["time_to_paper_ndcg5"] = reached
        figures["quality_epochs"] = result.epochs_run
    if args.floor:
        floor = decoder_floor_epoch_s(
            data,
            args.batch_size,
            args.latent_dim,
            "bfloat16" if args.precision == "mixed_bfloat16" else "float32",
        )
        figures["decoder_floor"] = floor
        figures["decoder_floor_epoch_s"] = floor["floor_epoch_s"]
        figures["decoder_products_gflops"] = floor["gflops"]
    figures["peak_rss_gb"] = _peak_rss_gb()
    figures["loadavg_before"] = load_before
    figures["loadavg_after"] = os.getloadavg()
    for key in (
        "device",
        "median_epoch_s",
        "eval_valid_test_s",
        "peak_rss_gb",
        "warmup_epoch_s",
        "steps_per_epoch",
        "loadavg_before",
        "loadavg_after",
        "time_to_paper_ndcg5",
        "decoder_floor_epoch_s",
        "decoder_products_gflops",
    ):
        if key in figures:
            print(f"{key}: {figures[key]}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
