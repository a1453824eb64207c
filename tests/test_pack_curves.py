"""scripts/pack_curves.py: result files rewritten with their curves stored by column."""

import json

import pytest

from bvae_tf import experiment
from tests.bvae_tf.test_report import _result
from tests.conftest import load_script

pytestmark = pytest.mark.unit


def _module():
    return load_script("pack_curves")


def test_a_file_is_packed_smaller_and_reads_back_the_same(tmp_path, capsys):
    result = _result("bvae", gates=True)
    rows = [{**row, "loss": 1.0 / 3.0 + row["epoch"]} for row in result["runs"][0]["curve"]]
    result["runs"][0]["curve"] = rows
    path = tmp_path / "bvae_s0.json"
    path.write_text(json.dumps(result, indent=1, sort_keys=True))
    assert _module().main([str(path)]) == 0
    assert "KB ->" in capsys.readouterr().out
    packed = json.loads(path.read_text())
    assert isinstance(packed["runs"][0]["curve"], dict)
    back = experiment.curve_rows(packed["runs"][0]["curve"])
    assert [r.keys() for r in back] == [r.keys() for r in rows]
    for got, want in zip(back, rows, strict=True):
        assert got == pytest.approx(want, rel=1e-6)
    # Everything but the curve is unchanged; packing again changes nothing.
    assert {k: v for k, v in packed["runs"][0].items() if k != "curve"} == {
        k: v for k, v in result["runs"][0].items() if k != "curve"
    }
    text = path.read_text()
    assert _module().main([str(path)]) == 0 and path.read_text() == text


def test_a_file_that_is_not_a_result_is_named_and_left_alone(tmp_path, capsys):
    path = tmp_path / "notes.json"
    path.write_text('{"x": 1}')
    assert _module().main([str(path)]) == 2
    assert "notes.json': not a result file" in capsys.readouterr().err
    assert path.read_text() == '{"x": 1}'
