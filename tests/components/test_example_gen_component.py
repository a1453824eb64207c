"""The MultiBehaviorExampleGen component's construction (its run: test_example_gen_executor)."""

import pytest
from tfx import v1 as tfx

from components.multi_behavior_example_gen import MultiBehaviorExampleGen
from components.multi_behavior_example_gen.config import ExampleGenConfig

pytestmark = pytest.mark.unit


def test_component_checks_arguments_at_construction():
    with pytest.raises(ValueError, match="'hash'"):
        MultiBehaviorExampleGen(input_base="x.csv", split_method="hash")
    with pytest.raises(ValueError, match="'share'"):
        MultiBehaviorExampleGen(input_base="x.csv", behaviors=["purchase", "share"])
    with pytest.raises(ValueError, match="span"):
        MultiBehaviorExampleGen(input_base="x.csv", span=-1)


def test_component_parameters_are_resolved_and_plain():
    component = MultiBehaviorExampleGen(
        input_base="x.csv",
        behavior_mapping={"Buy": "purchase", "pv": "click"},
        split_method="cut_timestamps",
        split_boundaries=(1522454400, 1523145600),
    )
    props = component.exec_properties
    # Lower-cased labels, and each behavior name a label of itself.
    assert props["behavior_mapping"] == {
        "buy": "purchase",
        "pv": "click",
        "purchase": "purchase",
        "click": "click",
    }
    assert props["behaviors"] == ["purchase", "click"]
    assert props["split_boundaries"] == [1522454400.0, 1523145600.0]
    assert props["drop_cold_eval_users"] is True
    assert component.outputs["examples"].type_name == "Examples"


def test_component_accepts_a_runtime_parameter_input():
    base = tfx.dsl.experimental.RuntimeParameter(name="input_base", ptype=str, default="x.csv")
    component = MultiBehaviorExampleGen(input_base=base)
    assert component.exec_properties["input_base"] is base


def test_the_data_check_keys_flow_from_the_pipeline_config_to_the_executor():
    from pipeline import configs

    config = configs.load_config(
        None,
        [
            'data.eval_only_behaviors=["cart"]',
            "data.timestamp_window=null",
            "data.timeline_trim=0",
            "data.max_cold_event_share=0.8",
        ],
    )
    props = MultiBehaviorExampleGen(**config.example_gen_arguments()).exec_properties
    assert props["eval_only_behaviors"] == ["cart"]
    assert props["timestamp_window"] == []  # off; None would mean the default window
    assert props["timeline_trim"] == 0.0 and props["max_cold_event_share"] == 0.8
    rebuilt = ExampleGenConfig.from_exec_properties(props)
    assert rebuilt.eval_only_behaviors == ("cart",)
    assert rebuilt.timestamp_window is None
    default = MultiBehaviorExampleGen(input_base="x.csv").exec_properties
    assert default["timestamp_window"] == [631152000.0, 4102444800.0]
    assert default["timeline_trim"] == 0.01 and default["max_cold_event_share"] == 0.5


def test_a_local_inputs_fingerprint_is_an_execution_property(tmp_path):
    """With the pipeline's cache on, a log rewritten at the same path must change the
    component's cache key (its execution properties), or the run reuses the old data."""
    import os

    log = tmp_path / "events.csv"
    log.write_text("user_id,item_id,behavior,timestamp\nu1,i1,buy,10\n")
    os.utime(log, ns=(1_700_000_000_000_000_000,) * 2)

    def fingerprint(input_base):
        return MultiBehaviorExampleGen(input_base=str(input_base)).exec_properties[
            "input_fingerprint"
        ]

    first = fingerprint(log)
    assert first.startswith("split:single_split,num_files:1,total_bytes:48,")
    assert fingerprint(log) == first  # unchanged input: the same key, so a cache hit
    log.write_text("user_id,item_id,behavior,timestamp\nu1,i1,buy,10\nu2,i2,buy,11\n")
    assert fingerprint(log) != first  # tomorrow's log at the same path
    assert "num_files:1," in fingerprint(tmp_path)  # a folder: its data files
    # Unknown until run time: a remote input, or one missing now (the executor names it).
    assert fingerprint("gs://bucket/events.csv") is None
    assert fingerprint(tmp_path / "missing.csv") is None
