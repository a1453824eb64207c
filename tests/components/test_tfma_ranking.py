"""The gate on TFX's stock Evaluator: the TFMA ranking metric equals bvae_tf.metrics,
slices, thresholds against a baseline, and the gate's configuration."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
import tensorflow_transform as tft
from tfx.components.evaluator import executor as tfx_evaluator
from tfx.types import artifact_utils, standard_artifacts
from tfx.types import standard_component_specs as specs
from tfx.utils import json_utils, proto_utils

import bvae_tf  # noqa: F401
from bvae_tf import export, features, trainer
from bvae_tf import metrics as metrics_lib
from bvae_tf import model as model_lib
from components.tfma_ranking import gate as gate_lib
from components.tfma_ranking import metric as metric_lib
from components.tfma_ranking import results
from tests.pipeline import tiny

pytestmark = pytest.mark.unit

KS = (5, 10)


# --- the gate's configuration -------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ks": [0]}, "ks"),
        ({"lower_bounds": {"purchase": {"ndcg@7": 0.1}}}, "K=7"),
        ({"lower_bounds": {"purchase": {"mrr@5": 0.1}}}, "mrr@5"),
        ({"lower_bounds": {"purchase": {"ndcg@5": float("nan")}}}, "finite"),
        ({"regression_tolerance": -0.1}, "regression_tolerance"),
        ({"eval_split": "test", "report_splits": ["test"]}, "report_splits"),
        ({"eval_split": "valid"}, "valid"),
        ({"activity_buckets": [5, 1]}, "increasing"),
        ({"activity_buckets": [0, 5]}, "activity_buckets"),
        ({"slices": ["segment"]}, "slices"),
        ({"batch_size": 500}, "TFMA batches"),
        ({"thresholds": {}}, "unknown gate config keys"),
    ],
)
def test_bad_gate_configs_are_clear_errors(values, message):
    with pytest.raises(ValueError, match=message):
        gate_lib.GateConfig.from_dict(values)


def test_gate_config_round_trips_through_json():
    config = gate_lib.GateConfig(
        ks=[10, 5],
        lower_bounds={"*": {"hit_rate@10": 0.3}},
        regression_tolerance=0.02,
        slices=[["segment"]],
    )
    assert gate_lib.GateConfig.from_json(config.to_json()) == config


def test_bounds_on_unknown_behaviors_are_a_clear_error():
    config = gate_lib.GateConfig(lower_bounds={"cart": {"ndcg@5": 0.1}})
    with pytest.raises(ValueError, match="cart"):
        gate_lib.eval_config(config, ["purchase"])


def test_eval_config_thresholds_keep_the_gate_keys_meaning():
    gate = gate_lib.GateConfig(
        ks=[5],
        lower_bounds={"*": {"ndcg@5": 0.1}, "click": {"ndcg@5": 0.05, "recall@5": 0.2}},
        regression_metrics=["ndcg@5"],
        regression_tolerance=0.01,
    )
    config = gate_lib.eval_config(gate, ["purchase", "click"])
    thresholds = {}
    for m in config.metrics_specs[0].metrics:
        if m.per_slice_thresholds and m.class_name == "RankingMetric":
            (per_slice,) = m.per_slice_thresholds
            # Gated on the overall slice only; the other slices are reported.
            assert list(per_slice.slicing_specs) == [tfma.SlicingSpec()]
            thresholds[json.loads(m.config)["name"]] = per_slice.threshold
    assert set(thresholds) == {"purchase/ndcg@5", "click/ndcg@5", "click/recall@5"}
    # The behavior's own bound replaces "*"; the change threshold allows a 0.01 drop.
    assert thresholds["click/ndcg@5"].value_threshold.lower_bound.value == 0.05
    assert thresholds["purchase/ndcg@5"].value_threshold.lower_bound.value == 0.1
    change = thresholds["purchase/ndcg@5"].change_threshold
    assert change.absolute.value == -0.01
    assert change.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    assert not thresholds["click/recall@5"].HasField("change_threshold")
    assert [s.is_baseline for s in config.model_specs] == [False, True]
    assert {s.signature_name for s in config.model_specs} == {features.RANK_SIGNATURE}
    # Slices: overall, the activity buckets (SQL on the raw features), named features.
    sliced = gate_lib.eval_config(
        gate_lib.GateConfig(slices=[["segment"], ["segment", "country"]]), ["purchase"]
    )
    assert list(sliced.slicing_specs) == [
        tfma.SlicingSpec(),
        tfma.SlicingSpec(slice_keys_sql=gate_lib.activity_sql(["purchase"], [1, 5, 20])),
        tfma.SlicingSpec(feature_keys=["segment"]),
        tfma.SlicingSpec(feature_keys=["segment", "country"]),
    ]
    no_activity = gate_lib.eval_config(gate_lib.GateConfig(activity_buckets=[]), ["purchase"])
    assert list(no_activity.slicing_specs) == [tfma.SlicingSpec()]
    # A report-only config has neither thresholds nor a baseline.
    ungated = gate_lib.eval_config(gate, ["purchase", "click"], gated=False)
    assert not any(m.per_slice_thresholds for m in ungated.metrics_specs[0].metrics)
    assert len(ungated.model_specs) == 1


def test_activity_buckets_are_labelled_by_their_edges():
    sql = gate_lib.activity_sql(["purchase", "click"], [1, 5, 20])
    assert "'0'" in sql and "'1-4'" in sql and "'5-19'" in sql and "'20+'" in sql
    assert "ARRAY_LENGTH(`purchase_items`)" in sql and "ARRAY_LENGTH(`click_items`)" in sql
    assert gate_lib.activity_label(3, 4) == "3"
    assert "'<3'" in gate_lib.activity_sql(["purchase"], [3])


# --- the stock Evaluator on exported models ------------------------------------------------


def _model_artifact(root, name, model, output, artifact_id):
    artifact = standard_artifacts.Model()
    artifact.uri = str(root / name)
    artifact.id = artifact_id
    export.export_serving_model(model, output, os.path.join(artifact.uri, "Format-Serving"), 5)
    return artifact


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_pipeline_data):
    """Tiny raw examples; an exported (seeded, untrained) model, and a broken one whose
    decoders score every item alike (ties go against the model: every metric is 0)."""
    root = tmp_path_factory.mktemp("tfma_ranking")
    data = tiny_pipeline_data
    output = tft.TFTransformOutput(data.transform_output)
    num_items = output.vocabulary_size_by_name(features.ITEM_VOCABULARY)
    config = model_lib.BVAEConfig(behaviors=tiny.BEHAVIORS, num_items=num_items, latent_dim=8)
    model = model_lib.BVAE(config)
    good = _model_artifact(root, "good", model, output, 7)
    broken_model = model_lib.BVAE(config)
    broken_model(next(iter(_transformed(data, output, features.EVAL, 4))))
    for decoder in broken_model.decoders:
        decoder.set_weights([np.zeros_like(w) for w in decoder.get_weights()])
    broken = _model_artifact(root, "broken", broken_model, output, 8)
    examples = standard_artifacts.Examples()
    examples.uri = data.raw_examples_uri
    examples.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
    return data, output, model, good, broken, examples


def _transformed(data, output, split, batch_size):
    return trainer.examples_dataset(
        data.transformed_files(split),
        {
            k: output.transformed_feature_spec()[k]
            for k in trainer.eval_feature_keys(tiny.BEHAVIORS)
        },
        batch_size=batch_size,
    )


def _evaluate(
    tmp_path,
    examples,
    model,
    *,
    baseline=None,
    split=features.EVAL,
    gated=True,
    module_path=True,
    **gate,
):
    evaluation = standard_artifacts.ModelEvaluation()
    evaluation.uri = str(tmp_path / "evaluation")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    inputs = {specs.EXAMPLES_KEY: [examples], specs.MODEL_KEY: [model]}
    if baseline is not None:
        inputs[specs.BASELINE_MODEL_KEY] = [baseline]
    config = gate_lib.eval_config(gate_lib.GateConfig(ks=KS, **gate), tiny.BEHAVIORS, gated)
    tfx_evaluator.Executor().Do(
        inputs,
        {specs.EVALUATION_KEY: [evaluation], specs.BLESSING_KEY: [blessing]},
        {
            specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(config),
            specs.EXAMPLE_SPLITS_KEY: json_utils.dumps([split]),
            # As the pipeline's Evaluator (pipeline.pipeline): the checking loader.
            **({specs.MODULE_PATH_KEY: gate_lib.MODEL_LOADER} if module_path else {}),
        },
    )
    return evaluation, blessing


@pytest.fixture(scope="module")
def default_run(setup, tmp_path_factory):
    """The eval split with the default gate (no bounds), no baseline."""
    _, _, _, good, _, examples = setup
    return _evaluate(tmp_path_factory.mktemp("default_run"), examples, good)


def test_numbers_equal_bvae_tf_metrics_on_the_transformed_data(setup, default_run):
    data, output, model, _, _, _ = setup
    evaluation, blessing = default_run
    # tfma.load_eval_result reads the output (what a notebook renders) ...
    loaded = tfma.load_eval_result(evaluation.uri)
    assert any(key == () for key, _ in loaded.slicing_metrics)
    got = results.read(evaluation.uri)["models"][gate_lib.CANDIDATE][results.OVERALL]
    # ... and its numbers are bvae_tf.metrics' on the Transform-materialized examples
    # with the in-memory model: an independent route.
    expected = metrics_lib.evaluate(model, _transformed(data, output, features.EVAL, 7), ks=KS)
    for b in tiny.BEHAVIORS:
        assert got[b][metric_lib.USERS] == expected.behaviors[b].num_users > 0
        assert got[b][metric_lib.EXCLUDED] == expected.behaviors[b].num_excluded > 0
        for key, value in expected.behaviors[b].metrics.items():
            assert got[b][key] == pytest.approx(value, abs=1e-9), (b, key)
    # Blessed (no bounds, no baseline): the stock BLESSED file and properties.
    assert os.path.exists(os.path.join(blessing.uri, "BLESSED"))
    assert blessing.get_int_custom_property("blessed") == 1
    assert blessing.get_int_custom_property("current_model_id") == 7


def test_numbers_match_the_pure_numpy_definition(setup, default_run):
    """Unknown held-out ids count in |H| and are never hit (checked on full scores)."""
    data, output, model, _, _, _ = setup
    evaluation, _ = default_run
    got = results.read(evaluation.uri)["models"][gate_lib.CANDIDATE][results.OVERALL]
    batch = data.transformed_batch(features.EVAL, output)
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
            ks=KS,
            num_unknown=unknown,
        )
        for key, value in expected.metrics.items():
            assert got[b][key] == pytest.approx(value, abs=1e-9), (b, key)


def test_activity_slices_partition_the_users(setup, default_run):
    data, _, _, _, _, _ = setup
    evaluation, _ = default_run
    read = results.read(evaluation.uri)
    slices = read["models"][gate_lib.CANDIDATE]
    activity = [s for s in slices if s.startswith(gate_lib.ACTIVITY + "=")]
    # Bucket sizes from the raw examples, counted here in Python.
    expected = {}
    files = [
        os.path.join(data.raw_examples_uri, "Split-eval", f)
        for f in os.listdir(os.path.join(data.raw_examples_uri, "Split-eval"))
    ]
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        n = sum(
            len(example.features.feature[features.items_key(b)].bytes_list.value)
            for b in tiny.BEHAVIORS
        )
        label = "0" if n == 0 else "1-4" if n < 5 else "5-19" if n < 20 else "20+"
        expected[f"activity={label}"] = expected.get(f"activity={label}", 0) + 1
    counts = read["example_count"][gate_lib.CANDIDATE]
    assert {s: counts[s] for s in activity} == expected
    assert sum(expected.values()) == counts[results.OVERALL]
    for b in tiny.BEHAVIORS:
        overall = slices[results.OVERALL][b]
        users = sum(slices[s][b][metric_lib.USERS] for s in activity)
        assert users == overall[metric_lib.USERS]
        # The overall mean is the user-weighted mean of the slices' means.
        weighted = sum(
            slices[s][b]["ndcg@5"] * slices[s][b][metric_lib.USERS]
            for s in activity
            if slices[s][b][metric_lib.USERS]
        )
        assert weighted / users == pytest.approx(overall["ndcg@5"], abs=1e-12)


def test_an_impossible_bound_is_not_blessed_and_says_why(setup, tmp_path):
    _, _, _, good, _, examples = setup
    evaluation, blessing = _evaluate(
        tmp_path, examples, good, lower_bounds={"purchase": {"ndcg@5": 1.5}}
    )
    assert os.path.exists(os.path.join(blessing.uri, "NOT_BLESSED"))
    assert blessing.get_int_custom_property("blessed") == 0
    validation = results.read(evaluation.uri)["validation"]
    assert validation["ok"] is False
    message = results.blessing_message(validation, has_baseline=False)
    assert message.startswith("not blessed (no baseline)")
    assert "purchase/ndcg@5" in message and ">= 1.5" in message


def test_a_broken_candidate_is_not_blessed_against_the_baseline(setup, tmp_path):
    _, _, _, good, broken, examples = setup
    evaluation, blessing = _evaluate(tmp_path / "broken", examples, broken, baseline=good)
    assert blessing.get_int_custom_property("blessed") == 0
    assert blessing.get_int_custom_property("baseline_model_id") == 7
    read = results.read(evaluation.uri)
    candidate = read["models"][gate_lib.CANDIDATE][results.OVERALL]
    baseline = read["models"][gate_lib.BASELINE][results.OVERALL]
    assert all(candidate[b]["ndcg@5"] == 0.0 < baseline[b]["ndcg@5"] for b in tiny.BEHAVIORS)
    failures = read["validation"]["failures"]
    assert {f.split()[0] for f in failures} == {f"{b}/ndcg@5" for b in tiny.BEHAVIORS}
    assert all("change vs the baseline" in f for f in failures)
    # The good model against itself: no regression, blessed.
    _, again = _evaluate(tmp_path / "same", examples, good, baseline=good)
    assert again.get_int_custom_property("blessed") == 1


def test_a_behavior_without_scored_users_cannot_pass_a_bound(setup, tmp_path):
    """The train split has no held-out items: every behavior's value is NaN there."""
    _, _, _, good, _, examples = setup
    evaluation, blessing = _evaluate(
        tmp_path, examples, good, split=features.TRAIN, lower_bounds={"*": {"ndcg@5": 0.0}}
    )
    assert blessing.get_int_custom_property("blessed") == 0
    read = results.read(evaluation.uri)
    overall = read["models"][gate_lib.CANDIDATE][results.OVERALL]
    assert all(overall[b][metric_lib.USERS] == 0 for b in tiny.BEHAVIORS)
    assert "no scored users" in results.blessing_message(read["validation"], False)


