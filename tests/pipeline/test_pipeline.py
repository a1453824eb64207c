"""Tests for the pipeline definition, its configuration and the Kubeflow V2 compile."""

import json
import logging
import pathlib

import pytest

import bvae_tf  # noqa: F401
from pipeline import configs, kubeflow_v2, local_runner, runtime
from pipeline import pipeline as pipeline_lib

pytestmark = pytest.mark.unit

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_defaults_run_on_the_synthetic_log_with_the_curated_schema(tmp_path):
    config = configs.load_config(overrides=[f"output_root={tmp_path}"])
    assert config.uses_synthetic_data
    assert config.behaviors == ("purchase", "click", "favorite", "cart")
    assert config.schema_path == configs.DEFAULT_SCHEMA
    gate = config.gate_config()
    assert gate.bounds_for("cart") == {"ndcg@5": 0.1}
    assert gate.regression_metrics == ("ndcg@5",)
    assert gate.regression_tolerance == 0.01
    assert config.resolved_pipeline_root == str(tmp_path / "pipelines" / "bvae")
    assert config.resolved_metadata_path == str(tmp_path / "metadata" / "bvae" / "metadata.db")
    assert config.resolved_serving_model_dir == str(tmp_path / "serving")
    path = config.example_gen_arguments()["input_base"]
    assert path.startswith(str(tmp_path / "data" / "synthetic_events-"))


def test_jd_preset_loads_with_its_schema_and_cut_points():
    config = configs.load_config(str(configs.CONFIG_DIR / "jd.json"))
    assert config.behaviors == ("purchase", "click", "favorite")
    data = config.example_gen_config()
    assert data.split_method == "cut_timestamps"
    assert data.split_boundaries == (1522454400, 1523145600)
    assert config.example_gen_arguments()["input_base"].endswith(
        "shared/data/bvae/JD_events.csv.gz"
    )


def test_file_then_overrides_merge_into_sections(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"training": {"epochs": 3}, "top_k": 5}))
    config = configs.load_config(
        str(path), ["training.patience=2", 'evaluation.lower_bounds={"*": {"ndcg@5": 0.2}}']
    )
    assert config.training == {"epochs": 3, "patience": 2}
    assert config.top_k == 5
    assert config.gate_config().bounds_for("click") == {"ndcg@5": 0.2}
    assert config.trainer_custom_config()["top_k"] == 5
    assert config.transform_custom_config()["behaviors"] == list(config.behaviors)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["nonsense=1"], "unknown pipeline config keys"),
        (["top_k=0"], "top_k"),
        (["pipeline_name=a b"], "pipeline_name"),
        (["data.split_method=random"], "split_method"),
        # A plain string, as a config file gives it, is named as what it is not.
        (['data.behaviors="purchase"'], "behaviors must be a list of names, got 'purchase'"),
        (["evaluation.regression_tolerance=-1"], "regression_tolerance"),
        (["training"], "section.key=value"),
        (["training.epochs=0"], "training.epochs"),
        (["model.latent_dim=0"], "latent_dim"),
        (["model.latent_dim=8", "model.latent_dims=[8, 4]"], "latent_dims must be one int"),
        (
            [
                *("tuning.enabled=true", "tuning.space.latent_dim=[4, 8]"),
                *("model.latent_dim=8", "model.latent_dims=[8, 4, 8, 2]"),
            ],
            r"latent_dim \[4\] is below the largest per-behavior latent size",
        ),
        (["model.hidden=3"], "unknown model settings"),
        (["model.num_items=5"], "model.num_items"),
        (["synthetic.num_users=0"], "num_users"),
        (["tuning.algorithm=hyperband"], "tuning.algorithm"),
        (["tuning.space.hidden=[1]"], "unknown tuning.space names"),
        (['tuning.space.learning_rate="fast"'], "tuning.space.learning_rate"),
        (["tuning.enabled=true", "model.variant=ease"], "no training to tune"),
        # Trainer-only settings of BVAE: refused at load, not after Transform.
        (["model.variant=ease", "training.boost_grid=[0.5, 1]"], "training.boost_grid chooses"),
        (['model.variant="vae_pp"', "training.warm_start=true"], "set training.warm_start=false"),
        (
            ["tuning.enabled=true", 'model.variant="recvae"'],
            "'recvae' does not read beta_cap, anneal_epochs; drop them with",
        ),
        # A key the model never reads is refused even at its default value.
        (['model.variant="ease"', "model.latent_dim=100"], "'ease' does not read model.latent_dim"),
        (
            ['model.variant="popularity"', "model.seed=0", "training.epochs=200"],
            "'popularity' does not read model.seed: remove it",
        ),
        (
            ["model.item_path_scale=1"],
            r"model.item_path_scale \(it tunes model.item_path, which is off\)",
        ),
        (["batch_inference.enable=true"], r"batch_inference: unknown key\(s\) \['enable'\]"),
        (["batch_inference.enabled=1"], "batch_inference.enabled must be a bool"),
        (["training.warm_start=1"], "training.warm_start must be a bool"),
        (['drift.action="stop"'], "drift.action must be one of"),
        (["drift.thresholds=1"], r"drift: unknown key\(s\)"),
        (
            ["batch_inference.enabled=true", 'batch_inference.formats=["parquet"]'],
            "batch_inference.formats",
        ),
        (
            ["batch_inference.enabled=true", "batch_inference.batch_size=0"],
            "batch_inference.batch_size",
        ),
        (['batch_inference.splits=["serving"]'], "batch_inference.splits"),
        (['batch_inference.users_file="no/such/users.txt"'], "is not a file"),
        (['output_root="pyproject.toml/out"'], r"is \(or is below\) a file, not a folder"),
    ],
)
def test_bad_values_fail_at_load_time_naming_the_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        configs.load_config(overrides=overrides)


