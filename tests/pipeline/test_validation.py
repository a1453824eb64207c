"""Tests for the strict ExampleValidator (per-environment validation, fail on anomalies)
and the schema curation rules."""

import os

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs

from bvae_tf import features
from components.strict_example_validator import component as validation
from pipeline import configs, schema_tool
from tests.pipeline import tiny

pytestmark = pytest.mark.unit

BEHAVIORS = configs.PipelineConfig().behaviors  # the default schema's behaviors


def _stats_for(rows, path):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for row in rows:
            writer.write(tiny.serialize(row))
    return tfdv.generate_statistics_from_tfrecord(str(path), output_path=str(path) + ".stats")


def _row(user, heldout):
    row = {features.USER_ID: [user.encode()]}
    for b in BEHAVIORS:
        row[features.items_key(b)] = [b"a", b"b"] if b != "cart" else []
        if heldout:
            row[features.heldout_key(b)] = [b"c"]
    return row


def _run(tmp_path, splits, schema_dir=None):
    """Runs the executor on statistics of ``splits`` ({split: rows}) against the
    schema in ``schema_dir`` (default: the default curated schema)."""
    statistics = standard_artifacts.ExampleStatistics()
    statistics.uri = str(tmp_path / "stats")
    statistics.split_names = artifact_utils.encode_split_names(list(splits))
    for split, rows in splits.items():
        directory = tmp_path / "stats" / f"Split-{split}"
        directory.mkdir(parents=True)
        stats = _stats_for(rows, tmp_path / f"{split}.tfrecord")
        (directory / "FeatureStats.pb").write_bytes(stats.SerializeToString())
    schema = standard_artifacts.Schema()
    schema.uri = str(schema_dir or os.path.dirname(configs.DEFAULT_SCHEMA))
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / "anomalies")
    validation.Executor().Do(
        {
            standard_component_specs.STATISTICS_KEY: [statistics],
            standard_component_specs.SCHEMA_KEY: [schema],
        },
        {standard_component_specs.ANOMALIES_KEY: [anomalies]},
        {standard_component_specs.EXCLUDE_SPLITS_KEY: "[]"},
    )
    return anomalies


def test_each_split_is_valid_in_its_environment(tmp_path):
    anomalies = _run(
        tmp_path,
        {
            features.TRAIN: [_row("u1", heldout=False), _row("u2", heldout=False)],
            features.EVAL: [_row("u1", heldout=True)],
        },
    )
    assert anomalies.get_json_value_custom_property("blessed") == {"train": 1, "eval": 1}
    for split in (features.TRAIN, features.EVAL):
        assert (tmp_path / "anomalies" / f"Split-{split}" / "SchemaDiff.pb").is_file()


def test_an_inferred_schema_gets_the_split_environments(tmp_path):
    train = [_row("u1", heldout=False), _row("u2", heldout=False)]
    evaluation = [_row("u1", heldout=True)]
    # As SchemaGen does with schema_path: null: inferred from statistics holding the
    # held-out features, and without environments.
    inferred = tfdv.infer_schema(_stats_for(evaluation, tmp_path / "infer.tfrecord"))
    assert not inferred.default_environment
    as_is = tfdv.validate_statistics(_stats_for(train, tmp_path / "t.tfrecord"), inferred)
    assert any(name.endswith(features.HELDOUT_SUFFIX) for name in as_is.anomaly_info)

    schema_dir = tmp_path / "inferred"
    schema_dir.mkdir()
    tfdv.write_schema_text(inferred, str(schema_dir / "schema.pbtxt"))
    anomalies = _run(
        tmp_path / "run", {features.TRAIN: train, features.EVAL: evaluation}, schema_dir
    )
    assert anomalies.get_json_value_custom_property("blessed") == {"train": 1, "eval": 1}
    with_envs = validation.with_split_environments(inferred)
    assert list(with_envs.default_environment) == ["TRAINING", "EVALUATION", "SERVING"]
    user_id = {f.name: f for f in inferred.feature}[features.USER_ID]
    assert user_id.WhichOneof("domain_info")  # inferred from one user: a closed domain
    user_id = {f.name: f for f in with_envs.feature}[features.USER_ID]
    assert user_id.WhichOneof("domain_info") is None
    assert validation.with_split_environments(with_envs) is with_envs


