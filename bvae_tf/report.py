"""The paper's studies as a report: ``docs/REPORT.md`` and PNG figures, from result
files, without training anything.

    python -m bvae_tf.report                      # docs/results/<dataset>/*.json -> docs/
    python -m bvae_tf.report --results R --out O  # R/<dataset>/*.json -> O/REPORT.md, O/figures/

Reads the JSON files written by ``bvae_tf.experiment`` (``scripts/run_comparison.sh``
keeps one per row and seed) for each dataset folder (``jd``, ``ub``) and renders:

- **a summary** first, computed from the same files: per dataset the best row per
  behavior, plain BVAE against the paper's BVAE row and against the best row that is
  not BVAE, and each study's finding beside the paper's claim;
- **RQ1**: the comparison table in the paper's layout (honest protocol; the paper
  protocol where recorded), best bold, second underlined, a paired t-test of BVAE
  against the best other row, and the paper's published rows beside it;
- **RQ2**: grouped bars of NDCG@5 and HR@5 per behavior for BVAE and its ablations
  and BASE replacements (whichever were run);
- **RQ3**: NDCG@K and HR@K for K in {5, 10, 15, 20}, BVAE against VAE++ (every run
  records all four cut-offs);
- **what the model learned**: BVAE's per-behavior validation NDCG@5 and SDWL weight
  ``1 / (2 sigma_bar^2)`` over training, the GFF gate values and TFF mixing shares over
  training and TFF's mixing matrix at the selected epoch;
- what each row cost, and the studies not run yet with the command that runs them.

Figures use matplotlib's Agg backend; every caption names the data, protocol, seeds
and compute behind it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from absl import logging

from bvae_tf import experiment as E

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Dataset folders the report knows: (title, modelled behaviors, a note for tables).
DATASETS = {
    "jd": ("JD", ("purchase", "click", "favorite"), ""),
    "ub": (
        "UB",
        ("purchase", "favorite", "cart"),
        "UB's release has no `click_train`: click is not modelled; the paper's UB click "
        "row is for reference only. NGCF and EHCF (transductive: one embedding per "
        "training user) are not run on UB.",
    ),
}
#: A line drawn under every figure of a dataset, where the dataset needs one.
FIGURE_NOTES = {"ub": "Click is not modelled: UB's release has no click_train."}


def _save(fig: Figure, path: pathlib.Path, dataset: str) -> None:
    """Lays out, notes (:data:`FIGURE_NOTES`), writes and closes a figure."""
    note = FIGURE_NOTES.get(dataset)
    if note:
        fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=8, style="italic")
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    else:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)


#: The paper's RQ1 table (Rao et al., RecSys 2023, Table 3): NDCG@5 and HR@5, mean of
#: 3 runs, selected per behavior on the test split.
PAPER_RQ1 = {
    "jd": {
        "purchase": {
            "NGCF": (0.0588, 0.1086),
            "VAE (T.)": (0.0649, 0.1096),
            "VAE (U.)": (0.0544, 0.1002),
            "EHCF": (0.0675, 0.1170),
            "VAE++": (0.0730, 0.1247),
            "BVAE": (0.0743, 0.1289),
        },
        "click": {
            "NGCF": (0.0431, 0.1126),
            "VAE (T.)": (0.0480, 0.1201),
            "VAE (U.)": (0.0480, 0.1203),
            "EHCF": (0.0353, 0.0853),
            "VAE++": (0.0494, 0.1230),
            "BVAE": (0.0551, 0.1367),
        },
        "favorite": {
            "NGCF": (0.0306, 0.0552),
            "VAE (T.)": (0.0559, 0.1220),
            "VAE (U.)": (0.0523, 0.1030),
            "EHCF": (0.0577, 0.1142),
            "VAE++": (0.0819, 0.1515),
            "BVAE": (0.0859, 0.1523),
        },
    },
    "ub": {
        "purchase": {
            "NGCF": (0.0049, 0.0108),
            "VAE (T.)": (0.0069, 0.0140),
            "VAE (U.)": (0.0057, 0.0129),
            "EHCF": (0.0140, 0.0313),
            "VAE++": (0.0128, 0.0268),
            "BVAE": (0.0161, 0.0328),
        },
        "favorite": {
            "NGCF": (0.0023, 0.0048),
            "VAE (T.)": (0.0048, 0.0097),
            "VAE (U.)": (0.0055, 0.0131),
            "EHCF": (0.0066, 0.0143),
            "VAE++": (0.0085, 0.0161),
            "BVAE": (0.0097, 0.0180),
        },
        # Not modelled here (UB's release has no click_train): shown for reference.
        "click": {
            "NGCF": (0.0072, 0.0237),
            "VAE (T.)": (0.0092, 0.0307),
            "VAE (U.)": (0.0082, 0.0275),
            "EHCF": (0.0052, 0.0185),
            "VAE++": (0.0142, 0.0422),
            "BVAE": (0.0181, 0.0510),
        },
        "cart": {
            "NGCF": (0.0026, 0.0049),
            "VAE (T.)": (0.0035, 0.0082),
            "VAE (U.)": (0.0048, 0.0106),
            "EHCF": (0.0044, 0.0107),
            "VAE++": (0.0082, 0.0159),
            "BVAE": (0.0086, 0.0171),
        },
    },
}
#: RQ2 rows in the paper's order: name -> the BVAEConfig values that make it.
ABLATIONS = {
    "BVAE": {},
    "-BASE": {"use_base": False},
    "-GFF": {"use_gff": False},
    "-TFF": {"use_tff": False},
    "-BASE&GFF&TFF": {"use_base": False, "use_gff": False, "use_tff": False},
    "-BASE (+MMoE)": {"encoder": "mmoe"},
    "-BASE (+CGC)": {"encoder": "cgc"},
    "-BASE (Exchange)": {"encoder": "exchange"},
}
KS = (5, 10, 15, 20)
SIGMA_BAR = "\N{GREEK SMALL LETTER SIGMA}\N{COMBINING MACRON}"
ANCHOR = "BVAE (gates=gated)"
#: The ``scripts/run_comparison.sh`` row of each RQ2 row.
#: The comparison's searched rows (scripts/run_comparison.sh): "<row>_tuned" searches
#: the learning rate of every neural row, "<row>_own" the method's own regulariser.
SEARCHED_TUNED = (
    "bvae", "vae_t", "vae_u", "vae_pp", "recvae", "ehcf", "ngcf",
    "mmoe", "cgc", "exchange", "no_base_gff_tff",
)  # fmt: skip
SEARCHED_OWN = ("bvae", "vae_t", "vae_u", "vae_pp", "recvae", "ehcf", "ngcf")
_RQ2_ROWS = {
    "BVAE": "bvae",
    "-BASE": "no_base",
    "-GFF": "no_gff",
    "-TFF": "no_tff",
    "-BASE&GFF&TFF": "no_base_gff_tff",
    "-BASE (+MMoE)": "mmoe",
    "-BASE (+CGC)": "cgc",
    "-BASE (Exchange)": "exchange",
}
#: Config fields that do not make a different method.
_NOT_METHOD = ("behaviors", "num_items", "seed")


def bvae_changes(result: dict) -> dict | None:
    """For an untuned BVAE run: the ``BVAEConfig`` fields it sets away from the
    defaults (``{}``: plain BVAE); None for other models and tuned runs."""
    if result.get("model") != "bvae" or any(
        E.training_settings(result)[k] for k in ("grid", "tune")
    ):
        return None
    defaults = json.loads(E.config_defaults_json())
    config = json.loads(json.dumps(result["runs"][0].get("config", {})))
    return {
        k: config[k]
        for k in config
        if k in defaults and k not in _NOT_METHOD and config[k] != defaults[k]
    }


def _full(result: dict, dataset: str) -> bool:
    return tuple(result.get("behaviors", ())) == DATASETS[dataset][1]


def is_study_run(result: dict, dataset: str) -> bool:
    """Whether a result is one step of a study's sweep (RQ4: fewer behaviors; RQ3: the
    latent size d; RQ2: fixed loss weights) rather than a row of the RQ1 comparison
    (per-behavior latent sizes, ``latent_dims``, are a variant's row, whatever d)."""
    changes = bvae_changes(result)
    if changes is None:
        return False
    swept = {"latent_dim", "loss_weights"} & set(changes) and "latent_dims" not in changes
    return not _full(result, dataset) or bool(swept)


def unread_folders(results_dir: str | pathlib.Path) -> list[str]:
    """Folders of ``results_dir`` holding JSON files that are no dataset of
    :data:`DATASETS` (the report leaves them out; its summary line names them)."""
    root = pathlib.Path(results_dir)
    return sorted(
        f.name
        for f in (root.iterdir() if root.is_dir() else ())
        if f.is_dir() and f.name not in DATASETS and any(f.glob("*.json"))
    )


def unread_files(results_dir: str | pathlib.Path) -> list[str]:
    """Files of the dataset folders of ``results_dir`` that the report does not read:
    any but ``*.json`` results and the experiment's ``*.md`` tables beside them (e.g.
    ``bvae_s1.JSON``, a result the report would otherwise leave out unseen), as
    ``<dataset>/<name>``; folders (a run's checkpoints, its logs) are not listed."""
    root = pathlib.Path(results_dir)
    return sorted(
        f"{key}/{f.name}"
        for key in DATASETS
        if (root / key).is_dir()
        for f in (root / key).iterdir()
        if f.is_file() and f.suffix not in (".json", ".md")
    )


def load(results_dir: str | pathlib.Path) -> dict[str, list[dict]]:
    """``{dataset: combined results}`` for every known dataset folder that has files.

    Raises:
      ValueError: if no dataset folder has result files, or naming a file that cannot
        be used (``experiment.combine``), that was trained on another dataset (its
        ``data`` folder's name is not the folder's, case aside), that models a
        behavior the dataset's tables do not have (``DATASETS``), the dataset's
        behaviors in another order,
        or plain BVAE on a subset that is no step of RQ4 (not the first behaviors of
        the paper's order).
    """
    root = pathlib.Path(results_dir)
    out = {}
    for key in DATASETS:
        paths = sorted((root / key).glob("*.json"))
        if not paths:
            continue
        combined = E.combine(paths)  # checks every file
        known = DATASETS[key][1]
        for path in paths:
            result = json.loads(path.read_text())
            behaviors = result["behaviors"]
            data = E.dataset_name(result)
            if data and data.lower() != key:
                raise ValueError(
                    f"cannot use {str(path)!r}: it was trained on {result['data']!r}, not "
                    f"{DATASETS[key][0]}: move it into the folder of its dataset"
                )
            if not set(behaviors) <= set(known):
                raise ValueError(
                    f"cannot use {str(path)!r}: behaviors {behaviors} are not among "
                    f"{DATASETS[key][0]}'s {list(known)}"
                )
            # The tables, RQ4's steps and the labels read the dataset's order; a run of
            # the same behaviors in another order would be left out of RQ1 unseen.
            if set(behaviors) == set(known) and tuple(behaviors) != tuple(known):
                raise ValueError(
                    f"cannot use {str(path)!r}: it models {DATASETS[key][0]}'s behaviors in "
                    f"another order ({behaviors}, the report's is {list(known)}); rerun "
                    "it with --behaviors in that order, or move it out of the folder"
                )
            # Plain BVAE on fewer behaviors is a step of RQ4, which adds them in the
            # paper's order: any other subset would be in no table and no figure.
            wanted = known[: len(behaviors)]
            if tuple(behaviors) != wanted and bvae_changes(result) == {}:
                raise ValueError(
                    f"cannot use {str(path)!r}: plain BVAE on {behaviors} is no step of "
                    f"RQ4, which adds {DATASETS[key][0]}'s behaviors in the paper's order "
                    f"({' -> '.join(known)}; this step: {list(wanted)}); rerun it with "
                    "--behaviors in that order, or move it out of the folder"
                )
        out[key] = sorted(combined, key=lambda r, key=key: _row_order(r, key))
    others = unread_folders(root)
    misspelt = [n for n in others if n.strip().lower() in DATASETS]
    if misspelt:  # e.g. "JD/" for "jd/": its results would be left out unseen
        logging.warning(
            "result folders in %s not read (the report reads %s): %s",
            root,
            ", ".join(f"{k}/" for k in DATASETS),
            ", ".join(f"{n}/" for n in misspelt),
        )
    if not out and not pathlib.Path(root).exists():
        raise ValueError(f"the results folder {str(root)!r} does not exist")
    if not out:
        raise ValueError(
            f"no result files in {str(root)!r}: expected {sorted(DATASETS)} folders of "
            "bvae_tf.experiment JSON files"
            + (f" (not read: {', '.join(others)})" if others else "")
        )
    return out


#: Table order of the methods: the floors, the baselines, then BVAE and its variants.
_FAMILIES = ("popularity", "repeat", "ease", "recvae", "vae_t", "vae_u", "vae_pp", "ehcf", "ngcf")


def _row_order(result: dict, dataset: str) -> tuple:
    """Sort key of a table row: the method family, then (BVAE) the RQ2 rows in the
    paper's order before the other variants, then the label."""
    model = result.get("model")
    family = _FAMILIES.index(model) if model in _FAMILIES else len(_FAMILIES)
    name = ablation_name(result, dataset)
    rq2 = list(ABLATIONS).index(name) if name else len(ABLATIONS)
    return (family, rq2, result["method"])


def ablation_name(result: dict, dataset: str = "jd") -> str | None:
    """The RQ2 row a result is (``ABLATIONS``), or None: an untuned BVAE run on every
    behavior whose configuration differs from the defaults exactly by that row's."""
    changes = bvae_changes(result)
    if changes is None or not _full(result, dataset):
        return None
    for name, wanted in ABLATIONS.items():
        if changes == wanted:
            return name
    return None


def find_untuned(results: list[dict], model: str, dataset: str) -> dict | None:
    """The untuned result of ``model`` (BVAE: the default configuration); of several
    (e.g. another training budget: a short trial run beside the study's), the one with
    the most seeds, the first of those."""
    found = [
        r
        for r in results
        if (model == "bvae" and ablation_name(r, dataset) == "BVAE")
        or (r.get("model") == model and model != "bvae" and not E.training_settings(r)["grid"])
    ]
    if len(found) > 1:
        message = (
            f"{dataset}: {len(found)} results of the untuned {model} ("
            + "; ".join(f"{r['method']}: {_seeds(r)} seeds" for r in found)
            + "); using the one with the most seeds (the first of those)"
        )
        if message not in _WARNED:  # once per render, not once per figure asking
            _WARNED.add(message)
            logging.warning("%s", message)
    return max(found, key=_seeds, default=None)


def _metric(result: dict, behavior: str, key: str) -> tuple[float, float] | None:
    summary = result["summary"].get(E.HONEST, {}).get(behavior, {})
    return tuple(summary[key]) if key in summary else None


def _seeds(result: dict) -> int:
    return len([r for r in result["runs"] if E.HONEST in r])


#: The machine of every result written before runs recorded theirs
#: (``bvae_tf.experiment.machine``): each of those ran on 2 CPU cores.
UNRECORDED_MACHINE = "2 CPU cores"


def _machine_words(host: dict | None) -> str:
    """A run's ``machine`` record in words, e.g. "2 CPU cores" or "16 CPU cores, 1 GPU
    (NVIDIA H200)"; :data:`UNRECORDED_MACHINE` for a run without one."""
    if host is None:
        return UNRECORDED_MACHINE
    words = f"{host['cpus']} CPU cores"
    gpus = host.get("gpus") or []
    if gpus:
        words += f", {len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({', '.join(sorted(set(gpus)))})"
    return words


def _compute(*results: dict) -> str:
    """The machines the runs of ``results`` ran on, in words (" or " between kinds)."""
    kinds = {_machine_words(run.get("machine")) for r in results for run in r["runs"]}
    return " or ".join(sorted(kinds)) or UNRECORDED_MACHINE


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {"font.size": 9, "axes.titlesize": 10, "axes.grid": True, "grid.alpha": 0.3}
    )
    return plt