def test_a_closed_form_variant_ignores_the_training_loop_of_a_bvae_config_and_says_so(caplog):
    # example.json (written for BVAE) sets training.epochs and patience; one line
    # switches it to EASE.
    example = str(configs.CONFIG_DIR / "example.json")
    with caplog.at_level(logging.WARNING):
        config = configs.load_config(example, ["model.variant=ease", "model.ease_l2=200"])
    assert config.model["variant"] == "ease"
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == [
        "model.variant 'ease' is fitted in closed form, without a training loop: "
        "training.epochs, training.patience ignored"
    ]


def test_recvae_is_tuned_over_what_it_reads():
    space = '{"beta_cap": null, "anneal_epochs": null}'
    config = configs.load_config(
        overrides=["tuning.enabled=true", 'model.variant="recvae"', f"tuning.space={space}"]
    )
    assert config.tuning_enabled


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot read pipeline config"):
        configs.load_config(str(tmp_path / "nope.json"))


def test_schema_can_be_inferred_for_other_behaviors(tmp_path):
    config = configs.load_config(
        overrides=[
            'data.behaviors=["purchase", "click"]',
            "schema_path=null",
            f"output_root={tmp_path}",
        ]
    )
    pipeline = local_runner.build(config)
    schema_gen = next(c for c in pipeline.components if c.id == pipeline_lib.SCHEMA_GEN)
    assert type(schema_gen).__name__ == "SchemaGen"


def test_pipeline_has_every_component_wired(tmp_path):
    config = configs.load_config(overrides=[f"output_root={tmp_path}"])
    pipeline = local_runner.build(config)
    assert sorted(c.id for c in pipeline.components) == sorted(pipeline_lib.NODE_IDS)
    by_id = {c.id: c for c in pipeline.components}
    assert type(by_id[pipeline_lib.SCHEMA_GEN]).__name__ == "ImportSchemaGen"
    # Anomalies stop the run before Transform.
    assert by_id[pipeline_lib.EXAMPLE_VALIDATOR] in by_id[pipeline_lib.TRANSFORM].upstream_nodes
    evaluator = by_id[pipeline_lib.EVALUATOR]
    assert by_id[pipeline_lib.BASELINE_RESOLVER] in evaluator.upstream_nodes
    assert by_id[pipeline_lib.EVALUATOR] in by_id[pipeline_lib.PUSHER].upstream_nodes
    trainer = by_id[pipeline_lib.TRAINER]
    custom = json.loads(trainer.exec_properties["custom_config"])
    assert custom["behaviors"] == list(config.behaviors)
    assert trainer.exec_properties["run_fn"] == configs.RUN_FN


