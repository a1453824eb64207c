"""Drift between spans: the validator compares this run's train statistics with the
previous run's and stops the run past a threshold, naming the feature and distance."""

import json
import pathlib

import pytest
import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx.types import artifact_utils, standard_artifacts

from bvae_tf import features
from components.strict_example_validator import component, drift

pytestmark = pytest.mark.unit

P, C = features.PURCHASE, features.CLICK
BEHAVIORS = (P, C)


def _stats(per_behavior, users=100):
    """Train statistics: behavior -> (item counts, users with the behavior)."""
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats.datasets.add(num_examples=users)
    for behavior, (counts, with_any) in per_behavior.items():
        feature = dataset.features.add(type=statistics_pb2.FeatureNameStatistics.STRING)
        feature.path.step.append(features.items_key(behavior))
        string = feature.string_stats
        total = sum(counts.values())
        string.common_stats.num_non_missing = with_any
        string.common_stats.num_missing = users - with_any
        string.common_stats.tot_num_values = total
        string.common_stats.avg_num_values = total / with_any
        string.common_stats.min_num_values = 1
        string.common_stats.max_num_values = total
        string.unique = len(counts)
        ranked = sorted(counts.items(), key=lambda kv: -kv[1])
        for rank, (item, count) in enumerate(ranked):
            string.top_values.add(value=item, frequency=count)
            string.rank_histogram.buckets.add(
                low_rank=rank, high_rank=rank, label=item, sample_count=count
            )
    return stats


BEFORE = _stats({P: ({"a": 50, "b": 30, "c": 20}, 60), C: ({"a": 200, "b": 200}, 90)})
#: The same items and users, the purchases moved from "a" to "c".
ITEMS_MOVED = _stats({P: ({"a": 10, "b": 30, "c": 60}, 60), C: ({"a": 200, "b": 200}, 90)})
#: Purchases x4: the mix 0.2/0.8 becomes 0.5/0.5, and 4x the purchases per user.
MORE_PURCHASES = _stats({P: ({"a": 200, "b": 120, "c": 80}, 60), C: ({"a": 200, "b": 200}, 90)})


def _schema():
    return tfdv.infer_schema(BEFORE)


def test_the_same_span_has_no_drift():
    measured = drift.measure(BEFORE, BEFORE, _schema(), BEHAVIORS, drift.DriftConfig())
    assert {m.measure for m in measured} == {
        drift.ITEM_FREQUENCY,
        drift.BEHAVIOR_MIX,
        drift.EVENTS_PER_USER,
    }
    assert all(m.distance == pytest.approx(0.0) for m in measured)
    assert not any(m.drifted for m in measured)


def test_item_frequency_drift_is_tfdvs_linf_distance():
    measured = drift.measure(ITEMS_MOVED, BEFORE, _schema(), BEHAVIORS, drift.DriftConfig())
    by_feature = {(m.measure, m.feature): m for m in measured}
    purchase = by_feature[(drift.ITEM_FREQUENCY, "purchase_items")]
    # Shares a 0.5 -> 0.1, c 0.2 -> 0.6: L-inf 0.4 > 0.3.
    assert purchase.distance == pytest.approx(0.4)
    assert purchase.drifted and "purchase_items" in purchase.describe()
    assert by_feature[(drift.ITEM_FREQUENCY, "click_items")].distance == pytest.approx(0.0)
    assert not by_feature[(drift.BEHAVIOR_MIX, "behaviors")].drifted


def test_a_shifted_behavior_mix_and_more_events_per_user_drift():
    measured = drift.measure(MORE_PURCHASES, BEFORE, _schema(), BEHAVIORS, drift.DriftConfig())
    by_feature = {(m.measure, m.feature): m for m in measured}
    mix = by_feature[(drift.BEHAVIOR_MIX, "behaviors")]
    assert mix.distance == pytest.approx(0.3)  # purchase share 0.2 -> 0.5
    assert mix.drifted and "purchase 0.200 -> 0.500" in mix.detail
    per_user = by_feature[(drift.EVENTS_PER_USER, "purchase_items")]
    assert per_user.distance == pytest.approx(3.0) and per_user.drifted
    # Same item shares: no item-frequency drift.
    assert not by_feature[(drift.ITEM_FREQUENCY, "purchase_items")].drifted
    # Thresholds of None turn measures off.
    off = drift.DriftConfig(item_frequency=None, events_per_user=None)
    assert {
        m.measure for m in drift.measure(MORE_PURCHASES, BEFORE, _schema(), BEHAVIORS, off)
    } == {drift.BEHAVIOR_MIX}


@pytest.mark.parametrize(
    "section, message",
    [
        ({"enable": True}, r"drift: unknown key\(s\) \['enable'\]"),
        ({"action": "stop"}, "drift.action must be one of"),
        ({"behavior_mix": -1}, "drift.behavior_mix must be null or a finite number >= 0"),
        ({"item_frequency": float("nan")}, "drift.item_frequency must be null or a finite"),
        ({"events_per_user": float("inf")}, "drift.events_per_user must be null or a finite"),
        ({"split": "serving"}, "drift.split must be one of"),
    ],
)
def test_bad_drift_settings_are_clear_errors(section, message):
    with pytest.raises(ValueError, match=message):
        drift.config_from(section)


