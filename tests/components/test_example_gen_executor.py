"""The multi-behavior ExampleGen end to end: real Do() into tmp_path, and a
LocalDagRunner run whose output the stock StatisticsGen and SchemaGen read as is."""

import gzip
import json
import os

import pytest
import tensorflow_data_validation as tfdv
from ml_metadata import metadata_store
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import v1 as tfx

from bvae_tf import features
from components import synthetic_logs
from components.multi_behavior_example_gen import MultiBehaviorExampleGen, accounting
from tests.components.example_gen_testing import (
    IN_MEMORY,
    assert_matches_the_reference,
    run_executor,
)

P, C, F = features.PURCHASE, features.CLICK, features.FAVORITE

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def synthetic_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("log") / "events.csv.gz"
    config = synthetic_logs.SyntheticLogConfig()
    summary = synthetic_logs.write_log(path, config)
    return path, config, summary


def test_default_component_on_synthetic_log_matches_a_plain_python_reference(
    synthetic_log, tmp_path
):
    """In memory; tests/pipeline/test_e2e.py checks the same on the ExampleGen run by
    the Beam runner with 2 worker processes."""
    path, config, summary = synthetic_log
    record, splits, artifact = run_executor(tmp_path, IN_MEMORY, input_base=str(path))
    assert_matches_the_reference(record, splits, config, summary)

    # The artifact carries what the stock ExampleGen sets, plus the accounting.
    assert artifact.split_names == '["train", "eval", "test"]'
    assert artifact.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    assert artifact.get_string_custom_property("file_format") == "tfrecords_gzip"
    assert artifact.get_int_custom_property("span") == 0
    assert not artifact.has_custom_property("version")
    assert artifact.get_string_custom_property("input_fingerprint").startswith(
        "split:single_split,num_files:1,"
    )
    assert json.loads(artifact.get_string_custom_property("accounting")) == record
    assert artifact.get_int_custom_property("accounting_rows_read") == record["rows_read"]
    assert artifact.get_int_custom_property("accounting_train_examples") == len(splits["train"])


HAND_LOG = (
    "user_id,item_id,behavior,timestamp\n"
    # u1: 3 purchases in train; clicks; a repeat click; one eval purchase, one test click.
    "u1,i1,buy,100\n"
    "u1,i2,buy,110\n"
    "u1,i3,buy,120\n"
    "u1,i1,pv,90\n"
    "u1,i1,pv,95\n"  # duplicate (later repeat of the click at 90)
    "u1,i2,buy,600\n"  # duplicate (re-purchase)
    "u1,i4,buy,500\n"  # eval
    "u1,i2,pv,900\n"  # test
    # u2: 1 purchase only (below min_user_target_events=2) -> dropped with its 2 events
    "u2,i1,buy,130\n"
    "u2,i4,pv,140\n"
    # u3: purchases only in eval -> cold: its eval purchases dropped by step v
    "u3,i1,buy,510\n"
    "u3,i2,buy,520\n"
    "u3,i3,fav,150\n"
    # i9: never bought -> dropped by the item filter (min 1) with its 1 event
    "u1,i9,pv,130\n"
    # bad rows
    "u1,i1,share,100\n"  # line 16 unknown behavior
    "u1,i1,pv,later\n"  # line 17 bad timestamp
    ",i1,pv,100\n"  # line 18 empty id
    "u1,i1,pv\n"  # line 19 wrong column count
)


def test_hand_computed_log_counts_splits_and_accounting(tmp_path):
    log = tmp_path / "in" / "log.csv"
    log.parent.mkdir()
    log.write_text(HAND_LOG)
    record, splits, _ = run_executor(
        tmp_path / "out",
        input_base=str(log.parent),
        behaviors=[P, C, F],
        min_item_target_events=1,
        min_user_target_events=2,
        split_method="cut_timestamps",
        split_boundaries=[500.0, 900.0],
        timestamp_window=[],  # off: small hand-written timestamps
    )
    assert record["rows_read"] == 18
    assert record["rows_rejected_total"] == 4
    assert record["rejected_samples"]["unknown_behavior"] == [f"{log}:16"]
    assert record["rejected_samples"]["wrong_column_count"] == [f"{log}:19"]
    assert record["duplicates_dropped"] == 2
    assert record["item_filter"] == {
        "min_target_events": 1,
        "items_dropped": 1,
        "items_kept": 4,
        "events_dropped": 1,
    }
    assert record["user_filter"] == {
        "min_target_events": 2,
        "users_dropped": 1,
        "users_kept": 2,
        "events_dropped": 2,
    }
    assert record["cold_eval_users"] == {
        "enabled": True,
        "users_dropped": {"eval": 1, "test": 0},
        "events_dropped": 2,
        # 2 dropped of the 4 eval/test events (u3's 2 + u1's eval and test one)
        "event_share": 0.5,
    }
    # 18 = 4 rejected + 2 duplicates + 1 (item) + 2 (user) + 2 (step v) + 7 kept
    assert record["events_kept"] == 7
    assert record["identity_holds"]

    u1_train = {"purchase_items": ["i1", "i2", "i3"], "click_items": ["i1"], "favorite_items": []}
    assert splits["train"] == {
        "u1": {"user_id": ["u1"], **u1_train},
        "u3": {
            "user_id": ["u3"],
            "purchase_items": [],
            "click_items": [],
            "favorite_items": ["i3"],
        },
    }
    heldout = {"purchase_heldout": ["i4"], "click_heldout": [], "favorite_heldout": []}
    assert splits["eval"] == {"u1": {"user_id": ["u1"], **u1_train, **heldout}}
    heldout = {"purchase_heldout": [], "click_heldout": ["i2"], "favorite_heldout": []}
    assert splits["test"] == {"u1": {"user_id": ["u1"], **u1_train, **heldout}}
    assert record["splits"]["train"]["max_timestamp"] == 150
    assert record["splits"]["eval"]["min_timestamp"] == 500  # exactly at the cut -> eval
    assert record["splits"]["test"]["min_timestamp"] == 900


