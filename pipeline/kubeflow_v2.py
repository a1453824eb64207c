"""Compiling the pipeline for Kubeflow Pipelines v2 / Vertex AI Pipelines
(``compile_pipeline``; the command line is ``pipeline.kubeflow_v2_runner``).

**Portability.** The spec may only name locations the cluster can read. When a root
is remote (``gs://``, ``s3://``, ...) the compiler refuses, with an error naming the
config key, instead of writing a path of this machine into the JSON:

* ``--pipeline_root`` and ``--serving_model_dir`` must both be remote;
* ``data.input_base`` must be remote (the embedded synthetic log is generated on
  this machine: copy it to the bucket and point ``data.input_base`` at it);
* the curated schema: pass ``--schema_path`` with its location inside the image
  (the package ships ``pipeline/schema/*/schema.pbtxt``) or a remote URI, which is
  written as given; the config's ``schema_path`` (a file of this checkout) is
  refused; ``--set schema_path=null`` infers the schema with SchemaGen instead;
* ``batch_inference.users_file``, when the batch job is on, must be remote;
* ``beam_pipeline_args`` values that are absolute local paths are refused.

After compiling, the JSON is scanned once more for this checkout's, the output
root's and the working directory's absolute paths; finding one is an error.
"""

from __future__ import annotations

import json
import os
import pathlib

from tfx import v1 as tfx

from pipeline import configs
from pipeline import pipeline as pipeline_lib


