"""The experiment CLI end to end on a tiny release-format dataset."""

import argparse
import json
import logging
import os
import pathlib
import shlex
import shutil

import numpy as np
import pytest
import tensorflow as tf

from bvae_tf import experiment
from bvae_tf.baselines import ease as ease_module

pytestmark = [
    pytest.mark.e2e,
    # tf.data's map functions are traced in either mode (see _eager_unless_graph_mode).
    pytest.mark.filterwarnings("ignore:Even though the `tf.config.experimental_run_functions"),
]


@pytest.fixture(autouse=True)
def _eager_unless_graph_mode(request):
    """These tests check the CLI's logic (grids, selection, seeds, resumption, reuse,
    result files), not TensorFlow's graph building: they run ``tf.function`` and
    Keras' train step eagerly (``tf.config.run_functions_eagerly``), which skips
    tracing, most of a tiny run's time (a 2-epoch BVAE run: about 5.8 s traced, 3.2 s
    eagerly). ``test_eager_and_traced_runs_write_the_same_results`` checks that the
    two modes give the same numbers; tests marked ``graph_mode`` trace as a real run
    does."""
    eager = request.node.get_closest_marker("graph_mode") is None
    tf.config.run_functions_eagerly(eager)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture
def release_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "release"
    folder.mkdir()
    for prefix in ("target", "click", "favourite"):
        for suffix, density in (("train", 0.3), ("valid", 0.06), ("test", 0.06)):
            pairs = np.argwhere(rng.random((20, 25)) < density) + 1
            (folder / f"{prefix}_{suffix}").write_text("".join(f"{u} {i}\n" for u, i in pairs))
    (folder / "cart_train").write_text("")
    return folder


def _run(release_dir, out, *extra, code=0):
    model = extra[extra.index("--model") + 1] if "--model" in extra else "bvae"
    small = ["--latent-dim", "4"] if model in experiment.MODEL_FLAGS["latent_dim"] else []
    vae = ["--no-optimizer-jit"] if model in experiment.SAMPLED_SOFTMAX_MODELS else []
    argv = [
        *("--data", str(release_dir), "--out", str(out)),
        *("--epochs", "2", "--patience", "1", "--batch-size", "8"),
        *small,
        *vae,
        *extra,
    ]
    assert experiment.main(argv) == code  # 130: interrupted (a simulated kill)


@pytest.mark.graph_mode
@pytest.mark.parametrize("model", ["bvae", "vae_pp"])
def test_eager_and_traced_runs_write_the_same_results(release_dir, tmp_path, model):
    """The premise of this module's eager mode: a run's curve, selection and per-user
    test values are those of the traced run, up to float rounding."""
    results = {}
    for eager in (False, True):
        tf.config.run_functions_eagerly(eager)
        tf.keras.backend.clear_session()
        _run(release_dir, tmp_path / str(eager), "--model", model, "--seeds", "1", "--name", "r")
        results[eager] = json.loads((tmp_path / str(eager) / "r.json").read_text())
    traced, eager = (results[mode]["runs"] for mode in (False, True))
    assert len(traced) == len(eager) == 1
    assert traced[0]["test_per_user"].keys() == eager[0]["test_per_user"].keys()
    for behavior, values in traced[0]["test_per_user"].items():
        assert eager[0]["test_per_user"][behavior] == pytest.approx(values, abs=1e-6), behavior
    parts = list(zip(*(r[0].get("parts") or r for r in (traced, eager)), strict=True))
    assert len(parts) == (3 if model == "vae_pp" else 1)  # one VAE++ per target
    for a, b in parts:
        assert (a["best_epoch"], a["epochs_run"]) == (b["best_epoch"], b["epochs_run"])
        assert a["curve"].keys() == b["curve"].keys()
        for column, values in a["curve"].items():
            if not column.endswith("_seconds"):  # wall times differ, the numbers do not
                assert b["curve"][column] == pytest.approx(values, rel=1e-4, abs=1e-6), column


@pytest.mark.graph_mode
def test_bvae_two_seeds_json_and_paper_layout_markdown(release_dir, tmp_path):
    _run(
        release_dir,
        tmp_path,
        "--model",
        "bvae",
        "--seeds",
        "2",
        "--paper-protocol",
        "--gate-mode",
        "reference",
        "--name",
        "ref",
    )
    result = json.loads((tmp_path / "ref.json").read_text())
    assert result["behaviors"] == ["purchase", "click", "favorite"]
    assert [r["seed"] for r in result["runs"]] == [0, 1]
    assert (
        result["protocol"].startswith("honest protocol")
        and "; paper protocol" in (result["protocol"])
    )
    # The label names every setting that differs from the defaults.
    assert result["method"] == "BVAE (gates=reference, latent_dim=4)"
    for protocol in ("honest", "paper"):
        summary = result["summary"][protocol]
        mean, std = summary["click"]["ndcg@5"]
        assert 0.0 <= mean <= 1.0 and std >= 0.0
    assert result["runs"][0]["config"]["gate_mode"] == "reference"
    # The per-epoch curve is stored by column; read back, it holds what the paper
    # protocol picked from (each behavior's best test epoch), to the stored digits.
    run = result["runs"][0]
    assert isinstance(run["curve"], dict) and len(run["curve"]["epoch"]) == run["epochs_run"]
    rows = experiment.curve_rows(run["curve"])
    best_test = max(r["test/click/ndcg@5"] for r in rows)
    assert best_test == pytest.approx(run["paper"]["click"]["ndcg@5"], rel=1e-6)
    table = (tmp_path / "ref.md").read_text()
    assert "| Behavior | Method | Prec@5 | Rec@5 | NDCG@5 | HR@5 | Seeds |" in table
    assert "| favorite | BVAE (gates=reference, latent_dim=4) |" in table
    assert "paper protocol" in table and "honest protocol" in table
    # Files of the same method are pooled (seeds run in separate invocations).
    pooled, more = tmp_path / "pooled.md", tmp_path / "ref_s2.json"
    for run, seed in zip(result["runs"], (2, 3), strict=True):
        run["seed"] = run["config"]["seed"] = seed
        del run["test_per_user"]  # the same users' scores would be refused as a copy
    more.write_text(json.dumps(result))
    experiment.main(
        [
            "--combine",
            str(tmp_path / "ref.json"),
            str(more),
            "--markdown",
            str(pooled),
            "--protocols",
            "valid",
        ]
    )
    text = pooled.read_text()
    assert "validation split" in text
    rows = [line for line in text.splitlines() if line.startswith("| click |")]
    assert len(rows) == 1 and rows[0].endswith("| 4 |")


def test_baselines_and_combined_table(release_dir, tmp_path):
    _run(
        release_dir,
        tmp_path,
        "--model",
        "vae_t",
        "--seeds",
        "1",
        "--behaviors",
        "purchase",
        "click",
    )
    _run(release_dir, tmp_path, "--model", "vae_u", "--seeds", "1")
    vae_t = json.loads((tmp_path / "vae_t.json").read_text())
    assert set(vae_t["runs"][0]["honest"]) == {"purchase", "click"}
    assert [p["config"]["behaviors"] for p in vae_t["runs"][0]["parts"]] == [
        ["purchase"],
        ["click"],
    ]
    vae_u = json.loads((tmp_path / "vae_u.json").read_text())
    assert vae_u["runs"][0]["config"]["variant"] == "union_vae"
    machine = vae_u["runs"][0]["machine"]  # what the report's captions name
    assert machine["cpus"] == os.cpu_count() and isinstance(machine["gpus"], list)
    md = tmp_path / "all.md"
    experiment.main(
        [
            "--combine",
            str(tmp_path / "vae_t.json"),
            str(tmp_path / "vae_u.json"),
            "--markdown",
            str(md),
        ]
    )
    text = md.read_text()
    # The runs' non-default training settings (--latent-dim 4 of _run) label them.
    # VAE (T.) on two of VAE (U.)'s three behaviors says so.
    assert "| purchase | VAE (T.) (latent_dim=4) [purchase + click only] |" in text
    assert "| purchase | VAE (U.) (latent_dim=4) |" in text
    assert "| favorite | VAE (U.) (latent_dim=4) |" in text


def test_cli_rejects_missing_data(capsys):
    with pytest.raises(SystemExit):
        experiment.main([])


@pytest.mark.unit
def test_cli_names_a_data_path_that_is_no_folder_before_writing_anything(tmp_path, capsys):
    out = tmp_path / "out"
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    for data, message in ((tmp_path / "missing", "does not exist"), (afile, "is not a folder")):
        with pytest.raises(SystemExit):
            experiment.main(["--data", str(data), "--out", str(out)])
        assert f"--data {str(data)!r} {message}" in capsys.readouterr().err
    assert not out.exists()  # no log file either


@pytest.mark.unit
def test_cli_names_an_out_below_a_file_and_a_markdown_without_combine(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SystemExit):
        experiment.main(["--data", str(tmp_path), "--out", str(tmp_path / "afile" / "sub")])
    assert "sub' cannot be a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        experiment.main(["--data", str(tmp_path), "--markdown", str(tmp_path / "t.md")])
    assert "--markdown, --anchor and --protocols go with --combine" in capsys.readouterr().err
    for argv, message in (
        (["--protocols", "valid"], "--markdown, --anchor and --protocols go with --combine"),
        (["--ablation", "no_base", "no_base"], "--ablation names a part twice"),
        (["--model", "popularity", "--seeds", "3"], "has no randomness: one run"),
    ):
        with pytest.raises(SystemExit):
            experiment.main(["--data", str(tmp_path), *argv])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        experiment.main(["--combine", str(tmp_path / "afile"), "--markdown", str(tmp_path)])
    assert "is a folder: name a file in it" in capsys.readouterr().err


def test_cli_errors_are_one_line_without_the_usage(tmp_path, capsys):
    with pytest.raises(SystemExit):  # found before the first seed trains, not after
        experiment.main(["--data", str(tmp_path), "--first-seed", "2147483647", "--seeds", "2"])
    assert "reaches seed 2147483648, above the largest seed 2147483647" in capsys.readouterr().err
    for argv in (["--combine", str(tmp_path / "missing.json")], ["--no-such-flag"]):
        with pytest.raises(SystemExit) as stop:
            experiment.main(argv)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("python -m bvae_tf.experiment: error: ")


@pytest.mark.unit
@pytest.mark.parametrize(
    "model, flags, named",
    [
        ("ngcf", ["--latent-dim", "0"], "--latent-dim"),
        ("recvae", ["--dropout", "0.3"], "--dropout"),
        ("ehcf", ["--beta-cap", "0.5", "--gate-mode", "reference"], "--gate-mode, --beta-cap"),
        ("vae_pp", ["--encoder", "mmoe"], "--encoder"),
        ("ease", ["--lr", "0.1"], "--lr"),
        ("popularity", ["--ease-l2", "5"], "--ease-l2"),
        ("bvae", ["--recvae-gamma", "0.01"], "--recvae-gamma"),
        ("ngcf", ["--grid", "dropout=0.1,0.2"], "--grid dropout"),
        ("ngcf", ["--dropout", "0.3", "--grid", "dropout=0.1"], "--dropout, --grid dropout"),
        ("vae_t", ["--encoder", "mmoe"], "--encoder"),
        ("vae_u", ["--item-path"], "--item-path"),
        ("vae_t", ["--latent-dims", "4", "4"], "--latent-dims"),
        ("popularity", ["--epochs", "2"], "--epochs"),
        ("repeat", ["--paper-protocol"], "--paper-protocol"),
    ],
)
def test_cli_refuses_flags_the_model_does_not_read(tmp_path, capsys, model, flags, named):
    with pytest.raises(SystemExit):
        experiment.main(["--data", str(tmp_path), "--model", model, *flags])
    assert f"{named}: --model {model} does not read" in capsys.readouterr().err


@pytest.mark.unit
def test_a_refused_setting_names_the_models_own_counterpart(tmp_path, capsys):
    for model, flags, own in (
        ("ehcf", ["--grid", "dropout=0.3,0.5"], "--ehcf-dropout, ehcf_dropout in --grid"),
        ("recvae", ["--beta-cap", "0.5"], "--recvae-gamma, recvae_gamma in --grid"),
    ):
        with pytest.raises(SystemExit):
            experiment.main(["--data", str(tmp_path), "--model", model, *flags])
        assert f"({model}'s own: {own}; python -m bvae_tf.experiment --help)" in (
            capsys.readouterr().err
        )
    with pytest.raises(SystemExit):  # nothing to point to
        experiment.main(["--data", str(tmp_path), "--model", "ngcf", "--dropout", "0.3"])
    assert "read it (python -m bvae_tf.experiment --help)" in capsys.readouterr().err


@pytest.mark.unit
@pytest.mark.parametrize(
    "flags, named",
    [
        (["--sdwl-form", "reference", "--ablation", "no_sdwl"], "--sdwl-form"),
        (["--sdwl-form", "paper", "--loss-weights", "1", "1", "1"], "--sdwl-form"),
        (["--gate-mode", "reference", "--ablation", "no_gff", "no_tff"], "--gate-mode"),
    ],
)
def test_cli_refuses_a_setting_of_a_part_the_run_removes(tmp_path, capsys, flags, named):
    with pytest.raises(SystemExit):
        experiment.main(["--data", str(tmp_path), "--model", "bvae", *flags])
    err = capsys.readouterr().err
    assert f"drop {named}" in err and err.count("\n") == 1