def test_a_report_split_is_scored_and_never_gated(setup, tmp_path):
    _, _, _, good, _, examples = setup
    evaluation, blessing = _evaluate(
        tmp_path,
        examples,
        good,
        split=features.TEST,
        gated=False,
        lower_bounds={"*": {"ndcg@5": 1.5}},
    )
    assert not os.path.exists(os.path.join(blessing.uri, "NOT_BLESSED"))
    assert "blessed" not in blessing.mlmd_artifact.custom_properties
    overall = results.read(evaluation.uri)["models"][gate_lib.CANDIDATE][results.OVERALL]
    assert all(overall[b][metric_lib.USERS] > 0 for b in tiny.BEHAVIORS)


def test_a_model_without_the_rank_signature_is_a_clear_error(setup, tmp_path):
    """A baseline exported before the rank_heldout signature existed: the Evaluator's
    model loader names the model and the fix, before any Beam work."""
    from components.tfma_ranking import model_loader

    _, _, _, good, _, examples = setup
    serving = os.path.join(good.uri, "Format-Serving")
    assert features.RANK_SIGNATURE in model_loader.signature_names(serving)
    older = tmp_path / "older"
    loaded = tf.saved_model.load(serving)
    signatures = {k: v for k, v in loaded.signatures.items() if k != features.RANK_SIGNATURE}
    tf.saved_model.save(loaded, str(older / "Format-Serving"), signatures=signatures)
    baseline = standard_artifacts.Model()
    baseline.uri = str(older)
    baseline.id = 2
    with pytest.raises(ValueError, match=r"baseline .* has no 'rank_heldout' signature"):
        _evaluate(tmp_path / "run", examples, good, baseline=baseline)