def test_the_run_summary_lists_components_in_the_order_they_feed_each_other():
    """The baseline resolver feeds the Trainer (training.warm_start) and the
    Evaluator: the summary lists it before both, the Tuner between Transform and it."""
    from pipeline import report

    order = [n for n in report._ORDER if n != pipeline_lib.PREVIOUS_STATISTICS_RESOLVER]
    assert order[: order.index(pipeline_lib.TRAINER) + 1] == [
        *pipeline_lib.NODE_IDS[: pipeline_lib.NODE_IDS.index(pipeline_lib.TRANSFORM) + 1],
        pipeline_lib.TUNER,
        pipeline_lib.BASELINE_RESOLVER,
        pipeline_lib.TRAINER,
    ]
    assert set(pipeline_lib.NODE_IDS) <= set(order)
    assert order.index(pipeline_lib.TRAINER) < order.index(pipeline_lib.EVALUATOR)


def test_tuning_puts_the_tuner_before_the_trainer(tmp_path):
    config = configs.load_config(
        overrides=[f"output_root={tmp_path}", "tuning.enabled=true", "tuning.max_trials=3"]
    )
    by_id = {c.id: c for c in local_runner.build(config).components}
    assert set(by_id) == {*pipeline_lib.NODE_IDS, pipeline_lib.TUNER}
    tuner, trainer = by_id[pipeline_lib.TUNER], by_id[pipeline_lib.TRAINER]
    assert tuner.exec_properties["tuner_fn"] == configs.TUNER_FN
    assert trainer.inputs["hyperparameters"] is tuner.outputs["best_hyperparameters"]
    assert tuner in trainer.upstream_nodes
    custom = json.loads(tuner.exec_properties["custom_config"])
    assert custom["tuning"]["max_trials"] == 3
    # Off (the default): no Tuner, and the Trainer takes no hyperparameters.
    plain = {
        c.id: c
        for c in local_runner.build(
            configs.load_config(overrides=[f"output_root={tmp_path}"])
        ).components
    }
    assert pipeline_lib.TUNER not in plain
    assert "tuning" not in json.loads(plain[pipeline_lib.TRAINER].exec_properties["custom_config"])


