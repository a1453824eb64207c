"""What every runner does before it hands the pipeline to its orchestrator.

Reads the configuration (``--config FILE`` / ``$BVAE_PIPELINE_CONFIG`` and
``--set section.key=value``) and makes sure the synthetic input exists when the
configuration uses it.
"""

from __future__ import annotations

import argparse
import logging as std_logging
import os
import pathlib
import sys
from collections.abc import Callable, Sequence

from absl import logging

from bvae_tf import console
from components import local_beam
from pipeline import configs


def argument_parser(
    description: str, default_config: str | None = None, *, prog: str | None = None
) -> argparse.ArgumentParser:
    """The flags shared by the runners: ``--config`` and repeatable ``--set``.

    ``default_config``: the config file a runner uses without ``--config`` (e.g.
    ``pipeline/config/jd.json`` for ``pipeline.jd``); None: ``$BVAE_PIPELINE_CONFIG``,
    else the built-in defaults. ``prog``: the command the usage line shows (e.g.
    ``python -m pipeline.demo``); None: argparse's (the script's file name).
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    if default_config is None:
        default = os.environ.get(configs.CONFIG_ENV)
        shown = f"${configs.CONFIG_ENV}, else the built-in defaults"
    else:
        default = default_config
        shown = os.path.relpath(default_config, configs.PIPELINE_DIR.parent)
    parser.add_argument(
        "--config", default=default, help=f"JSON pipeline config (default: {shown})"
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the full TFX/Beam/TensorFlow logs on the console (they always go to "
        "<output_root>/logs/)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (JSON-decoded when possible); repeatable",
    )
    return parser


def split_beam_args(argv: Sequence[str]) -> tuple[list[str], list[str] | None]:
    """``(runner arguments, Beam options)``: the Beam options are what follows ``--``
    (``None`` when there is no ``--``)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, None
    split = argv.index("--")
    return argv[:split], argv[split + 1 :]


def load(args: argparse.Namespace) -> configs.PipelineConfig:
    """The configuration named by parsed runner flags."""
    return configs.load_config(args.config, args.overrides)


#: How a runner's user gives the input (named when it is missing).
INPUT_HOW = "--set data.input_base=PATH"


def ensure_input(config: configs.PipelineConfig, how: str = INPUT_HOW) -> str:
    """Generates the synthetic log if the config uses it and it is missing, and checks
    that a local input holds what the ExampleGen will read, before anything runs.

    Args:
      config: the loaded pipeline config.
      how: how the caller's user gives the input (named in the error).

    Returns:
      The input path the ExampleGen will read.

    Raises:
      ValueError: if the synthetic generator's arguments are invalid, or a local
        ``data.input_base`` does not exist or holds no input file (named).
    """
    path = config.example_gen_arguments()["input_base"]
    if config.uses_synthetic_data and not pathlib.Path(path).exists():
        from components import synthetic_logs

        summary = synthetic_logs.write_log(
            path, synthetic_logs.SyntheticLogConfig(**config.synthetic)
        )
        logging.info("Synthetic log written to %s: %s", path, summary)
    if config.uses_synthetic_data:
        logging.info("Input: the synthetic log %s", path, extra={console.CONSOLE: True})
    else:
        check_input(config, how)
    return path


def check_input(config: configs.PipelineConfig, how: str = INPUT_HOW) -> None:
    """Checks, without loading TensorFlow or TFX, that a local, non-synthetic
    ``data.input_base`` holds what the ExampleGen will read and that a local
    ``schema_path`` holds the configured behaviors (:func:`configs.checked_schema_path`).
    Remote inputs and schemas (``scheme://``) and the synthetic log are not checked
    here; the ExampleGen names a remote input it cannot list.

    Args:
      config: the loaded pipeline config.
      how: how the caller's user gives the input, named in the error (default: the
        runners' ``--set data.input_base=PATH``).

    Raises:
      ValueError: if the input does not exist or holds no input file, or the schema
        cannot be read or does not match the behaviors (named).
    """
    configs.checked_schema_path(config)
    path = config.example_gen_arguments()["input_base"]
    if config.uses_synthetic_data or "://" in path:
        return
    from components.multi_behavior_example_gen import inputs

    try:
        inputs.resolve_input_files(config.example_gen_config())
    except ValueError as e:
        where = "" if pathlib.Path(path).is_absolute() else f" (read from {os.getcwd()})"
        raise ValueError(
            f'data.input_base: {e}{where}; give the input with {how} (README, "Your own data")'
        ) from e