@pytest.mark.unit
@pytest.mark.parametrize(
    "error, said",
    [
        (FloatingPointError("the training loss is nan after epoch 1"), "loss is nan after epoch"),
        (
            tf.errors.ResourceExhaustedError(None, None, "OOM when allocating\n" + "x" * 9000),
            "out of memory (OOM when allocating): try a smaller --batch-size",
        ),
    ],
)
def test_a_diverged_or_out_of_memory_run_ends_in_one_line(
    tmp_path, capsys, monkeypatch, error, said
):
    def run(args):
        raise error

    monkeypatch.setattr(experiment, "run", run)
    code = experiment.main(["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 1 and said in err and "Traceback" not in err, err
    assert len(err) < 1000


@pytest.mark.unit
def test_a_bvae_label_leaves_out_the_sdwl_form_where_sdwl_is_off():
    behaviors = ["purchase", "click"]
    form = {"behaviors": behaviors, "sdwl_form": "reference"}
    assert experiment.method_label("bvae", form) == "BVAE (gates=gated, sdwl_form=reference)"
    off = {**form, "use_sdwl": False}
    assert experiment.method_label("bvae", off) == "BVAE (gates=gated, -SDWL)"
    fixed = {**form, "loss_weights": [1.0, 1.0]}
    assert experiment.method_label("bvae", fixed) == "BVAE (gates=gated, loss_weights=[1.0, 1.0])"


@pytest.mark.unit
def test_ehcf_is_tuned_over_what_it_reads(tmp_path, capsys):
    base = ["--data", str(tmp_path / "none"), "--model", "ehcf", "--tune", "2"]
    with pytest.raises(SystemExit):
        experiment.main(base)  # the default space: learning rate, batch size and 3 others
    assert "--tune-space anneal_epochs, beta_cap, dropout: --model ehcf" in capsys.readouterr().err
    drop = [f"--tune-space={n}=none" for n in ("anneal_epochs", "beta_cap", "dropout")]
    with pytest.raises(SystemExit):
        experiment.main([*base, *drop])
    assert "none' does not exist" in capsys.readouterr().err  # past every flag check


@pytest.mark.unit
def test_every_model_reads_the_flags_it_is_allowed():
    args = experiment._parser().parse_args(["--model", "vae_pp", "--dropout", "0.3", "--lr", "1"])
    assert experiment.foreign_flags(args, experiment._parser()) == []
    args = experiment._parser().parse_args(["--model", "bvae", "--gate-mode", "reference"])
    assert experiment.foreign_flags(args, experiment._parser()) == []


def _result(model, method, seed, value, **config):
    run = {"seed": seed, "config": {"seed": seed, "gate_mode": "gated", **config}}
    run["honest"] = {"purchase": {"ndcg@5": value}}
    return {
        "command": f"python -m bvae_tf.experiment --model {model}",
        "model": model,
        "method": method,
        "behaviors": ["purchase"],
        "runs": [run],
    }


@pytest.mark.unit
def test_combine_pools_seeds_of_one_configuration_only(tmp_path):
    files = []
    for i, result in enumerate(
        [
            _result("bvae", "BVAE", 0, 0.1),
            _result("bvae", "BVAE (gates=gated)", 1, 0.3),
            _result("bvae", "BVAE (gates=reference)", 0, 0.5, gate_mode="reference"),
        ]
    ):
        files.append(tmp_path / f"r{i}.json")
        files[-1].write_text(json.dumps(result))
    md = tmp_path / "t.md"
    assert experiment.main(["--combine", *map(str, files), "--markdown", str(md)]) == 0
    rows = [line for line in md.read_text().splitlines() if line.startswith("| purchase")]
    assert len(rows) == 2
    assert "BVAE (gates=gated)" in rows[0] and "0.2000 ± 0.1414 | nan ± nan | 2 |" in rows[0]
    assert "BVAE (gates=reference)" in rows[1] and "**0.5000** | nan | 1 |" in rows[1]


@pytest.mark.unit
def test_combine_replaces_only_its_own_tables_without_overwrite(tmp_path, capsys):
    result = tmp_path / "r.json"
    result.write_text(json.dumps(_result("bvae", "BVAE", 0, 0.1)))
    md = tmp_path / "t.md"
    assert experiment.main(["--combine", str(result), "--markdown", str(md)]) == 0
    table = md.read_text()
    assert experiment.main(["--combine", str(result), "--markdown", str(md)]) == 0  # rerun
    assert md.read_text() == table
    # Its runs hold no paper-protocol numbers: the missing table is said, not skipped.
    err = capsys.readouterr().err
    assert "note: no paper table: no run holds that protocol's numbers" in err
    assert "note: no honest table" not in err
    notes = tmp_path / "NOTES.md"
    notes.write_text("# my notes\n")
    with pytest.raises(SystemExit):
        experiment.main(["--combine", str(result), "--markdown", str(notes)])
    assert "is not a table --combine wrote; pass --overwrite" in capsys.readouterr().err
    assert notes.read_text() == "# my notes\n"
    args = ["--combine", str(result), "--markdown", str(notes), "--overwrite"]
    assert experiment.main(args) == 0
    assert notes.read_text() == table


@pytest.mark.unit
def test_combine_labels_a_baseline_at_other_settings_by_what_differs(tmp_path):
    files = []
    for i, lr in enumerate((1e-3, 1e-4, 1e-3)):
        files.append(tmp_path / f"ngcf{i}.json")
        files[-1].write_text(json.dumps(_result("ngcf", "NGCF (T.)", i, 0.1, learning_rate=lr)))
    rows = experiment.combine(files)  # seeds 0 and 2 pooled; seed 1 another method
    assert [(r["method"], len(r["runs"])) for r in rows] == [
        ("NGCF (T.) (learning_rate=0.001)", 2),
        ("NGCF (T.) (learning_rate=0.0001)", 1),
    ]
    (single,) = experiment.combine(files[1:2])
    assert single["method"] == "NGCF (T.)"  # alone: the label as run


@pytest.mark.unit
def test_combine_pools_one_per_target_parts_whatever_keras_named_their_models(tmp_path):
    """A one-per-target baseline records each part's ``get_config()``, with the Keras
    model name the process happened to give it (``vae_plus_plus_1`` when a model was
    built before): seeds run in different processes are still one method."""
    files = []
    for seed, first in ((0, 0), (1, 1)):
        result = _result("vae_pp", "VAE++ (one per target)", seed, 0.1 * (seed + 1))
        run = result["runs"][0]
        run["parts"] = [
            {"config": {"name": f"vae_plus_plus_{first + i}", "dropout": 0.5}} for i in range(2)
        ]
        files.append(tmp_path / f"vae_pp_s{seed}.json")
        files[-1].write_text(json.dumps(result))
    (row,) = experiment.combine(files)
    assert (row["method"], len(row["runs"])) == ("VAE++ (one per target)", 2)
    other = json.loads(files[1].read_text())
    other["runs"][0]["parts"][0]["config"]["dropout"] = 0.7  # a setting still separates
    files[1].write_text(json.dumps(other))
    assert len(experiment.combine(files)) == 2


@pytest.mark.unit
def test_combine_marks_a_row_on_fewer_behaviors_than_the_table(tmp_path):
    """Another method's row on all behaviors is enough: a row of one label alone on
    fewer behaviors is not like for like and says which behaviors it models."""
    wide = _result("popularity", "Popularity", 0, 0.1)
    wide["behaviors"] = ["purchase", "click", "favorite"]
    narrow = _result("repeat", "Cross-behavior repeat", 0, 0.2)
    narrow["behaviors"] = ["purchase", "click"]
    for result in (wide, narrow):
        scores = result["runs"][0]["honest"]["purchase"]
        result["runs"][0]["honest"] = {b: scores for b in result["behaviors"]}
    files = [tmp_path / "popularity.json", tmp_path / "repeat.json"]
    for path, result in zip(files, (wide, narrow), strict=True):
        path.write_text(json.dumps(result))
    labels = sorted(r["method"] for r in experiment.combine(files))
    assert labels == ["Cross-behavior repeat [purchase + click only]", "Popularity"]
    assert [r["method"] for r in experiment.combine(files[1:])] == ["Cross-behavior repeat"]


@pytest.mark.unit
def test_combine_refuses_a_seed_twice_and_an_anchor_that_names_no_row(tmp_path, capsys):
    first, copy = tmp_path / "bvae_s0.json", tmp_path / "bvae_copy.json"
    for path in (first, copy):
        path.write_text(json.dumps(_result("bvae", "BVAE", 0, 0.1)))
    with pytest.raises(SystemExit):
        experiment.main(["--combine", str(first), str(copy)])
    assert "both hold seed 0 of" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        experiment.main(["--combine", str(first), "--anchor", "BVAE (defaults)"])
    err = capsys.readouterr().err
    assert "--anchor 'BVAE (defaults)' is none of" in err and "BVAE (gates=gated)" in err
    with pytest.raises(SystemExit):
        experiment.main(["--combine", str(first), "--anchor", "BVAE", "--table-k", "10"])
    assert "(K = 5 only), not K = 10" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # run flags would be silently ignored
        experiment.main(["--combine", str(first), "--model", "ease", "--seeds", "5"])
    assert "--model, --seeds: run flags do not go with --combine" in capsys.readouterr().err


@pytest.mark.unit
def test_combine_refuses_a_file_twice_a_copied_baseline_other_data_and_nan(tmp_path, capsys):
    def write(name, result):
        (tmp_path / name).write_text(json.dumps(result))
        return str(tmp_path / name)

    baseline = _result("popularity", "Popularity", 0, 0.1)
    del baseline["runs"][0]["seed"]
    first, copy = write("popularity.json", baseline), write("popularity_copy.json", baseline)
    jd = write("jd.json", {**_result("bvae", "BVAE", 0, 0.1), "data": "../data/JD"})
    ub = write("ub.json", {**_result("bvae", "BVAE", 1, 0.2), "data": "/elsewhere/UB"})
    nan = write("nan.json", _result("bvae", "BVAE", 2, float("nan")))
    negative = write("negative.json", _result("bvae", "BVAE", 3, -0.5))
    other = _result("bvae", "BVAE", 4, 0.1)
    other["runs"][0]["honest"]["purchase"]["ndcg@7"] = 0.1  # e.g. older or newer code
    other = write("other.json", other)
    plain = write("plain.json", _result("bvae", "BVAE", 6, 0.1))
    per_user = _result("bvae", "BVAE", 5, 0.1)
    per_user["runs"][0]["test_per_user"] = {"purchase": ["a"]}
    per_user = write("per_user.json", per_user)
    no_ndcg = _result("bvae", "BVAE", 7, 0.1)
    no_ndcg["runs"][0]["honest"]["purchase"] = {"hit_rate@5": 0.2}
    no_ndcg = write("no_ndcg.json", no_ndcg)
    # Seeds of one method trained on different data: another digest, or other users.
    digest_a = write("digest_a.json", {**_result("bvae", "BVAE", 8, 0.1), "data_digest": "a"})
    digest_b = write("digest_b.json", {**_result("bvae", "BVAE", 9, 0.1), "data_digest": "b"})
    users = []
    for seed, count in ((10, 2579), (11, 85)):
        result = _result("bvae", "BVAE", seed, 0.1)
        result["runs"][0]["honest"]["purchase"]["num_users"] = count
        users.append(write(f"users{seed}.json", result))
    for files, message in [
        ([first, first], "is given twice"),
        ([first, copy], "both hold a run of 'Popularity'"),
        ([jd, ub], "results of different datasets cannot share a table"),
        ([nan], "metrics that are not finite numbers: honest purchase ndcg@5"),
        ([negative], "metrics out of range: honest purchase ndcg@5=-0.5"),
        ([plain, other], "other.json' records other honest metrics than"),
        ([per_user], "per_user.json': runs[0].test_per_user must map behaviors to lists"),
        ([no_ndcg], "runs[0].honest.purchase lacks ndcg@5"),
        ([digest_a, digest_b], "were trained on different data files (their data_digest"),
        (users, "users11.json' scores 85 purchase test users"),
    ]:
        with pytest.raises(SystemExit):
            experiment.main(["--combine", *files])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        experiment.main(["--combine", jd, "--markdown", jd])
    assert "is one of the --combine inputs" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        experiment.main(["--combine", jd, "--markdown", str(tmp_path / "no" / "t.md")])
    assert "t.md': its folder does not exist" in capsys.readouterr().err
    assert json.loads(pathlib.Path(jd).read_text())["runs"]  # not overwritten


@pytest.mark.unit
def test_combine_rejects_missing_or_unfinished_files(tmp_path, capsys):
    unfinished = tmp_path / "partial.json"
    unfinished.write_text(json.dumps({"model": "bvae", "runs": []}))
    malformed = []
    for i, content in enumerate(
        [{"method": "X", "runs": "abc"}, {"method": "X", "runs": [{}]}, {"runs": [{"honest": {}}]}]
    ):
        malformed.append(tmp_path / f"malformed{i}.json")
        malformed[-1].write_text(json.dumps(content))
    for path in (tmp_path / "missing.json", unfinished, *malformed):
        with pytest.raises(SystemExit):
            experiment.main(["--combine", str(path)])
        assert str(path) in capsys.readouterr().err


def test_a_bad_loss_weight_is_named_before_the_data_without_placeholder_names(tmp_path, capsys):
    with pytest.raises(SystemExit):
        experiment.main(
            ["--data", str(tmp_path), "--out", str(tmp_path), "--loss-weights", "1", "-1"]
        )
    err = capsys.readouterr().err
    assert "one finite positive weight per behavior in the data's behavior order" in err
    assert "'b0'" not in err and "got (1.0, -1.0)" in err


def test_a_negative_boost_grid_gets_the_value_message_not_argparse_s(tmp_path, capsys):
    argv = ["--data", str(tmp_path), "--out", str(tmp_path), "--boost-grid", "-1,2"]
    with pytest.raises(SystemExit):
        experiment.main(argv)
    err = capsys.readouterr().err
    assert "--boost-grid '-1,2': values must be finite and >= 0" in err
    assert "expected one argument" not in err


def test_the_recorded_command_quotes_a_path_with_a_space(release_dir, tmp_path):
    data = tmp_path / "my data"
    shutil.copytree(release_dir, data)
    argv = ["--data", str(data), "--out", str(tmp_path / "out dir"), "--model", "popularity"]
    assert experiment.main(argv) == 0
    command = json.loads((tmp_path / "out dir" / "popularity.json").read_text())["command"]
    assert shlex.split(command)[3:] == argv  # after "python -m bvae_tf.experiment"
    assert experiment.main(argv) == 0  # the same command again keeps its result


def test_closed_form_baselines_select_on_valid_and_score_test_once(release_dir, tmp_path):
    for model in ("popularity", "repeat"):
        assert (
            experiment.main(["--data", str(release_dir), "--out", str(tmp_path), "--model", model])
            == 0
        )
    argv = ["--data", str(release_dir), "--out", str(tmp_path), "--model", "ease"]
    grid = ["--ease-l2", "1", "30", "--ease-diagonal", "zero", "free"]
    assert experiment.main([*argv, *grid, "--name", "ease"]) == 0
    assert (
        experiment.main(
            [*argv, *grid, "--name", "ease_seq", "--ease-sequential", "--ease-dtype", "float32"]
        )
        == 0
    )
    ease = json.loads((tmp_path / "ease.json").read_text())
    (run,) = ease["runs"]
    assert ease["method"] == "EASE"
    assert len(run["trials"]) == 4
    for b in ("purchase", "click", "favorite"):
        best = max(t["valid"][b]["ndcg@5"] for t in run["trials"])
        assert run["valid"][b]["ndcg@5"] == best
        assert {"l2", "diagonal"} == set(run["selected"][b])
        assert 0.0 <= run["honest"][b]["ndcg@5"] <= 1.0
    factored = [*argv, *grid, "--ease-factored", "--ease-dtype", "float32"]
    assert experiment.main([*factored, "--name", "ease_factored"]) == 0
    # One target at a time, or no B_b formed, in float32: the same selection and test
    # numbers.
    for name in ("ease_seq", "ease_factored"):
        other = json.loads((tmp_path / f"{name}.json").read_text())["runs"][0]
        assert other["selected"] == run["selected"]
        for trial, mine in zip(run["trials"], other["trials"], strict=True):  # every fit
            assert (trial["l2"], trial["diagonal"]) == (mine["l2"], mine["diagonal"])
            for b in trial["valid"]:
                assert mine["valid"][b]["ndcg@5"] == pytest.approx(
                    trial["valid"][b]["ndcg@5"], abs=1e-6
                )
        for b in run["honest"]:
            assert other["honest"][b]["ndcg@5"] == pytest.approx(
                run["honest"][b]["ndcg@5"], abs=1e-6
            )
    assert other["config"]["form"] == "factored" and "form" not in run["config"]
    with pytest.raises(SystemExit):
        experiment.main([*factored, "--ease-sequential"])
    assert "paper" not in run  # no epochs: the honest protocol only
    assert ease["protocol"] == experiment.PROTOCOL_TITLES["honest"]
    repeat = json.loads((tmp_path / "repeat.json").read_text())
    assert repeat["method"] == "Cross-behavior repeat" and len(repeat["runs"]) == 1


def test_a_killed_ease_grid_resumes_at_its_next_l2(release_dir, tmp_path, monkeypatch, capsys):
    fit_grid, fitted = ease_module.fit_grid, []

    def killed_at_the_second_l2(behaviors, num_items, train, l2s, **kwargs):
        if fitted:
            raise KeyboardInterrupt("killed")
        fitted.append(list(l2s))
        return fit_grid(behaviors, num_items, train, l2s, **kwargs)

    argv = ["--data", str(release_dir), "--out", str(tmp_path), "--model", "ease"]
    argv += ["--ease-l2", "1", "30", "--ease-sequential"]
    monkeypatch.setattr(ease_module, "fit_grid", killed_at_the_second_l2)
    assert experiment.main(argv) == 130
    assert "interrupted: the same command resumes" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "ease.parts").iterdir()] == ["ease-l2-1.json"]

    def counting(behaviors, num_items, train, l2s, **kwargs):
        fitted.append(list(l2s))
        return fit_grid(behaviors, num_items, train, l2s, **kwargs)

    fitted.clear()
    monkeypatch.setattr(ease_module, "fit_grid", counting)
    assert experiment.main(argv) == 0
    (run,) = json.loads((tmp_path / "ease.json").read_text())["runs"]
    # lambda 1 was read back; lambda 30 fitted; then one refit per selected lambda.
    assert fitted[0] == [30.0] and len(fitted) == 1 + len(
        {s["l2"] for s in run["selected"].values()}
    )
    assert sorted((t["l2"], t["diagonal"]) for t in run["trials"]) == [
        (l2, d) for l2 in (1.0, 30.0) for d in ("free", "zero")
    ]
    assert all(set(t["valid"]) == {"purchase", "click", "favorite"} for t in run["trials"])
    assert not (tmp_path / "ease.parts").exists()


