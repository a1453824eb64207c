"""TFX's per-executor TFX sdist is skipped for the DirectRunner only."""

import pytest
from tfx.dsl.components.base import base_beam_executor
from tfx.utils import dependency_utils

from components import local_beam

pytestmark = pytest.mark.unit


class _Executor(base_beam_executor.BaseBeamExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        raise NotImplementedError


@pytest.mark.parametrize(
    "args, local",
    [
        ([], True),
        (["--direct_running_mode=multi_processing", "--direct_num_workers=2"], True),
        (["--runner=DirectRunner"], True),
        (["--runner=DataflowRunner", "--project=p"], False),
        (["--runner=PortableRunner", "--job_endpoint=embed"], False),
    ],
)
def test_runs_locally_only_on_the_direct_runner(args, local):
    assert local_beam.runs_locally(args) is local


def test_direct_runner_executors_skip_the_sdist_and_others_still_get_it(monkeypatch):
    built = []
    monkeypatch.setattr(
        dependency_utils, "build_ephemeral_package", lambda: built.append(1) or "/tmp/tfx.tar.gz"
    )
    local_beam.skip_tfx_sdist_for_direct_runner()
    local_beam.skip_tfx_sdist_for_direct_runner()  # idempotent: wrapped once
    direct = ["--direct_running_mode=in_memory"]
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=direct)
    executor = _Executor(context)
    assert built == []
    assert not any(a.startswith("--extra_package") for a in executor._beam_pipeline_args)
    remote = ["--runner=DataflowRunner", "--project=p"]
    flags = dependency_utils.make_beam_dependency_flags(remote)
    assert built == [1]
    assert flags == [*remote, "--extra_package=/tmp/tfx.tar.gz"]
    assert remote == ["--runner=DataflowRunner", "--project=p"]  # the caller's list is kept