def test_release_folder_is_imported_without_resplitting(tmp_path):
    data = tmp_path / "release"
    data.mkdir()
    (data / "target_train").write_text("1 10\n1 11\n2 10\n")
    (data / "target_valid").write_text("1 12\n")
    (data / "target_test").write_text("2 13\n")
    (data / "click_train").write_text("1 13\n2 12\n")
    (data / "click_test").write_text("1 10\nbroken\n")
    (data / "cart_train").write_text("1 99\n")  # behavior not kept: file skipped
    record, splits, _ = run_executor(
        tmp_path / "out",
        input_base=str(data),
        input_format="release",
        behaviors=[P, C],
        min_item_target_events=0,
        min_user_target_events=0,
        drop_cold_eval_users=False,
    )
    assert splits["train"] == {
        "1": {"user_id": ["1"], "purchase_items": ["10", "11"], "click_items": ["13"]},
        "2": {"user_id": ["2"], "purchase_items": ["10"], "click_items": ["12"]},
    }
    assert splits["eval"]["1"]["purchase_heldout"] == ["12"]
    assert splits["test"]["1"]["click_heldout"] == ["10"]
    assert splits["test"]["2"]["purchase_heldout"] == ["13"]
    assert record["skipped_files"] == [str(data / "cart_train")]
    assert record["rows_rejected"]["wrong_column_count"] == 1
    assert record["split"]["method"] == "release_files"
    assert record["identity_holds"] and record["rows_read"] == 9
    # Filters off: nothing was counted, which the record says rather than "0 kept".
    assert record["item_filter"]["items_kept"] is None
    assert record["user_filter"]["users_kept"] is None


def test_missing_path_fails_naming_it(tmp_path):
    missing = tmp_path / "nope.csv"
    with pytest.raises(ValueError, match=str(missing)):
        run_executor(tmp_path / "out", input_base=str(missing))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "_SUCCESS").write_text("")
    with pytest.raises(ValueError, match="matches no data file"):
        run_executor(tmp_path / "out", input_base=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="is not a folder"):
        run_executor(tmp_path / "out", input_base=str(missing), input_format="release")


def test_input_without_valid_rows_fails_naming_the_path(tmp_path):
    log = tmp_path / "bad.csv.gz"
    with gzip.open(log, "wt") as f:
        f.write("user_id,item_id,behavior,timestamp\nu1,i1,share,1\n,i2,pv,2\n")
    with pytest.raises(ValueError, match=rf"no valid rows in '{log}'"):
        run_executor(tmp_path / "out", input_base=str(log))


def test_header_without_a_configured_column_fails_naming_file_and_column(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user,item_id,behavior,timestamp\nu1,i1,pv,1\n")
    with pytest.raises(ValueError, match=r"log\.csv.*\['user_id'\]"):
        run_executor(tmp_path / "out", input_base=str(log))


def test_filters_that_leave_nothing_fail_clearly(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("user_id,item_id,behavior,timestamp\nu1,i1,buy,1\nu1,i2,pv,2\n")
    with pytest.raises(ValueError, match="no train example left"):
        run_executor(tmp_path / "out", input_base=str(log), timestamp_window=[])


def test_local_dag_runner_with_stock_statistics_and_schema_gen(tmp_path):
    log = tmp_path / "data" / "events.csv.gz"
    synthetic_logs.write_log(log)
    example_gen = MultiBehaviorExampleGen(input_base=str(log.parent))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"])
    connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(tmp_path / "metadata.db")
    )
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="example-gen-e2e",
        pipeline_root=str(tmp_path / "root"),
        components=[example_gen, statistics_gen, schema_gen],
        metadata_connection_config=connection,
        beam_pipeline_args=["--direct_running_mode=in_memory"],
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)

    store = metadata_store.MetadataStore(connection)
    [examples] = store.get_artifacts_by_type("Examples")
    assert json.loads(examples.properties["split_names"].string_value) == list(features.SPLITS)
    custom = examples.custom_properties
    assert custom["payload_format"].string_value == "FORMAT_TF_EXAMPLE"
    assert custom["file_format"].string_value == "tfrecords_gzip"
    assert custom["span"].int_value == 0
    record = json.loads(custom[accounting.ACCOUNTING_PROPERTY].string_value)
    assert record["identity_holds"]
    with open(os.path.join(examples.uri, accounting.ACCOUNTING_FILE)) as f:
        assert json.load(f) == record
    assert custom["accounting_train_examples"].int_value == record["splits"]["train"]["examples"]

    [schema_artifact] = store.get_artifacts_by_type("Schema")
    schema = tfdv.load_schema_text(os.path.join(schema_artifact.uri, "schema.pbtxt"))
    types = {f.name: f.type for f in schema.feature}
    expected = {features.USER_ID}
    for behavior in features.DEFAULT_BEHAVIORS:
        expected |= {features.items_key(behavior), features.heldout_key(behavior)}
    assert set(types) == expected
    # Empty lists are written as empty bytes lists, so every feature keeps its type.
    assert set(types.values()) == {schema_pb2.BYTES}