def test_ease_refuses_a_grid_that_cannot_fit_in_the_memory_available(
    release_dir, tmp_path, monkeypatch, capsys
):
    import psutil

    # 25 items: the dense float64 grid needs about 10.23 * 4 * 625 bytes.
    dense = ease_module.peak_bytes(25, 3, form="dense", dtype="float64")
    small = ease_module.peak_bytes(25, 3, form="factored", dtype="float32")
    assert dense == int(10.23 * 4 * 625) and small < dense
    assert ease_module.peak_bytes(25, 1, form="dense", dtype="float32") == int(5.41 * 4 * 625)
    available = {"bytes": dense - 1}
    monkeypatch.setattr(
        psutil, "virtual_memory", lambda: argparse.Namespace(available=available["bytes"])
    )
    argv = ["--data", str(release_dir), "--out", str(tmp_path), "--model", "ease"]
    assert experiment.main(argv) == 2
    err = capsys.readouterr().err
    assert "EASE (dense form, float64) needs at least about" in err
    assert "--ease-dtype float32 --ease-factored needs about" in err
    assert not (tmp_path / "ease.json").exists()
    available["bytes"] = small - 1  # not even the factored float32 form
    assert experiment.main([*argv, "--ease-dtype", "float32", "--ease-factored"]) == 2
    assert "no EASE form fits" in capsys.readouterr().err
    # (with the memory there, the other EASE tests run)


@pytest.mark.parametrize(
    "flags, config",
    [
        # Each encoder's model is tested in test_model.py.
        (
            [
                *("--encoder", "cgc", "--weight-decay", "0.001", "--weight-average", "0.9"),
                *("--lr-decay-steps", "30", "--lr-final-fraction", "0.1"),
            ],
            {
                "encoder": "cgc",
                "weight_decay": 0.001,
                "weight_average": 0.9,
                "lr_schedule": "cosine",
                "lr_decay_steps": 30,
                "lr_final_fraction": 0.1,
            },
        ),
        (
            ["--precision", "mixed_bfloat16", "--sparse-updates"],
            {"precision": "mixed_bfloat16", "sparse_updates": True},
        ),
        (
            [
                *("--item-path", "--item-path-scale", "30", "--item-path-drop-overlap", "0.5"),
                "--behavior-mean",
                *("--latent-dims", "4", "2", "3"),
            ],
            {
                "item_path": True,
                "item_path_scale": 30.0,
                "item_path_drop_overlap": 0.5,
                "behavior_mean": True,
                "latent_dims": [4, 2, 3],
            },
        ),
    ],
    ids=["base-replacement-weight-decay", "fast-training", "item-path-behavior-mean"],
)
def test_config_flags_reach_the_model_and_the_label(release_dir, tmp_path, flags, config):
    _run(release_dir, tmp_path, "--model", "bvae", "--seeds", "1", *flags)
    result = json.loads((tmp_path / "bvae.json").read_text())
    for field, value in config.items():
        assert result["runs"][0]["config"][field] == value
        assert f"{field}={value}" in result["method"]
    assert np.isfinite(result["summary"]["honest"]["purchase"]["ndcg@5"][0])


def test_boost_grid_chooses_the_boost_per_behavior_on_valid_and_tests_once(release_dir, tmp_path):
    _run(release_dir, tmp_path, "--seeds", "1", "--paper-protocol", "--boost-grid", "1000,1")
    result = json.loads((tmp_path / "bvae.json").read_text())
    assert result["method"].endswith("[cross_behavior_boost on valid: 0,1,1000]")
    assert "cross_behavior_boost=" not in result["method"]
    run = result["runs"][0]
    trials = run["boost_trials"]
    assert [t["value"] for t in trials] == [0.0, 1.0, 1000.0]
    for i, b in enumerate(result["behaviors"]):
        scores = [t["valid"][b]["ndcg@5"] for t in trials]
        best = trials[scores.index(max(scores))]  # the first (smallest) on a tie
        assert run["config"]["cross_behavior_boost"][i] == best["value"]
        assert run["valid"][b] == best["valid"][b]
    assert "paper" not in run  # the per-epoch test scores were of the unboosted model
    assert np.isfinite(result["summary"]["honest"]["purchase"]["ndcg@5"][0])


def _fake_result(method: str, per_user: list[float], seeds: int = 1) -> dict:
    runs = []
    for _ in range(seeds):
        mean = float(np.mean(per_user))
        metrics = {f"{m}@5": mean for m in ("precision", "recall", "ndcg", "hit_rate")}
        runs.append({"honest": {"click": metrics}, "test_per_user": {"click": per_user}})
    result = {"method": method, "behaviors": ["click"], "runs": runs}
    result["summary"] = {"honest": experiment.summarize(runs, "honest")}
    return result


def test_table_marks_best_second_and_tests_the_anchor_against_the_runner_up():
    rng = np.random.default_rng(0)
    base = rng.random(400)
    results = [
        _fake_result("BVAE", list(base + 0.05)),
        _fake_result("EASE", list(base)),
        _fake_result("Popularity", list(base * 0.1)),
    ]
    text = experiment.render_markdown(results, protocols=["honest"], anchor="BVAE")
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| click")}
    assert "**" in rows["BVAE"] and "ndcg" not in rows["BVAE"]
    assert rows["BVAE"].count("**") == 8  # every metric column bold
    assert rows["BVAE"].split(" | ")[4].endswith(" *")  # NDCG@5: significant
    assert "<u>" in rows["EASE"] and "**" not in rows["EASE"]
    assert "<u>" not in rows["Popularity"] and "**" not in rows["Popularity"]
    # Two means that read the same at 4 decimals are marked alike.
    tied = [_fake_result("A", [0.50004, 0.5]), _fake_result("B", [0.5, 0.5])]
    tied.append(_fake_result("C", [0.1, 0.1]))
    marked = experiment.render_markdown(tied, protocols=["honest"])
    cells = {line.split(" | ")[1]: line.split(" | ")[4] for line in marked.splitlines()[4:7]}
    assert cells == {"A": "**0.5000**", "B": "**0.5000**", "C": "<u>0.1000</u>"}
    assert "- click: BVAE " in text and "vs EASE" in text
    assert "significant at 0.05; BVAE higher; 400 users" in text
    # Significantly worse: no star on the anchor.
    worse = [_fake_result("BVAE", list(base)), _fake_result("EASE", list(base + 0.05))]
    text = experiment.render_markdown(worse, protocols=["honest"], anchor="BVAE")
    assert "significant at 0.05; EASE higher" in text
    bvae = next(line for line in text.splitlines() if line.startswith("| click | BVAE"))
    assert not bvae.split(" | ")[4].endswith(" *")
    # Equal per-user values: p = 1, no star.
    tie = [_fake_result("BVAE", list(base)), _fake_result("EASE", list(base))]
    text = experiment.render_markdown(tie, protocols=["honest"], anchor="BVAE")
    assert "p = 1 (not significant at 0.05; equal means" in text
    bvae = next(line for line in text.splitlines() if line.startswith("| click | BVAE"))
    assert not bvae.split(" | ")[4].endswith(" *")
    # A seed without per-user values: no test over the other seeds alone (the row's
    # mean is over all of them).
    partial = [_fake_result("BVAE", list(base + 0.05), seeds=2), _fake_result("EASE", list(base))]
    del partial[0]["runs"][1]["test_per_user"]
    text = experiment.render_markdown(partial, protocols=["honest"], anchor="BVAE")
    assert "vs EASE: no p-value (per-user test values not recorded for every seed" in text
    bvae = next(line for line in text.splitlines() if line.startswith("| click | BVAE"))
    assert not bvae.split(" | ")[4].endswith(" *")


def test_recvae_runs_one_model_per_behavior(release_dir, tmp_path):
    _run(
        release_dir,
        tmp_path,
        "--model",
        "recvae",
        "--seeds",
        "1",
        "--behaviors",
        "purchase",
        "click",
        "--epochs",
        "1",
    )
    result = json.loads((tmp_path / "recvae.json").read_text())
    (run,) = result["runs"]
    assert result["method"] == "RecVAE (T.)"
    assert [p["config"]["behavior"] for p in run["parts"]] == ["purchase", "click"]
    assert set(run["honest"]) == {"purchase", "click"}
    assert set(run["test_per_user"]) == {"purchase", "click"}