#: Line style and marker per behavior in the per-epoch figures, so that lines lying on
#: top of each other stay visible (e.g. two GFF gates both at 1).
_LINE_STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))
#: Every behavior a dataset may model, in the paper's order: a behavior keeps its
#: colour, dash and marker in every figure of every dataset (favorite looks the same
#: on JD and UB).
ALL_BEHAVIORS = ("purchase", "click", "favorite", "cart")


def _behavior_style(behavior: str, points: int) -> dict:
    """``ax.plot`` keywords of ``behavior``'s line: its own colour, dash pattern and
    marker (:data:`ALL_BEHAVIORS`), the marker every ~10th of ``points`` points
    (staggered between behaviors)."""
    index = ALL_BEHAVIORS.index(behavior) if behavior in ALL_BEHAVIORS else len(ALL_BEHAVIORS)
    dash, marker = _LINE_STYLES[index % len(_LINE_STYLES)]
    every = max(1, points // 10)
    return {
        "color": f"C{index}",
        "ls": dash,
        "marker": marker,
        "ms": 4,
        "markevery": (index * every // 3 % every, every),
    }


def _epoch_axis(ax) -> None:
    """Labels ``ax``'s x axis "epoch", with whole-number ticks only."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def ablation_figure(results: list[dict], dataset: str, path: pathlib.Path) -> str | None:
    """Grouped bars of test NDCG@5 and HR@5 per behavior for the RQ2 rows present;
    returns the caption (None when BVAE and no other RQ2 row are present)."""
    rows = _ablation_rows(results, dataset)
    names = [n for n in ABLATIONS if n in rows]
    if "BVAE" not in rows or len(names) < 2:
        return None
    title, behaviors, _ = DATASETS[dataset]
    behaviors = [b for b in behaviors if _metric(rows["BVAE"], b, "ndcg@5")]
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / len(names)
    x = np.arange(len(behaviors))
    colors = plt.get_cmap("tab10").colors
    for ax, (key, label) in zip(axes, (("ndcg@5", "NDCG@5"), ("hit_rate@5", "HR@5")), strict=True):
        for i, name in enumerate(names):
            values = [_metric(rows[name], b, key) or (np.nan, 0.0) for b in behaviors]
            one_seed = _seeds(rows[name]) < 2  # no std: no whisker (the caption's seeds)
            ax.bar(
                x + (i - (len(names) - 1) / 2) * width,
                [v[0] for v in values],
                width,
                yerr=None if one_seed else [v[1] for v in values],
                capsize=2,
                label=name,
                color=colors[i % len(colors)],
            )
        ax.set_xticks(x, behaviors)
        ax.set_ylabel(f"test {label}")
        ax.set_title(f"{title}: {label} (honest protocol)")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path, dataset)
    seeds = ", ".join(f"{n} {_seeds(rows[n])}" for n in names)
    budgets = {n: E.budget_label(rows[n]) for n in names}
    if len(set(budgets.values())) == 1:
        budget = f"Each row trained at BVAE's defaults ({budgets['BVAE']})"
    else:
        budget = "Budgets differ: " + ", ".join(f"{n} {b}" for n, b in budgets.items())
    return (
        f"{title}, test split, honest protocol (selected on valid NDCG@5, test scored "
        f"once); bars: mean over seeds, whiskers: sample std (none for one seed). Seeds: "
        f"{seeds}. "
        f"{budget} on {_compute(*(rows[n] for n in names))}."
    )


def _ablation_rows(results: list[dict], dataset: str) -> dict[str, dict]:
    """``{RQ2 row: result}``; of several results of one row (e.g. other budgets), the
    one with the most seeds (the first of those). The figure and its claim read these."""
    rows: dict[str, dict] = {}
    for r in results:
        name = ablation_name(r, dataset)
        if name and (name not in rows or _seeds(r) > _seeds(rows[name])):
            rows[name] = r
    return rows


def k_figure(results: list[dict], dataset: str, path: pathlib.Path) -> str | None:
    """NDCG@K and HR@K, K in ``KS``, of BVAE and VAE++ per behavior (RQ3)."""
    bvae, vaepp = find_untuned(results, "bvae", dataset), find_untuned(results, "vae_pp", dataset)
    if bvae is None or vaepp is None:
        return None
    title, behaviors, _ = DATASETS[dataset]
    behaviors = [b for b in behaviors if _metric(bvae, b, "ndcg@5") and _metric(vaepp, b, "ndcg@5")]
    plt = _plt()
    fig, axes = plt.subplots(2, len(behaviors), figsize=(3.2 * len(behaviors), 5.2), squeeze=False)
    for col, b in enumerate(behaviors):
        for row, (metric, label) in enumerate((("ndcg", "NDCG"), ("hit_rate", "HR"))):
            ax = axes[row][col]
            for result, name, style in ((bvae, "BVAE", "o-"), (vaepp, "VAE++", "+--")):
                means = [(_metric(result, b, f"{metric}@{k}") or (np.nan, 0))[0] for k in KS]
                ax.plot(KS, means, style, label=name)
            ax.set_xticks(KS)
            ax.set_xlabel("K (items recommended)")
            ax.set_ylabel(f"test {label}@K")
            ax.set_title(f"{title} {b}")
    axes[0][0].legend()
    _save(fig, path, dataset)
    budgets = (E.budget_label(bvae), E.budget_label(vaepp))
    budget = (
        f"both trained with the same loop ({budgets[0]})"
        if budgets[0] == budgets[1]
        else f"budgets differ: BVAE {budgets[0]}, VAE++ {budgets[1]}"
    )
    return (
        f"{title}, test split, honest protocol; mean over seeds (BVAE {_seeds(bvae)}, "
        f"VAE++ {_seeds(vaepp)}). VAE++ is one model per target behavior; {budget}, on "
        f"{_compute(bvae, vaepp)}."
    )


def training_figure(results: list[dict], dataset: str, path: pathlib.Path) -> str | None:
    """BVAE's per-behavior training curves over epochs (its first seed's run): valid
    NDCG@5, the train reconstruction NLL, the SDWL weight and the posterior std, each
    panel where the run recorded it."""
    bvae = find_untuned(results, "bvae", dataset)
    if bvae is None:
        return None
    run = bvae["runs"][0]
    curve = E.curve_rows(run.get("curve"))
    title, behaviors, _ = DATASETS[dataset]
    behaviors = [b for b in behaviors if curve and f"valid/{b}/ndcg@5" in curve[0]]
    if not behaviors:
        return None
    epochs = [c["epoch"] for c in curve]
    panels = [
        (key, label, heading)
        for key, label, heading in (
            ("valid/{b}/ndcg@5", "valid NDCG@5", f"{title}: selection metric"),
            ("{b}_nll", "train NLL per user (nats)", "reconstruction loss (eq. 9-10)"),
            (
                "{b}_sdwl_weight",
                f"SDWL weight 1/(2{SIGMA_BAR}²)",
                "task weight SDWL gives (eq. 14)",
            ),
            ("{b}_sigma", f"mean posterior std {SIGMA_BAR}", "task uncertainty"),
        )
        if any(key.format(b=b) in curve[0] for b in behaviors)
    ]
    plt = _plt()
    columns = 2 if len(panels) == 4 else len(panels)
    grid_rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(
        grid_rows, columns, figsize=(5.2 * columns, 3.1 * grid_rows), squeeze=False
    )
    for ax, (key, label, heading) in zip(axes.flat, panels, strict=True):
        for b in behaviors:
            values = [c.get(key.format(b=b), np.nan) for c in curve]
            ax.plot(epochs, values, label=b, **_behavior_style(b, len(epochs)))
        ax.axvline(run["best_epoch"], color="grey", ls=":", lw=1)
        _epoch_axis(ax)
        ax.set_ylabel(label)
        ax.set_title(heading)
    axes.flat[0].legend()
    _save(fig, path, dataset)
    return (
        f"{title}, BVAE (defaults), seed {run.get('seed', 0)}: training-epoch means over "
        f"the train users of the reconstruction NLL, the SDWL weight and {SIGMA_BAR}, "
        f"validation NDCG@5 after each epoch; dotted: the selected epoch "
        f"({run['best_epoch']}). {_run_compute(run)}."
    )


def _run_compute(run: dict) -> str:
    """``"52.3 minutes of training over 169 epochs, on 2 CPU cores (...)"``: one run's
    training wall time, its epochs and its machine, in words."""
    parts = run.get("parts") or [run]
    epochs = sum(p.get("epochs_run", 0) for p in parts)
    seconds = run.get("train_seconds")
    spent = (
        f"{seconds / 60:.1f} minutes of training over {epochs} epochs"
        if isinstance(seconds, int | float)
        else f"{epochs} epochs (training time not recorded)"
    )
    return f"{spent}, on {_machine_words(run.get('machine'))}"


def _gate_run(results: list[dict], dataset: str) -> dict | None:
    """The first run of default BVAE whose curve records the gate trackers."""
    bvae = find_untuned(results, "bvae", dataset)
    for run in bvae["runs"] if bvae else ():
        curve = E.curve_rows(run.get("curve"))
        if curve and any(k.endswith("_gff_gate") for k in curve[0]):
            return run
    return None


def gates_figure(results: list[dict], dataset: str, path: pathlib.Path | None) -> str | None:
    """GFF gate values and TFF mixing shares over training, and TFF's mixing matrix at
    the selected epoch as a heatmap (``BVAE.gate_tracker_names``); None without a run
    that recorded them (results older than the trackers)."""
    run = _gate_run(results, dataset)
    if run is None:
        return None
    if path is None:
        return ""
    curve = E.curve_rows(run["curve"])
    title, behaviors, _ = DATASETS[dataset]
    behaviors = [b for b in behaviors if f"{b}_gff_gate" in curve[0]]
    epochs = np.array([c["epoch"] for c in curve])
    best = run["best_epoch"]
    selected = min(curve, key=lambda c: abs(c["epoch"] - best))
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    for b in behaviors:
        mean = np.array([c.get(f"{b}_gff_gate", np.nan) for c in curve])
        std = np.array([c.get(f"{b}_gff_gate_std", np.nan) for c in curve])
        style = _behavior_style(b, len(epochs))
        (line,) = axes[0].plot(epochs, mean, label=b, **style)
        band = np.clip(mean - std, 0.0, 2.0), np.clip(mean + std, 0.0, 2.0)  # g is in (0, 2)
        axes[0].fill_between(epochs, *band, color=line.get_color(), alpha=0.15)
        own = [c.get(f"{b}_tff_from_{b}", np.nan) for c in curve]
        axes[1].plot(epochs, own, label=f"{b} from {b}", **style)
    axes[0].axhline(1.0, color="grey", lw=0.8)
    axes[1].axhline(1 / len(behaviors), color="grey", lw=0.8)
    for ax in axes[:2]:
        ax.axvline(best, color="grey", ls=":", lw=1)
        _epoch_axis(ax)
    axes[0].set_ylabel("GFF gate g (mean ± std)")
    axes[0].set_title(f"{title}: GFF, 1 = pass-through (eq. 3-4)")
    axes[0].legend()
    axes[1].set_ylabel("share of the target's own z")
    axes[1].set_title(f"TFF: own behavior's share (grey: 1/{len(behaviors)})")
    axes[1].legend()
    matrix = np.array(
        [[selected.get(f"{t}_tff_from_{s}", np.nan) for s in behaviors] for t in behaviors]
    )
    image = axes[2].imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(np.nanmax(matrix), 0.5))
    axes[2].grid(False)
    axes[2].set_xticks(range(len(behaviors)), behaviors)
    axes[2].set_yticks(range(len(behaviors)), behaviors)
    axes[2].set_xlabel("source behavior z_k'")
    axes[2].set_ylabel("target behavior (decoder)")
    axes[2].set_title(f"TFF mixing shares, epoch {selected['epoch']:.0f}")
    for (i, j), value in np.ndenumerate(matrix):
        color = "black" if value > 0.6 * np.nanmax(matrix) else "white"
        axes[2].text(j, i, f"{value:.2f}", ha="center", va="center", color=color)
    fig.colorbar(image, ax=axes[2], fraction=0.046)
    _save(fig, path, dataset)
    return (
        f"{title}, BVAE (defaults), seed {run.get('seed', 0)}, honest protocol: training-"
        "epoch means over the train users. Left: GFF gate g_k = 2·sigmoid(mu_0 W + b) "
        "(band: std over users and dimensions, clipped to the gate's range (0, 2)). "
        "Middle and right: TFF's normalised weights G_kk' / sum_k' G_kk' (each row sums "
        "to 1; 1/c everywhere is the plain "
        f"sum); dotted: the selected epoch ({best}). {_machine_words(run.get('machine'))}."
    )


def _d_runs(results: list[dict], dataset: str) -> dict[int, dict]:
    """BVAE runs at its defaults but the latent size, by d (RQ3)."""
    runs = {}
    for r in results:
        changes = bvae_changes(r)
        if changes is not None and _full(r, dataset) and set(changes) <= {"latent_dim"}:
            d = int(r["runs"][0]["config"]["latent_dim"])
            if d not in runs or _seeds(r) > _seeds(runs[d]):  # of several, the most seeds
                runs[d] = r
    return runs


def _rq4_steps(results: list[dict], dataset: str) -> list[tuple[tuple[str, ...], dict]]:
    """(behaviors modelled, BVAE run) as behaviors are added in the paper's order (RQ4)."""
    behaviors = DATASETS[dataset][1]
    steps = []
    for n in range(1, len(behaviors) + 1):
        wanted = behaviors[:n]
        match = max(  # of several (another budget), the most seeds, the first of those
            (
                r
                for r in results
                if bvae_changes(r) == {} and tuple(r.get("behaviors", ())) == wanted
            ),
            key=_seeds,
            default=None,
        )
        if match is not None:
            steps.append((wanted, match))
    return steps


def d_figure(results: list[dict], dataset: str, path: pathlib.Path | None) -> str | None:
    """Test NDCG@5 and HR@5 against the latent size d (RQ3); None with < 2 sizes."""
    runs = _d_runs(results, dataset)
    if len(runs) < 2:
        return None
    if path is None:  # only asked whether the study has results
        return ""
    title, behaviors, _ = DATASETS[dataset]
    sizes = sorted(runs)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, (key, label) in zip(axes, (("ndcg@5", "NDCG@5"), ("hit_rate@5", "HR@5")), strict=True):
        for b in behaviors:
            means = [(_metric(runs[d], b, key) or (np.nan, 0))[0] for d in sizes]
            ax.plot(sizes, means, label=b, **_behavior_style(b, len(sizes)))
        ax.set_xticks(sizes)
        ax.set_xlabel("latent size d")
        ax.set_ylabel(f"test {label}")
        ax.set_title(f"{title}: {label} against d")
    axes[0].legend()
    _save(fig, path, dataset)
    seeds = ", ".join(f"d={d}: {_seeds(runs[d])}" for d in sizes)
    return (
        f"{title}, test split, honest protocol, BVAE's defaults but d; seeds {seeds}; "
        f"{_compute(*runs.values())}."
    )


def rq4_figure(results: list[dict], dataset: str, path: pathlib.Path | None) -> str | None:
    """Test NDCG@5 per behavior as behaviors are added in the paper's order (RQ4)."""
    title, behaviors, _ = DATASETS[dataset]
    steps = _rq4_steps(results, dataset)
    if len(steps) < 2:
        return None
    if path is None:  # only asked whether the study has results
        return ""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    x = np.arange(len(steps))
    for b in behaviors:
        means = [
            (_metric(r, b, "ndcg@5") or (np.nan, 0))[0] if b in modelled else np.nan
            for modelled, r in steps
        ]
        ax.plot(x, means, label=b, **_behavior_style(b, len(steps)))
    ax.set_xticks(x, [" + ".join(m) for m, _ in steps], fontsize=8)
    ax.set_xlabel("behaviors modelled")
    ax.set_ylabel("test NDCG@5")
    ax.set_title(f"{title}: adding behaviors one at a time")
    ax.legend()
    _save(fig, path, dataset)
    seeds = ", ".join(str(_seeds(r)) for _, r in steps)
    return (
        f"{title}, test split, honest protocol; BVAE's defaults on the behaviors named "
        f"(one behavior: Mult-VAE); seeds per step: {seeds}. "
        f"{_sweep_compute(r for _, r in steps)}."
        + (
            " JD's cart has no train interactions, so it cannot be added."
            if dataset == "jd"
            else ""
        )
    )


#: Settings of the paper's fixed-weight grid: the first two behaviors' weights in
#: {0.1, ..., 0.9}, the third 1 - both, zero weights omitted (``run_studies.sh rq2_weights``).
WEIGHT_GRID_SIZE = 36
#: The latent sizes of the RQ3 sweep (the paper's; d = 100 is the BVAE row).
D_SWEEP = (50, 100, 150, 200)
#: Its step-0.2 sub-grid (first two weights in {0.2, 0.4, 0.6}), which the study runs first.
COARSE_WEIGHTS = tuple(
    (a, b) for a in (0.2, 0.4, 0.6) for b in (0.2, 0.4, 0.6) if round(a + b, 2) < 1.0
)


def _weight_grid(results: list[dict], dataset: str) -> dict[tuple[float, float], dict]:
    """The fixed-loss-weight runs by (first, second) behavior weight.

    Raises:
      ValueError: naming a run whose weights do not sum to 1 (the grid's third weight
        is 1 - both) or two runs of the same cell.
    """
    grid = {}
    for r in results:
        changes = bvae_changes(r)
        if changes is not None and _full(r, dataset) and set(changes) == {"loss_weights"}:
            w = r["runs"][0]["config"]["loss_weights"]
            if abs(sum(w) - 1.0) > 1e-6:
                raise ValueError(
                    f"{r.get('name', r['method'])!r}: loss weights {w} do not sum to 1, so "
                    "they are no cell of the fixed-weight grid (the third is 1 - both)"
                )
            cell = (round(w[0], 2), round(w[1], 2))
            if cell in grid:
                raise ValueError(
                    f"{grid[cell].get('name', '?')!r} and {r.get('name', '?')!r} are both the "
                    f"fixed-weight cell {cell}: keep one of them"
                )
            grid[cell] = r
    return grid


#: The weights of the paper's fixed-weight grid's two axes: every setting has both in
#: {0.1, ..., 0.8} and their sum at most 0.9 (the third weight at least 0.1).
GRID_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(1, 9))


