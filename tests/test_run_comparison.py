"""scripts/run_comparison.sh: row names become experiment flags; a bad name runs nothing."""

import json
import os
import pathlib
import shlex
import subprocess

import pytest

pytestmark = pytest.mark.unit

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "run_comparison.sh"
#: Seconds before a script run counts as hung: its row check starts Python and imports
#: the experiment (seconds on idle cores, over a minute beside two trainings).
TIMEOUT = 300


def _check_only(tmp_path) -> str:
    """A PY that passes the script's flag check (``-c``) and fails any run (``-m``)."""
    stub = tmp_path / "check_only_py"
    stub.write_text('#!/bin/sh\n[ "$1" = -c ] && exit 0\necho "ran: $*" >&2\nexit 1\n')
    stub.chmod(0o755)
    return str(stub)


def _run(tmp_path, *rows, **env):
    # PY=echo prints each experiment command instead of running it.
    env = {**os.environ, "PY": "echo", **env}
    (tmp_path / "data").mkdir(exist_ok=True)
    # A release of three behaviors: the experiment's --check reads its file names and
    # sizes (every modelled behavior needs train, valid and test files).
    for prefix in ("target", "click", "favourite"):
        for split in ("train", "valid", "test"):
            (tmp_path / "data" / f"{prefix}_{split}").write_text("1 1\n")
    args = [str(SCRIPT), str(tmp_path / "data"), str(tmp_path / "out"), "1", *rows]
    return subprocess.run(
        args, check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


def test_rows_become_experiment_flags(tmp_path):
    done = _run(tmp_path, "bvae_wd1_ema0.99_boost", "d150")
    assert done.returncode == 0, done.stderr
    commands = [line for line in done.stdout.splitlines() if line.startswith("-m bvae_tf")]
    assert len(commands) == 2
    assert "--name bvae_wd1_ema0.99_boost_s0" in commands[0]
    assert "--model bvae --weight-decay 1 --weight-average 0.99 --boost-grid" in commands[0]
    assert "--epochs 150 --patience 40 --paper-protocol" in commands[0]
    assert commands[1].endswith("--model bvae --latent-dim 150")
    dropout = _run(tmp_path, "bvae_anneal10000_dropout", "bvae_dropout0.3")
    assert "--model bvae --anneal-steps 10000 --grid dropout=0.2,0.5,0.7" in dropout.stdout
    assert "--name bvae_dropout0.3_s0" in dropout.stdout
    assert "--model bvae --dropout 0.3" in dropout.stdout
    beta = _run(tmp_path, "bvae_anneal10000_beta", "bvae_beta0.1")
    assert "--model bvae --anneal-steps 10000 --grid beta_cap=0.05,0.2,0.5" in beta.stdout
    assert "--model bvae --beta-cap 0.1" in beta.stdout
    longer = _run(tmp_path, "bvae_anneal10000_e300")
    # The row's budget comes after the script's, so the experiment takes it (argparse).
    assert (
        "--epochs 150 --patience 40 --paper-protocol --model bvae --anneal-steps 10000 --epochs 300"
        in longer.stdout
    )
    released = _run(tmp_path, "bvae_e1000_p500")
    assert "--model bvae --epochs 1000 --patience 500" in released.stdout
    # A tuned row searches the rate in place of the row's own (NGCF sets --lr).
    tuned = _run(tmp_path, "ngcf_tuned")
    assert "--model ngcf --batch-size 1024 --epochs 60 --patience 10 --grid" in tuned.stdout
    assert " --lr " not in tuned.stdout
    own = _run(tmp_path, "ngcf_own", "recvae_own", "ehcf_own", "vae_pp_own")
    assert "--model ngcf --batch-size 1024 --lr 1e-3 --epochs 60 --patience 10 --grid ngcf_l2" in (
        own.stdout
    )
    assert "--model recvae --epochs 50 --patience 10 --grid recvae_gamma=0.0035" in own.stdout
    assert "--model ehcf --batch-size 256 --epochs 300 --patience 40 --grid ehcf_dropout" in (
        own.stdout
    )
    assert "--model vae_pp --grid dropout=0.2,0.5,0.7" in own.stdout
    assert "unknown row ease_own" in _run(tmp_path, "ease_own").stderr
    smoke = _run(tmp_path, "bvae", EPOCHS="1", PATIENCE="0")
    assert "--epochs 1 --patience 0 --paper-protocol" in smoke.stdout
    not_dry = _run(tmp_path, "bvae", DRY_RUN="0")  # "0" is no dry run
    assert "would run" not in not_dry.stdout and "-m bvae_tf.experiment" in not_dry.stdout


def test_an_unknown_row_stops_before_any_run(tmp_path):
    done = _run(tmp_path, "bvae", "bvae_emaX")
    assert done.returncode == 2
    assert "unknown row bvae_emaX" in done.stderr
    assert "bvae_tf.experiment" not in done.stdout  # not even the valid row before it


@pytest.mark.parametrize(
    "row, message",
    [
        ("weights_abc_0.5_0.5", "('abc' is not a number)"),
        ("rq4_purchase_foo", "('foo' is none of purchase, click, favorite, cart)"),
        ("bvae_ema5", "(ema<R> needs 0 <= R < 1)"),
        ("item_path_g1x", "('1x' is not a number)"),
        # Values the experiment would refuse only at the row's turn, hours in.
        ("item_path_g0", "('0' must be > 0)"),
        ("weights_0_0_0", "('0' must be > 0)"),
        ("weights_0_0.5_0.5", "('0' must be > 0)"),
        ("weights_0.5_0.5_0.5", "(the weights sum to 1)"),
        ("weights_0.5", "(weights_<w1>_<w2>_<w3>: 3 weights)"),
        ("rq4_purchase_purchase", "('purchase' twice)"),
        ("bvae_tuned_tuned", "(_tuned once)"),
        ("bvae_dropout0.x", "('0.x' must be in [0, 1))"),
        ("bvae_dropout1", "('1' must be in [0, 1))"),
        ("item_path_drop1.5", "('1.5' must be in [0, 1))"),
        ("bvae_anneal1.5", "('1.5' is not a whole number)"),
        ("bvae_cos99999999999", "('99999999999' is not a whole number)"),
        ("bvae_e99999999999999999999", "(e<N>: N a whole number of epochs >= 1)"),
        ("rq4_", "(an empty part)"),
        ("bvae_anneal10__e5", "(an empty part)"),
        ("bvae_anneal10_anneal20", "('anneal' twice)"),
        ("bvae_beta0.2_beta", "('beta' twice)"),
        ("bvae_anneal10_boost_e5", "(boost is the last part)"),
        ("bvae_e0", "(e<N>: N a whole number of epochs >= 1)"),
        ("bvae_e3x", "(e<N>: N a whole number of epochs >= 1)"),
        ("bvae_p5x", "(p<N>: N a whole number of epochs)"),
        ("bvae_p5_p6", "('p' twice)"),
    ],
)
def test_a_row_with_a_bad_value_stops_before_any_run(tmp_path, row, message):
    done = _run(tmp_path, "bvae", row)
    assert done.returncode == 2 and f"unknown row {row} {message}" in done.stderr
    assert "bvae_tf.experiment" not in done.stdout


@pytest.mark.parametrize("row", ["", "rq4_*", "rq4_purchase_*", "bvae;ls"])
def test_a_row_that_is_no_word_stops_before_any_run(tmp_path, row):
    (tmp_path / "Makefile").write_text("")  # a file a glob would have found
    done = _run(tmp_path, "bvae", row)
    assert done.returncode == 2 and f"unknown row '{row}' (rows are letters" in done.stderr
    assert "bvae_tf.experiment" not in done.stdout and "Makefile" not in done.stderr


def test_seeds_are_decimal(tmp_path):
    (tmp_path / "data").mkdir()
    args = [str(SCRIPT), str(tmp_path / "data"), str(tmp_path / "out"), "010", "bvae"]
    env = {**os.environ, "PY": "echo"}
    done = subprocess.run(
        args, check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("-m bvae_tf.experiment") == 10 and "--first-seed 9 " in done.stdout


@pytest.mark.parametrize("row", ["nosuchrow_tuned", "ease_tuned"])
def test_an_unknown_tuned_row_stops_before_any_run(tmp_path, row):
    done = _run(tmp_path, "bvae", row)
    assert done.returncode == 2 and f"unknown row {row.removesuffix('_tuned')}" in done.stderr
    assert "bvae_tf.experiment" not in done.stdout


@pytest.mark.parametrize(
    "seeds, env, message",
    [
        ("abc", {}, "SEEDS must be a whole number >= 1 of at most 9 digits, got 'abc'"),
        ("0", {}, "SEEDS must be a whole number >= 1 of at most 9 digits, got '0'"),
        (
            "1",
            {"EPOCHS": "1.5"},
            "EPOCHS must be a whole number >= 1 of at most 9 digits, got '1.5'",
        ),
        ("18446744073709551617", {}, "of at most 9 digits, got '18446744073709551617'"),
        (
            "1",
            {"PATIENCE": "-1"},
            "PATIENCE must be a whole number >= 0 of at most 9 digits, got '-1'",
        ),
    ],
)
def test_bad_counts_stop_before_any_run(tmp_path, seeds, env, message):
    args = [str(SCRIPT), "data", "out", seeds, "popularity", "bvae"]
    done = subprocess.run(
        args,
        check=False,
        env={**os.environ, "PY": "echo", **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 2 and message in done.stderr
    assert "bvae_tf.experiment" not in done.stdout


def test_dry_run_lists_the_runs_not_done_and_runs_nothing(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "bvae_s0.json").write_text(json.dumps({"runs": [{"seed": 0}]}))
    args = [str(SCRIPT), str(tmp_path / "data"), str(tmp_path / "out"), "2", "bvae"]
    env = {**os.environ, "DRY_RUN": "1", "PY": _check_only(tmp_path)}  # fails if it ran
    done = subprocess.run(
        args, check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("would run:")]
    assert "--name bvae_s1 " in line and "--first-seed 1 " in line


def test_a_result_of_another_command_is_named_not_counted_silently(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "out").mkdir()
    same = "python -m bvae_tf.experiment --data d --out o --name bvae_s0 --seeds 1"
    same += " --first-seed 0 --epochs 150 --patience 40 --paper-protocol --model bvae"
    runs = [{"seed": 0}]
    (tmp_path / "out" / "bvae_s0.json").write_text(json.dumps({"command": same, "runs": runs}))
    smoke = same.replace("--name bvae_s0", "--name vae_u_s0").replace("bvae", "vae_u")
    smoke = smoke.replace("--epochs 150", "--epochs 1")
    (tmp_path / "out" / "vae_u_s0.json").write_text(json.dumps({"command": smoke, "runs": runs}))
    args = [str(SCRIPT), str(tmp_path / "data"), str(tmp_path / "out"), "1", "bvae", "vae_u"]
    env = {**os.environ, "DRY_RUN": "1", "PY": _check_only(tmp_path)}
    done = subprocess.run(
        args, check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    assert "would run:" not in done.stdout  # neither is rerun over a kept result
    assert "1 result(s) in OUT were written by another command" in done.stderr
    assert "vae_u_s0.json" in done.stderr and "bvae_s0.json" not in done.stderr


def test_a_kept_result_is_matched_to_data_by_its_digest_not_its_path(tmp_path):
    import sys

    from bvae_tf.experiment import data_digest

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "purchase_train").write_text("0 1\n")
    (tmp_path / "out").mkdir()
    # The real interpreter computes DATA's digest; any other command is only checked.
    stub = tmp_path / "digest_py"
    stub.write_text(
        '#!/bin/sh\ncase "$2" in *data_digest*) exec ' + sys.executable + ' "$@";; esac\n'
        '[ "$1" = -c ] && exit 0\necho "ran: $*" >&2\nexit 1\n'
    )
    stub.chmod(0o755)
    command = "python -m bvae_tf.experiment --data elsewhere --out o --name vae_t_s0 --seeds 1"
    command += " --first-seed 0 --epochs 150 --patience 40 --paper-protocol --model vae_t"
    kept = {"command": command, "runs": [{"seed": 0}], "data": "../no/such/folder"}
    args = [str(SCRIPT), str(tmp_path / "data"), str(tmp_path / "out"), "1", "vae_t"]
    env = {**os.environ, "DRY_RUN": "1", "PY": str(stub)}
    for digest, code in ((data_digest(tmp_path / "data"), 0), ("0" * 64, 2)):
        kept["data_digest"] = digest
        (tmp_path / "out" / "vae_t_s0.json").write_text(json.dumps(kept))
        done = subprocess.run(
            args, check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )
        assert done.returncode == code, done.stderr
        assert "would run:" not in done.stdout
        assert ("digest differs from those of" in done.stderr) == bool(code)
    del kept["data_digest"]  # then the path is compared, and it does not exist here
    (tmp_path / "out" / "vae_t_s0.json").write_text(json.dumps(kept))
    done = subprocess.run(
        args, check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 2 and "records no data digest" in done.stderr
    assert "does not exist here" in done.stderr


@pytest.mark.parametrize("dry_run", ["", "1"])
def test_a_missing_data_folder_stops_before_any_run(tmp_path, dry_run):
    args = [str(SCRIPT), str(tmp_path / "missing"), str(tmp_path / "out"), "1", "bvae"]
    env = {**os.environ, "PY": "echo", "DRY_RUN": dry_run}
    done = subprocess.run(
        args, check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert "missing' is not a folder" in done.stderr and not (tmp_path / "out").exists()
    assert done.returncode == 2  # a dry run refuses what a run would, after listing
    assert ("bvae_tf.experiment" in done.stdout) == bool(dry_run)  # listed, never run


def test_relative_paths_are_read_from_the_callers_folder(tmp_path):
    (tmp_path / "mydata").mkdir()
    args = [str(SCRIPT), "mydata", "myout", "1", "popularity"]
    env = {**os.environ, "PY": "echo"}
    done = subprocess.run(
        args, check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    (command,) = [line for line in done.stdout.splitlines() if line.startswith("-m bvae_tf")]
    flags = command.split()
    root = SCRIPT.parents[1]
    data, out = flags[flags.index("--data") + 1], flags[flags.index("--out") + 1]
    assert (root / data).resolve() == (tmp_path / "mydata").resolve()
    assert (root / out).resolve() == (tmp_path / "myout").resolve()
    assert (tmp_path / "myout").is_dir() and not (root / "myout").exists()


def test_epochs_and_patience_replace_a_rows_own_budget(tmp_path):
    done = _run(tmp_path, "ehcf", "bvae_e300", "bvae", EPOCHS="2", PATIENCE="1")
    assert done.returncode == 0, done.stderr
    ehcf, longer, bvae = [x for x in done.stdout.splitlines() if x.startswith("-m bvae_tf")]
    assert ehcf.endswith("--epochs 300 --patience 40 --epochs 2 --patience 1")
    assert longer.endswith("--epochs 300 --epochs 2")  # argparse takes the last
    patient = _run(tmp_path, "bvae_p500", PATIENCE="1")
    (command,) = [x for x in patient.stdout.splitlines() if x.startswith("-m bvae_tf")]
    assert command.endswith("--model bvae --patience 500 --patience 1")
    assert bvae.endswith("--paper-protocol --model bvae")  # no budget of its own


def test_a_row_given_twice_stops_before_any_run(tmp_path):
    done = _run(tmp_path, "bvae", "vae_u", "bvae")
    assert done.returncode == 2 and "row bvae is given twice" in done.stderr
    assert "bvae_tf.experiment" not in done.stdout


def test_the_experiment_checks_every_rows_flags_before_any_run(tmp_path):
    """Every default row and its ``_tuned`` form passes the experiment's own --check
    (``ngcf_tuned`` once did not: its --lr and the searched rate); a value only the
    experiment refuses stops the script before any run, naming the row."""
    import sys

    rows = ["popularity", "repeat", "ease", "bvae", "vae_t", "vae_u", "recvae", "vae_pp"]
    rows += ["ehcf", "ngcf", "mmoe", "cgc", "exchange", "no_base_gff_tff"]
    rows += [f"{r}_tuned" for r in rows[3:]] + ["bvae_dropout"]
    done = _run(tmp_path, *rows, PY=sys.executable, DRY_RUN="1", DROPOUT_GRID="0.2,1.5")
    assert done.returncode == 2 and "would run" not in done.stdout
    (refused,) = [line for line in done.stderr.splitlines() if line.startswith("row ")]
    assert refused.startswith("row bvae_dropout: ") and "dropout" in refused[18:]
    good = _run(tmp_path, *rows[:-1], PY=sys.executable, DRY_RUN="1")
    assert good.returncode == 0, good.stderr
    assert good.stdout.count("would run:") == len(rows) - 1


def test_a_damaged_result_of_a_later_seed_stops_the_list_before_any_run(tmp_path):
    """Every seed's command is checked first: a truncated ``bvae_s1.json`` stops the
    list before seed 0 of any row runs, naming the row and the file once."""
    import sys

    _run(tmp_path, "bvae")  # (writes the release and OUT)
    (tmp_path / "out" / "bvae_s1.json").write_text('{"command": "x", "ru')
    args = [str(SCRIPT), str(tmp_path / "data"), str(tmp_path / "out"), "2", "vae_u", "bvae"]
    env = {**os.environ, "PY": sys.executable, "DRY_RUN": "1"}
    done = subprocess.run(
        args, check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 2 and "would run" not in done.stdout, done.stdout
    (refused,) = [line for line in done.stderr.splitlines() if line.startswith("row ")]
    assert refused.startswith("row bvae: ") and "bvae_s1.json' is not a readable result" in refused


def test_kept_seeds_of_a_searched_row_count_in_another_out(tmp_path):
    """A searched row's later seed records ``--selected-from OUT/<row>_s0.json`` as OUT
    was spelled then: copied into another OUT it still counts as done (the experiment
    checks the choice it trained)."""
    _run(tmp_path, "vae_u_own")  # (writes the release and OUT)
    args = [str(SCRIPT), str(tmp_path / "data"), str(tmp_path / "out"), "2", "vae_u_own"]
    env = {**os.environ, "PY": "echo", "DRY_RUN": "1"}

    def dry_run():
        return subprocess.run(
            args, check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT
        )

    (line,) = [x for x in dry_run().stdout.splitlines() if "--name vae_u_own_s1" in x]
    words = shlex.split(line.removeprefix("would run:"))[1:]  # (after PY, echo here)
    words = words[: words.index("--reuse-from")] if "--reuse-from" in words else words
    out = words[words.index("--out") + 1]
    assert words[words.index("--selected-from") + 1] == f"{out}/vae_u_own_s0.json"
    for seed in (0, 1):  # as written from another folder, OUT spelled "elsewhere"
        kept = [w.replace("_s1", f"_s{seed}") for w in words]
        kept = ["elsewhere" if w == out else w.replace(f"{out}/", "elsewhere/") for w in kept]
        if seed == 0:
            kept = kept[: kept.index("--selected-from")]
            kept[kept.index("--first-seed") + 1] = "0"
        command = "python " + shlex.join(kept)
        (tmp_path / "out" / f"vae_u_own_s{seed}.json").write_text(
            json.dumps({"command": command, "runs": [{"seed": seed}]})
        )
    again = dry_run()
    assert again.returncode == 0, again.stderr
    assert "would run:" not in again.stdout and "another command" not in again.stderr


def test_an_unreadable_result_is_run_not_skipped(tmp_path):
    """A truncated JSON is not "done by another command": the experiment runs and names it."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "bvae_s0.json").write_text('{"command": "x", "ru')
    done = _run(tmp_path, "bvae")
    assert done.returncode == 0, done.stderr
    assert "--name bvae_s0" in done.stdout and "another command" not in done.stdout


def test_a_result_of_other_data_stops_the_list_and_one_without_runs_is_run(tmp_path):
    """A JSON in OUT counts as done only if it holds finished runs of DATA's folder (the
    same folder spelled another way counts); another folder's result stops the list."""
    (tmp_path / "data").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "out").mkdir()
    command = "python -m bvae_tf.experiment --data d --out o --name popularity --model popularity"

    def kept(data, runs):
        result = {"command": command, "data": str(data), "runs": runs}
        (tmp_path / "out" / "popularity.json").write_text(json.dumps(result))
        return _run(tmp_path, "popularity", DRY_RUN="1", PY=_check_only(tmp_path))

    done = kept(tmp_path / "other" / ".." / "data", [{"seed": 0}])
    assert done.returncode == 0, done.stderr
    assert "would run:" not in done.stdout
    foreign = kept(tmp_path / "other", [{"seed": 0}])
    assert foreign.returncode == 2 and "would run:" not in foreign.stdout
    assert "popularity.json holds a result trained on other data (its --data resolves to " + (
        f"{tmp_path / 'other'}, not {tmp_path / 'data'}"
    ) in foreign.stderr.replace("\n", "")
    unfinished = kept(tmp_path / "data", [])
    assert unfinished.returncode == 0, unfinished.stderr
    assert "would run:" in unfinished.stdout and "--name popularity" in unfinished.stdout


def test_ub_defaults_to_the_inductive_rows_and_eases_factored_form(tmp_path):
    env = {**os.environ, "PY": "echo"}
    ub = tmp_path / "UB"
    ub.mkdir()

    def commands(*rows, **extra):
        args = [str(SCRIPT), str(ub), str(tmp_path / "out"), "1", *rows]
        done = subprocess.run(
            args, check=False, env={**env, **extra}, capture_output=True, text=True, timeout=TIMEOUT
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = commands()
    names = [line.split("--name ")[1].split()[0] for line in out.splitlines() if "--name" in line]
    assert names[:3] == ["popularity", "repeat", "ease"] and "bvae_s0" in names
    assert not any(n.startswith(("ehcf", "ngcf")) for n in names)
    assert "--model ease --ease-dtype float32 --ease-factored" in out
    mine = commands("ease", EASE_FLAGS="")  # the user's own, even empty
    assert "--ease-factored" not in mine and "--model ease" in mine
    assert "ngcf_s0" in commands("ngcf")  # a row named is run, transductive or not


def test_a_searched_rows_later_seeds_train_its_seed_0_choice(tmp_path):
    env = {**os.environ, "PY": "echo"}
    (tmp_path / "data").mkdir()
    for prefix in ("target", "click", "favourite"):
        for split in ("train", "valid", "test"):
            (tmp_path / "data" / f"{prefix}_{split}").write_text("1 1\n")
    args = [str(SCRIPT), str(tmp_path / "data"), str(tmp_path / "out"), "2", "bvae_own", "bvae"]
    done = subprocess.run(
        args, check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr
    commands = {
        line.split("--name ")[1].split()[0]: line
        for line in done.stdout.splitlines()
        if line.startswith("-m bvae_tf")
    }
    assert set(commands) == {"bvae_own_s0", "bvae_own_s1", "bvae_s0", "bvae_s1"}
    assert "--selected-from" not in commands["bvae_own_s0"] + commands["bvae_s0"]
    assert "--selected-from" not in commands["bvae_s1"]  # nothing searched: nothing chosen
    # The search's grid stays in the command: the experiment checks it is the same one.
    searched = commands["bvae_own_s1"]
    assert "--grid dropout=0.2,0.5,0.7 --selected-from " in searched
    # A choice that is the untuned row's setting may be taken from the untuned row's
    # files (the experiment checks them), named last.
    chosen, reuse = searched.split(" --reuse-from ")
    assert chosen.endswith("/out/bvae_own_s0.json")
    assert [path.rsplit("/", 2)[1:] for path in reuse.split()] == [
        ["out", "bvae_s0.json"],
        ["out", "bvae_s1.json"],
    ]
    assert "--reuse-from" not in commands["bvae_own_s0"] + commands["bvae_s1"]
    # A kept seed counts as done whether or not its command named the reuse files.
    (tmp_path / "out").mkdir(exist_ok=True)
    for name in ("bvae_own_s1", "bvae_s1"):
        kept = commands[name].replace("-m bvae_tf", "python -m bvae_tf", 1)
        if name == "bvae_s1":
            kept += " --reuse-from x.json"
        (tmp_path / "out" / f"{name}.json").write_text(
            json.dumps({"command": kept, "data": str(tmp_path / "data"), "runs": [{"seed": 1}]})
        )
    again = subprocess.run(
        args, check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert again.returncode == 0, again.stderr
    assert "bvae_own_s1" not in again.stdout and "bvae_s1" not in again.stdout
    assert "written by another command" not in again.stderr