def test_a_killed_per_target_run_resumes_at_the_next_target(release_dir, tmp_path, monkeypatch):
    train = experiment._train_tuned
    trained = []

    def killed_after_the_first_target(args, data, behaviors, **kwargs):
        if trained:
            raise KeyboardInterrupt("killed")
        trained.append(behaviors)
        return train(args, data, behaviors, **kwargs)

    flags = ("--model", "vae_t", "--seeds", "1", "--behaviors", "purchase", "click")
    monkeypatch.setattr(experiment, "_train_tuned", killed_after_the_first_target)
    _run(release_dir, tmp_path, *flags, code=130)
    part = tmp_path / "vae_t.parts" / "s0-purchase.json"
    assert part.is_file() and not (tmp_path / "vae_t.json").exists()
    first = json.loads(part.read_text())["run"]

    def counting(args, data, behaviors, **kwargs):
        trained.append(behaviors)
        return train(args, data, behaviors, **kwargs)

    trained.clear()
    monkeypatch.setattr(experiment, "_train_tuned", counting)
    _run(release_dir, tmp_path, *flags)
    assert trained == [("click",)]  # purchase was read back, not trained again
    (run,) = json.loads((tmp_path / "vae_t.json").read_text())["runs"]
    assert run["parts"][0]["honest"] == first["honest"]
    assert set(run["honest"]) == {"purchase", "click"}
    assert not (tmp_path / "vae_t.parts").exists()

    # A part written by another command line, or from other data files, is trained again.
    command = json.loads((tmp_path / "vae_t.json").read_text())["command"]
    for other in (
        {"command": "python -m bvae_tf.experiment --other"},
        {"command": command, "data_digest": "other data"},
    ):
        (tmp_path / "vae_t.json").unlink()  # else the finished seed is kept (next test)
        part.parent.mkdir()
        part.write_text(json.dumps({**other, "run": first}))
        trained.clear()
        _run(release_dir, tmp_path, *flags)
        assert trained == [("purchase",), ("click",)]


