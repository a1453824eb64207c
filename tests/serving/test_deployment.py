"""The TF Serving deployment files parse and agree with each other and the project."""

from __future__ import annotations

import pathlib

import pytest
import yaml
from google.protobuf import (
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    text_format,
    wrappers_pb2,  # noqa: F401  -- registers Int64Value in the pool
)
from tensorflow_serving.config import model_server_config_pb2

from tests.serving.conftest import MODEL_NAME

pytestmark = pytest.mark.unit

SERVING = pathlib.Path(__file__).resolve().parents[2] / "serving"
GRPC_PORT, REST_PORT = 8500, 8501


def _batching_parameters_class():
    """``tensorflow.serving.BatchingParameters`` (session_bundle_config.proto), reduced to
    the fields the config uses; the proto is not shipped with tensorflow-serving-api."""
    file = descriptor_pb2.FileDescriptorProto(
        name="bvae_test_batching_parameters.proto",
        package="bvae_test",
        dependency=["google/protobuf/wrappers.proto"],
        syntax="proto3",
    )
    message = file.message_type.add(name="BatchingParameters")
    for number, name in enumerate(
        ["max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"],
        start=1,
    ):
        message.field.add(
            name=name,
            number=number,
            type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
            type_name=".google.protobuf.Int64Value",
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
        )
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(file.name)
    except KeyError:
        pool.Add(file)
    return message_factory.MessageFactory(pool).GetPrototype(
        pool.FindMessageTypeByName("bvae_test.BatchingParameters")
    )


def _model_server_config(text: str) -> model_server_config_pb2.ModelServerConfig:
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_models_config_serves_the_latest_bvae_version():
    config = _model_server_config((SERVING / "models.config").read_text())
    (model,) = config.model_config_list.config
    assert model.name == MODEL_NAME
    assert model.base_path == f"/models/{MODEL_NAME}"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 1


def test_batching_parameters_parse():
    params = text_format.Parse(
        (SERVING / "batching_parameters.config").read_text(), _batching_parameters_class()()
    )
    assert params.max_batch_size.value >= 1
    assert params.num_batch_threads.value >= 1
    assert params.batch_timeout_micros.value >= 0


def _args_value(args, flag):
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{flag}=")]
    assert len(values) == 1, f"--{flag} given {len(values)} times in {args}"
    return values[0]


def test_docker_compose_runs_tf_serving_on_loopback():
    compose = yaml.safe_load((SERVING / "docker-compose.yaml").read_text())
    (service,) = compose["services"].values()
    assert service["image"].startswith("tensorflow/serving:")
    assert set(service["ports"]) == {
        f"127.0.0.1:{GRPC_PORT}:{GRPC_PORT}",
        f"127.0.0.1:{REST_PORT}:{REST_PORT}",
    }
    mounts = {
        target: source for source, target, _ in (v.rsplit(":", 2) for v in service["volumes"])
    }
    assert "/models" in mounts
    for flag in ("model_config_file", "batching_parameters_file"):
        path = _args_value(service["command"], flag)
        assert (SERVING / mounts[path]).is_file(), path
    assert _args_value(service["command"], "enable_batching") == "true"


def test_kubernetes_manifest_matches_the_config_files():
    documents = list(yaml.safe_load_all((SERVING / "kubernetes.yaml").read_text()))
    by_kind = {d["kind"]: d for d in documents}
    assert set(by_kind) == {"ConfigMap", "Deployment", "Service"}

    data = by_kind["ConfigMap"]["data"]
    assert _model_server_config(data["models.config"]) == _model_server_config(
        (SERVING / "models.config").read_text()
    )
    batching = _batching_parameters_class()
    assert text_format.Parse(data["batching_parameters.config"], batching()) == text_format.Parse(
        (SERVING / "batching_parameters.config").read_text(), batching()
    )

    pod = by_kind["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].startswith("tensorflow/serving:")
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "grpc": GRPC_PORT,
        "http": REST_PORT,
    }
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_dir = "/config"
    assert (
        volumes[mounts[config_dir]]["configMap"]["name"] == by_kind["ConfigMap"]["metadata"]["name"]
    )
    for flag, key in (
        ("model_config_file", "models.config"),
        ("batching_parameters_file", "batching_parameters.config"),
    ):
        assert _args_value(container["args"], flag) == f"{config_dir}/{key}"
    assert "persistentVolumeClaim" in volumes[mounts["/models"]]
    assert container["readinessProbe"]["httpGet"]["path"] == f"/v1/models/{MODEL_NAME}/metadata"

    service = by_kind["Service"]["spec"]
    assert {p["name"]: p["port"] for p in service["ports"]} == {
        "grpc": GRPC_PORT,
        "http": REST_PORT,
    }
    assert service["selector"] == by_kind["Deployment"]["spec"]["selector"]["matchLabels"]