def test_anomalies_fail_the_run_with_tfdvs_report(tmp_path):
    broken = _row("u3", heldout=True)
    del broken[features.heldout_key("click")]  # the eval target is missing
    broken[features.USER_ID] = [b"u3", b"u4"]  # and a user id repeated
    with pytest.raises(validation.DataAnomaliesError) as raised:
        _run(
            tmp_path,
            {features.TRAIN: [_row("u1", heldout=False)], features.EVAL: [broken]},
        )
    message = str(raised.value)
    assert "split 'eval', environment EVALUATION" in message
    assert "click_heldout" in message
    assert "user_id" in message
    assert "split 'train'" not in message
    # The report is also on disk, as TFDV wrote it.
    written = anomalies_pb2.Anomalies.FromString(
        (tmp_path / "anomalies" / "Split-eval" / "SchemaDiff.pb").read_bytes()
    )
    assert "click_heldout" in written.anomaly_info


def test_curation_rules_turn_an_inferred_schema_into_the_contract():
    inferred = schema_pb2.Schema()
    for name in ("user_id", "purchase_items", "purchase_heldout"):
        feature = inferred.feature.add(name=name, type=schema_pb2.BYTES)
        feature.value_count.min = 1
        feature.domain = "overfit"
    curated = schema_tool.curate(inferred, ["purchase"])
    by_name = {f.name: f for f in curated.feature}
    assert list(by_name) == ["user_id", "purchase_items", "purchase_heldout"]
    assert by_name["user_id"].value_count.max == 1
    assert not by_name["purchase_items"].HasField("value_count")  # empty lists allowed
    assert not by_name["purchase_items"].domain
    assert list(by_name["purchase_heldout"].not_in_environment) == ["TRAINING", "SERVING"]
    assert curated.dataset_constraints.min_examples_count == 1
    with pytest.raises(ValueError, match="click_items") as refused:
        schema_tool.curate(inferred, ["purchase", "click"])
    assert str(refused.value).endswith("the statistics have behaviors ['purchase']")


def test_schema_tool_finds_the_newest_statistics_or_names_the_bad_path(tmp_path):
    base = tmp_path / "StatisticsGen" / "statistics"
    for execution in ("3", "12"):
        for split in (features.TRAIN, features.EVAL):
            (base / execution / f"Split-{split}").mkdir(parents=True)
    (base / "99").mkdir()  # an execution without statistics is ignored
    assert schema_tool.statistics_dir(str(base)) == str(base / "12")
    assert schema_tool.statistics_dir(str(base / "3")) == str(base / "3")
    with pytest.raises(ValueError, match="holds no StatisticsGen output"):
        schema_tool.statistics_dir(str(tmp_path / "missing"))
    with pytest.raises(SystemExit):
        schema_tool.main(
            ["--statistics", str(tmp_path), "--behaviors", "purchase", "--output", "x.pbtxt"]
        )


@pytest.mark.parametrize(
    "behaviors, output, message",
    [
        ("purchase,purchase", "s.pbtxt", "--behaviors 'purchase,purchase'"),
        ("purchase,,click", "s.pbtxt", "--behaviors 'purchase,,click'"),
        ("purchase", ".", "is a folder: give the schema file's path"),
    ],
)
def test_schema_tool_names_bad_behaviors_and_an_output_folder(
    tmp_path, capsys, behaviors, output, message
):
    base = tmp_path / "statistics"
    for split in (features.TRAIN, features.EVAL):
        (base / f"Split-{split}").mkdir(parents=True)
    argv = ["--statistics", str(base), "--behaviors", behaviors]
    with pytest.raises(SystemExit):  # before any statistics are read
        schema_tool.main([*argv, "--output", str(tmp_path / output)])
    assert message in capsys.readouterr().err
