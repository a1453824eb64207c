"""The experiment CLI end to end on a tiny release-format dataset."""

import json

import numpy as np
import pytest

from bvae_tf import experiment

pytestmark = pytest.mark.e2e


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


def _run(release_dir, out, *extra):
    argv = [
        "--data",
        str(release_dir),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--patience",
        "1",
        "--latent-dim",
        "4",
        "--batch-size",
        "8",
        "--no-optimizer-jit",
        *extra,
    ]
    assert experiment.main(argv) == 0


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
    # The label names every setting that differs from the defaults.
    assert result["method"] == "BVAE (gates=reference, latent_dim=4)"
    for protocol in ("honest", "paper"):
        summary = result["summary"][protocol]
        mean, std = summary["click"]["ndcg@5"]
        assert 0.0 <= mean <= 1.0 and std >= 0.0
    assert result["runs"][0]["config"]["gate_mode"] == "reference"
    table = (tmp_path / "ref.md").read_text()
    assert "| Behavior | Method | Prec@5 | Rec@5 | NDCG@5 | HR@5 | Seeds |" in table
    assert "| favorite | BVAE (gates=reference, latent_dim=4) |" in table
    assert "paper protocol" in table and "honest protocol" in table
    # Files of the same method are pooled (seeds run in separate invocations).
    pooled = tmp_path / "pooled.md"
    experiment.main(
        [
            "--combine",
            str(tmp_path / "ref.json"),
            str(tmp_path / "ref.json"),
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
    assert "| purchase | VAE (T.) |" in text and "| purchase | VAE (U.) |" in text
    assert "| favorite | VAE (U.) |" in text


def test_cli_rejects_missing_data(capsys):
    with pytest.raises(SystemExit):
        experiment.main([])


def _result(model, method, seed, value, **config):
    run = {"seed": seed, "config": {"seed": seed, "gate_mode": "gated", **config}}
    run["honest"] = {"purchase": {"ndcg@5": value}}
    return {"model": model, "method": method, "behaviors": ["purchase"], "runs": [run]}


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
    assert "BVAE (gates=reference)" in rows[1] and "0.5000 ± 0.0000 | nan ± nan | 1 |" in rows[1]


@pytest.mark.unit
def test_combine_rejects_missing_or_unfinished_files(tmp_path, capsys):
    unfinished = tmp_path / "partial.json"
    unfinished.write_text(json.dumps({"model": "bvae", "runs": []}))
    for path in (tmp_path / "missing.json", unfinished):
        with pytest.raises(SystemExit):
            experiment.main(["--combine", str(path)])
        assert str(path) in capsys.readouterr().err