def test_slices_are_listed_overall_first_then_by_bucket():
    names = ["activity=20+", "segment=b", "activity=1-4", "overall", "activity=5-19"]
    assert sorted(names, key=results.slice_sort_key) == [
        "overall",
        "activity=1-4",
        "activity=5-19",
        "activity=20+",
        "segment=b",
    ]


def test_a_chunked_model_ranks_the_held_out_items_as_the_whole_catalog(setup, tmp_path):
    """With top_k_chunk_size (large catalogs) rank_heldout scores the items a chunk at
    a time; its outputs equal the unchunked model's (same weights)."""
    data, output, model, good, _, _ = setup
    config = dict(model.get_config()["config"], top_k_chunk_size=7)
    chunked = model_lib.BVAE(model_lib.BVAEConfig.from_dict(config))
    assert chunked.eval_chunk_size == 7
    artifact = _model_artifact(tmp_path, "chunked", chunked, output, 9)
    examples = tf.constant(data.serialized(features.EVAL))

    def ranks(artifact):
        path = os.path.join(artifact.uri, "Format-Serving")
        return tf.saved_model.load(path).signatures[features.RANK_SIGNATURE](examples=examples)

    whole, got = ranks(good), ranks(artifact)
    assert set(got) == set(whole)
    for key, value in whole.items():
        np.testing.assert_array_equal(got[key].numpy(), value.numpy(), err_msg=key)