def test_log_dir_and_markdown_paths_are_checked_before_any_run(release_dir, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    argv = ["--data", str(release_dir), "--out", str(tmp_path), "--model", "popularity"]
    with pytest.raises(SystemExit):
        experiment.main([*argv, "--log-dir", str(tmp_path / "afile" / "logs")])
    assert "is (or is below) a file" in capsys.readouterr().err
    assert not (tmp_path / "popularity.json").exists()
    unwritable = tmp_path / "unwritable"  # its log folder cannot be made: a usage error
    (unwritable / "logs").parent.mkdir()
    (unwritable / "logs").write_text("")
    with pytest.raises(SystemExit):
        experiment.main([*argv[:2], "--out", str(unwritable), *argv[4:]])
    assert f"--out {str(unwritable)!r}: cannot write the log file" in capsys.readouterr().err
    assert experiment.main(argv) == 0
    with pytest.raises(SystemExit):  # a Markdown table must not replace a result file
        experiment.main(
            ["--combine", str(tmp_path / "popularity.json"), "--markdown", str(tmp_path / "x.json")]
        )
    assert "is not written to a .json file" in capsys.readouterr().err


def test_the_same_command_keeps_its_finished_seeds_and_another_is_refused(
    release_dir, tmp_path, monkeypatch, capsys
):
    flags = ("--model", "vae_u", "--seeds", "1", "--epochs", "1")
    _run(release_dir, tmp_path, *flags)
    kept = json.loads((tmp_path / "vae_u.json").read_text())
    train, trained = experiment._train_tuned, []

    def counting(args, data, behaviors, **kwargs):
        trained.append(kwargs["seed"])
        return train(args, data, behaviors, **kwargs)

    monkeypatch.setattr(experiment, "_train_tuned", counting)
    _run(release_dir, tmp_path, *flags)
    assert trained == []  # the same command: its finished seed is kept
    assert json.loads((tmp_path / "vae_u.json").read_text())["runs"] == kept["runs"]
    with pytest.raises(SystemExit):  # another command would replace it
        _run(release_dir, tmp_path, "--model", "vae_u", "--seeds", "2", "--epochs", "1")
    err = capsys.readouterr().err
    said = "(it has '--seeds 1' where this has '--seeds 2')"
    assert f"holds the result of another command {said}" in err
    with pytest.raises(SystemExit):  # a flag added or dropped is named as such
        _run(release_dir, tmp_path, *flags, "--lr", "0.01")
    assert "(this adds '--lr 0.01')" in capsys.readouterr().err
    kept_file = tmp_path / "vae_u.json"
    said = experiment._command_difference
    recorded = json.loads(kept_file.read_text())["command"]
    reordered = recorded.replace(" --seeds 1", "") + " --seeds 1"  # a flag moved
    assert experiment._same_command(recorded, reordered)
    assert experiment._same_command(recorded, recorded.replace("--epochs 1", "--epochs=1"))
    assert not experiment._same_command(recorded, recorded.replace("--epochs 1", "--epochs 3"))
    # Where the files are is no setting (the data is compared by its files apart).
    moved = f"{recorded} --out elsewhere --selected-from elsewhere/r_s0.json --log-dir tb"
    assert experiment._same_command(f"{recorded} --selected-from o/r_s0.json", moved)
    dropped = said(kept_file, recorded.replace(" --seeds 1", ""))
    assert dropped == " (it has '--seeds 1', this does not)"
    with pytest.raises(SystemExit):  # a bad flag is named first, not the kept result
        _run(release_dir, tmp_path, "--model", "vae_u", "--dropout", "1.5")
    err = capsys.readouterr().err
    assert "dropout" in err and "holds the result" not in err
    # The same command on changed data files: its kept seed is not reused.
    test_file = release_dir / "target_test"
    test_file.write_text("".join(test_file.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(SystemExit):
        _run(release_dir, tmp_path, *flags)
    assert "holds the result of this command on other data" in capsys.readouterr().err
    _run(release_dir, tmp_path, *flags, "--overwrite")
    assert trained == [0]  # --overwrite trains every seed again
    assert json.loads((tmp_path / "vae_u.json").read_text())["data_digest"] == (
        experiment.data_digest(release_dir)
    )


def test_a_kept_result_is_found_wherever_its_data_and_out_are_spelled(
    release_dir, tmp_path, capsys
):
    """A result file copied to another --out, or its data named through another path
    (a link), is the same command's; a result written before results recorded their
    data's digest is compared by its --data folder, and another folder, or one that
    does not exist from here, is named as other data, not as another command."""

    def run(data, out, *extra):
        flags = ["--model", "ease", "--name", "pop", *extra]
        assert experiment.main(["--data", str(data), "--out", str(out), *flags]) == 0

    run(release_dir, tmp_path / "a")
    capsys.readouterr()
    kept = json.loads((tmp_path / "a" / "pop.json").read_text())
    (tmp_path / "b").mkdir()
    link = tmp_path / "link"
    link.symlink_to(release_dir)

    def check(result, data):
        (tmp_path / "b" / "pop.json").write_text(json.dumps(result))
        run(data, tmp_path / "b", "--check")

    check(kept, link)  # another --out, the data through a link: the same, kept
    assert capsys.readouterr().err == ""
    old = {k: v for k, v in kept.items() if k != "data_digest"}  # before digests
    check({**old, "data": str(link)}, release_dir)  # the same folder by its real path
    other = tmp_path / "other"
    shutil.copytree(release_dir, other)
    for data, said in (
        (str(other), f"is another folder than --data {str(release_dir)!r}"),
        (str(tmp_path / "gone"), "does not exist from here"),
    ):
        with pytest.raises(SystemExit):
            check({**old, "data": data}, release_dir)
        err = capsys.readouterr().err
        assert "holds the result of this command on other data" in err and said in err, err
        assert "another command" not in err and "--overwrite" not in err
    with pytest.raises(SystemExit):  # a setting that differs is another command
        run(link, tmp_path / "b", "--check", "--ease-l2", "5")
    assert "(this adds '--ease-l2 5')" in capsys.readouterr().err


# BVAE; NGCF (one per target, its optimizer built at the first step); RecVAE (two
# optimizers). A checkpoint that does not fit the model fails loudly (assert_consumed).
@pytest.mark.graph_mode
@pytest.mark.parametrize("model", ["bvae", "ngcf", "recvae"])
def test_a_killed_run_resumes_at_its_next_epoch(release_dir, tmp_path, monkeypatch, model):
    evaluate, calls = experiment.M.evaluate, []

    def killed_in_the_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return evaluate(*args, **kwargs)

    flags = ("--model", model, "--seeds", "1", "--epochs", "3", "--patience", "5")
    monkeypatch.setattr(experiment.M, "evaluate", killed_in_the_second_epoch)
    _run(release_dir, tmp_path, *flags, code=130)
    assert list((tmp_path / f"{model}.ckpt").glob("*/state.json"))
    monkeypatch.setattr(experiment.M, "evaluate", evaluate)
    _run(release_dir, tmp_path, *flags)
    (run,) = json.loads((tmp_path / f"{model}.json").read_text())["runs"]
    first = run["parts"][0] if "parts" in run else run
    assert first["resumed_at"] == [1] and first["epochs_run"] == 3
    assert not (tmp_path / f"{model}.ckpt").exists()


def test_a_kept_state_matches_a_run_with_a_flag_added_since_at_its_default(release_dir):
    def key_and_matches(*flags):
        args = experiment._parser().parse_args(["--data", str(release_dir), *flags])
        key = experiment._run_key(args)
        return json.loads(key), experiment._same_run(key)

    (version, settings, stamp), matches = key_and_matches("--weight-decay", "0.5")
    assert matches(json.dumps([version, settings, stamp]))

    def kept(**changes):
        kept = {k: v for k, v in settings.items() if k not in changes}
        kept.update({k: v for k, v in changes.items() if v is not None})
        return json.dumps([version, kept, stamp])

    # A setting the kept run lacks matches at its default, not at another value.
    assert matches(kept(behavior_mean=None))
    assert not matches(kept(weight_decay=None))
    assert not matches(kept(weight_decay=1.0))  # a changed value
    assert not matches(kept(removed_flag=1))  # a setting this run lacks
    assert not matches(json.dumps(["0.0.0", settings, stamp]))
    assert not matches(json.dumps([version, settings, stamp[1:]]))
    assert not matches(None) and not matches("not json")


def test_an_existing_file_as_out_or_another_models_result_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit):
        experiment.main(["--data", str(tmp_path), "--out", str(tmp_path / "afile")])
    assert "exists and is not a folder" in capsys.readouterr().err
    (tmp_path / "bvae.json").write_text(json.dumps(_result("bvae", "BVAE", 0, 0.1)))
    argv = ["--data", str(tmp_path), "--out", str(tmp_path), "--name", "bvae"]
    with pytest.raises(SystemExit):
        experiment.main([*argv, "--model", "popularity"])
    assert "holds a result of --model bvae, not popularity" in capsys.readouterr().err
    # A result cut short by a kill mid-write is named as such, not as another model's.
    (tmp_path / "bvae.json").write_text(json.dumps(_result("bvae", "BVAE", 0, 0.1))[:40])
    with pytest.raises(SystemExit):
        experiment.main([*argv, "--model", "popularity"])
    assert "is not a readable result (truncated" in capsys.readouterr().err


@pytest.mark.parametrize("split", ["test", "valid"])
def test_a_behavior_without_valid_or_test_interactions_is_an_error_not_a_zero(
    release_dir, tmp_path, capsys, split
):
    # An empty or blank file: refused by the pre-check, before the data is parsed.
    argv = ["--data", str(release_dir), "--out", str(tmp_path), "--model", "popularity"]
    for text in ("", "\n \n"):
        (release_dir / f"favourite_{split}").write_text(text)
        with pytest.raises(SystemExit) as stopped:
            experiment.main(argv)
        assert stopped.value.code == 2 and f"favourite_{split} in" in capsys.readouterr().err
    # Lines that all repeat a train line (dropped: seen items are not recommended), so
    # no interaction is left: refused once the data is read.
    first_train_line = (release_dir / "favourite_train").read_text().splitlines()[0]
    (release_dir / f"favourite_{split}").write_text(first_train_line + "\n")
    assert experiment.main(argv) == 2
    err = capsys.readouterr().err
    name = {"test": "test", "valid": "eval"}[split]
    assert f"no interactions for favorite ({name})" in err and "--behaviors" in err
    assert not (tmp_path / "popularity.json").exists()


def test_the_run_key_leaves_out_logging_and_paths(release_dir, tmp_path):
    def key(*flags):
        args = experiment._parser().parse_args(["--data", str(release_dir), *flags])
        args.argv = ["--data", str(release_dir), *flags]
        return experiment._run_key(args)

    kept = key("--out", str(tmp_path / "res"), "--lr", "0.01")
    matches = experiment._same_run(key("--out", "res", "--verbose", "--lr", "0.01"))
    assert matches(kept)
    assert not experiment._same_run(key("--lr", "0.02"))(kept)
    # A flag only another model reads (e.g. one added for a baseline) is not in the key.
    assert "ngcf_l2" not in key("--lr", "0.01") and experiment._same_run(kept)(kept)
    assert "ngcf_l2" in key("--model", "ngcf")
    assert key("--model", "ngcf") != key("--model", "ngcf", "--ngcf-l2", "1e-4")


def test_a_kept_state_matches_a_fresh_copy_of_its_data_but_not_changed_data(release_dir, tmp_path):
    import os
    import shutil

    data = tmp_path / "data"
    shutil.copytree(release_dir, data)
    args = experiment._parser().parse_args(["--data", str(data)])
    key = experiment._run_key(args)
    some_file = sorted(p for p in data.iterdir() if p.stat().st_size)[0]
    os.utime(some_file, ns=(1, 1))  # copied afresh: new times, same bytes
    assert experiment._same_run(experiment._run_key(args))(key)
    content = bytearray(some_file.read_bytes())
    content[0] ^= 1  # the same size, another content
    some_file.write_bytes(bytes(content))
    assert not experiment._same_run(experiment._run_key(args))(key)


@pytest.mark.parametrize(
    "model, label, parts",
    [
        ("vae_pp", "VAE++ (one per target)", ["purchase", "click", "favorite"]),
        ("ehcf", "EHCF", None),
        ("ngcf", "NGCF (T.)", ["purchase", "click", "favorite"]),
    ],
)
def test_paper_baselines_run_and_score_every_behavior(release_dir, tmp_path, model, label, parts):
    _run(release_dir, tmp_path, "--model", model, "--seeds", "1", "--epochs", "1")
    result = json.loads((tmp_path / f"{model}.json").read_text())
    (run,) = result["runs"]
    assert result["method"] == label
    behaviors = ["purchase", "click", "favorite"]
    assert set(run["honest"]) == set(behaviors) == set(run["test_per_user"])
    if parts is None:  # one multi-target model
        assert run["config"]["chain"] == ["click", "favorite", "purchase"]
    else:  # one model per target; VAE++ reads every behavior, NGCF its own
        scored = [p["config"].get("targets") or p["config"]["behaviors"] for p in run["parts"]]
        assert scored == [[b] for b in parts]
        if model == "vae_pp":
            assert all(p["config"]["behaviors"] == behaviors for p in run["parts"])
    for b in behaviors:
        assert 0.0 <= run["honest"][b]["ndcg@5"] <= 1.0


def test_the_transductive_baselines_own_settings_are_set_and_searched(release_dir, tmp_path):
    """NGCF's L2 weight and depth, EHCF's dropout: flags, and --grid names (the
    ``_own`` rows of scripts/run_comparison.sh)."""
    flags = ("--seeds", "1", "--epochs", "1", "--behaviors", "purchase", "click")
    _run(release_dir, tmp_path, "--model", "ngcf", *flags, "--ngcf-layers", "1", "--name", "n1")
    (run,) = json.loads((tmp_path / "n1.json").read_text())["runs"]
    assert all(p["config"]["layer_sizes"] == [64] for p in run["parts"])
    _run(release_dir, tmp_path, "--model", "ngcf", *flags, "--grid", "ngcf_l2=1e-5,1e-3")
    result = json.loads((tmp_path / "ngcf.json").read_text())
    assert result["method"] == "NGCF (T.) [tuned: ngcf_l2=1e-5,1e-3]"
    (run,) = result["runs"]
    assert {p["config"]["l2"] for p in run["parts"]} <= {1e-5, 1e-3}
    _run(release_dir, tmp_path, "--model", "ehcf", *flags, "--ehcf-dropout", "0.2")
    (run,) = json.loads((tmp_path / "ehcf.json").read_text())["runs"]
    assert run["config"]["dropout"] == 0.2


def test_grid_trains_every_trial_selects_on_valid_and_tests_once(
    release_dir, tmp_path, monkeypatch
):
    tested = []
    real_test = experiment._test
    monkeypatch.setattr(
        experiment, "_test", lambda model, *a: tested.append(model) or real_test(model, *a)
    )
    _run(
        release_dir,
        tmp_path,
        "--model",
        "bvae",
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--grid",
        "lr=1e-4,1e-2",
        "--grid",
        "dropout=0.2,0.5",
    )
    result = json.loads((tmp_path / "bvae.json").read_text())
    (run,) = result["runs"]
    assert [t["point"] for t in run["trials"]] == [
        {"lr": 1e-4, "dropout": 0.2},
        {"lr": 1e-4, "dropout": 0.5},
        {"lr": 1e-2, "dropout": 0.2},
        {"lr": 1e-2, "dropout": 0.5},
    ]
    best = max(run["trials"], key=lambda t: t["selection_score"])
    assert run["selected"] == best["point"]
    assert run["config"]["learning_rate"] == best["point"]["lr"]
    assert run["config"]["dropout"] == best["point"]["dropout"]
    assert len(tested) == 1  # the test split scored once, with the selected trial
    assert result["method"].endswith("[tuned: lr=1e-4,1e-2; dropout=0.2,0.5]")
    assert "learning_rate" not in result["method"]
    # The compute table counts every trial: 4 fits, their epochs and time.
    cost = experiment.compute_cost(result)
    assert cost["fits"] == 4 and cost["epochs"] == sum(t["epochs_run"] for t in run["trials"])
    assert (
        f"| {result['method']} | 1 | ≤1 epochs, patience 1 | 4 | {cost['epochs']:.0f} |"
        in (tmp_path / "bvae.md").read_text()
    )
    # Time to quality counts the other trials in full: the selection needs them all.
    others = sum(t["train_seconds"] for t in run["trials"] if t["point"] != run["selected"])
    assert cost["minutes_to_selected"] * 60.0 > others > 0


def test_a_curve_is_stored_by_column_and_read_back_as_rows():
    rows = [
        {"epoch": 1.0, "loss": 2.123456789, "valid/a/ndcg@5": 0.1},
        {"epoch": 2.0, "loss": 1.5},  # an epoch without a metric
    ]
    packed = experiment.pack_curve(rows)
    assert packed == {
        "epoch": [1.0, 2.0],
        "loss": [2.123457, 1.5],
        "valid/a/ndcg@5": [0.1, None],
    }
    assert experiment.pack_curve(packed) is packed
    assert experiment.curve_rows(packed) == [
        {"epoch": 1.0, "loss": 2.123457, "valid/a/ndcg@5": 0.1},
        {"epoch": 2.0, "loss": 1.5},
    ]
    assert experiment.curve_rows(rows) is rows and experiment.curve_rows(None) == []
    with pytest.raises(ValueError, match="differ in length"):
        experiment.curve_rows({"epoch": [1.0, 2.0], "loss": [1.0]})
    # Both forms time the same.
    timed = [{"epoch": e, "train_seconds": 2.0} for e in (1.0, 2.0, 3.0)]
    packed = experiment.pack_curve(timed)
    assert experiment.time_to_selected({"curve": packed, "best_epoch": 2}) == 4.0


def test_time_to_selected_sums_epochs_up_to_the_selected_one():
    curve = [
        {"epoch": 1, "train_seconds": 2.0, "eval_seconds": 1.0},
        {"epoch": 2, "train_seconds": 3.0, "eval_seconds": 1.0},
        {"epoch": 3, "train_seconds": 50.0, "eval_seconds": 50.0},
    ]
    assert experiment.time_to_selected({"curve": curve, "best_epoch": 2}) == 7.0
    # A per-target model: its targets are trained one after another.
    parts = [{"curve": curve, "best_epoch": 1}, {"curve": curve, "best_epoch": 3}]
    assert experiment.time_to_selected({"parts": parts}) == 3.0 + 107.0
    # A search: the other trials in full, the selected one to its best epoch.
    searched = {
        "curve": curve,
        "best_epoch": 1,
        "selected": {"lr": 0.01},
        "trials": [
            {"point": {"lr": 0.001}, "train_seconds": 40.0},
            {"point": {"lr": 0.01}, "train_seconds": 55.0},
        ],
    }
    assert experiment.time_to_selected(searched) == 3.0 + 40.0
    # No per-epoch curve (closed form, floors): unknown, shown as a dash.
    assert experiment.time_to_selected({"train_seconds": 9.0}) is None
    result = {"method": "EASE", "runs": [{"train_seconds": 9.0}]}
    assert experiment.compute_cost(result)["minutes_to_selected"] is None
    assert "| EASE | 1 | — | 1 | 0 | 0.1 | — | — |" in "\n".join(
        experiment._compute_table([result])
    )
    # A run that did not record its training time: unknown, not 0 minutes.
    older = {"method": "EASE", "runs": [{"train_seconds": 9.0}, {}]}
    assert experiment.compute_cost(older)["train_minutes"] is None
    assert "| EASE | 2 | — | 1 | 0 | — | — | — |" in "\n".join(experiment._compute_table([older]))


def test_the_compute_table_names_each_budget_and_the_models_it_cut():
    command = "python -m bvae_tf.experiment --model bvae --epochs 10 --patience 4"
    runs = [
        {"epochs_run": 10, "best_epoch": 10, "train_seconds": 6.0},  # still improving: cut
        {"epochs_run": 10, "best_epoch": 6, "train_seconds": 6.0},  # patience ran out at 10
        {"epochs_run": 8, "best_epoch": 4, "train_seconds": 6.0},  # early stopping
    ]
    result = {"method": "BVAE", "command": command, "runs": runs}
    assert experiment.budget_cut(result) == (1, 3)
    parts = {"parts": [{"epochs_run": 10, "best_epoch": 9}, {"epochs_run": 5, "best_epoch": 1}]}
    per_target = {"method": "VAE (T.)", "command": command, "runs": [parts]}
    assert experiment.budget_cut(per_target) == (1, 2)
    # Patience 0 stops one epoch without a better score after the best: a 1-epoch smoke
    # run is cut by its budget, a run whose last epoch did not improve is not.
    smoke = "python -m bvae_tf.experiment --model bvae --epochs 1 --patience 0"
    one = {"method": "BVAE", "command": smoke, "runs": [{"epochs_run": 1, "best_epoch": 1}]}
    assert experiment.budget_cut(one) == (1, 1)
    two = {"method": "BVAE", "command": smoke.replace("--epochs 1", "--epochs 2")}
    assert experiment.budget_cut({**two, "runs": [{"epochs_run": 2, "best_epoch": 1}]}) == (0, 1)
    table = "\n".join(experiment._compute_table([result, per_target]))
    assert "| BVAE | 3 | ≤10 epochs, patience 4 | 1 | 9 | 0.1 | — | 1 of 3 |" in table
    assert "| VAE (T.) | 1 | ≤10 epochs, patience 4 |" in table and "| 1 of 2 |" in table


@pytest.mark.parametrize(
    "grid, message",
    [
        ("lr", "expected NAME=V1,V2"),
        ("latent_dim=4,8", "'latent_dim' is not searchable"),
        ("lr=fast", "could not convert"),
        ("batch_size=8,0", "batch sizes must be >= 1"),
    ],
)
def test_grid_errors_are_parser_errors(release_dir, tmp_path, capsys, grid, message):
    with pytest.raises(SystemExit):
        experiment.main(["--data", str(release_dir), "--out", str(tmp_path), "--grid", grid])
    assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        experiment.main(
            ["--data", str(release_dir), "--model", "ease", "--grid", "lr=1e-3", "--out", "x"]
        )
    assert "has its own grid flags" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model", "ehcf", "--sampled-softmax", "5"], "--model ehcf has none"),
        (["--model", "ease", "--sampled-proposal", "popularity"], "--model ease has none"),
        (["--sampled-softmax", "-5"], "must be a number of negatives >= 1"),
        (["--sampled-proposal", "popularity"], "given with --sampled-proposal too"),
        (["--model", "ease", "--sparse-updates"], "--model ease has none"),
        (["--item-path-scale", "10"], "--item-path-scale needs --item-path"),
        (["--item-path", "--item-path-scale", "0"], "a value > 0, got 0.0"),
        (["--item-path-drop-overlap", "0.5"], "--item-path-drop-overlap needs --item-path"),
        (["--item-path", "--item-path-drop-overlap", "1"], "0 <= P < 1, got 1.0"),
        (["--weight-decay", "-1"], "--weight-decay must be a finite value >= 0"),
        (["--weight-decay", "inf"], "--weight-decay must be a finite value >= 0"),
        (["--weight-average", "1"], "--weight-average must be in [0, 1), got 1.0"),
        (["--grid", "weight_decay=0,inf"], "takes finite values in [0, 2**31)"),
        (["--lr-decay-steps", "2147483648"], "--lr-decay-steps must be in [0, 2**31)"),
        (["--grid", "lr_decay_steps=2147483648"], "takes finite values in [0, 2**31)"),
        (["--grid", "weight_decay=0,0.1", "--weight-decay", "0.5"], "given and also searched"),
        (["--tune", "2", "--lr", "1e-3"], "--lr given and also searched"),
        (["--tune", "2", "--tune-space", "weight_decay=-1"], "takes finite values >= 0"),
        (["--tune", "2", "--tune-space", "lr_decay_epochs=1e11"], "whole numbers in [0, 100000]"),
        (
            ["--model", "ehcf", "--tune", "1", "--tune-space", "weight_decay=0.5"],
            "dropout, weight_decay: --model ehcf does not read them (drop them with NAME=none)",
        ),
        (["--grid", "lr=1e-3,1e-3"], "a value repeats"),
        (["--tune", "2", "--tune-space", "dropout=0.2,0.2"], "a value is listed twice"),
        (
            ["--tune", "2", "--tune-space", "dropout=0.2", "--tune-space", "dropout=0.5"],
            "dropout is given twice",
        ),
        (["--tune-space", "dropout=0.2,0.5"], "--tune-space shapes the search of --tune N"),
        (["--beta-cap", "inf"], "not a finite number"),
        (["--lr", "0"], "--lr: must be a finite number > 0, got 0"),
        (["--model", "ease", "--boost-grid", "1"], "--model ease has none"),
        (["--boost-grid", "1,-2"], "values must be finite and >= 0"),
        (["--boost-grid", "1,x"], "--boost-grid '1,x'"),
        (["--boost-grid", "0"], "give a value > 0 (0 is always tried)"),
        (["--model", "ease", "--ease-diagonal", "zero", "zero"], "--ease-diagonal lists a value"),
        (["--model", "ease", "--ease-l2", "10", "10.0"], "--ease-l2 lists a value twice"),
        (["--model", "recvae", "--weight-decay", "0.1"], "--model recvae has its own optimizer"),
        (["--model", "ehcf", "--weight-average", "0.9"], "--model ehcf has its own optimizer"),
        (["--lr-decay-steps", "-1"], "--lr-decay-steps must be in [0, 2**31)"),
        (["--lr-decay-steps", "10", "--lr-final-fraction", "2"], "in [0, 1]"),
        (["--model", "ngcf", "--lr-decay-steps", "10"], "--model ngcf has its own optimizer"),
        (["--lr-final-fraction", "0.1"], "--lr-final-fraction is the end of the cosine"),
        (["--grid", "lr_decay_steps=0,-5"], "got [0, -5] with --model bvae"),
        (["--model", "vae_pp", "--grid", "weight_decay=0,0.1"], "with --model vae_pp"),
        (["--model", "vae_u", "--behavior-mean"], "--behavior-mean adds behavior means"),
        (["--behavior-mean", "--encoder", "cgc"], "--encoder cgc"),
        (["--behavior-mean", "--ablation", "no_base"], "--ablation no_base"),
        (["--latent-dims", "8", "0"], "latent_dims must be one int in [1, latent_dim=8]"),
        (["--latent-dims", "8", "9", "--latent-dim", "8"], "got (8, 9)"),
        (
            ["--latent-dims", "8", "4", "--tune", "2", "--tune-space", "latent_dim=4,8"],
            "latent_dim [4] is below the largest per-behavior latent size",
        ),
        (["--seeds", "0"], "--seeds: must be in [1, 2147483647], got 0"),
        (["--first-seed", "-1"], "--first-seed: must be in [0, 2147483647], got -1"),
        (["--epochs", "0"], "--epochs: must be in [1, 2147483647], got 0"),
        (["--epochs", "18446744073709551617"], "--epochs: must be in [1, 2147483647], got 1844"),
        (["--patience", "-1"], "--patience: must be in [0, 2147483647], got -1"),
        (["--batch-size", "x"], "--batch-size: 'x' is not an integer"),
        (["--eval-batch-size", "0"], "--eval-batch-size: must be in [1, 2147483647]"),
        (["--model", "ease", "--ease-l2", "10", "-1"], "must be a finite number > 0, got -1"),
        (["--model", "ease", "--ease-l2", "nan"], "must be a finite number > 0, got nan"),
        (["--model", "recvae", "--recvae-gamma", "0"], "must be a finite number > 0"),
        (["--lr", "inf"], "--lr: must be a finite number > 0, got inf"),
        (["--table-k", "7"], "--table-k: invalid choice: 7"),
        (["--name", ""], "--name must be a non-empty file stem without a path separator, got ''"),
        (["--name", "../escaped"], "without a path separator, got '../escaped'"),
    ],
)
def test_flag_errors_come_before_any_data(tmp_path, capsys, flags, message):
    missing = tmp_path / "no-such-data"  # never read: the flags are checked first
    with pytest.raises(SystemExit):
        experiment.main(["--data", str(missing), "--out", str(tmp_path), *flags])
    assert message in capsys.readouterr().err


