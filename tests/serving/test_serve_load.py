"""benchmarks/serve_load.py's command line: bad numbers are usage errors naming the flag."""

from __future__ import annotations

import pytest

from benchmarks import serve_load

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--duration_s", "0"], "argument --duration_s: must be finite and > 0, got 0"),
        (["--duration_s", "nan"], "argument --duration_s: must be finite and > 0, got nan"),
        (["--duration_s", "inf"], "argument --duration_s: must be finite and > 0, got inf"),
        (["--duration_s", "-5"], "argument --duration_s: must be finite and > 0, got -5"),
        (["--duration_s", "soon"], "argument --duration_s: 'soon' is not a number"),
        (["--rate", "inf"], "argument --rate: must be finite and > 0, got inf"),
        (["--rate", "0"], "argument --rate: must be finite and > 0, got 0"),
        (["--max_requests", "0"], "argument --max_requests: must be finite and > 0, got 0"),
        (["--clients", "-1"], "argument --clients: must be finite and > 0, got -1"),
        (["--repeats", "1.5"], "argument --repeats: '1.5' is not a whole number"),
        (["--num_items", "0"], "argument --num_items: must be finite and > 0, got 0"),
        (["--dim", "0"], "argument --dim: must be finite and > 0, got 0"),
        (["--top_k", "0"], "argument --top_k: must be finite and > 0, got 0"),
        (["--num_items", "5", "--top_k", "10"], "--top_k 10 exceeds --num_items 5"),
        (["--loads", "open"], "--loads takes closed and/or rate, got ['open']"),
    ],
)
def test_bad_numbers_are_usage_errors(flags, message, capsys):
    with pytest.raises(SystemExit) as info:
        serve_load._parse_args(flags)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_good_numbers_are_kept():
    args = serve_load._parse_args(["--duration_s", "0.5", "--rate", "50", "--loads", "rate"])
    assert (args.duration_s, args.rate, args.loads, args.top_k) == (0.5, 50.0, ["rate"], 10)
