"""The report renders from result files alone (bvae_tf.report)."""

import json
import logging
import os
import pathlib

import numpy as np
import pytest

from bvae_tf import experiment, report
from bvae_tf.config import BVAEConfig

pytestmark = pytest.mark.unit

BEHAVIORS = ("purchase", "click", "favorite")


def _metrics(rng):
    out = {"num_users": 10}
    for k in report.KS:
        for name in ("precision", "recall", "ndcg", "hit_rate"):
            out[f"{name}@{k}"] = float(rng.uniform(0.01, 0.2))
    return out


def _gates(e, behaviors):
    """Gate trackers of one epoch: GFF drifting below 1, TFF favouring the own behavior."""
    own = 0.4 + 0.1 * e
    return {
        **{f"{b}_gff_gate": 1.0 - 0.05 * e for b in behaviors},
        **{f"{b}_gff_gate_std": 0.02 * e for b in behaviors},
        **{
            f"{t}_tff_from_{s}": own if s == t else (1 - own) / (len(behaviors) - 1)
            for t in behaviors
            for s in behaviors
        },
    }


def _result(model, seed=0, command_extra="", behaviors=BEHAVIORS, gates=False, **config):
    rng = np.random.default_rng(seed + len(model) + len(config) + len(str(config)))
    run = {
        "seed": seed,
        "honest": {b: _metrics(rng) for b in behaviors},
        "test_per_user": {b: (0.4 * rng.random(10)).round(6).tolist() for b in behaviors},
        "train_seconds": 60.0,
        "epochs_run": 3,
        "best_epoch": 2,
    }
    for b in behaviors:  # one scoring writes both (experiment.check_result compares them)
        run["honest"][b]["ndcg@5"] = float(np.mean(run["test_per_user"][b]))
    if model == "bvae":
        run["config"] = BVAEConfig(behaviors=behaviors, num_items=5, seed=seed, **config).to_dict()
        run["curve"] = [
            {
                "epoch": float(e),
                **{f"valid/{b}/ndcg@5": 0.01 * e for b in behaviors},
                **{f"{b}_sdwl_weight": 0.5 / e for b in behaviors},
                **{f"{b}_sigma": 1.0 + e for b in behaviors},
                **(_gates(e, behaviors) if gates else {}),
            }
            for e in (1, 2, 3)
        ]
    else:
        run["config"] = {"behaviors": list(behaviors)}
    return {
        "name": model,
        "model": model,
        "method": model,
        "behaviors": list(behaviors),
        "command": f"python -m bvae_tf.experiment --model {model} {command_extra}".strip(),
        "runs": [run],
    }


def _set_machine(result: dict) -> dict:
    """``result`` with a recorded machine (``experiment.machine``); the others have none."""
    result["runs"][0]["machine"] = {"cpus": 16, "cpu": "x", "gpus": ["NVIDIA H200"]}
    return result


@pytest.fixture
def results_dir(tmp_path):
    folder = tmp_path / "results" / "jd"
    folder.mkdir(parents=True)
    files = {
        "bvae_s0": _result("bvae"),
        "bvae_s1": _result("bvae", seed=1, gates=True),  # newer: records the gates
        "mmoe_s0": _set_machine(_result("bvae", encoder="mmoe")),
        "no_tff_s0": _result("bvae", use_tff=False),
        "vae_pp_s0": _result("vae_pp"),
        "tuned_s0": _result("bvae", command_extra="--grid lr=1e-3,1e-2"),
        "popularity": _result("popularity"),
        # The studies: d sweep, behaviors added, fixed loss weights.
        "d50_s0": _result("bvae", latent_dim=50),
        "d200_s0": _result("bvae", latent_dim=200),
        "rq4_p_s0": _result("bvae", behaviors=("purchase",)),
        "rq4_pc_s0": _result("bvae", behaviors=("purchase", "click")),
        "w1_s0": _result("bvae", loss_weights=(0.1, 0.1, 0.8)),
        "w2_s0": _result("bvae", loss_weights=(0.1, 0.2, 0.7)),
        "w3_s0": _result("bvae", loss_weights=(0.2, 0.1, 0.7)),
    }
    for name, result in files.items():
        if name == "bvae_s1":  # stored by column, as the experiment writes it now
            for run in result["runs"]:
                run["curve"] = experiment.pack_curve(run["curve"])
        (folder / f"{name}.json").write_text(json.dumps(result))
    return tmp_path / "results"


def test_the_summary_comes_first_and_is_computed_from_the_runs(results_dir, tmp_path):
    text = report.render(results_dir, tmp_path / "docs").read_text()
    summary = text.split("## Summary", 1)[1].split("\n## JD", 1)[0]
    assert text.index("## Summary") < text.index("## JD")
    results = report.load(results_dir)["jd"]
    rows = [r for r in results if not report.is_study_run(r, "jd")]
    for b in ("purchase", "click", "favorite"):
        best = max(rows, key=lambda r: report._ndcg(r, b) or 0.0)
        assert f"{b}: {best['method']} {report._ndcg(best, b):.4f} (" in summary
    # Plain BVAE beside the paper's BVAE row (no paper-protocol runs in the fixture).
    bvae = report.find_untuned(results, "bvae", "jd")
    honest = " / ".join(f"{report._ndcg(bvae, b):.4f}" for b in ("purchase", "click", "favorite"))
    line = "the paper 0.0743 / 0.0551 / 0.0859; honest protocol " + honest
    assert line in summary and "the paper's protocol (best" not in summary
    # BVAE against the best baseline, as under the RQ1 table.
    tests = [line for line in summary.splitlines() if line.startswith("  - ")]
    assert len(tests) == 3 and all(t[4:] in text.split("## JD", 1)[1] for t in tests)
    # Each study's finding, with the paper's claim beside it.
    for heading in ("RQ2: ablation and BASE's replacements", "RQ3: the latent size d", "RQ4"):
        assert f"- **{heading}" in summary
    paper, here = report._claim_parts("rq2_ablation", results, "jd")
    assert here.removeprefix("Here ") in summary and f"(The paper: {paper}.)" in summary


