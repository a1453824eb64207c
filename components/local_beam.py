"""No TFX sdist for Beam jobs that run on this machine.

A TFX Beam executor (``BaseBeamExecutor``) whose ``beam_pipeline_args`` are not empty
and name no dependency (``--extra_packages``, ``--setup_file``, ``--requirements_file``,
a container image) copies the installed TFX and builds a ``tfx_ephemeral`` sdist of it
(``tfx.utils.dependency_utils.make_beam_dependency_flags``), so that remote workers
(Dataflow, Flink, Spark) can import TFX. That costs about 3 s of CPU per component
run (measured: 2.9 s on these cores) and is useless on the DirectRunner, whose
workers (in memory, threads or local processes) share this interpreter's
environment. :func:`skip_tfx_sdist_for_direct_runner` makes TFX skip the build for
DirectRunner jobs only; every other runner keeps TFX's behaviour. The local entry
points call it; on Kubeflow the executors run in TFX's own container entrypoint and
are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Runner names that run Beam on this machine, in this environment.
DIRECT_RUNNERS = (
    None,
    "DirectRunner",
    "direct",
    "SwitchingDirectRunner",
    "BundleBasedDirectRunner",
)


def runs_locally(beam_pipeline_args: Sequence[str]) -> bool:
    """Whether ``beam_pipeline_args`` select the DirectRunner (also by default)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    runner = PipelineOptions(flags=list(beam_pipeline_args)).view_as(StandardOptions).runner
    return runner in DIRECT_RUNNERS


def skip_tfx_sdist_for_direct_runner() -> None:
    """Makes TFX's Beam executors skip the TFX sdist for DirectRunner jobs (module
    docstring). Idempotent; affects this process only."""
    from tfx.utils import dependency_utils

    original = dependency_utils.make_beam_dependency_flags
    if getattr(original, "_skips_direct_runner", False):
        return

    def make_beam_dependency_flags(beam_pipeline_args: list[str]) -> list[str]:
        if runs_locally(beam_pipeline_args):
            return list(beam_pipeline_args)
        return original(beam_pipeline_args)

    make_beam_dependency_flags._skips_direct_runner = True
    make_beam_dependency_flags.__doc__ = original.__doc__
    dependency_utils.make_beam_dependency_flags = make_beam_dependency_flags
