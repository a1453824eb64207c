"""Batch recommendations outside a pipeline run.

::

    python -m components.batch_recommender --examples <ExampleGen examples dir> \
        --model <SavedModel dir> --output <dir> [--users users.txt] \
        [--formats csv tfrecord] [--batch-size 256] [-- <Beam options>]

``--examples`` is an ExampleGen artifact folder (its ``Split-*`` subfolders are read)
or one split's folder; ``--model`` a SavedModel written by ``bvae_tf.export`` (e.g. a
version the Pusher published). Prints the summary and the users per second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from bvae_tf import console


def example_patterns(examples_dir: str) -> list[str]:
    """GZIP TFRecord patterns of an ExampleGen artifact folder (every ``Split-*``) or
    of one split's folder.

    Raises:
      ValueError: if the folder does not exist or holds no ``Split-*`` folder and no file.
    """
    if not os.path.isdir(examples_dir):
        raise ValueError(f"--examples {examples_dir!r} is not a folder")
    splits = sorted(d for d in os.listdir(examples_dir) if d.startswith("Split-"))
    if splits:
        return [os.path.join(examples_dir, d, "*") for d in splits]
    if not any(os.path.isfile(os.path.join(examples_dir, f)) for f in os.listdir(examples_dir)):
        raise ValueError(f"--examples {examples_dir!r} holds no Split-* folder and no file")
    return [os.path.join(examples_dir, "*")]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    own, beam_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(prog="python -m components.batch_recommender")
    parser.add_argument("--examples", required=True, help="ExampleGen examples folder")
    parser.add_argument("--model", required=True, help="SavedModel folder (bvae_tf.export)")
    parser.add_argument("--output", required=True, help="folder for the output files")
    parser.add_argument("--users", help="text file of user ids, one per line (default: all)")
    parser.add_argument("--formats", nargs="+", default=["csv", "tfrecord"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--verbose", action="store_true", help="full TF/Beam logs")
    args = parser.parse_args(own)
    log = console.setup(
        console.log_file_path(args.output, "batch_recommender"), verbose=args.verbose
    )

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from bvae_tf import export
    from components.batch_recommender import executor, recommend

    try:
        patterns = example_patterns(args.examples)
        info = export.read_export_info(args.model)
        users = executor.read_users(args.users) if args.users else None
        os.makedirs(args.output, exist_ok=True)
        start = time.perf_counter()
        with beam.Pipeline(options=PipelineOptions(beam_args)) as pipeline:
            recommend.build(
                pipeline,
                patterns,
                args.model,
                args.output,
                behaviors=info.behaviors,
                users=users,
                formats=args.formats,
                batch_size=args.batch_size,
            )
        seconds = time.perf_counter() - start
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    summary = recommend.read_summary(args.output)
    print(json.dumps(summary, indent=2, sort_keys=True))
    print(
        f"{summary['users']} users, {summary['rows']} rows in {seconds:.1f} s "
        f"({summary['users'] / seconds:.0f} users/s, job start-up included) -> {args.output}"
    )
    print(f"Full log: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