def test_report_renders_tables_figures_and_what_is_missing(results_dir, tmp_path):
    out = tmp_path / "docs"
    path = report.render(results_dir, out)
    text = path.read_text()
    # RQ1: the table with the seeds pooled, the paper's rows beside it.
    assert "| purchase | BVAE (gates=gated) |" in text
    assert "| 2 |" in text  # BVAE's two seed files pooled into one row
    assert "The paper's rows (JD" in text and "0.0743 / 0.1289" in text
    # The studies' sweeps are figures, not rows of the comparison.
    assert "purchase only" not in text and "latent_dim=" not in text
    assert "loss_weights=" not in text
    # RQ2: the rows present, by name; RQ3: BVAE against VAE++; the training curves.
    for name in (
        "rq2_ablation_jd",
        "rq2_weights_jd",
        "rq3_k_jd",
        "rq3_d_jd",
        "rq4_jd",
        "training_jd",
        "gates_jd",
    ):
        png = out / "figures" / f"{name}.png"
        assert png.stat().st_size > 5_000
        assert f"](figures/{name}.png)" in text
    assert "Seeds: BVAE 2, -TFF 1, -BASE (+MMoE) 1." in text
    # BVAE against the best baseline too, not only the best row (here its MMoE variant).
    head = "The same test of BVAE (gates=gated) against the best row that is not BVAE"
    block = text.split(head, 1)[1].split("####", 1)[0]
    tests = [line for line in block.splitlines() if line.startswith("- ")]
    assert len(tests) == 3 and all(" vs vae_pp " in t or " vs popularity " in t for t in tests)
    # The machines: a run without a record is one of the 2-core runs (UNRECORDED_MACHINE).
    assert "on 16 CPU cores, 1 GPU (NVIDIA H200) or 2 CPU cores." in text
    assert "d; seeds d=50: 1, d=100: 2, d=200: 1; 2 CPU cores." in text
    # A tuned BVAE is not the RQ2 BVAE row.
    (tuned,) = [r for r in report.load(results_dir)["jd"] if "[tuned" in r["method"]]
    assert report.ablation_name(tuned) is None
    # What is missing, with the command that runs it.
    assert "out/comparison/jd 3 no_base no_gff no_base_gff_tff cgc exchange" in text
    # Every study has results; the weight grid has 3 of its 36 settings and the d sweep
    # lacks d = 150: both listed with the command that runs what is left.
    assert text.count("run_studies.sh") == 2
    assert "- RQ2 SDWL against fixed loss weights: 33 of the 36 settings" in text
    assert "- RQ3 latent sizes d ∈ {50, 100, 150, 200}: d = 150 not run (3 of 4 sizes" in text
    # Each study's figure is followed by the paper's claim against these runs.
    assert text.count("**The paper against these runs.**") == 5
    assert "BVAE (defaults), seed 1, honest protocol" in text  # the run with gate values
    assert "GFF/TFF gate values over training" not in text
    assert "## UB" not in text  # no UB files: no UB section


def test_a_dataset_with_only_study_runs_or_no_results_leaves_no_stale_output(results_dir, tmp_path):
    out = tmp_path / "docs"
    ub = results_dir / "ub"
    ub.mkdir()
    ub_behaviors = ("purchase", "favorite", "cart")
    (ub / "d50_s0.json").write_text(
        json.dumps(_result("bvae", behaviors=ub_behaviors, latent_dim=50))
    )
    (ub / "bvae_s0.json").write_text(json.dumps(_result("bvae", behaviors=ub_behaviors)))
    report.render(results_dir, out)
    assert (out / "figures" / "rq3_d_ub.png").is_file()
    (ub / "bvae_s0.json").unlink()  # only a study's sweep left: no empty RQ1 table
    text = report.render(results_dir, out).read_text()
    ub_part = text.split("## UB", 1)[1]
    assert "No comparison runs yet (only the studies' sweeps below)" in ub_part
    rq1 = ub_part.split("### RQ", 2)[1].split("The paper's rows", 1)[0]
    assert "No comparison runs yet" in rq1 and "| purchase |" not in rq1
    for path in ub.iterdir():  # UB's results gone: its figures go too
        path.unlink()
    ub.rmdir()
    assert "## UB" not in report.render(results_dir, out).read_text()
    assert not list((out / "figures").glob("*_ub.png"))
    assert (out / "figures" / "rq3_d_jd.png").is_file()


def test_every_ub_figure_says_click_is_not_modelled(tmp_path):
    folder = tmp_path / "results" / "ub"
    folder.mkdir(parents=True)
    ub = report.DATASETS["ub"][1]
    for name, result in {
        "bvae_s0": _result("bvae", behaviors=ub),
        "vae_pp_s0": _result("vae_pp", behaviors=ub),
    }.items():
        (folder / f"{name}.json").write_text(json.dumps(result))
    text = report.render(tmp_path / "results", tmp_path / "docs").read_text()
    captions = [line for line in text.splitlines() if line.startswith("*UB")]
    assert len(captions) >= 2  # RQ3's K curves and the training curves at least
    assert all(report.FIGURE_NOTES["ub"] in c for c in captions), captions
    assert "UB's release has no `click_train`: click is not modelled" in text  # the section
    # ... and under every table: each RQ1 protocol's, and the paper's (with its click
    # row for reference, the paper's only).
    rq1 = text.split("### RQ1", 1)[1].split("\n### ", 1)[0]
    note = f"*{report.FIGURE_NOTES['ub']}*"
    sections = rq1.split("\n#### ")[1:]  # the protocols' tables, then the compute table
    assert len(sections) >= 2
    for section in sections:
        assert "| Behavior |" not in section or note in section, section[:80]
    assert rq1.split("The paper's rows", 1)[1].rstrip().endswith(note)
    assert "| click (not modelled here; for reference) | 0.0072 / 0.0237 |" in rq1


def test_the_weight_heatmap_shows_the_whole_grid_and_says_what_is_not_run(results_dir, tmp_path):
    results = report.load(results_dir)["jd"]
    caption = report.weights_figure(results, "jd", tmp_path / "w.png")
    assert (tmp_path / "w.png").stat().st_size > 5_000
    # The fixture runs 3 of the 36 settings: the rest are dashes, not blanks.
    assert "3 of the 36 settings of the paper's grid" in caption
    assert "- where a setting was not run, grey where the weights are no setting" in caption
    assert "red line on the colour bar; cells above it are outlined in red" in caption
    assert "Compute: 3 minutes of training over 3 runs, on 2 CPU cores." in caption
    assert report.GRID_WEIGHTS == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    assert sum(a + b < 0.95 for a in report.GRID_WEIGHTS for b in report.GRID_WEIGHTS) == (
        report.WEIGHT_GRID_SIZE
    )


