"""Data check: the ExampleGen alone on a log, with its accounting, in seconds.

::

    python -m pipeline.data_check --input events.csv.gz
    python -m pipeline.data_check --config my.json \\
        --set data.min_user_target_events=3 [--accounting accounting.json]

Reads the pipeline config as the runners do (``--config FILE`` or
``$BVAE_PIPELINE_CONFIG``, then ``--set section.key=value``), with ``--input PATH``
replacing ``data.input_base`` (without either, the config's input: the synthetic log
is generated when missing). Then runs the ExampleGen's Beam pipeline on the
in-memory DirectRunner (no TFX orchestration, no MLMD, no examples kept), prints
where every row went, the events and users per split and behavior and the cut
timestamps, and fails with the errors a pipeline run would raise.

Exit status: 0 when the data is fit for a run, 1 when it is not or the config or
input is invalid (the errors go to stderr), 2 for bad command-line flags.
"""

import json
import logging as std_logging
import os
import re
import sys
import tempfile
from collections.abc import Sequence

from absl import logging

from components.multi_behavior_example_gen import accounting, checks
from components.multi_behavior_example_gen.data_check import format_report, run
from pipeline import configs, runtime

_BEAM_STEP = re.compile(r" \[while running '[^']*'\]")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (module docstring); returns the exit status."""
    parser = runtime.argument_parser(
        "Run the multi-behavior ExampleGen alone on a log and print its accounting.",
        prog="python -m pipeline.data_check",
    )
    parser.add_argument("--input", help="the log to check (replaces data.input_base)")
    parser.add_argument("--accounting", help="also write the accounting record (JSON) here")
    args = parser.parse_args(argv)
    if args.accounting is not None:
        target = os.path.abspath(args.accounting)
        if os.path.isdir(target) or not os.path.isdir(os.path.dirname(target)):
            parser.error(
                f"--accounting {args.accounting!r}: give a file path in an existing folder"
            )
    logging.set_verbosity(logging.WARNING)
    # Beam logs a failing step's traceback; the error is printed below, once.
    std_logging.getLogger("apache_beam").setLevel(std_logging.CRITICAL)
    overrides = list(args.overrides)
    if args.input is not None:
        overrides.append(f"data.input_base={json.dumps(args.input)}")
    try:
        config = configs.load_config(args.config, overrides)
        configs.checked_schema_path(config)  # what the pipeline checks before any run
        how = "--input PATH" if args.input is not None else runtime.INPUT_HOW
        runtime.ensure_input(config, how)
        example_gen_config = config.example_gen_config()
        with tempfile.TemporaryDirectory(prefix="example-gen-check-") as work_dir:
            record = run(example_gen_config, work_dir)
    except (ValueError, RuntimeError) as e:
        # Beam appends the failing step to the message: "... [while running 'Step/...']"
        print(f"error: {_BEAM_STEP.sub('', str(e))}", file=sys.stderr)
        return 1
    print(format_report(record))
    if args.accounting:
        try:
            with open(args.accounting, "w", encoding="utf-8") as f:
                f.write(accounting.dumps(record))
        except OSError as e:
            print(f"error: --accounting {args.accounting!r}: {e}", file=sys.stderr)
            return 1
    try:
        checks.check_record(record, example_gen_config.input_base)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("OK: a pipeline run would accept this data.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
