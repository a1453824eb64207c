"""scripts/results_tables.py: RESULTS.md's JD tables from result files alone."""

import json
import pathlib

import pytest

from tests.bvae_tf.test_report import _result
from tests.conftest import load_script

pytestmark = pytest.mark.unit


def _module():
    return load_script("results_tables")


def _write(folder: pathlib.Path, name: str, result: dict, paper: bool = True) -> None:
    result["data"] = "../shared/data/bvae/JD"
    if paper:  # scored on test every epoch: the paper protocol's table
        result["runs"][0]["paper"] = result["runs"][0]["honest"]
    (folder / f"{name}.json").write_text(json.dumps(result))


def test_plain_bvae_keeps_its_paired_tests_beside_a_run_of_another_budget(tmp_path):
    # Two budgets of plain BVAE: combine appends the budget to both labels, and the
    # t-tests still take the plain row with the most seeds as their anchor.
    _write(tmp_path, "bvae_s0", _result("bvae", seed=0))
    _write(tmp_path, "bvae_s1", _result("bvae", seed=1))
    _write(tmp_path, "vae_u_s0", _result("vae_u"))
    _write(tmp_path, "bvae_e1000_p500_s0", _result("bvae", seed=0, command_extra="--epochs 1000"))
    text = _module().render(tmp_path)
    anchor = "BVAE (gates=gated) [≤200 epochs, patience 20]"
    assert f"| purchase | {anchor} |" in text
    assert "| purchase | BVAE (gates=gated) [≤1000 epochs, patience 20] |" in text
    assert f"), {anchor} vs the best other row:" in text
    assert "#### paper protocol" in text


def test_without_paper_protocol_runs_there_is_no_paper_table(tmp_path):
    _write(tmp_path, "bvae_s0", _result("bvae"), paper=False)
    _write(tmp_path, "vae_u_s0", _result("vae_u"), paper=False)
    text = _module().render(tmp_path)
    assert "| purchase | BVAE (gates=gated) |" in text
    assert "#### paper protocol" not in text and "#### Compute" in text


def test_a_result_of_another_dataset_is_refused_by_name(tmp_path):
    _write(tmp_path, "bvae_s0", _result("bvae"))
    ub = _result("vae_u")
    _write(tmp_path, "vae_u_s0", ub)
    data = json.loads((tmp_path / "vae_u_s0.json").read_text())
    data["data"] = "../shared/data/bvae/UB"
    (tmp_path / "vae_u_s0.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"vae_u_s0\.json' is not a JD result"):
        _module().render(tmp_path)