def test_a_short_trial_run_beside_the_study_does_not_become_its_bvae(results_dir, tmp_path, caplog):
    # Sorted first, one seed, another training budget: the 2-seed BVAE stays the row.
    trial = _result("bvae", seed=5, command_extra="--epochs 1")
    (results_dir / "jd" / "aaa_trial_s5.json").write_text(json.dumps(trial))
    with caplog.at_level("WARNING"):
        text = report.render(results_dir, tmp_path / "docs").read_text()
    warned = [r for r in caplog.records if "results of the untuned bvae" in r.getMessage()]
    assert len(warned) == 1  # once, although several figures ask for the BVAE row
    assert "Seeds: BVAE 2, -TFF 1, -BASE (+MMoE) 1." in text
    # The paired t-tests, the d sweep's d = 100 and RQ4's last step read that row too.
    results = report.load(results_dir)["jd"]
    (bvae,) = [r for r in results if r["method"] == "BVAE (gates=gated) [≤200 epochs, patience 20]"]
    assert report._seeds(bvae) == 2
    assert f"), {bvae['method']} vs the best other row:" in text
    assert report._d_runs(results, "jd")[100]["method"] == bvae["method"]
    assert report._rq4_steps(results, "jd")[-1][1]["method"] == bvae["method"]


def test_without_gate_values_the_report_says_how_to_get_them(results_dir, tmp_path):
    (results_dir / "jd" / "bvae_s1.json").unlink()
    text = report.render(results_dir, tmp_path / "docs").read_text()
    assert "gates_jd.png" not in text
    assert "none of the BVAE result files records them" in text
    assert "scripts/run_comparison.sh ../shared/data/bvae/JD out/comparison/jd 3 bvae" in text


def test_a_malformed_result_file_is_named(results_dir, tmp_path, capsys):
    bad = results_dir / "jd" / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"broken\.json"):
        report.render(results_dir, tmp_path / "out")
    bad.write_text(json.dumps({"runs": []}))
    with pytest.raises(SystemExit):
        report.main(["--results", str(results_dir), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "broken.json" in err and "no finished run" in err
    with pytest.raises(ValueError, match="nowhere' does not exist"):
        report.render(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no result files"):
        report.render(tmp_path / "empty", tmp_path / "out")


def _two_runs():
    result = _result("bvae")
    result["runs"].append(_result("bvae", seed=1)["runs"][0])
    return result


def _set(path, value):
    """A mutation: sets ``result[path[0]][path[1]]...`` to ``value``."""

    def mutate(result):
        target = result
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return result

    return mutate


_DELETE = object()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_set(("runs", 0, "seed"), [0]), r"runs\[0\]\.seed must be an integer"),
        (_set(("runs", 0, "honest", "purchase"), 0.07), r"honest\.purchase must be an object"),
        (_set(("command",), 5), r"'command' must be a string"),
        (_set(("command",), "python -m bvae_tf.experiment --epochs abc"), r"does not parse"),
        (_set(("runs", 1, "honest", "favorite"), _DELETE), r"runs\[1\]\.honest must hold"),
        (_set(("runs", 0, "honest", "favorite", "ndcg@5"), True), r"not finite numbers"),
        (_set(("runs", 1, "seed"), 0), r"runs\[1\] repeats seed 0"),
        (_set(("runs", 0, "best_epoch"), _DELETE), r"a curve but no 'best_epoch'"),
        (_set(("runs", 0, "curve", 1, "epoch"), _DELETE), r"curve must be a list"),
        (_set(("runs", 0, "config", "loss_weights"), [0.5]), r"loss_weights must be one"),
        (_set(("model",), _DELETE), r"'model' must be a string"),
        (_set(("behaviors",), ["purchase", "purchase"]), r"'behaviors' must be a list"),
        (_set(("runs", 0, "machine"), {"cpus": "2"}), r"runs\[0\]\.machine must be an object"),
        (_set(("model",), "foo"), r"'model' must be one of bvae, "),
        (_set(("runs", 0, "config"), _DELETE), r"runs\[0\] of a BVAE run has no 'config'"),
        (_set(("runs", 0, "train_seconds"), "10"), r"runs\[0\]\.train_seconds must be a finite"),
        (
            _set(("runs", 0, "curve", 0, "loss"), "1.5"),
            r"curve must be a list of objects of numbers",
        ),
        (
            _set(("runs", 0, "honest", "purchase", "num_users"), 5),
            r"test_per_user\.purchase has 10 values, for 5 test users",
        ),
        (
            _set(("runs", 0, "honest", "purchase", "ndcg@5"), 0.9),
            r"test_per_user\.purchase averages 0\.\d+ but runs\[0\]\.honest\.purchase\.ndcg@5 "
            r"is 0\.9: one test scoring writes both",
        ),
        # Values the checks once let through, which the report then crashed on or used.
        (_set(("runs", 0, "machine"), {"cpus": 2, "gpus": [1, "x"]}), r"a list of GPU names"),
        (_set(("runs", 0, "best_epoch"), {"purchase": 3}), r"best_epoch must be an integer >= 0"),
        (_set(("runs", 0, "best_epoch"), -100), r"runs\[0\]\.best_epoch must be an integer"),
        (_set(("runs", 0, "parts"), "oops"), r"runs\[0\]\.parts must be a list of objects"),
        (
            _set(("runs", 0, "parts"), [{"best_epoch": "3"}]),
            r"runs\[0\]\.parts\[0\]\.best_epoch must be",
        ),
        (_set(("runs", 0, "config", "latent_dim"), [50]), r"config\.latent_dim must be a int"),
        (_set(("runs", 0, "config", "latent_dim"), 50.7), r"config\.latent_dim must be a int"),
        (_set(("runs", 0, "config", "use_base"), "yes"), r"config\.use_base must be a bool"),
        (_set(("runs", 0, "curve", 0, "epoch"), float("nan")), r"with a whole 'epoch' >= 0"),
        # A curve stored by column (experiment.pack_curve) is checked as rows.
        (
            _set(("runs", 0, "curve"), {"epoch": [1.0, 2.0], "loss": [1.0]}),
            r"runs\[0\]\.curve: a packed curve's columns differ in length",
        ),
        (
            _set(("runs", 0, "curve"), {"epoch": [1.0, 2.5]}),
            r"with a whole 'epoch' >= 0",
        ),
        (_set(("runs", 0, "honest", "purchase", "ndcg@5"), _DELETE), r"lacks ndcg@5"),
    ],
)
def test_malformed_result_contents_are_named(results_dir, tmp_path, mutate, message):
    (results_dir / "jd" / "bad_s0.json").write_text(json.dumps(mutate(_two_runs())))
    with pytest.raises(ValueError, match=r"bad_s0\.json.*" + message):
        report.load(results_dir)


