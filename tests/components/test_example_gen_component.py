"""The MultiBehaviorExampleGen component's construction (its run: test_example_gen_executor)."""

import pytest
from tfx import v1 as tfx

from components.multi_behavior_example_gen import MultiBehaviorExampleGen

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
    assert props["behavior_mapping"] == {"buy": "purchase", "pv": "click"}
    assert props["behaviors"] == ["purchase", "click"]
    assert props["split_boundaries"] == [1522454400.0, 1523145600.0]
    assert props["drop_cold_eval_users"] is True
    assert component.outputs["examples"].type_name == "Examples"


def test_component_accepts_a_runtime_parameter_input():
    base = tfx.dsl.experimental.RuntimeParameter(name="input_base", ptype=str, default="x.csv")
    component = MultiBehaviorExampleGen(input_base=base)
    assert component.exec_properties["input_base"] is base