def local_roots(config: configs.PipelineConfig) -> list[str]:
    """Directories of this machine that must never appear in a remote spec."""
    roots = {
        str(pathlib.Path(__file__).resolve().parents[1]),
        os.getcwd(),
        os.path.abspath(config.output_root),
    }
    return sorted((r.rstrip("/") + "/" for r in roots if r not in ("", "/")), key=len)


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names a location outside this machine (``scheme://...``,
    ``file://`` excluded)."""
    scheme, sep, _ = str(uri).partition("://")
    return bool(sep) and scheme.lower() != "file" and scheme.isidentifier()


def check_portable(
    config: configs.PipelineConfig,
    *,
    pipeline_root: str,
    serving_model_dir: str,
    schema_path: str | None,
    beam_pipeline_args,
) -> None:
    """Refuses a spec for a remote cluster that would name files of this machine.

    Does nothing when both roots are local (a spec for a cluster that mounts them).

    Raises:
      ValueError: naming the config key (or flag) of every local location.
    """
    roots = {"--pipeline_root": pipeline_root, "--serving_model_dir": serving_model_dir}
    if not any(is_remote(v) for v in roots.values()):
        return
    problems = [
        f"{flag} is a local path ({value!r}) but the other root is remote"
        for flag, value in roots.items()
        if not is_remote(value)
    ]
    input_base = config.example_gen_arguments()["input_base"]
    if not is_remote(input_base):
        what = "the synthetic log generated on this machine" if config.uses_synthetic_data else ""
        problems.append(
            f"data.input_base is a local path ({input_base!r}{', ' + what if what else ''}) "
            "but the pipeline runs on a cluster: copy the data to the bucket and set "
            "data.input_base to its remote URI"
        )
    if schema_path is None and config.schema_path is not None:
        problems.append(
            f"schema_path is a file of this machine ({configs.resolve_path(config.schema_path)!r}):"
            " pass --schema_path with its location inside the image (e.g. the installed "
            "package's pipeline/schema/...) or a remote URI, or set schema_path=null to "
            "infer the schema"
        )
    batch = config.batch_inference
    if batch.get("enabled") and batch.get("users_file") and not is_remote(batch["users_file"]):
        problems.append(
            f"batch_inference.users_file is a local path ({batch['users_file']!r}): copy it "
            "to the bucket and give its remote URI"
        )
    for arg in beam_pipeline_args or ():
        _, sep, value = str(arg).partition("=")
        if sep and value.startswith("/"):
            problems.append(f"beam_pipeline_args: {arg!r} names a local path; use a remote URI")
    if problems:  # all at once: each rerun costs the TFX start-up
        raise ValueError("; ".join(problems))


def local_paths_in(
    spec: object, roots: list[str], allowed: frozenset[str] = frozenset(), where: str = ""
) -> list[str]:
    """``/json/path: value`` of every string in the decoded JSON ``spec`` that
    contains one of the ``roots`` (folders ending in ``/``); strings in ``allowed``
    (the locations the user declared) excepted."""
    if isinstance(spec, dict):
        items = spec.items()
    elif isinstance(spec, list):
        items = enumerate(spec)
    else:
        items = ()
    found = [p for k, v in items for p in local_paths_in(v, roots, allowed, f"{where}/{k}")]
    if (
        isinstance(spec, str)
        and spec not in allowed
        and any(r in spec or spec == r.rstrip("/") for r in roots)
    ):
        found.append(f"{where}: {spec[:200]!r}")
    return found


def check_compiled_spec(path: str, config: configs.PipelineConfig, schema_path: str | None) -> None:
    """Removes the compiled spec at ``path`` and raises if it names this checkout,
    the working directory or the output root (the declared ``schema_path`` excepted).

    Raises:
      ValueError: quoting the first places in the spec that name a local location.
    """
    with open(path) as f:
        allowed = frozenset(() if schema_path is None else (schema_path,))
        local = local_paths_in(json.load(f), local_roots(config), allowed)
    if local:
        os.remove(path)
        raise ValueError(
            "the compiled spec names locations of this machine, which the cluster "
            f"cannot read: {'; '.join(local[:5])}"
        )


def compile_pipeline(
    config: configs.PipelineConfig,
    *,
    pipeline_root: str,
    serving_model_dir: str,
    image: str,
    output: str,
    schema_path: str | None = None,
    beam_pipeline_args=None,
    vertex_training: dict | None = None,
) -> str:
    """Writes the Kubeflow V2 pipeline JSON of ``config``.

    Args:
      config: the pipeline configuration.
      pipeline_root: artifact root seen by the cluster (e.g. ``gs://...``).
      serving_model_dir: model base path of the model servers (e.g. ``gs://...``).
      image: container image of every component.
      output: path of the JSON file to write.
      schema_path: the curated schema's path inside the image (default: the
        config's; ``None`` in the config infers one with SchemaGen).
      beam_pipeline_args: Beam options (default: the config's).
      vertex_training: ``project``, ``region``, ``workers``, ``machine_type``: the
        Trainer runs as a Vertex AI custom job of ``workers`` replicas of ``image``
        (``pipeline.pipeline.vertex_trainer_config``); ``None``: in the pipeline's
        own container.

    Returns:
      ``output``.

    Raises:
      ValueError: when a root is remote and the spec would name a location of this
        machine (module docstring, "Portability"); the message names the config key.
        Also when ``drift.enabled``: its baseline resolver (the latest statistics a
        validator accepted) is a custom strategy, and the Kubeflow V2 compiler only
        compiles TFX's LatestArtifactStrategy and LatestBlessedModelStrategy.
    """
    if config.drift_config() is not None:
        raise ValueError(
            "drift.enabled: the Kubeflow V2 compiler supports only TFX's "
            "LatestArtifactStrategy and LatestBlessedModelStrategy resolvers, and the drift "
            "check's baseline resolver is a custom one (a drifted span must not become its "
            "own baseline on a re-run); set drift.enabled=false for Kubeflow V2 runs"
        )
    beam_pipeline_args = (
        config.beam_pipeline_args if beam_pipeline_args is None else beam_pipeline_args
    )
    check_portable(
        config,
        pipeline_root=pipeline_root,
        serving_model_dir=serving_model_dir,
        schema_path=schema_path,
        beam_pipeline_args=beam_pipeline_args,
    )
    arguments = pipeline_lib.pipeline_arguments(config)
    if schema_path is not None:
        arguments["schema_path"] = schema_path
    pipeline = pipeline_lib.create_pipeline(
        **arguments,
        pipeline_root=pipeline_root,
        serving_model_dir=serving_model_dir,
        beam_pipeline_args=beam_pipeline_args,
        vertex_training=None if vertex_training is None else {**vertex_training, "image": image},
    )
    output_dir, filename = os.path.split(os.path.abspath(output))
    os.makedirs(output_dir, exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=output_dir,
        output_filename=filename,
    )
    runner.run(pipeline, write_out=True)
    path = os.path.join(output_dir, filename)
    if is_remote(pipeline_root):
        check_compiled_spec(path, config, schema_path)
    return path
