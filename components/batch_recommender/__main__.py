"""Batch recommendations outside a pipeline run.

::

    python -m components.batch_recommender --examples <ExampleGen examples dir> \
        --model <SavedModel dir> --output <dir> [--users users.txt] \
        [--formats csv tfrecord] [--batch-size 256] [--overwrite] [-- <Beam options>]

``--examples`` is an ExampleGen artifact folder (its ``Split-*`` subfolders are read)
or one split's folder; ``--model`` a SavedModel written by ``bvae_tf.export`` (e.g. a
version the Pusher published). Prints the summary and the users per second. An
``--output`` holding an earlier job's files is refused unless ``--overwrite`` (their
shards would otherwise be read with the new ones); listed users without history in the
examples are reported (all of them: an error, exit 2).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from bvae_tf import console
from components.batch_recommender.options import FORMATS


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


def check_examples(patterns: list[str]) -> None:
    """Reads the first record of the first file the patterns match, as a GZIP TFRecord
    of a ``tf.train.Example`` (what ExampleGen writes), so that a wrong folder is named
    before the job starts.

    Raises:
      ValueError: if no file matches, or the first one is no GZIP TFRecord of examples.
    """
    import tensorflow as tf

    files = [f for pattern in patterns for f in sorted(tf.io.gfile.glob(pattern))]
    files = [f for f in files if not tf.io.gfile.isdir(f)]
    if not files:
        raise ValueError(f"--examples: no file matches {', '.join(patterns)}")
    try:
        for raw in tf.data.TFRecordDataset(files[0], compression_type="GZIP").take(1):
            tf.train.Example.FromString(raw.numpy())
    except Exception as e:  # zlib, TFRecord framing or protobuf errors, by TF's type
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        # Without the eager wrapper's "{{function_node …}}" prefix and "[Op:…]" tag.
        first = (
            re.sub(r"^\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]( name:.*)?$", "", first) or first
        )
        raise ValueError(
            f"--examples: {files[0]!r} is not a GZIP TFRecord file of tf.train.Example "
            f"records (what ExampleGen writes): {first}"
        ) from e


def previous_outputs(output_dir: str) -> list[str]:
    """The files of an earlier job in ``output_dir``: its ``recommendations-*`` shards
    and its summary (another job's shards would be read with this one's)."""
    from components.batch_recommender import recommend

    if not os.path.isdir(output_dir):
        return []
    return sorted(
        os.path.join(output_dir, name)
        for name in os.listdir(output_dir)
        if name.startswith(recommend.CSV_PREFIX + "-") or name == recommend.SUMMARY_FILE
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _remove_partial_output(output_dir: str) -> None:
    """Deletes what a failed job left in ``output_dir``: Beam's ``beam-temp-*`` folders
    and any shard or summary written before the failure (``previous_outputs``)."""
    import shutil

    for name in os.listdir(output_dir):
        if name.startswith("beam-temp-"):
            shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
    for path in previous_outputs(output_dir):
        os.remove(path)


def check_model_dir(model: str) -> None:
    """Checks that a local ``--model`` is a folder, and not the folder of a model's
    versions (``<serving_model_dir>/<version>/``): the export itself is read once the
    job starts (``bvae_tf.export.read_export_info``). A URI is left to that read.

    Raises:
      ValueError: naming the path: it does not exist, is not a folder, or holds
        version folders (the latest named).
    """
    if "://" in model:
        return
    if not os.path.exists(model):
        raise ValueError(f"--model {model!r} does not exist")
    if not os.path.isdir(model):
        raise ValueError(f"--model {model!r} is not a folder (a SavedModel folder)")
    if os.path.isfile(os.path.join(model, "saved_model.pb")):
        return
    versions = sorted(
        int(name)
        for name in os.listdir(model)
        if name.isdigit() and os.path.isfile(os.path.join(model, name, "saved_model.pb"))
    )
    if versions:
        raise ValueError(
            f"--model {model!r} holds {len(versions)} model version folder(s), not a model: "
            f"name one, e.g. the latest, {os.path.join(model, str(versions[-1]))!r}"
        )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    own, beam_args = argv[:split], argv[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m components.batch_recommender",
        epilog="Beam pipeline options follow a '--', e.g. -- --direct_num_workers=2 "
        "--direct_running_mode=multi_processing.",
    )
    parser.add_argument("--examples", required=True, help="ExampleGen examples folder")
    parser.add_argument("--model", required=True, help="SavedModel folder (bvae_tf.export)")
    parser.add_argument("--output", required=True, help="folder for the output files")
    parser.add_argument("--users", help="text file of user ids, one per line (default: all)")
    parser.add_argument(
        "--formats",
        nargs="+",
        choices=FORMATS,
        default=["csv", "tfrecord"],
        help="output files: csv (one row per user, behavior and rank) and/or tfrecord "
        "(one tf.Example per user and behavior)",
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, default=256, help="histories per model call"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete an earlier job's recommendations-* files and summary in --output first",
    )
    parser.add_argument("--verbose", action="store_true", help="full TF/Beam logs")
    args = parser.parse_args(own)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        parser.exit(2, f"error: --output {args.output!r} exists and is not a folder\n")
    earlier = previous_outputs(args.output)
    if earlier and not args.overwrite:
        parser.exit(
            2,
            f"error: --output {args.output!r} holds an earlier job's files ({len(earlier)}, "
            f"e.g. {os.path.basename(earlier[0])!r}): choose another folder, or pass "
            "--overwrite to delete them first\n",
        )
    from components.batch_recommender import executor

    # The arguments are checked before --output and its logs/ folder are made.
    def warn(message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    try:
        patterns = example_patterns(args.examples)
        check_model_dir(args.model)
        users = executor.read_users(args.users, "--users", warn) if args.users else None
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    try:
        os.makedirs(args.output, exist_ok=True)
    except OSError as e:
        parser.exit(2, f"error: --output {args.output!r} cannot be created: {e.strerror or e}\n")
    log = console.setup(
        console.log_file_path(args.output, "batch_recommender"), verbose=args.verbose
    )

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from bvae_tf import export
    from components.batch_recommender import recommend

    try:
        check_examples(patterns)
        info = export.read_export_info(args.model)
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    for path in earlier:  # --overwrite
        os.remove(path)
    start = time.perf_counter()
    try:
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
    except Exception as e:  # a bad record, an unreadable file: Beam wraps what it raised
        # The whole traceback to the log file (an INFO record: not on the console).
        logging.info("the batch job failed", exc_info=True)
        _remove_partial_output(args.output)
        lines = str(e).strip().splitlines()
        first = lines[-1] if lines else type(e).__name__
        first = first if len(first) <= 300 else first[:300] + " ..."
        parser.exit(1, f"error: the batch job failed: {first}\n(the traceback: {log})\n")
    seconds = time.perf_counter() - start
    summary = recommend.read_summary(args.output)
    unknown = summary.get("users_without_history", 0)
    message = None
    if users is not None and unknown:
        listed = len(dict.fromkeys(users))
        missing = summary.get("users_without_history_ids", [])
        more = f" (the first {len(missing)} in sorted order)" if unknown > len(missing) else ""
        match = "ids are matched as written less surrounding whitespace, one per line, no header"
        named = f"{', '.join(repr(u) for u in missing)}{more}"
        if unknown == listed:  # nothing of use: a failed job, and it leaves no output
            _remove_partial_output(args.output)
            parser.exit(
                2,
                f"error: none of the {listed} users listed in --users {args.users!r} has a "
                f"history in the examples ({match}): {named}. No output written (full log: "
                f"{log})\n",
            )
        message = (
            f"{unknown} of the {listed} users listed in --users {args.users!r} have no "
            f"history in the examples: they got the ranking of an empty history ({match}): "
            f"{named}"
        )
    print(
        f"{summary['users']} users, {summary['rows']} rows in {seconds:.1f} s "
        f"({summary['users'] / seconds:.3g} users/s, job start-up included) -> {args.output}"
    )
    print(f"Counts: {os.path.join(args.output, recommend.SUMMARY_FILE)}; full log: {log}")
    if message is not None:
        print(f"warning: {message}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