def test_batch_inference_adds_the_batch_recommender_after_the_gate(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("u1\n")
    config = configs.load_config(
        overrides=[
            f"output_root={tmp_path}",
            "batch_inference.enabled=true",
            f"batch_inference.users_file={json.dumps(str(users))}",
            'batch_inference.formats=["csv"]',
        ]
    )
    by_id = {c.id: c for c in local_runner.build(config).components}
    assert set(by_id) == {*pipeline_lib.NODE_IDS, pipeline_lib.BATCH_RECOMMENDER}
    batch = by_id[pipeline_lib.BATCH_RECOMMENDER]
    assert batch.inputs["model_blessing"] is by_id[pipeline_lib.EVALUATOR].outputs["blessing"]
    assert batch.inputs["model"] is by_id[pipeline_lib.TRAINER].outputs["model"]
    assert batch.exec_properties["users_file"] == str(users)
    assert json.loads(batch.exec_properties["formats"]) == ["csv"]
    # Off (the default): no BatchRecommender.
    plain = local_runner.build(configs.load_config(overrides=[f"output_root={tmp_path}"]))
    assert pipeline_lib.BATCH_RECOMMENDER not in {c.id for c in plain.components}


def test_warm_start_feeds_the_latest_blessed_model_to_the_trainer(tmp_path):
    config = configs.load_config(overrides=[f"output_root={tmp_path}", "training.warm_start=true"])
    by_id = {c.id: c for c in local_runner.build(config).components}
    trainer = by_id[pipeline_lib.TRAINER]
    assert trainer.inputs["base_model"] is by_id[pipeline_lib.BASELINE_RESOLVER].outputs["model"]
    plain = local_runner.build(configs.load_config(overrides=[f"output_root={tmp_path}"]))
    assert "base_model" not in {c.id: c for c in plain.components}[pipeline_lib.TRAINER].inputs


def test_drift_resolves_the_previous_statistics_before_statistics_gen(tmp_path):
    config = configs.load_config(
        overrides=[f"output_root={tmp_path}", "drift.enabled=true", "drift.behavior_mix=0.2"]
    )
    by_id = {c.id: c for c in local_runner.build(config).components}
    assert set(by_id) == {*pipeline_lib.NODE_IDS, pipeline_lib.PREVIOUS_STATISTICS_RESOLVER}
    resolver = by_id[pipeline_lib.PREVIOUS_STATISTICS_RESOLVER]
    validator = by_id[pipeline_lib.EXAMPLE_VALIDATOR]
    assert validator.inputs["baseline_statistics"] is resolver.outputs["statistics"]
    # Resolved before this run's statistics exist: the latest earlier span's.
    assert resolver in by_id[pipeline_lib.STATISTICS_GEN].upstream_nodes
    drift_config = json.loads(validator.exec_properties["drift_config"])
    assert drift_config["enabled"] and drift_config["behavior_mix"] == 0.2
    assert json.loads(validator.exec_properties["behaviors"]) == list(config.behaviors)
    plain = local_runner.build(configs.load_config(overrides=[f"output_root={tmp_path}"]))
    validator = {c.id: c for c in plain.components}[pipeline_lib.EXAMPLE_VALIDATOR]
    assert "baseline_statistics" not in validator.inputs


def test_synthetic_input_is_generated_once(tmp_path):
    config = configs.load_config(
        overrides=[f"output_root={tmp_path}", 'synthetic={"num_users": 30, "num_items": 20}']
    )
    path = pathlib.Path(runtime.ensure_input(config))
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    assert runtime.ensure_input(config) == str(path)
    assert path.stat().st_mtime_ns == stamp


def _compile_remote(config, tmp_path, schema_path):
    """The decoded Kubeflow V2 JSON of ``config`` with gs:// roots."""
    path = kubeflow_v2.compile_pipeline(
        config,
        pipeline_root="gs://bucket/root",
        serving_model_dir="gs://bucket/serving",
        image="registry.example/bvae-tfx:1",
        output=str(tmp_path / "bvae.json"),
        schema_path=schema_path,
    )
    return json.loads(pathlib.Path(path).read_text())


def test_kubeflow_v2_pipeline_compiles_to_json(tmp_path):
    config = configs.load_config(overrides=["data.input_base=gs://bucket/events.csv.gz"])
    spec = _compile_remote(config, tmp_path, "/app/pipeline/schema/default/schema.pbtxt")
    pipeline_spec = spec.get("pipelineSpec", spec)
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    for node_id in pipeline_lib.NODE_IDS:
        if node_id == pipeline_lib.BASELINE_RESOLVER:
            # Compiled into one metadata query per resolved channel.
            assert f"{node_id}-model-resolver" in tasks
            assert f"{node_id}-model-blessing-resolver" in tasks
        else:
            assert node_id in tasks, node_id
    evaluator_inputs = tasks[pipeline_lib.EVALUATOR]["inputs"]["artifacts"]
    assert evaluator_inputs["baseline_model"]["taskOutputArtifact"]["producerTask"] == (
        f"{pipeline_lib.BASELINE_RESOLVER}-model-resolver"
    )
    executors = json.dumps(pipeline_spec["deploymentSpec"]["executors"])
    assert "registry.example/bvae-tfx:1" in executors
    # The stock Evaluator, with the ranking metric by module name (in the image).
    assert "tfx.components.evaluator.executor.Executor" in executors
    assert "components.tfma_ranking.metric" in json.dumps(spec)
    assert "components.versioned_pusher.executor.Executor" in executors
    assert "gs://bucket/root" in json.dumps(spec)
    assert "/app/pipeline/schema/default/schema.pbtxt" in json.dumps(spec)


def _strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def test_kubeflow_v2_compiles_batch_output_and_warm_start_and_refuses_drift(tmp_path):
    remote = "data.input_base=gs://bucket/events.csv.gz"
    schema = "/app/pipeline/schema/default/schema.pbtxt"
    config = configs.load_config(
        overrides=[remote, "batch_inference.enabled=true", "training.warm_start=true"]
    )
    spec = _compile_remote(config, tmp_path, schema)
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    assert pipeline_lib.BATCH_RECOMMENDER in tasks
    assert "base_model" in tasks[pipeline_lib.TRAINER]["inputs"]["artifacts"]
    drift = configs.load_config(overrides=[remote, "drift.enabled=true"])
    with pytest.raises(ValueError, match=r"set drift\.enabled=false for Kubeflow V2 runs"):
        _compile_remote(drift, tmp_path, schema)


def test_kubeflow_v2_spec_with_remote_roots_names_no_local_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = configs.load_config(
        overrides=["data.input_base=gs://bucket/events.csv.gz", f"output_root={tmp_path}/out"]
    )
    spec = _compile_remote(config, tmp_path, "gs://bucket/schema/schema.pbtxt")
    strings = list(_strings(spec))
    assert "gs://bucket/schema/schema.pbtxt" in json.dumps(spec)
    for local in (str(REPO), str(tmp_path)):
        assert not [v for v in strings if local in v]
    # Nothing that looks like an absolute path of any machine either.
    assert not [v for v in strings if v.startswith("/") or '"/' in v or "'/" in v]


def test_kubeflow_v2_trainer_on_vertex_with_several_workers(tmp_path):
    """--workers 3: the Trainer is TFX's Vertex AI Trainer with a chief pool of 1 and a
    worker pool of 2 replicas of the image; its custom_config still holds run_fn's."""
    config = configs.load_config(overrides=["data.input_base=gs://bucket/events.csv.gz"])
    path = kubeflow_v2.compile_pipeline(
        config,
        pipeline_root="gs://bucket/root",
        serving_model_dir="gs://bucket/serving",
        image="registry.example/bvae-tfx:1",
        output=str(tmp_path / "vertex.json"),
        schema_path="/app/pipeline/schema/default/schema.pbtxt",
        vertex_training={"project": "p", "region": "us-central1", "workers": 3},
    )
    spec = json.loads(pathlib.Path(path).read_text())["pipelineSpec"]
    executors = json.dumps(spec["deploymentSpec"]["executors"])
    assert "google_cloud_ai_platform.trainer.executor.GenericExecutor" in executors
    parameters = spec["root"]["dag"]["tasks"][pipeline_lib.TRAINER]["inputs"]["parameters"]
    custom = json.loads(parameters["custom_config"]["runtimeValue"]["constantValue"]["stringValue"])
    assert custom["ai_platform_enable_vertex"] is True
    assert custom["ai_platform_vertex_region"] == "us-central1"
    pools = custom["ai_platform_training_args"]["job_spec"]["worker_pool_specs"]
    assert [p["replica_count"] for p in pools] == [1, 2]
    assert {p["container_spec"]["image_uri"] for p in pools} == {"registry.example/bvae-tfx:1"}
    assert custom["behaviors"] == list(config.behaviors)
    for bad in ({"workers": 0}, {"workers": 2.5}, {"workers": True}, {"machine_type": " "}):
        with pytest.raises(ValueError, match="vertex training"):
            pipeline_lib.vertex_trainer_config(project="p", region="r", image="i", **bad)


def test_local_path_scan_finds_nested_strings():
    spec = {"a": [{"b": "x"}, {"c": "--flag=/home/me/repo/schema.pbtxt"}], "d": "/home/me/repo"}
    found = kubeflow_v2.local_paths_in(spec, ["/home/me/repo/"])
    assert found == ["/a/1/c: '--flag=/home/me/repo/schema.pbtxt'", "/d: '/home/me/repo'"]
    allowed = frozenset({"--flag=/home/me/repo/schema.pbtxt"})
    assert kubeflow_v2.local_paths_in(spec, ["/home/me/repo/"], allowed) == ["/d: '/home/me/repo'"]


@pytest.mark.parametrize(
    ("overrides", "arguments", "message"),
    [
        ([], {}, r"data.input_base is a local path .*synthetic log"),
        # Every local location at once, not one per (slow) rerun.
        (
            ["data.input_base=/data/events.csv"],
            {},
            r"data.input_base is a local path .*; schema_path is a file of this machine",
        ),
        (["data.input_base=/data/events.csv"], {}, r"data.input_base is a local path"),
        (["data.input_base=gs://b/e.csv"], {}, r"schema_path is a file of this machine"),
        (
            ["data.input_base=gs://b/e.csv"],
            {"schema_path": "gs://b/s.pbtxt", "beam_pipeline_args": ["--temp_location=/tmp/x"]},
            r"beam_pipeline_args: '--temp_location=/tmp/x'",
        ),
        (
            ["data.input_base=gs://b/e.csv"],
            {"schema_path": "gs://b/s.pbtxt", "serving_model_dir": "/srv/models"},
            r"--serving_model_dir is a local path",
        ),
        (
            [
                "data.input_base=gs://b/e.csv",
                "batch_inference.enabled=true",
                # (a file of this machine: the config checks that it exists)
                f"batch_inference.users_file={__file__}",
            ],
            {"schema_path": "gs://b/s.pbtxt"},
            r"batch_inference.users_file is a local path \('/.*test_pipeline.py'\)",
        ),
    ],
)
def test_kubeflow_v2_refuses_local_locations_with_remote_roots(
    tmp_path, overrides, arguments, message
):
    config = configs.load_config(overrides=[f"output_root={tmp_path}", *overrides])
    kwargs = {
        "pipeline_root": "gs://bucket/root",
        "serving_model_dir": "gs://bucket/serving",
        "image": "img:1",
        "output": str(tmp_path / "bvae.json"),
        **arguments,
    }
    with pytest.raises(ValueError, match=message):
        kubeflow_v2.compile_pipeline(config, **kwargs)
    assert not (tmp_path / "bvae.json").exists()


def test_beam_runner_takes_beam_options_after_the_separator(tmp_path):
    from pipeline import beam_runner

    config = configs.load_config(overrides=[f"output_root={tmp_path}"])
    args = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    pipeline = beam_runner.build(config, args)
    assert pipeline.beam_pipeline_args == args
    assert beam_runner.build(config).beam_pipeline_args == list(config.beam_pipeline_args)


def test_main_guard_prints_data_errors_without_a_traceback(capsys):
    from components.strict_example_validator.component import DataDriftError
    from pipeline import runtime

    def drifted():
        raise DataDriftError("the train split drifted")

    def broken():
        raise RuntimeError("a bug")

    assert runtime.main_guard(drifted) == 1
    assert capsys.readouterr().err == "error: the train split drifted\n"
    with pytest.raises(RuntimeError, match="a bug"):
        runtime.main_guard(broken)

    def interrupted():
        raise KeyboardInterrupt

    assert runtime.main_guard(interrupted) == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted: the run stopped; rerun the same command")
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_the_summary_marks_a_slice_without_scored_users():
    from pipeline import report

    summary = {
        "run_id": "r",
        "components": {},
        "evaluation": {
            "gate_split": "eval",
            "splits": {"eval": {}},
            "slices": {
                "eval": {
                    "activity=1-4": {
                        "purchase": {"ndcg@5": 0.25, "num_users": 4},
                        "click": {"ndcg@5": float("nan"), "num_users": 0},
                    }
                }
            },
        },
    }
    line = next(x for x in report.format_summary(summary).splitlines() if "activity" in x)
    assert line.split() == ["activity=1-4", "purchase", "0.2500", "(4)", "click", "-", "(0)"]


def test_the_summary_says_off_for_a_filter_that_did_not_run():
    from pipeline import report

    accounting = {
        "rows_read": 10,
        "rows_rejected": {},
        "duplicates_dropped": 0,
        "item_filter": {"min_target_events": 0, "items_kept": None, "events_dropped": 0},
        "user_filter": {"min_target_events": 5, "users_kept": 3, "events_dropped": 2},
        "events_kept": 8,
    }
    text = report.format_summary({"run_id": "r", "components": {}, "accounting": accounting})
    lines = {line.split()[0]: line for line in text.splitlines() if "_filter" in line}
    assert lines["item_filter"].split() == ["item_filter", "off"]
    assert '"users_kept": 3' in lines["user_filter"] and "null" not in text


def test_the_summary_counts_rows_of_a_behavior_the_config_does_not_model():
    from pipeline import report

    # rows read = rejected + behavior not kept + duplicates + filters + kept: 10 = 0 + 3 + 0 + 0 + 7
    accounting = {"rows_read": 10, "rows_rejected": {}, "behavior_not_kept": 3, "events_kept": 7}
    text = report.format_summary({"run_id": "r", "components": {}, "accounting": accounting})
    assert "  behavior not kept    3" in text.splitlines()