def test_a_search_that_runs_out_of_points_says_so(release_dir, tmp_path, caplog):
    space = [f"--tune-space={n}=none" for n in ("beta_cap", "dropout", "batch_size")]
    with caplog.at_level(logging.INFO):
        _run(
            release_dir,
            tmp_path,
            *("--epochs", "1", "--tune", "3", "--tune-algorithm", "grid"),
            *("--tune-space", "learning_rate=1e-3", "--tune-space", "anneal_epochs=2", *space),
        )
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "1 of the 3 trials finished: the space has no other combination" in m for m in said
    ), said
    # Counted names are shown as whole numbers (--tune-space reads floats).
    shown = [r.getMessage() for r in caplog.records if "tune trial 1/3" in r.getMessage()]
    assert shown and "'anneal_epochs': 2" in shown[0] and "2.0" not in shown[0], shown


def test_tune_searches_once_then_trains_every_seed_with_the_best(release_dir, tmp_path):
    _run(
        release_dir,
        tmp_path,
        "--model",
        "bvae",
        "--seeds",
        "2",
        "--epochs",
        "1",
        "--tune",
        "2",
        "--tune-algorithm",
        "grid",
        "--tune-space",
        "learning_rate=1e-4,1e-2",
        "--tune-space",
        "anneal_epochs=2",
        "--tune-space",
        "beta_cap=none",
        "--tune-space",
        "dropout=none",
        "--tune-space",
        "batch_size=none",
    )
    result = json.loads((tmp_path / "bvae.json").read_text())
    search = result["search"]
    assert sorted(t["values"]["learning_rate"] for t in search["trials"]) == [1e-4, 1e-2]
    best = max(search["trials"], key=lambda t: t["selection_score"])
    assert search["best"] == best["values"]
    assert [r["seed"] for r in result["runs"]] == [0, 1]
    for run in result["runs"]:
        assert run["config"]["learning_rate"] == best["values"]["learning_rate"]
        assert run["config"]["anneal_steps"] == 2 * -(-20 // 8)  # 2 epochs of 20 users / 8
    assert result["method"].endswith("[tuned: 2 trials]")
    assert "(+2 search trials" in (tmp_path / "bvae.md").read_text()
    # Pooled with other files, the row still says it was searched (and what it chose).
    (row,) = experiment.combine([tmp_path / "bvae.json"])
    assert row["method"].endswith("[tuned: 2 trials]") and "anneal_steps=" in row["method"]


def test_a_killed_search_reads_its_finished_trials_back(release_dir, tmp_path, monkeypatch):
    train, trained = experiment._train_one, []

    def killed_at_the_second_trial(args, *a, **kwargs):
        if trained:
            raise KeyboardInterrupt("killed")
        trained.append(args.lr)
        return train(args, *a, **kwargs)

    flags = ["--model", "bvae", "--seeds", "1", "--epochs", "1", "--tune", "2"]
    flags += ["--tune-algorithm", "random", "--tune-space", "learning_rate=1e-4,1e-2"]
    flags += [f"--tune-space={n}=none" for n in ("anneal_epochs", "beta_cap", "dropout")]
    flags += ["--tune-space=batch_size=none"]
    monkeypatch.setattr(experiment, "_train_one", killed_at_the_second_trial)
    _run(release_dir, tmp_path, *flags, code=130)
    (part,) = (tmp_path / "bvae.parts").glob("tune-s0-*.json")
    first = json.loads(part.read_text())["run"]

    def counting(args, *a, **kwargs):
        trained.append(args.lr)
        return train(args, *a, **kwargs)

    trained.clear()
    monkeypatch.setattr(experiment, "_train_one", counting)
    _run(release_dir, tmp_path, *flags)
    # The first trial read back; the second trained; seed 0 is the best trial's model.
    (second,) = {1e-4, 1e-2} - {first["values"]["learning_rate"]}
    result = json.loads((tmp_path / "bvae.json").read_text())
    search, (run,) = result["search"], result["runs"]
    assert search["trials"][0] == first
    best = max(search["trials"], key=lambda t: t["selection_score"])
    assert trained == [second, best["values"]["learning_rate"]]
    # ... read back from the trial's finished state, not trained again: the same
    # epochs and the very same measured seconds.
    same = ("best_epoch", "epochs_run", "train_seconds", "selection_score", "valid")
    assert {k: run[k] for k in same} == {k: best[k] for k in same}
    assert not (tmp_path / "bvae.parts").exists() and not (tmp_path / "bvae.ckpt").exists()


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_a_search_proposes_the_same_trials_from_the_same_seed(tmp_path, algorithm):
    from bvae_tf import tuning

    def search(seed):
        settings = tuning.tuning_settings({"algorithm": algorithm, "max_trials": 5, "seed": seed})
        proposed = []

        def trial(values):
            proposed.append(dict(values))
            return argparse.Namespace(best_score=float(values["learning_rate"]))

        tuning.make_tuner(trial, settings, str(tmp_path / "search")).search()
        return proposed

    # (KerasTuner reads a seed of 0 as none given: a random search each time.)
    first = search(0)
    assert search(0) == first and len(first) == 5
    assert search(1) != first


def test_a_trial_sets_weight_decay_and_the_ramp_in_epochs_in_the_experiment_and_pipeline():
    from bvae_tf import tuning

    args = experiment._parser().parse_args(["--data", "d", "--batch-size", "8"])
    values = {"weight_decay": 1e-3, "anneal_epochs": 2, "learning_rate": 0.01}
    trial = experiment.trial_args(args, values, num_train_users=20)
    assert (trial.weight_decay, trial.lr, trial.anneal_steps) == (1e-3, 0.01, 2 * 3)
    assert args.weight_decay is None  # the parsed flags are left alone
    model, training = tuning.apply(values, {"latent_dim": 8}, {"batch_size": 8}, 20)
    assert model == {
        "latent_dim": 8,
        "weight_decay": 1e-3,
        "learning_rate": 0.01,
        "anneal_steps": 6,
    }
    assert training == {"batch_size": 8}
    space = tuning.tuning_settings({"space": {"weight_decay": [0, 1e-4]}})["space"]
    assert space["weight_decay"] == (0, 1e-4) and "weight_decay" not in tuning.DEFAULT_SPACE


def test_a_trial_sets_the_cosine_decay_in_epochs_and_zero_keeps_the_rate_constant():
    from bvae_tf import config as C
    from bvae_tf import tuning

    args = experiment._parser().parse_args(["--data", "d", "--batch-size", "8"])
    for epochs, schedule in ((5, "cosine"), (0, "constant")):
        trial = experiment.trial_args(args, {"lr_decay_epochs": epochs}, num_train_users=20)
        assert trial.lr_decay_steps == epochs * 3
        config = experiment._config(trial, ("a", "b"), 10, seed=0)
        assert (config.lr_schedule, config.lr_decay_steps) == (schedule, epochs * 3)
        model, _ = tuning.apply({"lr_decay_epochs": epochs}, {}, {"batch_size": 8}, 20)
        assert model == {"lr_schedule": schedule, "lr_decay_steps": epochs * 3}
        assert C.BVAEConfig(behaviors=("a",), num_items=4, **model).lr_schedule == schedule
    assert "lr_decay_epochs" not in tuning.DEFAULT_SPACE
    assert experiment.grid_points(["lr_decay_steps=0,40"]) == [
        {"lr_decay_steps": 0},
        {"lr_decay_steps": 40},
    ]
    # The grid's pick (0: constant, 40: cosine) does not name the method.
    tuned = experiment.tuned_fields(["lr_decay_steps=0,40"])
    labels = {
        experiment.method_label("bvae", C.BVAEConfig(("a",), 4, **m).to_dict(), tuned)
        for m in ({}, {"lr_schedule": "cosine", "lr_decay_steps": 40})
    }
    assert labels == {"BVAE (gates=gated)"}
    for bad in ([-1, 5], [0.5]):
        with pytest.raises(ValueError, match="lr_decay_epochs counts epochs"):
            tuning.tuning_settings({"space": {"lr_decay_epochs": bad}})


def test_tune_refuses_per_target_models_and_bad_spaces(release_dir, tmp_path, capsys):
    base = ["--data", str(release_dir), "--out", str(tmp_path)]
    with pytest.raises(SystemExit):
        experiment.main([*base, "--model", "vae_t", "--tune", "2"])
    assert "use --grid for one-per-target" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        experiment.main([*base, "--tune", "2", "--tune-space", "hidden=1,2"])
    assert "unknown tuning.space names" in capsys.readouterr().err


def test_combine_pools_a_file_written_before_a_config_field_existed(tmp_path):
    from bvae_tf import model as Mo

    config = Mo.BVAEConfig(behaviors=("purchase",), num_items=3).to_dict()
    older = {k: v for k, v in config.items() if k != "loss_weights"}  # an older record
    files = []
    for seed, cfg in ((0, older), (1, dict(config, seed=1))):
        run = {"seed": seed, "config": cfg, "honest": {"purchase": {"ndcg@5": 0.1 * (seed + 1)}}}
        result = {
            "model": "bvae",
            "method": "BVAE",
            "behaviors": ["purchase"],
            "runs": [run],
            "command": "python -m bvae_tf.experiment --model bvae",
        }
        path = tmp_path / f"s{seed}.json"
        path.write_text(json.dumps(result))
        files.append(path)
    (pooled,) = experiment.combine(files)
    assert [r["seed"] for r in pooled["runs"]] == [0, 1]


@pytest.mark.unit
def test_vae_labels_show_the_training_settings_that_differ_from_the_defaults():
    assert experiment.method_label("vae_u", {"learning_rate": 1e-3, "variant": "union_vae"}) == (
        "VAE (U.)"
    )
    config = {"weight_decay": 0.1, "lr_decay_steps": 5, "learning_rate": 1e-3}
    assert experiment.method_label("vae_t", config) == (
        "VAE (T.) (weight_decay=0.1, lr_decay_steps=5)"
    )
    assert experiment.method_label("vae_t", config, tuned={"weight_decay"}) == (
        "VAE (T.) (lr_decay_steps=5)"
    )
    assert experiment.method_label("recvae", config) == "RecVAE (T.)"


def test_check_commands_names_each_refused_command_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    lines = [
        f"--data {tmp_path}/missing --out {out} --model bvae --anneal-steps 10000",
        "",
        f"--data x --out {out} --model ngcf --lr 1e-3 --grid lr=1e-4,1e-3",
        f"--data x --out {out} --model bvae --dropout 1",
    ]
    assert experiment.check_commands(lines) == 2
    err = capsys.readouterr().err.splitlines()
    assert (
        err[0] == "command 2: --lr given and also searched (--grid / --tune); give one of the two"
    )
    assert err[1].startswith("command 3: invalid BVAEConfig.dropout: 1.0")
    assert len(err) == 2 and not out.exists()  # no data read, nothing written
    assert experiment.check_commands(lines[:1]) == 0


def test_check_alone_needs_the_data_folder_and_files_for_each_named_behavior(
    release_dir, tmp_path, capsys
):
    """``--check`` on its own refuses a --data that a run could not read and a behavior
    without release files (named by file name, nothing read); check_commands leaves the
    folder to scripts/run_comparison.sh, which checks DATA itself."""
    out = tmp_path / "out"
    base = ["--out", str(out), "--check"]
    with pytest.raises(SystemExit) as stopped:
        experiment.main(["--data", str(tmp_path / "missing"), *base])
    assert stopped.value.code == 2
    assert f"--data '{tmp_path / 'missing'}' does not exist (a run reads it)" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):  # the release's file prefix, not the behavior's name
        experiment.main(["--data", str(release_dir), *base, "--behaviors", "favourite"])
    err = capsys.readouterr().err
    assert "--behaviors: behaviors ['favourite'] have no files in" in err
    assert "favorite (favourite_*)" in err
    assert experiment.main(["--data", str(release_dir), *base, "--behaviors", "favorite"]) == 0
    with pytest.raises(SystemExit):  # the folder above the release's: no release file
        experiment.main(["--data", str(release_dir.parent), *base])
    assert f"--data '{release_dir.parent}' holds no release files" in capsys.readouterr().err
    # One loss weight or latent size per modelled behavior (the data's three by default).
    for flags, said in (
        (["--loss-weights", "0.5", "0.5"], "--loss-weights: 2 values for the 3 modelled"),
        (["--latent-dim", "4", "--latent-dims", "4", "4"], "--latent-dims: 2 values for the 3"),
        (["--behaviors", "purchase", "--loss-weights", "1", "1"], "per behavior ('purchase',)"),
    ):
        with pytest.raises(SystemExit):
            experiment.main(["--data", str(release_dir), *base, *flags])
        assert said in capsys.readouterr().err
    missing = f"--data {tmp_path / 'missing'} --out {out} --behaviors favourite"
    assert experiment.check_commands([missing]) == 0
    assert not out.exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--model vae_pp --dropout 1.5", "invalid VAE++ settings: dropout=1.5 (must be in [0, 1))"),
        ("--model recvae --grid recvae_gamma=-1", "invalid RecVAE settings: gamma=-1.0"),
        ("--model recvae --grid recvae_gamma=nan", "invalid RecVAE settings: gamma=nan"),
        ("--model vae_pp --grid lr=nan", "invalid VAE++ settings: learning_rate=nan (must be > 0)"),
        ("--model vae_pp --grid beta_cap=1,-1", "beta_cap=-1.0 (must be >= 0) (from the flags and"),
        ("--model ehcf --grid lr=0,0.05", "invalid EHCF settings: learning_rate=0.0"),
    ],
)
def test_check_refuses_what_a_trained_baseline_would_refuse_only_at_its_run(
    tmp_path, capsys, flags, message
):
    """``--check`` (and so ``scripts/run_comparison.sh`` before its first run) builds each
    grid point's baseline with placeholder sizes: no value waits for the data to fail."""
    out = tmp_path / "out"
    assert experiment.check_commands([f"--data x --out {out} {flags}"]) == 2
    assert message in capsys.readouterr().err and not out.exists()
    assert experiment.check_commands([f"--data x --out {out} --model vae_pp --dropout 0.2"]) == 0