def weights_figure(results: list[dict], dataset: str, path: pathlib.Path | None) -> str | None:
    """Heatmaps of test NDCG@5 per behavior over the paper's fixed-weight grid (first x
    second behavior's weight; the third gets the rest), with SDWL marked (RQ2).

    Every one of the grid's :data:`WEIGHT_GRID_SIZE` settings has a cell: its value x
    100 where it was run, a dash where it was not; grey where the weights are no
    setting (the third weight would be 0 or less). A cell outlined in red is above
    SDWL's mean, and SDWL's mean is a red line on the colour bar."""
    title, behaviors, _ = DATASETS[dataset]
    grid = _weight_grid(results, dataset)
    if len(grid) < 2:
        return None
    if path is None:  # only asked whether the study has results
        return ""
    from matplotlib.patches import Rectangle

    sdwl = find_untuned(results, "bvae", dataset)
    ws = sorted(set(GRID_WEIGHTS) | {k for key in grid for k in key})
    plt = _plt()
    fig, axes = plt.subplots(1, len(behaviors), figsize=(4.6 * len(behaviors), 4.3))
    for ax, b in zip(np.atleast_1d(axes), behaviors, strict=True):
        image = np.full((len(ws), len(ws)), np.nan)
        for (wp, wc), r in grid.items():
            image[ws.index(wp), ws.index(wc)] = (_metric(r, b, "ndcg@5") or (np.nan, 0))[0]
        ax.set_facecolor("white")
        reference = _metric(sdwl, b, "ndcg@5") if sdwl else None
        # The colour scale reaches SDWL's mean, and a little beyond the extremes, so
        # that its line on the bar is seen also where SDWL is the highest or lowest.
        limits = [np.nanmin(image), np.nanmax(image), *(reference[:1] if reference else ())]
        pad = 0.03 * (max(limits) - min(limits)) or 1e-6
        low, high = min(limits) - pad, max(limits) + pad
        shown = ax.imshow(image, origin="lower", cmap="viridis", vmin=low, vmax=high)
        ax.grid(False)
        middle = (low + high) / 2
        for (row, col), value in np.ndenumerate(image):
            if round(ws[row] + ws[col], 2) >= 1.0:  # no setting: the third weight <= 0
                ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, color="0.85", lw=0))
            elif np.isnan(value):  # a setting not run
                ax.text(col, row, "-", ha="center", va="center", fontsize=9, color="0.4")
            else:  # the value in its cell, dark on the light colours
                color = "black" if value > middle else "white"
                ax.text(
                    col,
                    row,
                    f"{100 * value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=color,
                )
                if reference and value > reference[0]:
                    ax.add_patch(
                        Rectangle((col - 0.45, row - 0.45), 0.9, 0.9, fill=False, ec="red", lw=1.2)
                    )
        ax.set_xticks(range(len(ws)), [f"{w:g}" for w in ws], fontsize=7)
        ax.set_yticks(range(len(ws)), [f"{w:g}" for w in ws], fontsize=7)
        ax.set_xlabel(f"{behaviors[1]} weight")
        ax.set_ylabel(f"{behaviors[0]} weight")
        best = np.nanmax(image)
        ax.set_title(
            f"{b} NDCG@5 (best fixed {best:.4f}"
            + (f"; SDWL {reference[0]:.4f})" if reference else ")"),
            fontsize=8,
        )
        bar = fig.colorbar(shown, ax=ax, fraction=0.046)
        bar.set_label("test NDCG@5 (cells: x 100)", fontsize=7)
        if reference:
            bar.ax.axhline(reference[0], color="red", lw=1.5)
    fig.suptitle(
        f"{title}: fixed loss weights against SDWL, {len(grid)} of the {WEIGHT_GRID_SIZE} "
        f"settings run ({_seeds_each(grid.values())}); red: SDWL's mean and the cells "
        "above it; -: not run; grey: no setting",
        fontsize=9,
    )
    _save(fig, path, dataset)
    seeds = len(sdwl["runs"]) if sdwl else 0
    return (
        f"{title}, test split, honest protocol: BVAE with fixed per-behavior loss weights "
        f"in place of SDWL, the remaining behaviors' weight 1 - the two shown (zero weights "
        f"omitted); {len(grid)} of the {WEIGHT_GRID_SIZE} settings of the paper's grid "
        f"(step 0.1; of its step-0.2 sub-grid {sum(k in grid for k in COARSE_WEIGHTS)} of "
        f"{len(COARSE_WEIGHTS)}), {_seeds_each(grid.values())}; cells: test NDCG@5 x 100, "
        "- where a setting was not run, grey where the weights are no setting (the third "
        "would be 0 or less). SDWL's own result (mean of "
        f"{seeds} seed{'s' * (seeds != 1)}) is in each title and is the red line on the "
        f"colour bar; cells above it are outlined in red. {_sweep_compute(grid.values())}."
    )