def test_reading_something_else_is_a_clear_error(tmp_path):
    """Not an Evaluator's TFMA output, or an unreadable model: ValueErrors naming it."""
    from components.tfma_ranking import model_loader

    older = tmp_path / "older[1]"  # glob characters in the path are taken literally
    older.mkdir()
    (older / "metrics.md").write_text("# an older evaluator's tables\n")
    with pytest.raises(ValueError, match=r"older\[1\] holds no TFMA metrics"):
        results.read(str(older))
    (older / "metrics-00000-of-00001").write_bytes(b"")
    with pytest.raises(ValueError, match="are empty"):
        results.read(str(older))
    (older / "metrics-00000-of-00001").write_bytes(os.urandom(64))
    with pytest.raises(ValueError, match=r"cannot read the TFMA metrics|are empty"):
        results.read(str(older))
    with pytest.raises(ValueError, match=r"holds no saved_model\.pb"):
        model_loader.signature_names(str(tmp_path))
    (tmp_path / "saved_model.pb").write_bytes(os.urandom(4096))
    with pytest.raises(ValueError, match=r"cannot parse .*saved_model\.pb"):
        model_loader.signature_names(str(tmp_path))
    (tmp_path / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError, match="holds no MetaGraph"):
        model_loader.signature_names(str(tmp_path))
