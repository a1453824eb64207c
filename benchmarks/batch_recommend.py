"""Batch recommendation speed: users per second of the BatchRecommender's Beam job.

::

    python benchmarks/batch_recommend.py [--examples DIR] [--model DIR] [--repeats 3]
        [--batch-size 256] [-- BEAM_ARGS]

Defaults: the latest ``make pipeline-jd`` outputs (``out/pipelines/bvae-jd/...``
examples, ``out/serving/bvae-jd/<latest version>``). Each repeat runs the whole job
(read every split, merge histories, ``serving_default`` in batches, write CSV and
TFRecord rows) in a fresh Beam pipeline on the DirectRunner; the figure is the median
over repeats of users / wall seconds, job start-up included. The model alone (the
signature called on the same serialized histories, no Beam) is timed too.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

REPO = pathlib.Path(__file__).resolve().parents[1]

import bvae_tf  # noqa: E402

bvae_tf.quiet_cli()  # before TensorFlow loads: no C++ start-up lines, no FutureWarnings


def _latest(folder: pathlib.Path) -> pathlib.Path:
    candidates = sorted(
        (p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)
    )
    if not candidates:
        raise SystemExit(f"nothing in {folder}: run `make pipeline-jd` first or pass the paths")
    return candidates[-1]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    own, beam_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", help="ExampleGen examples folder (with Split-*)")
    parser.add_argument("--model", help="SavedModel folder (bvae_tf.export)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(own)
    root = REPO / "out"
    examples = pathlib.Path(
        args.examples
        or _latest(root / "pipelines" / "bvae-jd" / "MultiBehaviorExampleGen" / "examples")
    )
    model = pathlib.Path(args.model or _latest(root / "serving" / "bvae-jd"))

    import logging

    import apache_beam as beam
    import tensorflow as tf
    from absl import logging as absl_logging
    from apache_beam.options.pipeline_options import PipelineOptions

    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)

    from bvae_tf import export, features
    from components import local_beam
    from components.batch_recommender import __main__ as cli
    from components.batch_recommender import recommend

    local_beam.skip_tfx_sdist_for_direct_runner()
    info = export.read_export_info(str(model))
    patterns = cli.example_patterns(str(examples))
    rates, users = [], 0
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="batch-bench-") as out:
            start = time.perf_counter()
            with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
                recommend.build(
                    pipeline,
                    patterns,
                    str(model),
                    out,
                    behaviors=info.behaviors,
                    batch_size=args.batch_size,
                )
            seconds = time.perf_counter() - start
            summary = recommend.read_summary(out)
        users = summary["users"]
        rates.append(users / seconds)
        print(
            f"repeat {repeat + 1}: {users} users, {summary['rows']} rows in {seconds:.1f} s "
            f"= {users / seconds:.0f} users/s",
            flush=True,
        )

    # The model alone: the signature on the merged histories, batches of --batch-size.
    histories: dict[str, dict[str, set]] = {}
    for pattern in patterns:
        files = sorted(tf.io.gfile.glob(pattern))
        for raw in tf.data.TFRecordDataset(files, "GZIP"):
            user, history = recommend.example_history(raw.numpy(), info.behaviors)
            merged = histories.setdefault(user, {b: set() for b in info.behaviors})
            for b, items in history.items():
                merged[b] |= items
    serialized = export.serialize_histories(
        [{b: sorted(items) for b, items in h.items()} for h in histories.values()]
    )
    serve = tf.saved_model.load(str(model)).signatures[features.SERVING_SIGNATURE]
    serve(examples=tf.constant(serialized[: args.batch_size]))  # trace / warm up
    model_rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for i in range(0, len(serialized), args.batch_size):
            serve(examples=tf.constant(serialized[i : i + args.batch_size]))
        model_rates.append(len(serialized) / (time.perf_counter() - start))
    print(
        f"\nSummary ({os.cpu_count()} cores, {users} users, top {info.top_k} of "
        f"{info.num_items} items for {len(info.behaviors)} behaviors, batch {args.batch_size}):"
    )
    print(f"  Beam job, start-up included: median {statistics.median(rates):.0f} users/s")
    print(f"  model alone (serving_default): median {statistics.median(model_rates):.0f} users/s")
    print(f"  (repeats: {', '.join(f'{r:.0f}' for r in rates)} / ", end="")
    print(f"{', '.join(f'{r:.0f}' for r in model_rates)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