def _sweep_compute(results) -> str:
    """``"Compute: 10.5 hours of training over 36 runs, on 2 CPU cores"``: the training
    wall time a study's ``results`` recorded (their runs summed) and their machines."""
    results = list(results)
    runs = [run for r in results for run in r["runs"]]
    seconds = [run.get("train_seconds") for run in runs]
    known = [t for t in seconds if isinstance(t, int | float)]
    hours = sum(known) / 3600
    spent = f"{hours:.1f} hours" if hours >= 2 else f"{60 * hours:.0f} minutes"
    unknown = (
        f" ({len(runs) - len(known)} runs did not record it)" if len(known) < len(runs) else ""
    )
    return (
        f"Compute: {spent} of training over {len(runs)} run{'s' * (len(runs) != 1)}{unknown}, "
        f"on {_compute(*results)}"
    )


def _seeds_each(results) -> str:
    """``"1 seed each"``, or the range (``"1-2 seeds each"``) over ``results``."""
    counts = sorted({_seeds(r) for r in results})
    n = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{n} seed{'s' * (counts[-1] != 1)} each"


def _ndcg(result: dict | None, behavior: str, k: int = 5) -> float | None:
    value = _metric(result, behavior, f"ndcg@{k}") if result else None
    return None if value is None else value[0]