def test_a_search_prints_nothing_but_logs_its_summaries(tmp_path, capsys, caplog):
    """TFX's Tuner calls the summaries; with KerasTuner's own display they printed
    dozens of lines per trial beside the one progress line per trial."""
    import logging

    from bvae_tf import tuning

    settings = tuning.tuning_settings({"max_trials": 2, "seed": 3})
    tuner = tuning.make_tuner(
        lambda values: argparse.Namespace(best_score=float(values["learning_rate"])),
        settings,
        str(tmp_path / "search"),
    )
    with caplog.at_level(logging.INFO):
        tuner.search_space_summary()
        tuner.search()
        tuner.results_summary()
    assert capsys.readouterr().out == ""
    assert "Tuner search space: {'learning_rate': " in caplog.text
    assert caplog.text.count(", score ") == 2


@pytest.mark.parametrize("model", ["bvae", "vae_t"])
def test_selected_from_trains_only_the_searched_choice_and_pools_with_the_search(
    release_dir, tmp_path, model
):
    grid = ("--grid", "lr=1e-4,1e-2")
    _run(release_dir, tmp_path, "--model", model, "--name", "s0", "--seeds", "1", *grid)
    searched = json.loads((tmp_path / "s0.json").read_text())
    (run0,) = searched["runs"]
    _run(
        release_dir,
        tmp_path,
        *("--model", model, "--name", "s1", "--seeds", "1", "--first-seed", "1", *grid),
        *("--selected-from", str(tmp_path / "s0.json")),
    )
    result = json.loads((tmp_path / "s1.json").read_text())
    (run1,) = result["runs"]
    assert run1["seed"] == 1
    parts0, parts1 = run0.get("parts") or [run0], run1.get("parts") or [run1]
    assert len(parts1) == len(parts0) == (3 if model == "vae_t" else 1)
    for p0, p1 in zip(parts0, parts1, strict=True):
        assert len(p0["trials"]) == 2  # the search trained both points ...
        assert "trials" not in p1  # ... the choice's seed only the chosen one
        assert p1["selected"] == p0["selected"]
        assert p1["config"]["learning_rate"] == p0["selected"]["lr"]
        assert p1["selected_from"] == {"file": str(tmp_path / "s0.json"), "seed": 0}
    assert experiment.compute_cost(result)["fits"] == len(parts1)
    # One method, two seeds: the table pools them.
    (row,) = experiment.combine([tmp_path / "s0.json", tmp_path / "s1.json"])
    assert [r["seed"] for r in row["runs"]] == [0, 1]
    assert row["method"].endswith("[tuned: lr=1e-4,1e-2]")


def test_selected_from_refuses_another_command_a_run_without_a_search_and_no_grid(
    release_dir, tmp_path, capsys
):
    grid = ("--grid", "lr=1e-4,1e-2")
    _run(release_dir, tmp_path, "--name", "s0", "--seeds", "1", *grid)
    source = str(tmp_path / "s0.json")
    capsys.readouterr()
    # Another grid, another budget: not the same method's choice.
    _run(
        release_dir,
        tmp_path,
        "--name",
        "a",
        "--grid",
        "lr=1e-3,1e-2",
        "--selected-from",
        source,
        code=2,
    )
    assert "it has '--grid lr=1e-4,1e-2' where this has '--grid lr=1e-3,1e-2'" in (
        capsys.readouterr().err
    )
    # --check reads RESULT as the run would (scripts/run_comparison.sh checks each row
    # first): the other grid is refused before any training, the same grid passes.
    with pytest.raises(SystemExit):
        _run(release_dir, tmp_path, "--name", "a", "--grid", "lr=1e-3,1e-2", "--check",
             "--selected-from", source)  # fmt: skip
    assert "it has '--grid lr=1e-4,1e-2' where this has '--grid lr=1e-3,1e-2'" in (
        capsys.readouterr().err
    )
    _run(release_dir, tmp_path, "--name", "a", *grid, "--check", "--selected-from", source)
    # The same settings written otherwise are the same method.
    for same in (("--grid", "lr=0.01,0.0001"), (*grid, "--epochs", "2")):
        _run(release_dir, tmp_path, "--name", "a", *same, "--check", "--selected-from", source)
    with pytest.raises(SystemExit):  # only what differs as parsed is named
        _run(release_dir, tmp_path, "--name", "a", "--grid", "lr=0.01,0.0001", "--epochs", "1",
             "--check", "--selected-from", source)  # fmt: skip
    err = capsys.readouterr().err
    assert "(it has '--epochs 2' where this has '--epochs 2 --epochs 1'):" in err
    other_data = tmp_path / "other_data"
    shutil.copytree(release_dir, other_data)
    train = other_data / "target_train"
    train.write_text(train.read_text() + "1 25\n")
    with pytest.raises(SystemExit):
        _run(other_data, tmp_path, "--name", "a", *grid, "--check", "--selected-from", source)
    assert "trained on other data files" in capsys.readouterr().err
    _run(
        release_dir,
        tmp_path,
        "--name",
        "b",
        "--epochs",
        "1",
        *grid,
        "--selected-from",
        source,
        code=2,
    )
    assert "it has '--epochs 2' where this has '--epochs 2 --epochs 1'" in (capsys.readouterr().err)
    # A run trained on a choice is no search to choose from.
    _run(
        release_dir, tmp_path, "--name", "c", "--first-seed", "1", *grid, "--selected-from", source
    )
    _run(
        release_dir,
        tmp_path,
        *("--name", "d", "--first-seed", "2", *grid, "--selected-from", str(tmp_path / "c.json")),
        code=2,
    )
    assert "holds no finished --grid search" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --check parses RESULT's choice as the run does
        _run(release_dir, tmp_path, "--name", "d", "--first-seed", "2", *grid, "--check",
             "--selected-from", str(tmp_path / "c.json"))  # fmt: skip
    assert "holds no finished --grid search" in capsys.readouterr().err
    no_trials = json.loads((tmp_path / "s0.json").read_text())
    no_trials["runs"][0]["trials"] = []
    (tmp_path / "no_trials.json").write_text(json.dumps(no_trials))
    with pytest.raises(SystemExit):
        _run(release_dir, tmp_path, "--name", "d", *grid, "--check",
             "--selected-from", str(tmp_path / "no_trials.json"))  # fmt: skip
    assert "seed 0's purchase+click+favorite holds no trials: not the run of a --grid search" in (
        capsys.readouterr().err
    )
    # ... and the --reuse-from files as the run does.
    (tmp_path / "junk.json").write_text("[1]")
    with pytest.raises(SystemExit):
        _run(release_dir, tmp_path, "--name", "d", *grid, "--check", "--selected-from", source,
             "--reuse-from", str(tmp_path / "junk.json"))  # fmt: skip
    assert "junk.json' is not a result file of this module" in capsys.readouterr().err
    # Seed 1 kept from a choice its RESULT no longer makes (the search run again).
    changed = json.loads((tmp_path / "s0.json").read_text())
    (run,) = changed["runs"]
    other = next(t["point"] for t in run["trials"] if t["point"] != run["selected"])
    run["selected"] = other
    for trial in run["trials"]:  # the search run again: the other point scores best now
        trial["selection_score"] = 1.0 if trial["point"] == other else 0.5
    (tmp_path / "s0.json").write_text(json.dumps(changed))
    _run(
        release_dir,
        tmp_path,
        *("--name", "c", "--first-seed", "1", *grid, "--selected-from", source),
        code=2,
    )
    assert f"now chooses {other}" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text('{"command": "python -m')
    _run(
        release_dir,
        tmp_path,
        "--name",
        "f",
        *grid,
        "--selected-from",
        str(tmp_path / "broken.json"),
        code=2,
    )
    assert "is not JSON" in capsys.readouterr().err
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(SystemExit):
        _run(release_dir, tmp_path, "--name", "f", *grid, "--check",
             "--selected-from", str(tmp_path / "binary.json"))  # fmt: skip
    assert f"{str(tmp_path / 'binary.json')!r} is not UTF-8 text" in capsys.readouterr().err
    for extra, message in (
        (("--selected-from", source), "give the same --grid"),
        ((*grid, "--selected-from", str(tmp_path / "none.json")), "has that search run"),
        ((*grid, "--name", "s0", "--selected-from", source), "this run's own result file"),
        (
            (*grid, "--selected-from", source, "--selected-from", str(tmp_path / "c.json")),
            "--selected-from is given more than once",
        ),
        (
            (
                *grid,
                "--selected-from",
                source,
                "--reuse-from",
                source,
                str(tmp_path / "x/../s0.json"),
            ),
            f"--reuse-from names a file more than once: {source}",
        ),
    ):
        with pytest.raises(SystemExit):
            _run(release_dir, tmp_path, "--name", "e", *extra)
        assert message in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "e.json").exists()


