"""Compiles the pipeline for Vertex AI Pipelines / Kubeflow Pipelines v2 (a JSON file).

::

    python -m pipeline.kubeflow_v2_runner --config FILE \\
        --pipeline_root gs://BUCKET/pipelines --serving_model_dir gs://BUCKET/serving \\
        --image REGISTRY/bvae-tfx:TAG --output out/kubeflow/bvae.json \\
        [--schema_path /path/in/image/schema.pbtxt] \
        [--vertex_project P --vertex_region R --workers 4 --machine_type n1-standard-8] \
        [-- BEAM_ARGS ...]

The image must hold this project installed (``pip install .``) on the TFX 1.16 base
image, so the dotted entry points (``bvae_tf.trainer.run_fn``,
``bvae_tf.preprocessing.preprocessing_fn``) and the custom components import there.
Submit the JSON with the Vertex AI SDK (``aiplatform.PipelineJob(template_path=...)``)
or the KFP client. Nothing here contacts a cluster.

With ``--vertex_project``/``--vertex_region`` the Trainer is TFX's Vertex AI Trainer:
``run_fn`` runs as one Vertex AI custom job of ``--workers`` replicas of the image
(worker pool 0: the chief; pool 1: the others). Vertex AI sets ``TF_CONFIG`` on each,
so with ``--workers`` > 1 the Trainer trains with ``MultiWorkerMirroredStrategy`` and
only the chief writes the model (``tests/bvae_tf/test_multi_worker.py`` runs two such
workers on loopback).

The compilation and its portability rules (a spec for a remote cluster names only
locations the cluster can read): ``pipeline.kubeflow_v2``.
"""

import argparse
import os
import re
import sys

if __package__ in (None, ""):  # run as a script (the TFX CLI): pipeline/ is on sys.path
    import bootstrap  # noqa: F401
import bvae_tf

if __name__ == "__main__":  # the CLI: quiet TensorFlow and Google-library start-up
    bvae_tf.quiet_cli()


from pipeline import runtime

#: Kubeflow Pipelines' and Vertex AI's rule for a pipeline name (TFX checks it only
#: after its start-up).
KUBEFLOW_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
#: ``training.distribution_strategy`` values that train on several Vertex AI replicas.
MULTI_WORKER = ("auto", "multi_worker_mirrored")


def check_for_kubeflow(config, pipeline_root: str, serving_model_dir: str, vertex_training) -> None:
    """What the Kubeflow V2 compiler or the cluster would refuse later, checked before
    TFX loads: the pipeline name's pattern, roots that are neither URIs nor absolute
    paths (a cluster has no working directory of ours; ``gs:/b`` is a typo), and
    several Vertex AI workers with a strategy that trains on one.

    Raises:
      ValueError: naming the key or flag.
    """
    if not KUBEFLOW_NAME.fullmatch(config.pipeline_name):
        raise ValueError(
            f"pipeline_name {config.pipeline_name!r}: Kubeflow and Vertex AI take lower-case "
            "letters, digits and '-' (pattern [a-z0-9][a-z0-9-]{0,127}); "
            "set --set pipeline_name=..."
        )
    for flag, value in (
        ("--pipeline_root", pipeline_root),
        ("--serving_model_dir", serving_model_dir),
    ):
        if "://" not in value and not os.path.isabs(value):
            raise ValueError(
                f"{flag} {value!r} is neither a URI (e.g. gs://BUCKET/...) nor an absolute "
                "path the cluster mounts"
            )
    strategy = config.training.get("distribution_strategy", "auto")
    if vertex_training and vertex_training["workers"] > 1 and strategy not in MULTI_WORKER:
        raise ValueError(
            f"--workers {vertex_training['workers']} trains on several replicas, but "
            f"training.distribution_strategy is {strategy!r}; set it to 'auto' or "
            "'multi_worker_mirrored'"
        )


def main(argv=None) -> None:
    argv, beam_args = runtime.split_beam_args(sys.argv[1:] if argv is None else argv)
    parser: argparse.ArgumentParser = runtime.argument_parser(
        __doc__.split("\n\n")[0], prog="python -m pipeline.kubeflow_v2_runner"
    )
    parser.add_argument("--pipeline_root", required=True, help="artifact root (gs://...)")
    parser.add_argument("--serving_model_dir", required=True, help="model base path (gs://...)")
    parser.add_argument("--image", required=True, help="container image with the project")
    parser.add_argument("--output", default="out/kubeflow/pipeline.json", help="JSON to write")
    parser.add_argument("--schema_path", default=None, help="curated schema path in the image")
    vertex = parser.add_argument_group(
        "Vertex AI training", "run the Trainer as a Vertex AI custom job (several workers)"
    )
    vertex.add_argument("--vertex_project", default=None, help="Google Cloud project")
    vertex.add_argument("--vertex_region", default=None, help="e.g. us-central1")
    vertex.add_argument(
        "--workers", type=int, default=1, help="replicas (MultiWorkerMirroredStrategy when > 1)"
    )
    vertex.add_argument(
        "--machine_type", default=None, help="each replica's machine (default n1-standard-8)"
    )
    args = parser.parse_args(argv)
    vertex_training = None
    if args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    for flag in ("image", "pipeline_root", "serving_model_dir"):
        if not getattr(args, flag).strip():
            parser.error(f"--{flag} must not be empty")
    if args.schema_path is not None and not args.schema_path.strip():
        parser.error(
            "--schema_path must not be empty (leave it out for the config's schema_path, "
            "or --set schema_path=null to infer the schema)"
        )
    given = [
        flag
        for flag, value in (
            ("--vertex_project", args.vertex_project),
            ("--vertex_region", args.vertex_region),
            ("--workers", args.workers != 1),
            ("--machine_type", args.machine_type),
        )
        if value
    ]
    if given:
        if not (args.vertex_project and args.vertex_region):
            parser.error(
                f"{' and '.join(given)} {'configures' if len(given) == 1 else 'configure'} "
                "Vertex AI training, which needs both "
                "--vertex_project and --vertex_region"
            )
        vertex_training = {
            "project": args.vertex_project,
            "region": args.vertex_region,
            "workers": args.workers,
            "machine_type": args.machine_type or "n1-standard-8",
        }
    config = runtime.load(args)
    runtime.check_beam_options(beam_args or (), "the Beam options after --")
    check_for_kubeflow(config, args.pipeline_root, args.serving_model_dir, vertex_training)
    from pipeline import kubeflow_v2  # TFX: loaded once the flags and config are good

    path = kubeflow_v2.compile_pipeline(
        runtime.start(args, "kubeflow_v2_runner", config),
        pipeline_root=args.pipeline_root,
        serving_model_dir=args.serving_model_dir,
        image=args.image,
        output=args.output,
        schema_path=args.schema_path,
        beam_pipeline_args=beam_args,
        vertex_training=vertex_training,
    )
    print(f"Kubeflow V2 pipeline written to {path}")


if __name__ == "__main__":
    sys.exit(runtime.main_guard(main))