def _statistics_artifact(root: pathlib.Path, stats, artifact_id: int):
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(root)
    artifact.id = artifact_id
    artifact.split_names = artifact_utils.encode_split_names([features.TRAIN])
    (root / "Split-train").mkdir(parents=True)
    (root / "Split-train" / "FeatureStats.pb").write_bytes(stats.SerializeToString())
    return artifact


def _validate(tmp_path, current, previous, **config):
    schema_dir = tmp_path / "schema"
    schema_dir.mkdir(parents=True)
    tfdv.write_schema_text(_schema(), str(schema_dir / "schema.pbtxt"))
    schema = standard_artifacts.Schema()
    schema.uri = str(schema_dir)
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / "anomalies")
    pathlib.Path(anomalies.uri).mkdir()
    inputs = {
        "statistics": [_statistics_artifact(tmp_path / "now", current, 2)],
        "schema": [schema],
    }
    if previous is not None:
        inputs[component.BASELINE_STATISTICS_KEY] = [
            _statistics_artifact(tmp_path / "before", previous, 1)
        ]
    component.Executor().Do(
        inputs,
        {"anomalies": [anomalies]},
        {
            component.DRIFT_CONFIG_KEY: json.dumps({"enabled": True, **config}),
            component.BEHAVIORS_KEY: json.dumps(list(BEHAVIORS)),
        },
    )
    return anomalies


def test_a_drifted_span_stops_the_run_naming_the_feature_and_distance(tmp_path):
    with pytest.raises(component.DataDriftError) as error:
        _validate(tmp_path, MORE_PURCHASES, BEFORE)
    message = str(error.value)
    assert "behaviors (behavior_mix): distance 0.3000 > threshold 0.1" in message
    assert "purchase_items (events_per_user): distance 3.0000 > threshold 0.5" in message
    assert "click_items" not in message
    record = json.loads((tmp_path / "anomalies" / component.DRIFT_FILE).read_text())
    assert {m["feature"] for m in record["measurements"] if m["drifted"]} == {
        "behaviors",
        "purchase_items",
    }


def test_warn_logs_and_continues_and_a_first_run_has_nothing_to_compare(tmp_path):
    output = _validate(tmp_path / "warn", MORE_PURCHASES, BEFORE, action="warn")
    assert output.get_int_custom_property("drifted_features") == 2
    first = _validate(tmp_path / "first", MORE_PURCHASES, None)
    assert not (pathlib.Path(first.uri) / component.DRIFT_FILE).exists()
    same = _validate(tmp_path / "same", BEFORE, BEFORE)
    assert same.get_int_custom_property("drifted_features") == 0


def test_the_baseline_is_the_latest_statistics_a_validator_accepted():
    """A span the drift check stopped is never the baseline of its own re-run."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    from components.strict_example_validator import resolver

    connection = metadata_store_pb2.ConnectionConfig()
    connection.fake_database.SetInParent()
    store = metadata_store.MetadataStore(connection)
    stats_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="ExampleStatistics"))
    validator_type = store.put_execution_type(
        metadata_store_pb2.ExecutionType(
            name="components.strict_example_validator.component.StrictExampleValidator"
        )
    )
    other_type = store.put_execution_type(metadata_store_pb2.ExecutionType(name="Transform"))
    ids = store.put_artifacts([metadata_store_pb2.Artifact(type_id=stats_type) for _ in range(4)])
    executions = [
        (validator_type, metadata_store_pb2.Execution.COMPLETE, ids[0]),  # day 1: accepted
        (validator_type, metadata_store_pb2.Execution.CACHED, ids[1]),  # day 2: accepted
        (validator_type, metadata_store_pb2.Execution.FAILED, ids[2]),  # day 3: drifted
        (other_type, metadata_store_pb2.Execution.COMPLETE, ids[3]),  # not a validator
    ]
    for type_id, state, artifact_id in executions:
        [execution_id] = store.put_executions(
            [metadata_store_pb2.Execution(type_id=type_id, last_known_state=state)]
        )
        store.put_events(
            [
                metadata_store_pb2.Event(
                    artifact_id=artifact_id,
                    execution_id=execution_id,
                    type=metadata_store_pb2.Event.INPUT,
                )
            ]
        )
    artifacts = []
    for mlmd_artifact in store.get_artifacts_by_id(ids):
        artifact = standard_artifacts.ExampleStatistics()
        artifact.set_mlmd_artifact(mlmd_artifact)
        artifacts.append(artifact)
    strategy = resolver.LatestValidatedStatisticsStrategy()
    resolved = strategy.resolve_artifacts(store, {"statistics": artifacts})
    assert [a.id for a in resolved["statistics"]] == [ids[1]]
    assert strategy.resolve_artifacts(store, {"statistics": artifacts[2:]}) == {"statistics": []}
