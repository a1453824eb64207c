"""Tests for RankingEvaluator: the gate rule, and numbers equal to bvae_tf.metrics."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow_transform as tft
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs

import bvae_tf  # noqa: F401
from bvae_tf import export, features, trainer
from bvae_tf import metrics as metrics_lib
from bvae_tf import model as model_lib
from components.ranking_evaluator import executor as evaluator_executor
from components.ranking_evaluator import gate as gate_lib
from tests.pipeline import tiny

pytestmark = pytest.mark.unit


def _m(users=10, **values):
    return {gate_lib.USERS_KEY: users, **values}


# --- the gate rule ------------------------------------------------------------------------


def test_absolute_bounds_apply_per_behavior_and_star_to_all():
    config = gate_lib.GateConfig(
        lower_bounds={"*": {"ndcg@5": 0.10}, "click": {"ndcg@5": 0.05, "recall@10": 0.2}}
    )
    candidate = {
        "purchase": _m(**{"ndcg@5": 0.12, "recall@10": 0.0}),
        "click": _m(**{"ndcg@5": 0.07, "recall@10": 0.19}),
    }
    result = gate_lib.decide(config, candidate, None)
    # purchase: 0.12 >= 0.10 ok; click: its own 0.05 replaces "*" (ok), recall 0.19 < 0.2.
    assert not result.blessed
    failed = [(c.behavior, c.metric) for c in result.checks if not c.passed]
    assert failed == [("click", "recall@10")]
    assert "click recall@10" in result.message


def test_no_regression_against_the_baseline_with_a_tolerance():
    config = gate_lib.GateConfig(regression_metrics=["ndcg@5"], regression_tolerance=0.01)
    baseline = {"purchase": _m(**{"ndcg@5": 0.20}), "click": _m(**{"ndcg@5": 0.10})}
    ok = {"purchase": _m(**{"ndcg@5": 0.191}), "click": _m(**{"ndcg@5": 0.30})}
    worse = {"purchase": _m(**{"ndcg@5": 0.189}), "click": _m(**{"ndcg@5": 0.30})}
    assert gate_lib.decide(config, ok, baseline).blessed
    result = gate_lib.decide(config, worse, baseline)
    assert not result.blessed
    (failed,) = [c for c in result.checks if not c.passed]
    assert (failed.behavior, failed.kind) == ("purchase", "no_regression")
    assert failed.threshold == pytest.approx(0.19)
    # Without a baseline only absolute bounds apply (none here): blessed.
    assert gate_lib.decide(config, worse, None).blessed


def test_a_behavior_without_scored_users_cannot_pass_a_bound():
    config = gate_lib.GateConfig(lower_bounds={"*": {"ndcg@5": 0.0}})
    result = gate_lib.decide(config, {"cart": _m(users=0, **{"ndcg@5": 0.0})}, None)
    assert not result.blessed
    assert "no scored users" in result.message


def test_bounds_on_unknown_behaviors_are_a_clear_error():
    config = gate_lib.GateConfig(lower_bounds={"cart": {"ndcg@5": 0.1}})
    with pytest.raises(ValueError, match="cart"):
        gate_lib.decide(config, {"purchase": _m(**{"ndcg@5": 0.2})}, None)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ks": [0]}, "ks"),
        ({"lower_bounds": {"purchase": {"ndcg@7": 0.1}}}, "K=7"),
        ({"lower_bounds": {"purchase": {"mrr@5": 0.1}}}, "mrr@5"),
        ({"lower_bounds": {"purchase": {"ndcg@5": float("nan")}}}, "finite"),
        ({"regression_tolerance": -0.1}, "regression_tolerance"),
        ({"eval_split": "test", "report_splits": ["test"]}, "report split"),
        ({"eval_split": "valid"}, "valid"),
        ({"thresholds": {}}, "unknown gate config keys"),
    ],
)
def test_bad_gate_configs_are_clear_errors(values, message):
    with pytest.raises(ValueError, match=message):
        gate_lib.GateConfig.from_dict(values)


def test_gate_config_round_trips_through_json():
    config = gate_lib.GateConfig(
        ks=[10, 5], lower_bounds={"*": {"hit_rate@10": 0.3}}, regression_tolerance=0.02
    )
    assert gate_lib.GateConfig.from_json(config.to_json()) == config


# --- the executor -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_pipeline_data):
    """Tiny raw examples, and an exported (seeded, untrained) model in a Model artifact."""
    root = tmp_path_factory.mktemp("evaluator")
    data = tiny_pipeline_data
    output = tft.TFTransformOutput(data.transform_output)
    num_items = output.vocabulary_size_by_name(features.ITEM_VOCABULARY)
    model = model_lib.BVAE(
        model_lib.BVAEConfig(behaviors=tiny.BEHAVIORS, num_items=num_items, latent_dim=8)
    )
    artifact = standard_artifacts.Model()
    artifact.uri = str(root / "model")
    artifact.id = 7
    export.export_serving_model(model, output, os.path.join(artifact.uri, "Format-Serving"), 5)
    examples = standard_artifacts.Examples()
    examples.uri = data.raw_examples_uri
    examples.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
    return data, output, model, artifact, examples


def _run(tmp_path, examples, model, baseline=None, **gate):
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = str(tmp_path / "evaluation")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    inputs = {
        standard_component_specs.EXAMPLES_KEY: [examples],
        standard_component_specs.MODEL_KEY: [model],
        standard_component_specs.BASELINE_MODEL_KEY: [baseline] if baseline else [],
    }
    evaluator_executor.Executor().Do(
        inputs,
        {
            standard_component_specs.EVALUATION_KEY: [evaluation],
            standard_component_specs.BLESSING_KEY: [blessing],
        },
        {evaluator_executor.GATE_CONFIG_KEY: gate_lib.GateConfig(**gate).to_json()},
    )
    with open(os.path.join(evaluation.uri, evaluator_executor.EVALUATION_FILE)) as f:
        return json.load(f), blessing


@pytest.fixture(scope="module")
def default_run(setup, tmp_path_factory):
    """One run with the default gate (no bounds) and no baseline."""
    _, _, _, artifact, examples = setup
    return _run(tmp_path_factory.mktemp("default_run"), examples, artifact)


def test_numbers_equal_bvae_tf_metrics_on_the_transformed_data(setup, default_run):
    data, output, model, _, _ = setup
    report, blessing = default_run
    for split in (features.EVAL, features.TEST):
        # Independent route: the Transform-materialized examples and the in-memory model.
        ds = trainer.examples_dataset(
            data.transformed_files(split),
            {
                k: output.transformed_feature_spec()[k]
                for k in trainer.eval_feature_keys(tiny.BEHAVIORS)
            },
            batch_size=7,
        )
        expected = metrics_lib.evaluate(model, ds, ks=gate_lib.DEFAULT_KS)
        for b in tiny.BEHAVIORS:
            got = report["splits"][split][b]
            assert got[gate_lib.USERS_KEY] == expected.behaviors[b].num_users > 0
            for key, value in expected.behaviors[b].metrics.items():
                assert got[key] == pytest.approx(value, abs=1e-12), (split, b, key)
    # Blessed (no bounds, no baseline): BLESSED file and TFX's blessing properties.
    assert os.path.exists(os.path.join(blessing.uri, "BLESSED"))
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_int_custom_property("current_model_id") == 7
    assert report["baseline"] is None


def test_numbers_match_the_pure_numpy_definition(setup, default_run):
    """Unknown held-out ids count in |H| and are never hit (checked on full scores)."""
    data, output, model, _, _ = setup
    report, _ = default_run
    batch = next(
        iter(
            trainer.examples_dataset(
                data.transformed_files(features.EVAL),
                output.transformed_feature_spec(),
                batch_size=1000,
            )
        )
    )
    scores = model(batch)
    n, m = scores["purchase"].shape

    def dense(sparse):
        out = np.zeros((n, m))
        idx = sparse.indices.numpy()
        out[idx[:, 0], sparse.values.numpy()] = 1
        return out

    for b in tiny.BEHAVIORS:
        unknown = batch[features.oov_key(features.heldout_key(b))].numpy()
        assert unknown.sum() > 0
        expected = metrics_lib.ranking_metrics(
            scores[b].numpy(),
            dense(batch[features.heldout_key(b)]),
            dense(batch[features.items_key(b)]),
            num_unknown=unknown,
        )
        for key, value in expected.metrics.items():
            assert report["splits"][features.EVAL][b][key] == pytest.approx(value, abs=1e-9)


def test_impossible_bound_writes_a_not_blessed_blessing(setup, tmp_path):
    _, _, _, artifact, examples = setup
    report, blessing = _run(
        tmp_path, examples, artifact, lower_bounds={"purchase": {"ndcg@5": 1.5}}
    )
    assert os.path.exists(os.path.join(blessing.uri, "NOT_BLESSED"))
    assert not os.path.exists(os.path.join(blessing.uri, "BLESSED"))
    assert blessing.get_int_custom_property("blessed") == 0
    assert "purchase ndcg@5" in blessing.get_string_custom_property("blessing_message")
    assert report["gate"]["blessed"] is False


def test_baseline_is_scored_and_compared(setup, tmp_path):
    _, _, _, artifact, examples = setup
    baseline = standard_artifacts.Model()
    baseline.uri = artifact.uri
    baseline.id = 3
    report, blessing = _run(tmp_path, examples, artifact, baseline=baseline)
    # The same model as its own baseline: no regression, every check passes.
    assert report["baseline"][features.EVAL] == report["splits"][features.EVAL]
    kinds = {c["kind"] for c in report["gate"]["checks"]}
    assert kinds == {"no_regression"}
    assert blessing.get_int_custom_property("baseline_model_id") == 3
    assert blessing.get_int_custom_property("blessed") == 1


def test_missing_split_is_a_clear_error(setup, tmp_path):
    _, _, _, artifact, _ = setup
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path)
    examples.split_names = artifact_utils.encode_split_names([features.TRAIN])
    with pytest.raises(ValueError, match="no split 'eval'"):
        _run(tmp_path, examples, artifact)


def test_behaviors_come_from_the_export_and_an_older_export_still_scores(setup, tmp_path):
    _, _, _, artifact, examples = setup
    serving = os.path.join(artifact.uri, "Format-Serving")
    # Read from the export, in the model's order (not by name: click < purchase).
    assert evaluator_executor.ScoringModel(serving).behaviors == tiny.BEHAVIORS
    # An export made before it described itself is scored all the same.
    older = tmp_path / "older"
    shutil.copytree(serving, older)
    os.remove(older / export.EXPORT_INFO_FILE)
    scorer = evaluator_executor.ScoringModel(str(older))
    assert set(scorer.behaviors) == set(tiny.BEHAVIORS)
    files = evaluator_executor.example_files(examples, features.EVAL)
    new = evaluator_executor.ScoringModel(serving).score(files, [5], 64)
    old = scorer.score(files, [5], 64)
    for b in tiny.BEHAVIORS:
        assert old.behaviors[b].metrics == new.behaviors[b].metrics