def test_a_behavior_the_dataset_does_not_have_is_named(results_dir):
    result = _result("bvae", behaviors=("purchase", "click", "buy"))
    (results_dir / "jd" / "renamed_s0.json").write_text(json.dumps(result))
    with pytest.raises(ValueError, match=r"renamed_s0\.json.*'buy'.*not among JD's"):
        report.load(results_dir)


def test_the_datasets_behaviors_in_another_order_are_named(results_dir):
    result = _result("bvae", behaviors=("click", "purchase", "favorite"))
    (results_dir / "jd" / "reordered_s0.json").write_text(json.dumps(result))
    with pytest.raises(ValueError, match=r"reordered_s0\.json.*in another order"):
        report.load(results_dir)


@pytest.mark.parametrize("behaviors", [("purchase", "favorite"), ("click", "purchase")])
def test_plain_bvae_on_a_subset_out_of_the_rq4_order_is_named(results_dir, behaviors):
    result = _result("bvae", behaviors=behaviors, seed=7)
    (results_dir / "jd" / "subset_s0.json").write_text(json.dumps(result))
    with pytest.raises(ValueError, match=r"subset_s0\.json.*is no step of RQ4"):
        report.load(results_dir)
    (results_dir / "jd" / "subset_s0.json").write_text(
        json.dumps(_result("bvae", behaviors=("purchase", "click"), seed=7))
    )
    loaded = report.load(results_dir)["jd"]  # a step of RQ4 is used
    assert ("purchase", "click") in [tuple(r["behaviors"]) for r in loaded]