#: The level at which the studies' claims call a difference significant.
ALPHA = 0.05


def _p_value(a: dict | None, b: dict | None, behavior: str) -> float | None:
    """Two-sided p of a paired t-test over users of test NDCG@5 on ``behavior``
    between two results (each user's mean over a result's seeds;
    ``experiment.paired_test``); None when either lacks per-user values or they score
    different users."""
    if a is None or b is None:
        return None
    x, y = E._per_user(a, behavior), E._per_user(b, behavior)
    if x is None or y is None or len(x) != len(y):
        return None
    return E.paired_test(x, y)


def _significant(a: dict | None, b: dict | None, behavior: str) -> bool:
    p = _p_value(a, b, behavior)
    return p is not None and p < ALPHA


def _fmt_list(items: list[str]) -> str:
    return ", ".join(items) if items else "none"


def _claim_ablation(results: list[dict], dataset: str, bvae: dict | None) -> tuple[str, str] | None:
    behaviors = DATASETS[dataset][1]
    rows = _ablation_rows(results, dataset)
    bvae = rows.pop("BVAE", None)
    if bvae is None or not rows:
        return None
    parts, contradicted, unconfirmed = [], [], []
    for row, r in rows.items():
        above = [b for b in behaviors if (_ndcg(r, b) or 0.0) > (_ndcg(bvae, b) or 0.0)]
        significant = [b for b in above if _significant(r, bvae, b)]
        parts.append(
            f"{row} above BVAE on {_fmt_list(above)}"
            + (f" (significantly on {_fmt_list(significant)})" if above else "")
        )
        if len(above) * 2 > len(behaviors):
            (contradicted if significant else unconfirmed).append(row)
    verdict = (
        "This is consistent with the paper: no row beats BVAE on most behaviors"
        if not contradicted and not unconfirmed
        else "; ".join(
            ([f"That contradicts the paper for {', '.join(contradicted)}"] if contradicted else [])
            + (
                [
                    f"{', '.join(unconfirmed)} above BVAE on most behaviors, none "
                    "significantly: not a contradiction at these seeds, nor a confirmation"
                ]
                if unconfirmed
                else []
            )
        )
    )
    return (
        "most metrics drop when BASE, GFF or TFF are removed, and BASE has the best "
        "overall performance against MMoE, CGC and the exchanged roles (which may be "
        "slightly better on JD favourite)",
        f"Here (test NDCG@5; significantly: a paired t-test over users, p < {ALPHA}): "
        f"{'; '.join(parts)}. {verdict}.",
    )


def _claim_k(results: list[dict], dataset: str, bvae: dict | None) -> tuple[str, str] | None:
    behaviors = DATASETS[dataset][1]
    vaepp = find_untuned(results, "vae_pp", dataset)
    if bvae is None or vaepp is None:
        return None
    cells = [(b, k) for b in behaviors for k in KS if _ndcg(bvae, b, k) and _ndcg(vaepp, b, k)]
    if not cells:
        return None
    lost = [f"{b}@{k}" for b, k in cells if _ndcg(bvae, b, k) <= _ndcg(vaepp, b, k)]
    growing = [
        b
        for b in behaviors
        if (b, KS[0]) in cells
        and (b, KS[-1]) in cells
        and _ndcg(bvae, b, KS[-1]) - _ndcg(vaepp, b, KS[-1])
        > _ndcg(bvae, b, KS[0]) - _ndcg(vaepp, b, KS[0])
    ]
    return (
        "BVAE beats VAE++ on every behavior and K, and the gap grows with K (on JD for "
        "every behavior)",
        f"Here: BVAE's NDCG@K is above VAE++'s in {len(cells) - len(lost)} of {len(cells)} "
        "(behavior, K) cells"
        + (f" (not in {_fmt_list(lost)})" if lost else "")
        + f"; the NDCG gap at K={KS[-1]} exceeds the gap at K={KS[0]} for "
        f"{_fmt_list(growing)}.",
    )


def _claim_weights(results: list[dict], dataset: str, bvae: dict | None) -> tuple[str, str] | None:
    behaviors = DATASETS[dataset][1]
    grid = _weight_grid(results, dataset)
    if bvae is None or len(grid) < 2:
        return None
    modelled = [b for b in behaviors if _ndcg(bvae, b) is not None]
    total = sum(_ndcg(bvae, b) for b in modelled)

    def above(r, b):
        return (_ndcg(r, b) or 0.0) > _ndcg(bvae, b)

    per_behavior = []
    for b in modelled:
        count = sum(above(r, b) for r in grid.values())
        strong = sum(above(r, b) and _significant(r, bvae, b) for r in grid.values())
        per_behavior.append(f"{b} {count}" + (f" ({strong} significantly)" if count else ""))
    joint = {
        key: r
        for key, r in sorted(grid.items())
        if sum(_ndcg(r, b) or 0.0 for b in modelled) > total
    }
    # A joint win the paired tests back: significantly above SDWL on a behavior and
    # significantly below on none.
    backed = [
        key
        for key, r in joint.items()
        if any(above(r, b) and _significant(r, bvae, b) for b in modelled)
        and not any(not above(r, b) and _significant(r, bvae, b) for b in modelled)
    ]
    name = lambda key: "/".join(f"{w:g}" for w in key)  # noqa: E731
    if backed:
        verdict = (
            f" That contradicts the paper's claim for {_fmt_list([name(k) for k in backed])} "
            f"(above SDWL on the sum, significantly above on a behavior and significantly "
            f"below on none; {_seeds_each(grid.values())})."
        )
    elif joint:
        verdict = (
            " Those are above SDWL on the sum, but none is significantly above it on a "
            "behavior without being significantly below on another: not a contradiction "
            f"at {_seeds_each(grid.values())}."
        )
    else:
        verdict = " That is consistent with the paper's claim."
    return (
        "some fixed weights are slightly better than SDWL on favourite, but SDWL is "
        "better on all behaviors jointly",
        "Here, settings above SDWL's test "
        f"NDCG@5 (of the {len(grid)} settings run; significantly: a paired t-test over "
        f"users, p < {ALPHA}): {', '.join(per_behavior)}; above SDWL on the sum over "
        f"behaviors ({total:.4f}): {_fmt_list([name(k) for k in joint])} "
        f"({behaviors[0]}/{behaviors[1]} weights).{verdict}",
    )


def _claim_d(results: list[dict], dataset: str, bvae: dict | None) -> tuple[str, str] | None:
    behaviors = DATASETS[dataset][1]
    runs = _d_runs(results, dataset)
    if len(runs) < 2:
        return None
    parts = []
    for b in behaviors:
        values = {d: _ndcg(r, b) for d, r in runs.items() if _ndcg(r, b) is not None}
        if values:
            best = max(values, key=values.get)
            spread = max(values.values()) - min(values.values())
            parts.append(f"{b} best at d={best} (spread {spread:.4f})")
    left = sorted(set(D_SWEEP) - set(runs))
    missing = f" (d = {', '.join(map(str, left))} not run yet)" if left else ""
    if dataset == "jd":
        paper = "on JD the effect of d is not significant (a large d may overfit sparse behaviors)"
        verdict = ""  # "not significant" needs seeds at every d, which the sweep lacks
    else:
        paper = "on UB performance grows with d"
        ordered = [runs[d] for d in sorted(runs)]
        falls = {  # behavior -> p of each step to a larger d that lowers NDCG@5
            b: [
                _p_value(x, y, b)
                for x, y in itertools.pairwise(ordered)
                if (_ndcg(y, b) or 0.0) < (_ndcg(x, b) or 0.0)
            ]
            for b in behaviors
            if None not in [_ndcg(r, b) for r in ordered]
        }
        significant = [b for b, ps in falls.items() if any(p is not None and p < ALPHA for p in ps)]
        flat = [b for b, ps in falls.items() if ps and b not in significant]
        verdict = (
            " That is consistent with the paper: NDCG@5 grows with d for every behavior."
            if not significant and not flat
            else (
                f" That contradicts the paper for {_fmt_list(significant)} (a significant "
                f"fall at a larger d, paired t-test over users, p < {ALPHA})."
                if significant
                else ""
            )
            + (
                f" {_fmt_list(flat).capitalize()}: lower at a larger d, not significantly "
                "(p = "
                + ", ".join(f"{p:.2g}" for b in flat for p in falls[b] if p is not None)
                + "): not a contradiction at these seeds."
                if flat
                else ""
            )
        )
    return (
        paper,
        f"Here (test NDCG@5 over d = {sorted(runs)}{missing}): {'; '.join(parts)}.{verdict}",
    )