def check_beam_options(options: Sequence[str], where: str) -> None:
    """Parses Beam pipeline options as Beam will, so that a bad value (e.g.
    ``--direct_running_mode=bogus``, ``--direct_num_workers=abc``) fails before the
    run rather than inside its first Beam component. Options no Beam module knows are
    left to Beam, which ignores them with a warning.

    Raises:
      ValueError: naming ``where`` and quoting Beam's argparse message.
    """
    if not options:
        return
    import contextlib
    import io

    from apache_beam.options.pipeline_options import PipelineOptions

    message = io.StringIO()
    try:
        with contextlib.redirect_stderr(message):
            PipelineOptions(flags=list(options)).get_all_options(retain_unknown_options=True)
    except SystemExit as e:
        lines = [line for line in message.getvalue().splitlines() if line.strip()]
        detail = lines[-1].partition("error: ")[2] or lines[-1] if lines else f"exit {e.code}"
        raise ValueError(f"{where}: Beam refuses the options {list(options)}: {detail}") from None


def parse(description: str, argv: Sequence[str] | None = None) -> configs.PipelineConfig:
    """Parses runner flags and loads the configuration."""
    return load(argument_parser(description).parse_args(argv))


def start(
    args: argparse.Namespace, entry_point: str, config: configs.PipelineConfig | None = None
) -> configs.PipelineConfig:
    """Loads the configuration of parsed runner flags and sets up the console
    (:mod:`bvae_tf.console`): progress lines by default, ``--verbose`` for all, and
    every record in ``<output_root>/logs/<entry_point>-<time>.log`` (path printed).
    DirectRunner jobs of TFX's Beam components skip the TFX sdist
    (:func:`components.local_beam.skip_tfx_sdist_for_direct_runner`).

    Returns:
      The configuration.

    Raises:
      ValueError: for an invalid configuration, Beam options Beam refuses
        (:func:`check_beam_options`), or an ``output_root`` whose ``logs/`` folder
        cannot be created.
    """
    config = load(args) if config is None else config
    check_beam_options(config.beam_pipeline_args, "beam_pipeline_args")
    logs = os.path.join(config.output_root, "logs")
    if "://" not in logs:
        try:
            os.makedirs(logs, exist_ok=True)
        except OSError as e:
            raise ValueError(
                f"output_root {config.output_root!r}: cannot create its logs folder {logs!r}: "
                f"{e.strerror or e}"
            ) from e
    # TFX's Beam executors would build a TFX sdist per component run; DirectRunner
    # workers do not need it (components.local_beam).
    local_beam.skip_tfx_sdist_for_direct_runner()
    path = console.setup(
        console.log_file_path(config.output_root, entry_point),
        verbose=getattr(args, "verbose", False),
    )
    print(f"Full log: {path}", flush=True)
    return config


def parse_and_start(
    description: str, entry_point: str, argv: Sequence[str] | None = None
) -> configs.PipelineConfig:
    """:func:`parse`, :func:`check_input`, then :func:`start`: a missing local input
    fails before the console's log file (``<output_root>/logs/``) is created.

    Raises:
      ValueError: as :func:`check_input`, and for an invalid configuration.
    """
    parser = argument_parser(description, prog=f"python -m pipeline.{entry_point}")
    args = parser.parse_args(argv)
    config = load(args)
    check_input(config)
    return start(args, entry_point, config)


def main_guard(main: Callable[[], object]) -> int:
    """Runs a runner's ``main()`` for its command line: a ``ValueError`` (a bad
    configuration, input or data, whose message names the key and the fix) or a
    ``DataAnomaliesError`` (schema anomalies, drift from the previous span) prints
    ``error: <message>`` and returns 1 instead of a traceback; the traceback goes to
    the run's log file when :func:`start` set one up. Other errors propagate.

    Ctrl-C (``KeyboardInterrupt``) prints one ``interrupted:`` line saying how a rerun
    goes on, and returns 130 (the shell's code for SIGINT), instead of a traceback
    through Beam's workers.

    Returns:
      The process exit status: 0, 1 or 130.
    """
    try:
        main()
    except KeyboardInterrupt:
        std_logging.getLogger("pipeline.runtime").info("interrupted", exc_info=True)
        print(
            "interrupted: the run stopped; rerun the same command to start again (with "
            "enable_cache=true the components that finished are reused)",
            file=sys.stderr,
        )
        return 130
    except Exception as e:
        if not isinstance(e, ValueError):
            # Imported only here, and only when the error is not a ValueError: the
            # validator pulls in TFDV and Beam (about 10-20 s), which a bad flag or
            # config must not wait for.
            from components.strict_example_validator.component import DataAnomaliesError

            if not isinstance(e, DataAnomaliesError):
                raise
        std_logging.getLogger("pipeline.runtime").info("the run failed", exc_info=True)
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