def test_an_out_that_is_a_file_is_a_usage_error(results_dir, tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    with pytest.raises(SystemExit):
        report.main(["--results", str(results_dir), "--out", str(tmp_path / "afile")])
    assert "cannot write the report under --out" in capsys.readouterr().err


def _with_ndcg(result, values):
    """``result`` with test NDCG@K of each behavior set to ``values[b]`` (every K), its
    per-user NDCG@5 scaled to that mean."""
    for b, value in values.items():
        for k in report.KS:
            result["runs"][0]["honest"][b][f"ndcg@{k}"] = value
        per_user = np.asarray(result["runs"][0]["test_per_user"][b])
        result["runs"][0]["test_per_user"][b] = (per_user * value / per_user.mean()).tolist()
    return result


def _beside(result, base, deltas):
    """``result`` with its users' test NDCG@5 on each behavior of ``deltas`` set to
    ``base``'s plus that behavior's delta (each user moves the same way: a paired test
    finds the difference), and NDCG@K to their mean."""
    for b, delta in deltas.items():
        per_user = np.asarray(base["runs"][0]["test_per_user"][b]) + delta
        per_user += 1e-4 * np.arange(len(per_user))  # not a constant difference
        result["runs"][0]["test_per_user"][b] = per_user.tolist()
        for k in report.KS:
            result["runs"][0]["honest"][b][f"ndcg@{k}"] = float(per_user.mean())
    return result


def _loaded(tmp_path, results):
    """``results`` as the report reads them (``report.load``: combined, summarised)."""
    folder = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
    (folder / "jd").mkdir(parents=True)
    for i, result in enumerate(results):
        (folder / "jd" / f"{i}_{result['name']}.json").write_text(json.dumps(result))
    return report.load(folder)["jd"]


def test_claims_are_computed_from_the_runs_and_say_when_they_contradict_the_paper(tmp_path):
    flat = dict.fromkeys(BEHAVIORS, 0.05)
    bvae = _with_ndcg(_result("bvae"), flat)
    mmoe = _with_ndcg(_result("bvae", encoder="mmoe"), {**flat, "purchase": 0.06, "click": 0.06})
    no_tff = _with_ndcg(_result("bvae", use_tff=False), {**flat, "click": 0.04})
    results = _loaded(tmp_path, [bvae, mmoe, no_tff])
    text = report.claim_check("rq2_ablation", results, "jd")
    assert "-BASE (+MMoE) above BVAE on purchase, click" in text
    assert "-TFF above BVAE on none" in text
    # Above on most behaviors, but the paired test over users finds no difference.
    assert "-BASE (+MMoE) above BVAE on most behaviors, none significantly" in text
    assert "contradicts" not in text
    # Every user higher: the same means, now significant, contradict the paper.
    shifted = _with_ndcg(_result("bvae", encoder="mmoe"), flat)
    shifted = _beside(shifted, bvae, {"purchase": 0.01, "click": 0.01})
    text = report.claim_check("rq2_ablation", _loaded(tmp_path, [bvae, shifted, no_tff]), "jd")
    assert "-BASE (+MMoE) above BVAE on purchase, click (significantly on purchase, click)" in text
    assert "That contradicts the paper for -BASE (+MMoE)" in text
    # A one-seed trial of a row beside its two-seed run: the claim reads the run the
    # figure shows (the most seeds), not the first found.
    trial = _with_ndcg(_result("bvae", encoder="mmoe", command_extra="--epochs 10"), flat)
    trial["name"] = "a_trial"
    mmoe_1 = _with_ndcg(_result("bvae", seed=1, encoder="mmoe"), {**flat, "purchase": 0.07})
    text = report.claim_check("rq2_ablation", _loaded(tmp_path, [trial, bvae, mmoe, mmoe_1]), "jd")
    assert "-BASE (+MMoE) above BVAE on purchase, click" in text

    weights = [
        _with_ndcg(_result("bvae", loss_weights=(0.2, 0.2, 0.6)), {**flat, "favorite": 0.06}),
        _with_ndcg(_result("bvae", loss_weights=(0.6, 0.2, 0.2)), {**flat, "click": 0.04}),
    ]
    text = report.claim_check("rq2_weights", _loaded(tmp_path, [bvae, *weights]), "jd")
    assert "purchase 0, click 0, favorite 1 (0 significantly)" in text
    assert "(0.1500): 0.2/0.2 (purchase/click weights)" in text
    assert "not a contradiction at 1 seed each" in text and "contradicts" not in text
    weights[0] = _beside(weights[0], bvae, {"favorite": 0.01})
    text = report.claim_check("rq2_weights", _loaded(tmp_path, [bvae, *weights]), "jd")
    assert "favorite 1 (1 significantly)" in text
    assert "contradicts the paper's claim for 0.2/0.2" in text
    consistent = report.claim_check(
        "rq2_weights", _loaded(tmp_path, [bvae, weights[1], no_tff]), "jd"
    )
    assert consistent is None  # one fixed-weight setting: no figure, no claim

    steps = [
        _with_ndcg(_result("bvae", behaviors=("purchase",)), {"purchase": 0.04}),
        _with_ndcg(
            _result("bvae", behaviors=("purchase", "click")), {"purchase": 0.045, "click": 0.05}
        ),
        bvae,
    ]
    text = report.claim_check("rq4", _loaded(tmp_path, steps), "jd")
    assert "purchase 0.0400 → 0.0450 → 0.0500 (rises at every step)" in text
    assert "click 0.0500 → 0.0500 (does not rise at every step; p = " in text
    assert "Click: no significant fall" in text and "contradicts" not in text
    assert "Caveat" not in text  # 3 of 150 epochs, best at 2: early stopping's to call

    # Smoke runs: their budget cut them while improving, and the verdict says so.
    short = [
        _result("bvae", command_extra="--epochs 3 --patience 40", behaviors=b)
        for b in (("purchase",), ("purchase", "click"), BEHAVIORS)
    ]
    text = report.claim_check("rq4", _loaded(tmp_path, short), "jd")
    assert "Caveat: 3 of the 3 trained models behind it were stopped by the epoch budget" in text
    mixed = [*steps[:2], short[2]]
    text = report.claim_check("rq4", _loaded(tmp_path, mixed), "jd")
    assert "Caveat: 1 of the 3 trained models behind it was stopped" in text
    assert "different budgets (≤200 epochs, patience 20; ≤3 epochs, patience 40)" in text


def test_a_fixed_weight_run_off_the_grid_or_twice_is_named(tmp_path):
    """The heatmap keys a run by its first two weights: a third weight that is not
    1 - both, or a second run of the same cell, would silently replace a cell."""
    bvae = _result("bvae")
    off = _result("bvae", loss_weights=(0.2, 0.4, 0.9))
    off["name"] = "weights_0.2_0.4_0.9_s0"
    with pytest.raises(ValueError, match=r"'weights_0\.2_0\.4_0\.9_s0': loss weights .* sum to 1"):
        report.claim_check("rq2_weights", _loaded(tmp_path, [bvae, off]), "jd")
    a = _result("bvae", loss_weights=(0.2, 0.4, 0.4))
    b = _result("bvae", loss_weights=(0.2, 0.4, 0.4 + 1e-9))  # another method key
    a["name"], b["name"] = "first_s0", "second_s0"
    with pytest.raises(
        ValueError, match=r"'(first|second)_s0' and '(first|second)_s0' are both the fixed"
    ):
        report.claim_check("rq2_weights", _loaded(tmp_path, [bvae, a, b]), "jd")


def test_the_weight_study_runs_the_coarse_grid_first():
    import subprocess

    root = pathlib.Path(__file__).resolve().parents[2]
    done = subprocess.run(
        ["bash", str(root / "scripts" / "run_studies.sh"), "rq2_weights", "data", "/nonexistent"],
        env={**os.environ, "DRY_RUN": "1", "PY": "echo"},
        capture_output=True,
        text=True,
        check=False,
    )
    # No such DATA: listed, then refused as a run would be.
    assert done.returncode == 2 and "is not a folder" in done.stderr, done.stderr
    out = done.stdout.split("\n")
    rows = [line for line in out[1:] if line]
    assert len(rows) == 1 + report.WEIGHT_GRID_SIZE == len(set(rows))
    coarse = {
        f"weights_0.{p}_0.{c}_0.{10 - p - c}" for p in (2, 4, 6) for c in (2, 4, 6) if p + c < 10
    }
    assert rows[0] == "bvae" and set(rows[1:7]) == coarse
    for row in rows[1:]:
        weights = [float(w) for w in row.split("_")[1:]]
        assert all(w > 0 for w in weights) and abs(sum(weights) - 1) < 1e-9


@pytest.mark.parametrize(
    "train_files, rows",
    [
        # JD: cart_train is empty; UB: no click_train.
        (
            {"target": "1 1", "click": "1 2", "favourite": "1 3", "cart": ""},
            ["rq4_purchase", "rq4_purchase_click", "bvae"],
        ),
        (
            {"target": "1 1", "favourite": "1 3", "cart": "1 4"},
            ["rq4_purchase", "rq4_purchase_favorite", "bvae"],
        ),
        # A train file of blank lines models no behavior (as in the experiment): the
        # last step would otherwise be the full model trained twice.
        (
            {"target": "1 1", "click": "1 2", "favourite": "\n \n", "cart": ""},
            ["rq4_purchase", "bvae"],
        ),
    ],
    ids=["jd-like", "ub-like", "blank-favourite"],
)
def test_the_behavior_study_adds_the_behaviors_with_train_data_in_order(
    tmp_path, train_files, rows
):
    import subprocess

    root = pathlib.Path(__file__).resolve().parents[2]
    for prefix, text in train_files.items():
        (tmp_path / f"{prefix}_train").write_text(text)
    out = subprocess.run(
        ["bash", str(root / "scripts" / "run_studies.sh"), "rq4", str(tmp_path), "/nonexistent"],
        env={**os.environ, "DRY_RUN": "1", "PY": "echo"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert [line for line in out[1:] if line] == rows


def _study(*args, **env):
    """``scripts/run_studies.sh ARGS`` with ``env`` added to the environment; ``PY``
    is ``echo`` unless given (run_comparison.sh's row checks then pass without a
    Python start: :func:`test_a_studys_dry_run_refuses_what_a_run_would` runs them)."""
    import subprocess

    script = str(pathlib.Path(__file__).resolve().parents[2] / "scripts" / "run_studies.sh")
    return subprocess.run(
        ["bash", script, *map(str, args)],
        check=False,
        env={**os.environ, "PY": "echo", **env},
        capture_output=True,
        text=True,
    )


def test_a_study_dry_run_exits_as_a_run_would_on_an_out_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    done = _study("rq3_d", tmp_path, tmp_path / "afile", DRY_RUN="1")
    assert done.returncode == 2 and "exists and is not a folder" in done.stderr
    assert done.stdout.splitlines()[1:] == ["bvae", "d50", "d150", "d200"]  # still listed


def test_a_study_estimates_its_compute_from_the_runs_already_done(tmp_path):
    out = tmp_path / "out"

    def first_line():
        done = _study("rq2", tmp_path, out, DRY_RUN="1")
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()[0]

    # rq2's bars have 3 seeds by default (8 rows x 3).
    assert "24 runs to do (about 480 minutes at ~20 min per run" in first_line()
    out.mkdir()
    for name, seconds in (("bvae_s0", 2400), ("mmoe_s0", 3000), ("cgc_s0", 3600)):
        run = {"train_seconds": seconds - 60, "eval_seconds": 60}
        (out / f"{name}.json").write_text(json.dumps({"runs": [run]}))
    # Neither a smoke run's minutes nor another model's count (with them: 40 minutes).
    for name, model, command, seconds in (
        ("smoke_s0", "bvae", "python -m bvae_tf.experiment --epochs 2 --model bvae", 60),
        ("smoke_s1", "bvae", "python -m bvae_tf.experiment --epochs 3", 60),
        ("ngcf_s0", "ngcf", "python -m bvae_tf.experiment --epochs 60 --model ngcf", 6000),
        ("smoke_s2", "bvae", "python -m bvae_tf.experiment --epochs 150 --epochs=1", 60),
    ):
        run = {"train_seconds": seconds, "eval_seconds": 0}
        result = {"model": model, "command": command, "runs": [run]}
        (out / f"{name}.json").write_text(json.dumps(result))
    line = first_line()
    assert "21 runs to do (about 1050 minutes at ~50 min per run: the median of the 3" in line


def test_a_studys_dry_run_lists_the_rows_left_and_sweeps_default_to_one_seed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("bvae_s0", "d50_s0", "d150_s0"):
        (out / f"{name}.json").write_text("{}")
    done = _study("rq3_d", tmp_path, out, DRY_RUN="1")
    assert done.returncode == 0, done.stderr
    head, *rows = done.stdout.splitlines()
    assert "4 rows x 1 seed(s); 1 runs to do" in head and rows == ["d200"]
    done = _study("rq3_d", tmp_path, out, 2, DRY_RUN="1")  # seed 1 of every row left
    assert done.stdout.splitlines()[1:] == ["bvae", "d50", "d150", "d200"]


def test_a_studys_dry_run_refuses_what_a_run_would(tmp_path):
    import sys

    # Two modelled behaviors: the weight study's rows give three loss weights each.
    data = tmp_path / "two"
    data.mkdir()
    for prefix in ("target", "click"):
        for split in ("train", "valid", "test"):
            (data / f"{prefix}_{split}").write_text("1 1\n2 2\n")
    done = _study("rq2_weights", data, tmp_path / "out", DRY_RUN="1", PY=sys.executable)
    assert done.returncode == 2, done.stdout
    assert (
        "row weights_0.2_0.2_0.6: --loss-weights: 3 values for the 2 modelled behaviors"
        in done.stderr
    )
    assert not (tmp_path / "out").exists()


def test_rq1_on_ub_runs_the_inductive_rows_with_eases_factored_form(tmp_path):
    (tmp_path / "UB").mkdir()
    (tmp_path / "JD").mkdir()
    done = _study("rq1", tmp_path / "UB", tmp_path / "out", 1, DRY_RUN="1")
    assert done.returncode == 0, done.stderr
    note, head, *rows = done.stdout.splitlines()
    assert rows == ["popularity", "repeat", "ease", "bvae", "vae_t", "vae_u", "recvae", "vae_pp"]
    assert 'EASE_FLAGS="--ease-dtype float32 --ease-factored"' in note
    assert "popularity, repeat and EASE once" in head
    mine = _study("rq1", tmp_path / "UB", tmp_path / "out", 1, DRY_RUN="1", EASE_FLAGS="")
    assert 'EASE_FLAGS=""' in mine.stdout.splitlines()[0]  # the user's own, even empty
    jd = _study("rq1", tmp_path / "JD", tmp_path / "out", 1, DRY_RUN="1")
    assert jd.stdout.splitlines()[1:][-2:] == ["ehcf", "ngcf"] and "EASE_FLAGS" not in jd.stdout


def test_a_study_without_runs_in_out_estimates_from_the_datasets_kept_runs(tmp_path):
    (tmp_path / "JD").mkdir()  # the folder's name picks docs/results/jd
    done = _study("rq3_d", tmp_path / "JD", tmp_path / "out", DRY_RUN="1")
    assert done.returncode == 0, done.stderr
    assert "finished runs in docs/results/jd)" in done.stdout.splitlines()[0]


def test_a_study_without_its_arguments_names_the_studies():
    done = _study("rq2")
    assert done.returncode == 2
    assert "STUDY: rq1 rq2 rq2_weights rq3_d rq4" in done.stderr
    extra = _study("rq2", "data", "out", "1", "bvae", DRY_RUN="1")  # rows are not taken
    assert extra.returncode == 2 and "got 5 arguments; rows are chosen by STUDY" in extra.stderr


def test_a_study_without_its_data_stops_before_any_run(tmp_path):
    (tmp_path / "afile").write_text("x")
    for data, out, message in (
        (tmp_path / "missing", tmp_path / "out", "is not a folder"),
        (tmp_path, tmp_path / "afile", "exists and is not a folder"),
    ):
        done = _study("rq2", data, out, PY="echo")
        assert done.returncode == 2 and message in done.stderr
        assert "bvae_tf.experiment" not in done.stdout and not (tmp_path / "out").exists()
    # rq4 reads DATA to choose its rows: a missing folder is named as such.
    done = _study("rq4", tmp_path / "missing", tmp_path / "out", DRY_RUN="1")
    assert done.returncode == 2 and "missing' is not a folder" in done.stderr


def test_the_studies_read_data_from_the_callers_folder_and_check_seeds(tmp_path):
    import subprocess

    root = pathlib.Path(__file__).resolve().parents[2]
    (tmp_path / "mydata").mkdir()
    for prefix in ("target", "click"):
        (tmp_path / "mydata" / f"{prefix}_train").write_text("1 1")
    script = str(root / "scripts" / "run_studies.sh")

    def study(*args):
        env = {**os.environ, "DRY_RUN": "1", "PY": "echo"}
        return subprocess.run(
            ["bash", script, "rq4", "mydata", "out", *args],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )

    done = study()
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stdout.split("\n")[1:] if line] == ["rq4_purchase", "bvae"]
    bad = study("abc")
    assert bad.returncode == 2
    assert "SEEDS must be a whole number >= 1 of at most 9 digits, got 'abc'" in bad.stderr
    assert "of at most 9 digits, got '18446744073709551617'" in study("18446744073709551617").stderr


def test_per_behavior_latent_sizes_are_a_variants_row_not_the_d_sweep():
    assert report.is_study_run(_result("bvae", latent_dim=200), "jd")
    assert not report.is_study_run(
        _result("bvae", latent_dim=200, latent_dims=(100, 200, 100)), "jd"
    )
    assert not report.is_study_run(_result("bvae", latent_dims=(100, 50, 100)), "jd")


def test_a_failing_figure_leaves_the_previous_report_and_figures(
    results_dir, tmp_path, monkeypatch
):
    out = tmp_path / "docs"
    (out / f"{report._STAGING}killed").mkdir(parents=True)  # a killed render's
    report.render(results_dir, out)
    assert sorted(p.name for p in out.iterdir()) == ["REPORT.md", "figures"]
    before = {p.name: p.read_bytes() for p in (out / "figures").iterdir()}
    text = (out / "REPORT.md").read_text()
    assert "rq2_ablation_jd.png" in before and "gates_jd.png" in before
    (results_dir / "jd" / "mmoe_s0.json").unlink()  # the ablation figure would change

    def broken(*args):
        raise RuntimeError("drawing failed")

    stages = ("gates", broken, "What BVAE learned: the GFF and TFF gates")
    monkeypatch.setattr(report, "_FIGURES", (*report._FIGURES[:-1], stages))
    with pytest.raises(RuntimeError, match="drawing failed"):
        report.render(results_dir, out)  # after the ablation figure was drawn
    assert (out / "REPORT.md").read_text() == text
    assert {p.name: p.read_bytes() for p in (out / "figures").iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["REPORT.md", "figures"]  # no staging


def test_a_result_folder_of_another_name_is_named(results_dir, caplog):
    (results_dir / "JD").mkdir()
    (results_dir / "JD" / "bvae_s9.json").write_text(json.dumps(_result("bvae", seed=9)))
    with caplog.at_level(logging.WARNING):
        report.load(results_dir)
    assert any("not read" in r.getMessage() and "JD/" in r.getMessage() for r in caplog.records)
    (results_dir / "speed").mkdir()  # results kept apart on purpose: named, not warned
    (results_dir / "speed" / "fast_s0.json").write_text("{}")
    assert report.unread_folders(results_dir) == ["JD", "speed"]


def test_a_file_the_report_does_not_read_is_named(results_dir, tmp_path, capsys):
    jd = results_dir / "jd"
    (jd / "bvae_s0.json").rename(jd / "bvae_s0.JSON")  # a result left out otherwise
    (jd / "bvae_s0.md").write_text("| table |")  # the experiment's own table: read as none
    (jd / "bvae_s0.ckpt").mkdir()  # a run's checkpoint folder
    assert report.unread_files(results_dir) == ["jd/bvae_s0.JSON"]
    assert report.main(["--results", str(results_dir), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 files not read (results are <dataset>/*.json): jd/bvae_s0.JSON" in err


def test_the_report_renders_without_importing_tensorflow(results_dir, tmp_path):
    """``make report`` reads JSON and draws: importing TensorFlow (via ``bvae_tf.model``
    for BVAEConfig's defaults) had cost it most of its minute on 2 busy cores."""
    import subprocess
    import sys

    code = (
        "import sys; from bvae_tf import report; "
        f"report.render({str(results_dir)!r}, {str(tmp_path / 'docs')!r}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "docs" / "REPORT.md").is_file()


def test_report_names_budget_cut_rows_rows_missing_and_rows_with_few_seeds(tmp_path):
    """Rows whose models the epoch budget stopped while still improving get a caveat
    under the RQ1 table and in the summary; the RQ1 rows not run and the rows with fewer
    than 3 seeds are listed with the command that runs them; a test already given under
    the table is not repeated."""
    folder = tmp_path / "results" / "jd"
    folder.mkdir(parents=True)
    short = "--epochs 3 --patience 2"  # epochs_run 3, best 2: within patience at the end
    files = {
        "bvae_s0": _result("bvae", command_extra=short),
        "bvae_s1": _result("bvae", seed=1, command_extra=short),
        "popularity": _result("popularity"),
        "vae_pp_s0": _result("vae_pp"),
    }
    for name, result in files.items():
        (folder / f"{name}.json").write_text(json.dumps(result))
    out = tmp_path / "docs"
    text = report.render(tmp_path / "results", out).read_text()
    summary = text.split("## JD", 1)[0]
    assert (
        "- Caveat: 1 of the 3 rows had models stopped by the epoch budget within patience "
        "of their best epoch (listed under the RQ1 table); among them plain BVAE (also the "
        "best favorite row)." in summary
    )
    body = text.split("## JD", 1)[1]
    assert "Caveat: 1 of these 3 rows had models stopped" in body
    assert "): BVAE (gates=gated) (2 of 2)." in body
    missing = [m for m in experiment.MODELS if m not in ("bvae", "popularity", "vae_pp")]
    assert f"- RQ1 rows {', '.join(missing)}: `scripts/run_comparison.sh" in body
    assert "- Rows with fewer than 3 seeds (seeds so far): vae_pp (1), bvae (2): `" in body
    assert body.count("out/comparison/jd 3 vae_pp bvae`") == 1
    # BVAE's best other row is a baseline: its test is given once, under the table.
    assert "The same test of" not in body
    # RESULTS.md is the repository's discussion: named only where it sits beside.
    assert "`docs/RESULTS.md`" not in text.split("## Summary")[0]
    (out / "RESULTS.md").write_text("# results\n")
    text = report.render(tmp_path / "results", out).read_text()
    assert "Numbers and their discussion: `docs/RESULTS.md`." in text.split("## Summary")[0]


def test_a_result_of_another_dataset_is_named_even_alone(tmp_path):
    folder = tmp_path / "results" / "ub"
    folder.mkdir(parents=True)
    result = {**_result("bvae", behaviors=("purchase",)), "data": "../shared/data/bvae/JD"}
    (folder / "rq4_purchase_s0.json").write_text(json.dumps(result))
    with pytest.raises(
        ValueError, match=r"rq4_purchase_s0\.json.*trained on '../shared/data/bvae/JD', not UB"
    ):
        report.load(tmp_path / "results")


def test_an_out_folder_with_a_folder_for_the_report_is_named_before_anything_changes(
    results_dir, tmp_path
):
    out = tmp_path / "docs"
    (out / "REPORT.md").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"REPORT\.md' exists and is not a file"):
        report.render(results_dir, out)
    assert not (out / "figures").exists()  # nothing written
    (out / "REPORT.md").rmdir()
    (out / "figures").write_text("x")
    with pytest.raises(ValueError, match=r"figures' exists and is not a folder"):
        report.render(results_dir, out)


def test_searched_rows_with_fewer_seeds_are_listed_with_their_command(results_dir, tmp_path):
    tuned = _result("bvae", command_extra="--grid dropout=0.2,0.5,0.7")
    tuned["name"] = "bvae_own_s0"
    (results_dir / "jd" / "bvae_own_s0.json").write_text(json.dumps(tuned))
    text = report.render(results_dir, tmp_path / "docs").read_text()
    line = next(x for x in text.splitlines() if x.startswith("- Searched rows"))
    assert "bvae_own (1)" in line
    assert line.endswith(
        "`scripts/run_comparison.sh ../shared/data/bvae/JD out/comparison/jd 3 bvae_own`"
    )
    for seed in (1, 2):  # seeds run later, of seed 0's choice: the row is complete
        later = _result("bvae", seed=seed, command_extra="--grid dropout=0.2,0.5,0.7")
        later["name"] = f"bvae_own_s{seed}"
        (results_dir / "jd" / f"bvae_own_s{seed}.json").write_text(json.dumps(later))
    text = report.render(results_dir, tmp_path / "docs").read_text()
    assert "- Searched rows" not in text


def test_searches_never_started_are_listed_per_dataset(results_dir, tmp_path):
    ub = results_dir / "ub"
    ub.mkdir()
    ub_bvae = _result("bvae", behaviors=("purchase", "favorite", "cart"))
    (ub / "bvae_s0.json").write_text(json.dumps(ub_bvae))
    text = report.render(results_dir, tmp_path / "docs").read_text()
    jd, ub = text.split("\n## UB")[0], text.split("\n## UB")[1]
    line = next(x for x in jd.splitlines() if x.startswith("- Searches not run"))
    assert "ngcf_tuned" in line and "ehcf_own" in line  # JD runs the transductive rows
    (ub_line,) = [x for x in ub.splitlines() if x.startswith("- Searches not run")]
    assert "ngcf" not in ub_line and "ehcf" not in ub_line  # not run on UB at all
    assert ub_line.endswith(
        "ub 3 bvae_tuned vae_t_tuned vae_u_tuned vae_pp_tuned recvae_tuned mmoe_tuned "
        "cgc_tuned exchange_tuned no_base_gff_tff_tuned bvae_own vae_t_own vae_u_own "
        "vae_pp_own recvae_own`"
    )
    # One seed of a search is a search started: the row leaves this list (and is
    # counted among the searched rows with fewer seeds instead).
    tuned = _result("bvae", command_extra="--grid lr=1e-4,1e-3,1e-2")
    tuned["name"] = "bvae_tuned_s0"
    (results_dir / "jd" / "bvae_tuned_s0.json").write_text(json.dumps(tuned))
    text = report.render(results_dir, tmp_path / "docs").read_text().split("\n## UB")[0]
    line = next(x for x in text.splitlines() if x.startswith("- Searches not run"))
    assert "bvae_tuned" not in line and "vae_t_tuned" in line
    assert "bvae_tuned (1)" in next(x for x in text.splitlines() if x.startswith("- Searched rows"))


def test_every_whole_bvae_row_with_3_seeds_is_tested_against_the_best_baseline(tmp_path):
    """Every row that keeps BVAE whole with 3 seeds is listed against each behavior's
    best baseline with a paired t-test (none picked); ablations, BASE's replacements
    and rows with fewer seeds are not; the summary names the rows at or above the best
    baseline on every behavior."""
    folder = tmp_path / "results" / "jd"
    folder.mkdir(parents=True)
    base = np.linspace(0.05, 0.15, 10)
    shifts = {  # per behavior, added to every user's test NDCG@5 of the best baseline
        "bvae": (0.10, -0.02, 0.01),  # below on click only
        "boost": (0.10, 0.10, 0.10),  # significantly above on all three
        "no_tff": (0.2, 0.2, 0.2),  # an ablation: not listed
        "mmoe": (0.2, 0.2, 0.2),  # a replacement of BASE: not listed
        "few": (0.2, 0.2, 0.2),  # 2 seeds: not listed
    }
    settings = {
        "no_tff": {"use_tff": False},
        "mmoe": {"encoder": "mmoe"},
        "few": {"dropout": 0.2},
        "boost": {"dropout": 0.3},
    }

    def write(name, result, per_user):
        run = result["runs"][0]
        for b, values in zip(BEHAVIORS, per_user, strict=True):
            run["test_per_user"][b] = [round(float(v), 6) for v in values]
            run["honest"][b]["ndcg@5"] = float(np.mean(run["test_per_user"][b]))
        (folder / f"{name}.json").write_text(json.dumps(result))

    noise = np.random.default_rng(0)
    write("ease", _result("ease"), [base, base + 0.001, base + 0.002])
    write("popularity", _result("popularity"), [base / 2] * 3)
    for row, shift in shifts.items():
        for seed in range(2 if row == "few" else 3):
            result = _result("bvae", seed=seed, **settings.get(row, {}))
            result["name"] = row
            per_user = [base + s + noise.normal(0, 0.01, 10) for s in shift]
            write(f"{row}_s{seed}", result, per_user)
    rows = [r for r in report.load(tmp_path / "results")["jd"] if not report.is_study_run(r, "jd")]
    section, summary = report._bvae_rows_against_baselines(rows, "jd", "JD")
    table = [line for line in section if line.startswith("| BVAE (")]
    labels = {line.split(" | ")[0][2:]: line for line in table}
    assert sorted(labels) == ["BVAE (gates=gated)", "BVAE (gates=gated, dropout=0.3)"]
    assert labels["BVAE (gates=gated)"].endswith("| below on 1 |")
    boost = labels["BVAE (gates=gated, dropout=0.3)"]
    assert boost.endswith("| significantly above |") and boost.count("**") == 6
    assert "purchase: ease 0.1000 (1 seed); click: ease 0.1010" in "\n".join(section)
    assert summary == [
        "- BVAE's rows with at least 3 seeds (2: plain BVAE, its searched settings, the "
        "variants beyond the paper) against the best baseline of each behavior (test "
        "NDCG@5, paired t-test over users): at or above it on every behavior: BVAE "
        "(gates=gated, dropout=0.3); significantly above it on every behavior: BVAE "
        "(gates=gated, dropout=0.3)."
    ]
    # Without a baseline there is nothing to test against.
    assert report._bvae_rows_against_baselines(
        [r for r in rows if not report._is_baseline(r)], "jd", "JD"
    ) == ([], [])