def _claim_rq4(results: list[dict], dataset: str, bvae: dict | None) -> tuple[str, str] | None:
    behaviors = DATASETS[dataset][1]
    steps = [r for _, r in _rq4_steps(results, dataset)]
    if len(steps) < 2:
        return None
    parts, falling, flat = [], [], []
    for b in behaviors:
        runs = [r for r in steps if b in r.get("behaviors", ()) and _ndcg(r, b) is not None]
        if len(runs) >= 2:
            values = [_ndcg(r, b) for r in runs]
            drops = [
                _p_value(x, y, b) for x, y in itertools.pairwise(runs) if _ndcg(y, b) <= _ndcg(x, b)
            ]
            trend = (
                "rises at every step"
                if not drops
                else "does not rise at every step; "
                + ", ".join("p = ?" if p is None else f"p = {p:.2g}" for p in drops)
            )
            parts.append(f"{b} {' → '.join(f'{v:.4f}' for v in values)} ({trend})")
            if any(p is not None and p < ALPHA for p in drops):
                falling.append(b)
            elif drops:
                flat.append(b)
    verdict = (
        ""
        if not parts
        else " That is consistent with the paper."
        if not falling and not flat
        else (f" That contradicts the paper for {_fmt_list(falling)}." if falling else "")
        + (
            f" {_fmt_list(flat).capitalize()}: no significant fall (paired t-test over "
            f"users, p < {ALPHA}), so not a contradiction at these seeds, nor a confirmation."
            if flat
            else ""
        )
    )
    return (
        "performance improves as click and then favourite join purchase (and cart on UB)",
        "Here (test NDCG@5 as behaviors are added): "
        f"{'; '.join(parts) or 'no behavior modelled at two steps'}.{verdict}",
    )


_CLAIMS = {
    "rq2_ablation": _claim_ablation,
    "rq3_k": _claim_k,
    "rq2_weights": _claim_weights,
    "rq3_d": _claim_d,
    "rq4": _claim_rq4,
}


def claim_check(name: str, results: list[dict], dataset: str) -> str | None:
    """The paper's claim for a study (Rao et al. 2023, RQ2-RQ4, as in its slides)
    and what these result files show, computed from them; None when the study has no
    figure here. Seed counts are in the figure captions: with 1-2 seeds, a difference
    under about 0.003 NDCG@5 on JD is within seed noise (docs/RESULTS.md). When runs
    behind it were stopped by their epoch budget while still improving, or were
    trained with different budgets, the verdict says so (:func:`_budget_caveat`)."""
    parts = _claim_parts(name, results, dataset)
    return None if parts is None else _claim_text(name, parts, results, dataset)


def _claim_text(name: str, parts: tuple[str, str], results: list[dict], dataset: str) -> str:
    """:func:`claim_check`'s sentence from the study's :func:`_claim_parts`."""
    paper, here = parts
    return f"The paper: {paper}. {here}{_budget_caveat(_study_runs(name, results, dataset))}"


def _claim_parts(name: str, results: list[dict], dataset: str) -> tuple[str, str] | None:
    """``(the paper's claim, what the runs show)`` of a study, or None."""
    check = _CLAIMS.get(name)
    if check is None:
        return None
    return check(results, dataset, find_untuned(results, "bvae", dataset))


def _study_runs(name: str, results: list[dict], dataset: str) -> list[dict]:
    """The results a study's figure and claim read."""
    bvae = find_untuned(results, "bvae", dataset)
    runs = {
        "rq2_ablation": lambda: list(_ablation_rows(results, dataset).values()),
        "rq3_k": lambda: [bvae, find_untuned(results, "vae_pp", dataset)],
        "rq2_weights": lambda: [bvae, *_weight_grid(results, dataset).values()],
        "rq3_d": lambda: [bvae, *_d_runs(results, dataset).values()],
        "rq4": lambda: [r for _, r in _rq4_steps(results, dataset)],
    }[name]()
    unique = {id(r): r for r in runs if r is not None}
    return list(unique.values())


def _budget_caveat(runs: list[dict]) -> str:
    """A sentence on the training budgets behind a verdict (empty when there is none to
    make): models the epoch budget cut while within patience of their best epoch
    (:func:`bvae_tf.experiment.budget_cut`), and budgets that differ between rows."""
    counts = [E.budget_cut(r) for r in runs]
    cut, trained = sum(c for c, _ in counts), sum(t for _, t in counts)
    budgets = sorted({E.budget_label(r) for r, (_, t) in zip(runs, counts, strict=True) if t})
    words = []
    if cut:
        words.append(
            f"{cut} of the {trained} trained models behind it {'was' if cut == 1 else 'were'} "
            "stopped by the epoch budget within patience of the best epoch (still "
            "improving, perhaps)"
        )
    if len(budgets) > 1:
        words.append(f"its rows were trained with different budgets ({'; '.join(budgets)})")
    return f" Caveat: {' and '.join(words)}." if words else ""


def rows_budget_caveat(rows: list[dict]) -> str:
    """A sentence naming the comparison rows with models the epoch budget stopped while
    still within patience of their best epoch (empty when none): their numbers may
    understate what the method reaches with more epochs."""
    cut = []
    for r in rows:
        n, trained = E.budget_cut(r)
        if n:
            cut.append(f"{r['method']} ({n} of {trained})")
    if not cut:
        return ""
    return (
        f"Caveat: {len(cut)} of these {len(rows)} rows had models stopped by the epoch "
        "budget within patience of their best epoch (still improving, perhaps; models "
        f"stopped of models trained): {'; '.join(cut)}."
    )


def _paper_table(dataset: str) -> list[str]:
    title, behaviors, _ = DATASETS[dataset]
    paper = PAPER_RQ1[dataset]
    lines = [
        f"The paper's rows ({title}, its protocol: best test epoch per behavior, mean "
        "of 3 runs), NDCG@5 / HR@5:",
        "",
        "| Behavior | " + " | ".join(paper[behaviors[0]]) + " |",
        "|---|" + "---|" * len(paper[behaviors[0]]),
    ]
    for b in [*behaviors, *(b for b in paper if b not in behaviors)]:
        cells = [f"{n:.4f} / {h:.4f}" for n, h in paper[b].values()]
        name = b if b in behaviors else f"{b} (not modelled here; for reference)"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*lines, ""]


#: Seeds of every RQ1 row and RQ2 bar (the studies' sweeps may have 1).
COMPARISON_SEEDS = 3


def _not_run(results: list[dict], dataset: str) -> list[str]:
    """``Not run yet, or run in part:`` and a bullet per study or row missing, or with
    fewer settings or seeds than the study has, each with the command that runs it
    (the runs skip what is done); a line saying so when nothing is missing."""
    title = DATASETS[dataset][0]
    data = f"../shared/data/bvae/{title}"
    out = f"out/comparison/{dataset}"
    comparison = f"scripts/run_comparison.sh {data} {out} {COMPARISON_SEEDS}"
    lines = [
        "Not run yet, or run in part (the commands run from the repository root and skip "
        f"the runs in `{out}`; in a fresh checkout, first `mkdir -p {out} && cp "
        f"docs/results/{dataset}/*.json {out}/` so that the kept runs are not repeated):",
        "",
    ]
    # RQ1 rows: every method on JD; the inductive ones on UB (transductive models need
    # each user in training: experiment-only, and not run on UB).
    models = [m for m in E.MODELS if m != "bvae" and (dataset == "jd" or m not in E.TRANSDUCTIVE)]
    absent = [m for m in models if find_untuned(results, m, dataset) is None]
    if absent:
        # UB's 31k items: EASE's dense m x m inverses do not fit in memory (RESULTS.md).
        ease = 'EASE_FLAGS="--ease-dtype float32 --ease-factored" ' if dataset == "ub" else ""
        command = f"{ease if 'ease' in absent else ''}{comparison} {' '.join(absent)}"
        lines.append(f"- RQ1 rows {', '.join(absent)}: `{command}`")
    ablations = {n: _ablation_rows(results, dataset).get(n) for n in ABLATIONS}
    missing = [n for n, r in ablations.items() if r is None]
    if missing:
        rows = " ".join(_RQ2_ROWS[n] for n in missing)
        lines.append(f"- RQ2 rows {', '.join(missing)}: `{comparison} {rows}`")
    # Rows present with fewer seeds than the comparison's (the floors and EASE are
    # deterministic: one run).
    few = {
        m: r
        for m in models
        if m not in E.BASELINES
        if (r := find_untuned(results, m, dataset)) is not None and _seeds(r) < COMPARISON_SEEDS
    }
    few |= {
        _RQ2_ROWS[n]: r
        for n, r in ablations.items()
        if r is not None and _seeds(r) < COMPARISON_SEEDS
    }
    if few:
        seeds = ", ".join(f"{row} ({_seeds(r)})" for row, r in few.items())
        lines.append(
            f"- Rows with fewer than {COMPARISON_SEEDS} seeds (seeds so far): {seeds}: "
            f"`{comparison} {' '.join(few)}`"
        )
    # The comparison's searched rows (run_comparison.sh's "<row>_tuned" / "<row>_own":
    # seed 0 searches, later seeds train its choice).
    searched = {
        row: r
        for r in results
        if (row := re.sub(r"_s\d+$", "", str(r.get("name", "")))).endswith(("_tuned", "_own"))
        and E.training_settings(r)["grid"]
        and _seeds(r) < COMPARISON_SEEDS
    }
    if searched:
        seeds = ", ".join(f"{row} ({_seeds(r)})" for row, r in searched.items())
        lines.append(
            f"- Searched rows with fewer than {COMPARISON_SEEDS} seeds (seeds so far; later "
            f"seeds train seed 0's choice): {seeds}: `{comparison} {' '.join(searched)}`"
        )
    # Searches never started: every neural row's learning-rate search and the own
    # regulariser's of the methods that have one (run_comparison.sh's rows).
    names = {re.sub(r"_s\d+$", "", str(r.get("name", ""))) for r in results}
    unsearched = [
        row
        for suffix, rows in (("_tuned", SEARCHED_TUNED), ("_own", SEARCHED_OWN))
        for m in rows
        if dataset == "jd" or m not in E.TRANSDUCTIVE
        if (row := f"{m}{suffix}") not in names
    ]
    if unsearched:
        lines.append(
            "- Searches not run (3 settings on valid at seed 0, then seed 0's choice at "
            f"the later seeds): {', '.join(unsearched)}: `{comparison} {' '.join(unsearched)}`"
        )
    if find_untuned(results, "vae_pp", dataset) is None:
        lines.append(f"- RQ3 K curves need VAE++: `{comparison} vae_pp`")
    sizes = _d_runs(results, dataset)
    studies = {
        "rq2_weights": (
            weights_figure,
            "RQ2 SDWL against fixed loss weights",
            len(_weight_grid(results, dataset)),
            WEIGHT_GRID_SIZE,
            "settings",
        ),
        "rq3_d": (
            d_figure,
            f"RQ3 latent sizes d ∈ {{{', '.join(map(str, D_SWEEP))}}}",
            len(set(D_SWEEP) & set(sizes)),
            len(D_SWEEP),
            "sizes",
        ),
        "rq4": (rq4_figure, "RQ4 behaviors added one at a time", None, None, "steps"),
    }
    for study, (figure, what, done, total, unit) in studies.items():
        command = f"`scripts/run_studies.sh {study} {data} {out}`"
        drawn = figure(results, dataset, None) is not None
        if study == "rq3_d" and done < total:
            left = sorted(set(D_SWEEP) - set(sizes))
            lines.append(
                f"- {what}: d = {', '.join(map(str, left))} not run ({done} of {total} "
                f"{unit} run{'' if drawn else '; the figure needs 2'}): {command}"
            )
        elif done is not None and done < total:
            lines.append(
                f"- {what}: {total - done} of the {total} {unit} not run ({done} run"
                f"{'' if drawn else '; the figure needs 2'}): {command}"
            )
        elif not drawn:
            lines.append(f"- {what}: {command}")
    if gates_figure(results, dataset, None) is None:
        command = f"scripts/run_comparison.sh {data} out/comparison/{dataset} 3 bvae"
        lines.append(
            f"- GFF/TFF gate values over training: none of the BVAE result files records "
            f"them (runs made before the gates were logged); a new BVAE run does: "
            f"`{command}` (a new seed, or the old files moved away)"
        )
    if len(lines) == 2:  # every study has its result files
        return [f"Nothing left to run for {title}'s studies and rows.", ""]
    lines.append("")
    return lines


