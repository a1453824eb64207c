"""The data-check command: ``python -m pipeline.data_check``."""

import json
import re
import subprocess
import sys

import pytest

from bvae_tf import features
from pipeline import data_check
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.unit

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z
DAY = 86_400
#: Purchase and click only, filters off, a schema inferred (the curated one has 4
#: behaviors): what a user checking a small buy/pv log would set.
SETTINGS = [
    'data.behaviors=["purchase", "click"]',
    "data.min_item_target_events=0",
    "data.min_user_target_events=0",
    "schema_path=null",
]


@pytest.fixture(autouse=True)
def _no_config_from_the_environment(monkeypatch):
    monkeypatch.delenv("BVAE_PIPELINE_CONFIG", raising=False)


def write_grid_log(path, extra=()):
    """10 users x 10 days (purchases on even days, clicks on odd ones) + ``extra``."""
    rows = [
        f"u{u},i{day},{'pv' if day % 2 else 'buy'},{T0 + day * DAY + u * 60}"
        for day in range(10)
        for u in range(10)
    ]
    path.write_text("user_id,item_id,behavior,timestamp\n" + "\n".join([*rows, *extra]) + "\n")
    return path


def _sets(values):
    return [arg for value in values for arg in ("--set", value)]


def test_prints_the_accounting_and_split_sizes(tmp_path, capsys):
    log = write_grid_log(tmp_path / "log.csv", ["u0,i0,buy,0", "u1,i1,pv,1522454400000"])
    saved = tmp_path / "accounting.json"
    status = data_check.main(["--input", str(log), *_sets(SETTINGS), "--accounting", str(saved)])
    out, err = capsys.readouterr()
    assert status == 0, err
    # 102 rows: 2 rejected (one implausible, one beyond the year 9999) + 100 kept.
    assert (
        "102 rows read = 2 rejected + 0 behavior not kept + 0 duplicates + 0 item filter "
        "+ 0 user filter + 0 cold-user step + 100 kept" in out
    )
    assert "rejected: bad_timestamp 1, implausible_timestamp 1" in out
    assert f"implausible_timestamp: first at {log} line 102" in out
    assert f"events from {T0} (2023-11-14T22:13:20Z)" in out
    # Cuts from the 1st to the 99th percentile event (see test_example_gen_checks).
    assert re.search(r"eval from 17006224\d\d", out)
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines()[-4:-1]}
    # users, events, purchase, click per split
    assert table == {
        "train": ["10", "80", "40", "40"],
        "eval": ["10", "10", "10", "0"],
        "test": ["10", "10", "0", "10"],
    }
    assert out.rstrip().endswith("OK: a pipeline run would accept this data.")
    record = json.loads(saved.read_text())
    assert record["rows_rejected"]["implausible_timestamp"] == 1
    assert record["splits"][features.TRAIN]["examples"] == 10


def test_reports_the_errors_a_pipeline_run_would_raise(tmp_path, capsys):
    log = write_grid_log(tmp_path / "log.csv")
    # The default behaviors include favorite and cart, which the log lacks.
    settings = [s for s in SETTINGS if not s.startswith("data.behaviors")]
    status = data_check.main(["--input", str(log), *_sets(settings)])
    out, err = capsys.readouterr()
    assert status == 1
    assert "100 kept" in out  # the summary is printed before the error
    assert err.startswith("error: ")
    assert "behavior(s) ['favorite', 'cart'] have no train event" in err
    assert "data.eval_only_behaviors" in err


def test_reads_the_pipeline_config_file_and_its_overrides(tmp_path, capsys):
    log = write_grid_log(tmp_path / "log.csv")
    config = tmp_path / "my.json"
    config.write_text(
        json.dumps(
            {
                "data": {
                    "input_base": str(log),
                    "behaviors": ["purchase", "click"],
                    "split_method": "cut_timestamps",
                    "split_boundaries": [T0 + 5 * DAY, T0 + 8 * DAY],
                    "min_item_target_events": 0,
                },
                "schema_path": None,
            }
        )
    )
    status = data_check.main(["--config", str(config), "--set", "data.min_user_target_events=0"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "Split: cut_timestamps" in out
    assert f"eval from {T0 + 5 * DAY} " in out
    assert "user filter: off" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # The hint names the flag this command was given, not the runners' --set.
        (
            ["--input", "/nonexistent/events.csv"],
            "does not exist; give the input with --input PATH",
        ),
        (["--set", 'data.input_base="/nonexistent/e.csv"'], "with --set data.input_base=PATH"),
        (["--set", "data.split_method=hash"], "split_method must be one of"),
        (["--config", "/nonexistent/my.json"], "cannot read pipeline config"),
        # The curated default schema has 4 behaviors: the pipeline would refuse it.
        (["--set", 'data.behaviors=["purchase", "click"]'], "does not match behaviors"),
    ],
)
def test_bad_input_or_config_fails_with_the_reason(args, message, capsys):
    assert data_check.main(args) == 1
    _, err = capsys.readouterr()
    assert err.startswith("error: ") and message in err