def test_check_refuses_gate_kernels_too_large_for_any_catalog(
    release_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr("psutil.virtual_memory", type("Memory", (), {"available": 10**10}))
    argv = ["--data", str(release_dir), "--out", str(tmp_path / "o"), "--check"]
    with pytest.raises(SystemExit):  # 2 GFF kernels of 40,000^2 with Adam: 38.4 GB
        experiment.main([*argv, "--latent-dim", "40000"])
    assert "BVAE's 2 [d, d] GFF kernels alone need 38.4 GB" in capsys.readouterr().err
    assert experiment.main([*argv, "--latent-dim", "40000", "--gate-mode", "reference"]) == 0
    assert experiment.main([*argv, "--latent-dim", "4000"]) == 0
    # A --tune search is checked at its largest latent_dim, as a --grid point is.
    tune = [*argv, "--tune", "2", "--tune-space"]
    with pytest.raises(SystemExit):
        experiment.main([*tune, "latent_dim=100,40000"])
    err = capsys.readouterr().err
    assert "GFF kernels alone need 38.4 GB" in err
    assert "(from the flags and --tune-space {'latent_dim': 40000})" in err
    assert experiment.main([*tune, "latent_dim=100,4000"]) == 0


@pytest.mark.parametrize(
    "case",
    [
        # 2**30 latent dimensions over 25 items: hundreds of GB of decoder weights.
        ("bvae", 2**30),
        ("vae_t", 2**30),
        ("vae_pp", 2**30),
        ("vae_u", 2**30),
        # 40,000 over 25 items: the decoders are small, BVAE's three [d, d] GFF kernels
        # 58 GB with Adam's slots (a machine of 10 GB below).
        ("bvae", 40_000),
    ],
)
def test_a_latent_dim_too_large_for_the_memory_is_refused_before_training(
    release_dir, tmp_path, capsys, monkeypatch, case
):
    model, latent_dim = case
    monkeypatch.setattr("psutil.virtual_memory", type("Memory", (), {"available": 10**10}))
    try:  # refused with the flags (BVAE's GFF kernels alone) or once the data is read
        _run(release_dir, tmp_path, "--model", model, "--latent-dim", str(latent_dim), code=2)
    except SystemExit as e:
        assert e.code == 2
    err = capsys.readouterr().err
    assert "GB is available: lower --latent-dim or --batch-size" in err
    assert not (tmp_path / f"{model}.json").exists()


def test_a_grid_point_that_diverges_is_skipped_and_kept_apart(
    release_dir, tmp_path, capsys, monkeypatch
):
    train_one = experiment._train_one

    def diverging_at_1e_2(args, *rest, **kwargs):
        if args.lr >= 1e-2:
            raise FloatingPointError("the training loss is nan after epoch 1, before any")
        return train_one(args, *rest, **kwargs)

    monkeypatch.setattr(experiment, "_train_one", diverging_at_1e_2)
    _run(release_dir, tmp_path, "--name", "g", "--seeds", "1", "--grid", "lr=1e-3,1e-2")
    assert "trial 2/2 {'lr': 0.01} failed: the training loss is nan" in capsys.readouterr().err
    (run,) = json.loads((tmp_path / "g.json").read_text())["runs"]
    assert [t["point"] for t in run["trials"]] == [{"lr": 1e-3}] == [run["selected"]]
    assert run["failed_trials"] == [
        {"point": {"lr": 1e-2}, "error": "the training loss is nan after epoch 1, before any"}
    ]
    # Every point failing: one error line naming the first failure, no result.
    _run(release_dir, tmp_path, "--name", "h", "--seeds", "1", "--grid", "lr=1e-2,2e-2", code=2)
    assert "every --grid point failed" in capsys.readouterr().err
    assert not (tmp_path / "h.json").exists()


def test_a_tune_whose_trials_all_fail_ends_in_one_line(release_dir, tmp_path, capsys):
    """KerasTuner prints a failed trial's traceback to stderr: it goes to the log. (The
    reference gate reading has no [d, d] kernels, so the flag check lets the huge
    latent_dim through and the trial's own memory check refuses it.)"""
    argv = ["--data", str(release_dir), "--out", str(tmp_path), "--no-optimizer-jit"]
    argv += ["--tune", "1", "--tune-space", f"latent_dim={2**30}", "--epochs", "1"]
    argv += ["--gate-mode", "reference"]
    assert experiment.main(argv) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    assert "--tune: none of the 1 trials finished: the first failed with: training at" in out.err
    assert "lower --latent-dim or --batch-size (or the searched values)" in out.err


def test_check_refuses_a_command_whose_kept_result_the_run_would_refuse(
    release_dir, tmp_path, capsys
):
    _run(release_dir, tmp_path, "--name", "ok", "--seeds", "1")
    _run(release_dir, tmp_path, "--name", "ok", "--seeds", "1", "--check")  # the same: resumes
    with pytest.raises(SystemExit):
        _run(release_dir, tmp_path, "--name", "ok", "--seeds", "1", "--epochs", "3", "--check")
    assert "holds the result of another command (it has '--epochs 2'" in capsys.readouterr().err
    assert experiment.check_commands([f"--data {release_dir} --out {tmp_path} --name ok"]) == 2


@pytest.mark.unit
def test_help_says_each_default_once():
    import re

    text = " ".join(experiment._parser().format_help().split())
    assert not re.search(r"\(default[^)]*\) \(default", text), text
    assert "output folder (default: out/experiments)" in text


@pytest.mark.parametrize("model", ["bvae", "vae_t"])
def test_reuse_from_takes_the_untuned_rows_seed_when_its_seed_0_is_the_choice(
    release_dir, tmp_path, model
):
    """A choice that is the untuned command's setting (lr 1e-3 is every model's
    default), whose seed-0 run repeats the chosen trial exactly, is taken from the
    untuned files at seed 1 instead of trained, and equals what training gives."""
    flags = ("--model", model, "--seeds", "1")
    grid = ("--grid", "lr=1e-3")
    _run(release_dir, tmp_path, *flags, "--name", "d0")
    _run(release_dir, tmp_path, *flags, "--name", "d1", "--first-seed", "1")
    _run(release_dir, tmp_path, *flags, "--name", "t0", *grid)
    chosen = ("--selected-from", str(tmp_path / "t0.json"))
    untuned = [str(tmp_path / "d0.json"), str(tmp_path / "d1.json")]
    seed_1 = (*flags, "--first-seed", "1", *grid, *chosen)
    _run(release_dir, tmp_path, *seed_1, "--name", "t1", "--reuse-from", *untuned)
    _run(release_dir, tmp_path, *seed_1, "--name", "trained")  # the same, trained
    (reused,) = json.loads((tmp_path / "t1.json").read_text())["runs"]
    (trained,) = json.loads((tmp_path / "trained.json").read_text())["runs"]
    (untuned_1,) = json.loads((tmp_path / "d1.json").read_text())["runs"]
    parts = reused.get("parts") or [reused]
    assert len(parts) == (3 if model == "vae_t" else 1)
    for part in parts:
        assert part["reused_from"] == {
            "file": untuned[1],
            "seed": 1,
            "evidence": {"file": untuned[0], "seed": 0},
        }
        assert part["selected"] == {"lr": 0.001} and part["selected_from"]["seed"] == 0
    for key in ("honest", "valid", "best_epoch", "test_per_user"):
        assert reused[key] == trained[key] == untuned_1[key], key
    assert "reused_from" not in trained and not any(
        "reused_from" in p for p in trained.get("parts", [])
    )


def test_reuse_from_trains_when_the_untuned_files_are_not_the_choice(release_dir, tmp_path, capsys):
    flags = ("--model", "bvae", "--seeds", "1")
    grid = ("--grid", "lr=1e-3")
    _run(release_dir, tmp_path, *flags, "--name", "d0", "--dropout", "0.2")  # another setting
    _run(release_dir, tmp_path, *flags, "--name", "d1", "--first-seed", "1", "--dropout", "0.2")
    _run(release_dir, tmp_path, *flags, "--name", "e0")
    _run(release_dir, tmp_path, *flags, "--name", "e1", "--first-seed", "1")
    _run(release_dir, tmp_path, *flags, "--name", "t0", *grid)
    seed_1 = (*flags, "--first-seed", "1", *grid, "--selected-from", str(tmp_path / "t0.json"))
    capsys.readouterr()
    _run(release_dir, tmp_path, *seed_1, "--name", "a",
         "--reuse-from", str(tmp_path / "d0.json"), str(tmp_path / "d1.json"))  # fmt: skip
    assert "another command (it differs in dropout)" in capsys.readouterr().err
    # The right command, but its seed 0 is not the chosen trial (here: tampered with).
    e0 = json.loads((tmp_path / "e0.json").read_text())
    e0["runs"][0]["valid"]["purchase"]["ndcg@5"] += 1e-9
    (tmp_path / "e0.json").write_text(json.dumps(e0))
    _run(release_dir, tmp_path, *seed_1, "--name", "b",
         "--reuse-from", str(tmp_path / "e0.json"), str(tmp_path / "e1.json"),
         str(tmp_path / "not_there.json"))  # fmt: skip
    err = capsys.readouterr().err
    assert "not_there.json: not there (yet); not reused" in err
    assert "trained, not reused:" in err and "is not the chosen trial (its valid differ" in err
    for name in ("a", "b"):
        (run,) = json.loads((tmp_path / f"{name}.json").read_text())["runs"]
        assert "reused_from" not in run and run["selected"] == {"lr": 0.001}
    # A file that is there must be a result; and --reuse-from needs a choice to take.
    (tmp_path / "junk.json").write_text("[1]")
    capsys.readouterr()
    _run(release_dir, tmp_path, *seed_1, "--name", "c",
         "--reuse-from", str(tmp_path / "junk.json"), code=2)  # fmt: skip
    assert "junk.json' is not a result file of this module" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _run(
            release_dir, tmp_path, *flags, "--name", "c", "--reuse-from", str(tmp_path / "e1.json")
        )
    assert "give --selected-from" in capsys.readouterr().err


def test_a_run_resumes_whether_or_not_it_names_reuse_files():
    command = "python -m bvae_tf.experiment --data d --name x --grid lr=1e-3 --selected-from s.json"
    assert experiment._same_command(command + " --reuse-from a.json b.json", command)
    assert experiment._same_command(command, command + " --reuse-from a.json")
    assert not experiment._same_command(command + " --dropout 0.2 --reuse-from a.json", command)
    assert not experiment._same_command(None, command)


@pytest.mark.unit
def test_a_damaged_result_file_is_refused_where_it_would_be_reused_or_resumed(tmp_path, capsys):
    sound = _result("bvae", "BVAE", 0, 0.2)
    sound["runs"][0]["honest"]["purchase"]["num_users"] = 2
    sound["runs"][0]["test_per_user"] = {"purchase": [0.1, 0.3]}
    path = tmp_path / "untuned.json"
    path.write_text(json.dumps(sound))
    assert experiment._read_result(path, "--reuse-from 'x'")["runs"] == sound["runs"]
    # A metric edited by hand (not the mean of its users) or one that is not finite: a
    # run taken from it (--reuse-from, --selected-from) would carry it into this result.
    for key, value in (("ndcg@5", 0.99), ("ndcg@5", float("nan"))):
        damaged = json.loads(json.dumps(sound))
        damaged["runs"][0]["honest"]["purchase"][key] = value
        path.write_text(json.dumps(damaged))
        with pytest.raises(ValueError, match=r"^--reuse-from 'x' is not a sound result file: "):
            experiment._read_result(path, "--reuse-from 'x'")
    # The same file kept as this run's own result: refused before anything runs, not
    # resumed (its runs would pass into the tables as they are).
    (tmp_path / "bvae.json").write_text(path.read_text())
    argv = ["--data", str(tmp_path), "--out", str(tmp_path), "--name", "bvae", "--model", "bvae"]
    with pytest.raises(SystemExit):
        experiment.main(argv)
    err = capsys.readouterr().err
    assert "bvae.json' is not a sound result (" in err and "pass --overwrite" in err
    # A folder where the result goes: named before any training, not after it.
    (tmp_path / "bvae.json").unlink()
    (tmp_path / "bvae.json").mkdir()
    with pytest.raises(SystemExit):
        experiment.main(argv)
    assert "bvae.json' exists and is not a file" in capsys.readouterr().err


@pytest.mark.unit
def test_a_choice_that_is_not_the_searchs_best_trial_is_refused():
    trials = [
        {"point": {"lr": 1e-3}, "selection_score": 0.2},
        {"point": {"lr": 1e-2}, "selection_score": 0.3},
    ]
    experiment._check_choice(trials, [trials[1]], "x")  # the best: taken
    with pytest.raises(ValueError, match=r"^x: the selected point's trial scored 0\.2 on valid"):
        experiment._check_choice(trials, [trials[0]], "x")  # "selected" edited by hand
    nan = [{**trials[0], "selection_score": float("nan")}, trials[1]]
    with pytest.raises(ValueError, match="selection_score is not a finite number"):
        experiment._check_choice(nan, [nan[1]], "x")
    with pytest.raises(ValueError, match="no trial of the selected point"):
        experiment._check_choice(trials, [], "x")


@pytest.mark.unit
def test_combine_refuses_one_run_under_two_seeds(tmp_path):
    first = _result("bvae", "BVAE", 0, 0.2)
    first["runs"][0]["honest"]["purchase"]["num_users"] = 2
    first["runs"][0]["test_per_user"] = {"purchase": [0.1, 0.3]}
    copy = json.loads(json.dumps(first))
    copy["runs"][0]["seed"] = copy["runs"][0]["config"]["seed"] = 5  # renamed, same run
    files = [tmp_path / "s0.json", tmp_path / "s5.json"]
    for path, result in zip(files, (first, copy), strict=True):
        path.write_text(json.dumps(result))
    with pytest.raises(ValueError, match=r"same test score for every user: one run under two"):
        experiment.combine(files)
    # Another seed's users score otherwise: pooled.
    copy["runs"][0]["test_per_user"] = {"purchase": [0.3, 0.1]}
    files[1].write_text(json.dumps(copy))
    (row,) = experiment.combine(files)
    assert [r["seed"] for r in row["runs"]] == [0, 5]