def _is_baseline(result: dict) -> bool:
    """Whether a table row is another method than BVAE (not BVAE, its ablations,
    replacements or variants beyond the paper)."""
    return result.get("model") != "bvae"


#: The warnings :func:`render` has logged (each once per render).
_WARNED: set[str] = set()


# The figures of each dataset's section, in order: (file stem, maker, heading).
_FIGURES = (
    ("rq2_ablation", ablation_figure, "RQ2: ablation and BASE's replacements"),
    ("rq3_k", k_figure, "RQ3: the number of recommended items K"),
    ("rq2_weights", weights_figure, "RQ2: SDWL against fixed loss weights"),
    ("rq3_d", d_figure, "RQ3: the latent size d"),
    ("rq4", rq4_figure, "RQ4: adding behaviors"),
    ("training", training_figure, "What BVAE learned: SDWL's task weights over training"),
    ("gates", gates_figure, "What BVAE learned: the GFF and TFF gates"),
)


#: The prefix of :func:`render`'s staging folder in the output folder (git-ignored).
_STAGING = ".figures-staging-"


def render(results_dir: str | pathlib.Path, out_dir: str | pathlib.Path) -> pathlib.Path:
    """Writes ``<out_dir>/REPORT.md`` and ``<out_dir>/figures/<study>_<dataset>.png``
    (and removes such figures of a dataset or study without results); returns the report.

    All or nothing: the figures are drawn into a staging folder and moved into place,
    with the report, only once every one of them is drawn, so a failure leaves the
    previous report and figures as they were.

    Raises:
      ValueError: as :func:`load`; or if ``REPORT.md`` or ``figures`` in ``out_dir``
        exists as another kind of entry (a folder, a file).
    """
    _WARNED.clear()
    by_dataset = load(results_dir)
    out = pathlib.Path(out_dir)
    figures = out / "figures"
    # Checked before anything is written, so that nothing is half replaced.
    for path, kind, ok in (
        (out / "REPORT.md", "a file", pathlib.Path.is_file),
        (figures, "a folder", pathlib.Path.is_dir),
    ):
        if path.exists() and not ok(path):
            raise ValueError(f"{str(path)!r} exists and is not {kind}: move it away")
    figures.mkdir(parents=True, exist_ok=True)
    for left in out.glob(_STAGING + "*"):  # of a render killed before its cleanup
        shutil.rmtree(left, ignore_errors=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=_STAGING, dir=out))
    try:
        lines, drawn = _render(by_dataset, results_dir, out, figures, staging)
        staged = staging / "REPORT.md"
        staged.write_text("\n".join(lines).rstrip() + "\n")
        for name, _, _ in _FIGURES:
            for dataset in DATASETS:
                png = f"{name}_{dataset}.png"
                if png in drawn:
                    os.replace(staging / png, figures / png)
                else:  # no results for it (left): no stale figure
                    (figures / png).unlink(missing_ok=True)
        path = out / "REPORT.md"
        os.replace(staged, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _render(by_dataset, results_dir, out, figures, staging) -> tuple[list[str], set[str]]:
    """The report's lines, and the names of the figures drawn into ``staging``."""
    drawn = set()
    discussed = (out / "RESULTS.md").is_file()  # the repository's docs/, not another folder
    header = [
        "# BVAE: the paper's studies, measured",
        "",
        "Rendered by `python -m bvae_tf.report` (`make report`) from the result files in "
        f"`{results_dir}`; nothing here is retrained. Honest protocol throughout unless a "
        "table says otherwise: the epoch (and any searched setting) is selected on the "
        "valid split and the test split is scored once."
        + (" Numbers and their discussion: `docs/RESULTS.md`." if discussed else ""),
        "",
        "Tables: mean ± sample std over seeds (the value alone for one seed, the Seeds column); "
        "the best value of a column is bold, the second underlined; a `*` after BVAE's "
        "NDCG@5 marks it significantly better than the best other row (paired t-test "
        "over users, p < 0.05).",
        "",
    ]
    summary = ["## Summary", "", _SUMMARY_INTRO, ""]
    body: list[str] = []
    for dataset, results in by_dataset.items():
        title, _, note = DATASETS[dataset]
        summary += [f"**{title}**", ""]
        body += [f"## {title}", ""]
        if note:
            body += [note, ""]
        body += [f"### RQ1: the comparison ({title})", ""]
        # Plain BVAE's row (its label carries the budget while a run of another budget
        # of the same configuration is beside it: then the one with the most seeds).
        bvae = find_untuned(results, "bvae", dataset)
        anchor = bvae["method"] if bvae is not None and bvae["method"].startswith(ANCHOR) else None
        rows = [r for r in results if not is_study_run(r, dataset)]  # sweeps: figures
        if not rows:
            body += [
                "No comparison runs yet (only the studies' sweeps below): "
                f"`scripts/run_comparison.sh` runs them ({title}).",
                "",
            ]
        table = E.render_markdown(rows, 5, (E.HONEST, E.PAPER), anchor) if rows else ""
        baseline_tests = E.rival_tests(rows, anchor, _is_baseline) if anchor else []
        # The paper's question: BVAE against the other methods (left out when the best
        # other row of the table's own test is already one of them: the same test).
        if baseline_tests and not all(t in table for t in baseline_tests):
            after_honest = table.find("\n### ", 1) + 1 or len(table)
            text = "\n".join(
                [
                    f"The same test of {anchor} against the best row that is not BVAE or "
                    "one of its variants (the paper's comparison):",
                    "",
                    *(f"- {t}" for t in baseline_tests),
                    "",
                    "",
                ]
            )
            table = table[:after_honest] + text + table[after_honest:]
        summary += _best_rows(rows, dataset)
        summary += _against_paper(bvae, dataset)
        if baseline_tests:
            summary.append(
                "- Plain BVAE against the best row that is not BVAE or one of its variants "
                "(test NDCG@5, paired t-test over users):"
            )
            summary += [f"  - {t}" for t in baseline_tests]
        against, verdict = _bvae_rows_against_baselines(rows, dataset, title)
        summary += verdict
        caveat = rows_budget_caveat(rows)
        if caveat:
            summary.append(_summary_caveat(rows, bvae, dataset))
        # A dataset's note (UB: click is not modelled) under every table of it.
        mark = [f"*{FIGURE_NOTES[dataset]}*", ""] if dataset in FIGURE_NOTES else []
        if table:
            if mark:
                table = table.rstrip("\n").replace("\n### ", f"\n{mark[0]}\n\n### ")
                table += f"\n\n{mark[0]}"
            body += [table.replace("### ", "#### "), ""]
            if caveat:
                body += [caveat, ""]
        body += [*against, *_paper_table(dataset), *mark]
        for name, make, heading in _FIGURES:
            png = f"{name}_{dataset}.png"
            caption = make(results, dataset, staging / png)
            if caption is None:
                continue
            drawn.add(png)
            if dataset in FIGURE_NOTES:
                caption = f"{caption} {FIGURE_NOTES[dataset]}"
            rel = (figures / png).relative_to(out)
            body += [
                f"### {heading} ({title})",
                "",
                f"![{heading}]({rel})",
                "",
                f"*{caption}*",
                "",
            ]
            parts = _claim_parts(name, results, dataset)
            if parts:
                claim = _claim_text(name, parts, results, dataset)
                body += [f"**The paper against these runs.** {claim}", ""]
                summary.append(_summary_line(heading, parts))
        body += _not_run(results, dataset)
        summary.append("")
    return [*header, *summary, *body], drawn


_SUMMARY_INTRO = (
    "What the result files below say, computed from them at each render: the best row per "
    "behavior, plain BVAE against the paper's BVAE row and against the best method that "
    "is not BVAE, which of BVAE's rows reach the best baseline on every behavior, and "
    "each study's finding beside the paper's claim (the sections below "
    "give the seeds, the budgets and the caveats)."
)


def _best_row(rows: list[dict], behavior: str) -> tuple[dict, float] | None:
    """``(row, test NDCG@5)`` of the row with the highest mean test NDCG@5 of
    ``behavior`` (honest protocol); None when no row scores it."""
    scored = [(r, v) for r in rows if (v := _ndcg(r, behavior)) is not None]
    return max(scored, key=lambda rv: rv[1], default=None)


def _keeps_bvae(result: dict) -> bool:
    """Whether a row is BVAE whole (BASE with its own encoders, GFF, TFF, SDWL): plain
    BVAE, BVAE at other settings, or a variant beyond the paper that keeps all of it;
    not an ablation or one of BASE's replacements."""
    if result.get("model") != "bvae":
        return False
    config = result["runs"][0].get("config", {}) if result.get("runs") else {}
    parts = ("use_base", "use_gff", "use_tff", "use_sdwl")
    return all(config.get(p, True) for p in parts) and config.get("encoder", "base") == "base"


#: Seeds a BVAE row needs for :func:`_bvae_rows_against_baselines` (the targets' 3).
AGAINST_BASELINES_SEEDS = 3


def _bvae_rows_against_baselines(
    rows: list[dict], dataset: str, title: str
) -> tuple[list[str], list[str]]:
    """(section, summary line): every row that keeps BVAE whole (:func:`_keeps_bvae`)
    with at least :data:`AGAINST_BASELINES_SEEDS` seeds, against the best baseline of
    each behavior (:func:`_is_baseline`; the highest mean test NDCG@5, so chosen on
    test, which favours the baseline), with the paired t-test over users. Every such
    row is listed, none picked; ``([], [])`` without BVAE rows or baselines."""
    baselines = [r for r in rows if _is_baseline(r)]
    best = {b: _best_row(baselines, b) for b in DATASETS[dataset][1]}
    behaviors = [b for b, rv in best.items() if rv is not None]
    mine = [r for r in rows if _keeps_bvae(r) and _seeds(r) >= AGAINST_BASELINES_SEEDS]
    if not behaviors or not mine:
        return [], []
    rivals = "; ".join(
        f"{b}: {best[b][0]['method']} {best[b][1]:.4f} ({_seeds(best[b][0])} "
        f"seed{'s' * (_seeds(best[b][0]) != 1)})"
        for b in behaviors
    )
    lines = [
        f"#### BVAE's rows against the best baseline ({title})",
        "",
        f"Every row above that keeps BVAE whole (BASE, GFF, TFF, SDWL: plain BVAE, its "
        f"searched settings and the variants beyond the paper) with at least "
        f"{AGAINST_BASELINES_SEEDS} seeds, against the best row of each behavior that is "
        f"not BVAE (chosen by its test NDCG@5, which favours it): {rivals}. A cell is the "
        "row's test NDCG@5, its difference to that baseline and the paired t-test over "
        "users; **bold**: significantly above it (p < 0.05).",
        "",
        f"| BVAE row | Seeds | {' | '.join(behaviors)} | every behavior |",
        "|---|---|" + "---|" * len(behaviors) + "---|",
    ]
    at_or_above, significantly = [], []
    for r in mine:
        cells, above, signif = [], 0, 0
        for b in behaviors:
            v, (rival, vb) = _ndcg(r, b), best[b]
            if v is None:
                cells.append("—")
                continue
            p = _p_value(r, rival, b)
            cell = f"{v:.4f} ({v - vb:+.4f}, p = {'—' if p is None else E.p_text(p)})"
            above += v >= vb
            if p is not None and p < ALPHA and v > vb:
                signif += 1
                cell = f"**{cell}**"
            cells.append(cell)
        verdict = (
            "significantly above"
            if signif == len(behaviors)
            else "at or above"
            if above == len(behaviors)
            else f"below on {len(behaviors) - above}"
        )
        if above == len(behaviors):
            at_or_above.append(r["method"])
        if signif == len(behaviors):
            significantly.append(r["method"])
        lines.append(f"| {r['method']} | {_seeds(r)} | {' | '.join(cells)} | {verdict} |")
    summary = [
        f"- BVAE's rows with at least {AGAINST_BASELINES_SEEDS} seeds ({len(mine)}: plain "
        "BVAE, its searched settings, the variants beyond the paper) against the best "
        "baseline of each behavior (test NDCG@5, paired t-test over users): at or above "
        f"it on every behavior: {_fmt_list(at_or_above)}; significantly above it on every "
        f"behavior: {_fmt_list(significantly)}."
    ]
    return [*lines, ""], summary


def _best_rows(rows: list[dict], dataset: str) -> list[str]:
    """``- Best row per behavior ...``: the comparison row with the highest mean test
    NDCG@5 (honest protocol) of each behavior, with its seeds."""
    parts = []
    for b in DATASETS[dataset][1]:
        if (best := _best_row(rows, b)) is not None:
            r, v = best
            parts.append(f"{b}: {r['method']} {v:.4f} ({_seeds(r)} seed{'s' * (_seeds(r) != 1)})")
    if not parts:
        return []
    return ["- Best row per behavior (test NDCG@5, honest protocol): " + "; ".join(parts) + "."]


def _against_paper(bvae: dict | None, dataset: str) -> list[str]:
    """``- Plain BVAE against the paper's BVAE ...``: test NDCG@5 per behavior under
    the honest protocol and under the paper's (where recorded), beside the paper's
    row (:data:`PAPER_RQ1`), with the number of behaviors at or above it."""
    if bvae is None:
        return []
    behaviors = [b for b in DATASETS[dataset][1] if _ndcg(bvae, b) is not None]
    paper = [PAPER_RQ1[dataset][b]["BVAE"][0] for b in behaviors]

    def row(values: list[float | None]) -> str:
        met = sum(v is not None and v >= q for v, q in zip(values, paper, strict=True))
        cells = " / ".join("—" if v is None else f"{v:.4f}" for v in values)
        return f"{cells} ({met} of {len(values)} at or above it)"

    honest = [_ndcg(bvae, b) for b in behaviors]
    summary = bvae["summary"].get(E.PAPER, {})
    optimistic = [
        summary[b]["ndcg@5"][0] if "ndcg@5" in summary.get(b, {}) else None for b in behaviors
    ]
    text = (
        f"- Plain BVAE against the paper's BVAE row (test NDCG@5, {' / '.join(behaviors)}; "
        f"{_seeds(bvae)} seed{'s' * (_seeds(bvae) != 1)}): the paper "
        f"{' / '.join(f'{q:.4f}' for q in paper)}; honest protocol {row(honest)}"
    )
    if any(v is not None for v in optimistic):
        text += f"; the paper's protocol (best test epoch per behavior) {row(optimistic)}"
    return [text + "."]


def _summary_caveat(rows: list[dict], bvae: dict | None, dataset: str) -> str:
    """The summary's short form of :func:`rows_budget_caveat`: how many rows, and which
    of plain BVAE and the best rows per behavior (:func:`_best_row`) are among them."""
    cut = {id(r) for r in rows if E.budget_cut(r)[0]}
    # Each cut row named once, with every behavior it is the best row of.
    plain = bvae is not None and id(bvae) in cut
    best_of: dict[int, list[str]] = {id(bvae): []} if plain else {}
    for b in DATASETS[dataset][1]:
        best = _best_row(rows, b)
        if best is not None and id(best[0]) in cut:
            best_of.setdefault(id(best[0]), []).append(b)
    names = []
    for key, behaviors in best_of.items():
        row = ""
        if behaviors:
            listed = (
                ", ".join(behaviors[:-1]) + " and " + behaviors[-1]
                if behaviors[1:]
                else behaviors[0]
            )
            row = f"the best {listed} row"
        if plain and key == id(bvae):
            row = f"plain BVAE{f' (also {row})' if row else ''}"
        names.append(row)
    among = f"; among them {_fmt_list(names)}" if names else ""
    return (
        f"- Caveat: {len(cut)} of the {len(rows)} rows had models stopped by the epoch "
        f"budget within patience of their best epoch (listed under the RQ1 table){among}."
    )


def _summary_line(heading: str, parts: tuple[str, str]) -> str:
    """``- **heading**: finding (the paper: claim).``"""
    paper, here = parts
    rest = here.removeprefix("Here").lstrip(" ,:")
    return f"- **{heading}**{' ' if rest.startswith('(') else ': '}{rest} (The paper: {paper}.)"


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (``make report``)."""
    p = argparse.ArgumentParser(
        prog="python -m bvae_tf.report",
        description=" ".join(__doc__.split("\n\n")[0].split()),
        formatter_class=E.HelpWithDefaults,
    )
    p.add_argument("--results", default="docs/results", help="folder of <dataset>/*.json")
    p.add_argument("--out", default="docs", help="writes REPORT.md and figures/ here")
    args = p.parse_args(argv)
    try:
        path = render(args.results, args.out)
    except ValueError as e:
        p.error(str(e))
    except OSError as e:  # --out is a file, or not writable
        p.error(f"cannot write the report under --out {args.out!r}: {e.strerror or e}")
    unread = unread_folders(args.results)
    print(
        f"Report: {path} (figures in {path.parent / 'figures'}"
        + (f"; folders not read: {', '.join(f'{n}/' for n in unread)}" if unread else "")
        + ")"
    )
    stray = unread_files(args.results)
    if stray:
        print(
            f"warning: {len(stray)} files not read (results are <dataset>/*.json): "
            + ", ".join(stray[:10])
            + (", ..." if len(stray) > 10 else ""),
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