def test_an_error_inside_the_beam_pipeline_is_reported_once(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text(f"user,item_id,behavior,timestamp\nu1,i1,pv,{T0}\n")
    assert data_check.main(["--input", str(log), *_sets(SETTINGS)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"error: {log}: header ")
    assert "lacks column(s) ['user_id']" in err
    assert "while running" not in err  # Beam's step name is left out


@pytest.mark.slow
def test_runs_as_a_module(tmp_path):
    log = write_grid_log(tmp_path / "log.csv")
    command = [
        sys.executable,
        "-m",
        "pipeline.data_check",
        "--input",
        str(log),
        *_sets(SETTINGS),
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "100 rows read" in done.stdout


def test_all_rejected_names_the_reason_the_key_and_the_lines(tmp_path, capsys):
    log = tmp_path / "old.csv"
    log.write_text("user_id,item_id,behavior,timestamp\nu1,i1,buy,5\nu2,i2,pv,7\n")
    assert data_check.main(["--input", str(log)]) == 1
    captured = capsys.readouterr()
    error = captured.err.strip().splitlines()[-1]
    assert error.startswith(f"error: no valid rows in '{log}': 2 rows read, all rejected: ")
    assert f"2 implausible_timestamp (first at {log} lines 2, 3)" in error
    assert "data.timestamp_window" in error
    assert "{" not in error  # no raw dicts
    assert f"first at {log} lines 2, 3" in captured.out


def test_the_example_config_reads_a_log_labelled_with_behavior_names(tmp_path, capsys):
    # README's starting point for one's own log; labels that are behavior names.
    log = write_grid_log(tmp_path / "log.csv")
    log.write_text(log.read_text().replace(",buy,", ",purchase,").replace(",pv,", ",click,"))
    settings = ['data.behaviors=["purchase", "click"]', *SETTINGS[1:3]]
    config = str(REPO_ROOT / "pipeline" / "config" / "example.json")
    status = data_check.main(["--config", config, "--input", str(log), *_sets(settings)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "rejected: none" in out or "0 rejected" in out
    assert "Split: time_fractions" in out


def test_all_unknown_labels_name_the_labels_known(tmp_path, capsys):
    log = tmp_path / "shares.csv"
    log.write_text("user_id,item_id,behavior,timestamp\nu1,i1,share,1600000000\n")
    assert data_check.main(["--input", str(log)]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    reason = f"1 unknown_behavior (first at {log} line 2): not a key of data.behavior_mapping"
    assert reason in error
    # The default labels and the behavior names, which label themselves.
    assert "labels known: buy->purchase, cart->cart, click->click, fav->favorite" in error


@pytest.mark.parametrize(
    "content", ["", "user_id,item_id,behavior,timestamp\n"], ids=["0-byte", "header"]
)
def test_a_log_without_data_rows_is_called_empty(tmp_path, capsys, content):
    log = tmp_path / "log.csv"
    log.write_text(content)
    assert data_check.main(["--input", str(log)]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"error: no rows in '{log}': its files are empty or hold only a header line"


@pytest.mark.parametrize("where", ["missing/folder/acc.json", "."], ids=["no-folder", "a-folder"])
def test_an_accounting_path_that_cannot_be_written_stops_before_the_run(tmp_path, capsys, where):
    log = write_grid_log(tmp_path / "log.csv")
    with pytest.raises(SystemExit) as stopped:
        data_check.main(["--input", str(log), "--accounting", str(tmp_path / where)])
    assert stopped.value.code == 2
    assert "--accounting" in capsys.readouterr().err
