"""Tests for VersionedPusher: only blessed models, versions appear whole or not at all."""

import json
import os
import pathlib

import pytest
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

import bvae_tf  # noqa: F401
from components.versioned_pusher import executor as pusher_executor
from components.versioned_pusher.component import VersionedPusher

pytestmark = pytest.mark.unit


def _fake_saved_model(path: pathlib.Path) -> pathlib.Path:
    (path / "variables").mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"graph")
    (path / "variables" / "variables.index").write_bytes(b"index")
    return path


def test_publish_creates_complete_version_and_no_staging_left(tmp_path):
    model = _fake_saved_model(tmp_path / "model")
    base = tmp_path / "serving" / "bvae"
    version, target = pusher_executor.publish_version(str(model), str(base), now=1000)
    assert version == 1000
    assert pathlib.Path(target) == base / "1000"
    assert (base / "1000" / "saved_model.pb").read_bytes() == b"graph"
    assert (base / "1000" / "variables" / "variables.index").read_bytes() == b"index"
    assert sorted(os.listdir(base)) == ["1000"]


def test_versions_only_grow_even_if_the_clock_goes_back(tmp_path):
    model = _fake_saved_model(tmp_path / "model")
    base = tmp_path / "bvae"
    pusher_executor.publish_version(str(model), str(base), now=2000)
    version, _ = pusher_executor.publish_version(str(model), str(base), now=1500)
    assert version == 2001
    assert pusher_executor.existing_versions(str(base)) == [2000, 2001]


def test_nothing_numeric_is_visible_before_the_version_is_complete(tmp_path):
    model = _fake_saved_model(tmp_path / "model")
    base = tmp_path / "bvae"
    seen = {}

    def prepare(staging_dir):
        # What a model server polling the base path would list mid-publish.
        seen["versions"] = pusher_executor.existing_versions(str(base))
        seen["staging"] = os.path.basename(staging_dir)
        (pathlib.Path(staging_dir) / "assets.extra").mkdir()
        (pathlib.Path(staging_dir) / "assets.extra" / "warmup").write_bytes(b"w")

    _, target = pusher_executor.publish_version(str(model), str(base), prepare=prepare, now=5)
    assert seen["versions"] == []
    assert seen["staging"].startswith(pusher_executor.STAGING_PREFIX)
    assert (pathlib.Path(target) / "assets.extra" / "warmup").read_bytes() == b"w"


def test_a_version_taken_meanwhile_moves_to_the_next_number(tmp_path):
    model = _fake_saved_model(tmp_path / "model")
    base = tmp_path / "bvae"

    def prepare(_):
        _fake_saved_model(base / "7")  # another publisher wins version 7

    version, _ = pusher_executor.publish_version(str(model), str(base), prepare=prepare, now=7)
    assert version == 8
    assert (base / "7" / "saved_model.pb").exists()
    assert (base / "8" / "saved_model.pb").exists()


def test_failed_preparation_publishes_nothing(tmp_path):
    model = _fake_saved_model(tmp_path / "model")
    base = tmp_path / "bvae"

    def prepare(_):
        raise RuntimeError("warm-up failed")

    with pytest.raises(RuntimeError, match="warm-up failed"):
        pusher_executor.publish_version(str(model), str(base), prepare=prepare)
    assert os.listdir(base) == []


def test_not_a_saved_model_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no saved_model\.pb"):
        pusher_executor.publish_version(str(tmp_path / "empty"), str(tmp_path / "bvae"))


def _run_executor(tmp_path: pathlib.Path, blessed: int):
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "trainer" / "model")
    _fake_saved_model(pathlib.Path(model.uri) / "Format-Serving")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", blessed)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    base = tmp_path / "serving" / "bvae"
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base))
    )
    pusher_executor.Executor().Do(
        {
            standard_component_specs.MODEL_KEY: [model],
            standard_component_specs.MODEL_BLESSING_KEY: [blessing],
        },
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {
            standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination),
            standard_component_specs.CUSTOM_CONFIG_KEY: json.dumps(
                {pusher_executor.MODEL_NAME_KEY: "bvae", pusher_executor.WARMUP_KEY: False}
            ),
        },
    )
    return pushed, base


def test_executor_pushes_a_blessed_model(tmp_path):
    pushed, base = _run_executor(tmp_path, blessed=1)
    assert pushed.get_int_custom_property("pushed") == 1
    version = pushed.get_string_custom_property("pushed_version")
    assert pushed.get_string_custom_property("pushed_destination") == str(base / version)
    assert (base / version / "saved_model.pb").read_bytes() == b"graph"


def test_executor_does_not_push_an_unblessed_model(tmp_path):
    pushed, base = _run_executor(tmp_path, blessed=0)
    assert pushed.get_int_custom_property("pushed") == 0
    assert not base.exists()


@pytest.mark.parametrize("name", ["", "a/b", ".."])
def test_component_rejects_bad_model_names(name):
    from tfx.types import channel

    with pytest.raises(ValueError, match="model_name"):
        VersionedPusher(
            model=channel.Channel(type=standard_artifacts.Model),
            model_blessing=channel.Channel(type=standard_artifacts.ModelBlessing),
            serving_model_dir="/srv",
            model_name=name,
        )
