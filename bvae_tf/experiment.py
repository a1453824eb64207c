"""Reproduction experiments on a released dataset: BVAE and the paper's baselines.

    python -m bvae_tf.experiment --data ../shared/data/bvae/JD --model bvae --seeds 3 \\
        --out results/jd --name bvae_gated

Per seed: train with validation early stopping (sum over behaviors of valid NDCG@5,
best weights restored), then score the test split once (the honest protocol). With
``--paper-protocol`` the test split is also scored after every epoch and, per
behavior, the epoch with the best test NDCG@5 is reported as well, labelled
"paper protocol": this is how the released code selected its numbers, and it is
optimistic. Models:

- ``bvae``: BVAE over all behaviors (``--gate-mode``, ``--reference``, ablations);
- ``vae_t``: VAE (T.), one Mult-VAE per behavior on that behavior's data (each
  selected on its own valid NDCG@5);
- ``vae_u``: VAE (U.), one Mult-VAE on the union of all behaviors, scored per behavior;
- ``recvae``: RecVAE (``bvae_tf.baselines.recvae``), one per behavior on its own
  items, as VAE (T.); an epoch is one RecVAE epoch (3 encoder passes, 1 decoder pass),
  learning rate ``--lr`` (default the paper's 5e-4), ``--recvae-gamma``;
- ``vae_pp``: VAE++ (``bvae_tf.baselines.vaepp``), one per target behavior with the
  other behaviors as auxiliary input, BVAE's training settings (``--lr`` default 1e-3);
- ``ehcf``: EHCF (``bvae_tf.baselines.transductive``), one model for all behaviors
  (transfer chain click -> favorite -> cart -> purchase), Adagrad ``--lr`` default 0.05;
- ``ngcf``: NGCF, one per behavior on its own interactions, BPR batches of
  ``--batch-size`` triples (an epoch: as many triples as train interactions), Adam
  ``--lr`` default 1e-4. EHCF and NGCF are transductive (one embedding per user);
- ``popularity``, ``repeat``: the no-learning floors of ``bvae_tf.baselines.floors``;
- ``ease``: EASE per target behavior (``bvae_tf.baselines.ease``), its ``lambda``
  (``--ease-l2``) and diagonal (``--ease-diagonal``) chosen per behavior on valid
  NDCG@5 over the whole grid, then test scored once with the chosen fit.

Tuning, selected on valid only: ``--grid NAME=V1,V2,...`` trains every combination per
seed (and per target for one-per-target models) and keeps the best; ``--tune N`` runs
the pipeline Tuner's KerasTuner search (``bvae_tf.tuning``) for N trials with the
first seed, records every trial in the JSON (``"search"``), then trains every seed
with the best values. Either way the test split is scored once per seed. A ``--grid``
search run at one seed gives its choice to later seeds run separately:
``--first-seed 1 --grid ... --selected-from RESULT.json`` trains only the point
RESULT's search chose (per target for one-per-target models), and ``--combine`` pools
both files as one method. Where the choice is the setting an untuned command trained,
``--reuse-from UNTUNED_s0.json UNTUNED_s1.json`` takes the seed's run from the untuned
files instead of training it again, if their seed-0 run is the chosen trial to the last
bit (:func:`reused_run`); such a run records ``"reused_from"``.

The closed-form baselines are deterministic: one run, whatever ``--seeds``; they
have no epochs, so only the honest protocol applies to them.

Resumable: every training keeps its state in ``<out>/<name>.ckpt/`` after each epoch
(``training.fit``'s ``checkpoint_dir``), so the same command run again after a kill
resumes at the next epoch; finished seeds, targets, ``--grid`` trials and ``--tune``
trials are read back rather than trained again (``<out>/<name>.parts/``; KerasTuner
reloads its search from ``<out>/tuning/<name>/``); state written by another command
line is discarded; the folder is removed when the result is written. A resumed run
sees the batches an uninterrupted run would (on the same machine the result is
bit-identical; its record says ``"resumed_at"``).

Writes ``<out>/<name>.json`` after every seed (partial results survive) and
``<out>/<name>.md``, a table in the paper's layout (behavior x method x
Prec/Rec/NDCG/HR@K, mean +- sample std over seeds). ``--combine a.json b.json ...
--markdown table.md`` renders several runs as one table; files of the same method
(e.g. seeds run separately with ``--first-seed``) are pooled.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import gc
import io
import itertools
import json
import math
import os
import pathlib
import platform
import re
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
from absl import logging

from bvae_tf import console
from bvae_tf import features as F
from bvae_tf import metrics as M

#: Closed-form baselines (``bvae_tf.baselines``): no epochs, no seeds.
BASELINES = ("popularity", "repeat", "ease")
MODELS = ("bvae", "vae_t", "vae_u", "recvae", "vae_pp", "ehcf", "ngcf", *BASELINES)
#: The models whose decoders --sampled-softmax trains (BVAEConfig.sampled_softmax).
SAMPLED_SOFTMAX_MODELS = ("bvae", "vae_t", "vae_u")
#: Single-target models: one run per behavior, joined into one record; the value is
#: the model trained for each behavior.
PER_TARGET = {"vae_t": "bvae", "recvae": "recvae", "vae_pp": "vae_pp", "ngcf": "ngcf"}
#: Models that learn one embedding per user (experiment-only, not exportable).
TRANSDUCTIVE = ("ehcf", "ngcf")
#: Learning rates of the models' own papers (``--lr`` overrides).
DEFAULT_LR = {"recvae": 5e-4, "vae_pp": 1e-3, "ehcf": 0.05, "ngcf": 1e-4}
METHOD_LABELS = {
    "bvae": "BVAE",
    "vae_t": "VAE (T.)",
    "vae_u": "VAE (U.)",
    "recvae": "RecVAE (T.)",
    "vae_pp": "VAE++ (one per target)",
    "ehcf": "EHCF",
    "ngcf": "NGCF (T.)",
    "popularity": "Popularity",
    "repeat": "Cross-behavior repeat",
    "ease": "EASE",
}
#: EASE's lambda grid: Steck (2019) reports optima of 200-3000 on larger data.
EASE_L2_GRID = (10.0, 50.0, 200.0, 500.0, 1000.0, 3000.0)
ABLATIONS = {"no_base": "use_base", "no_gff": "use_gff", "no_tff": "use_tff", "no_sdwl": "use_sdwl"}
TABLE_METRICS = (("precision", "Prec"), ("recall", "Rec"), ("ndcg", "NDCG"), ("hit_rate", "HR"))
HONEST = "honest"
PAPER = "paper"
VALID = "valid"
PROTOCOLS = (VALID, HONEST, PAPER)
PROTOCOL_TITLES = {
    VALID: "validation split at the selected epoch (what model selection saw)",
    HONEST: "honest protocol: selected on valid NDCG@5, test scored once",
    PAPER: "paper protocol: per behavior, the epoch with the best TEST NDCG@5 (optimistic)",
}


class HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each flag's default, except an unset (None) or off (False) one
    and one whose help already says it."""

    def _get_help_string(self, action):
        said = re.search(r"\(default\b", action.help or "")
        if action.default is None or action.default is False or said:
            return action.help or ""
        return super()._get_help_string(action)


#: The largest count or seed a flag takes (a 32-bit signed int: TensorFlow's seeds and
#: Keras' epoch counters).
_INT_MAX = 2**31 - 1


def _int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in ``[low, high]`` (a usage error otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def _finite_float(*, positive: bool) -> Callable[[str], float]:
    """An argparse ``type``: a finite float, > 0 with ``positive`` else >= 0."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {'> 0' if positive else '>= 0'}, got {text}"
            )
        return value

    return parse


#: The command's name in its usage and error lines.
PROG = "python -m bvae_tf.experiment"


class _ShortErrorParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``prog: error: ...``, exit 2),
    without the usage (36 lines for this command; ``--help`` shows it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _ShortErrorParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpWithDefaults,
    )
    p.add_argument("--data", help="released dataset folder (<behavior>_<split> files)")
    p.add_argument("--model", choices=MODELS, default="bvae", help="the method")
    p.add_argument(
        "--seeds",
        type=_int_at_least(1, _INT_MAX),
        default=3,
        help="number of seeds (default 3; the no-randomness models popularity, repeat and "
        "ease run once)",
    )
    p.add_argument(
        "--first-seed", type=_int_at_least(0, _INT_MAX), default=0, help="seed of the first run"
    )
    p.add_argument(
        "--out", default="out/experiments", help="output folder (default: out/experiments)"
    )
    p.add_argument("--name", help="output file stem (default: the model)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="train every seed again and replace OUT/NAME.json (without it, the same "
        "command keeps the seeds that file holds, and another command is refused); with "
        "--combine: replace a --markdown file that is not a table --combine wrote",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="check the flags as a run would, then stop (exit 0, or 2 with the error): "
        "nothing written, no data parsed: the --data folder must exist, each modelled "
        "behavior (--behaviors, else those with a non-blank train file) have non-blank "
        "train, valid and test files there, and --loss-weights / --latent-dims one value "
        "per modelled behavior, a --selected-from RESULT (with a choice for every modelled "
        "behavior that is its search's best trial), the --reuse-from files and a kept "
        "OUT/NAME.json, where they exist, be sound results of this command and data; "
        "scripts/run_comparison.sh checks each row so",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="every log record on the console (always in <out>/logs/)",
    )
    p.add_argument("--behaviors", nargs="+", help="behaviors (default: all with train data)")
    p.add_argument(
        "--gate-mode",
        choices=("gated", "reference"),
        default=None,
        help="BVAE's gates (BVAEConfig.gate_mode; unset: gated, the 'gates=gated' of every "
        "label): feature-wise GFF and TFF mixing weights normalised across behaviors; "
        "'reference': eq. 3 and 8 as printed (identity GFF, summed TFF)",
    )
    p.add_argument(
        "--reference",
        action="store_true",
        help="the released code's configuration (model.reference_config)",
    )
    p.add_argument(
        "--ablation",
        nargs="*",
        choices=sorted(ABLATIONS),
        default=[],
        help="BVAE parts removed (the paper's RQ2 rows -BASE, -GFF, -TFF; no_sdwl: equal "
        "loss weights in place of SDWL)",
    )
    p.add_argument(
        "--encoder",
        choices=("base", "exchange", "mmoe", "cgc"),
        help="BASE or its RQ2 replacement (BVAEConfig.encoder)",
    )
    p.add_argument(
        "--behavior-mean",
        action="store_true",
        help="BVAE variant beyond the paper: each behavior's mean is BASE's union mean "
        "plus a learned-scale residual from its own input (BVAEConfig.behavior_mean); "
        "not with --encoder other than base or --ablation no_base",
    )
    p.add_argument(
        "--item-path",
        action="store_true",
        help="BVAE variant beyond the paper: a learned item-level path from the user's "
        "other behaviors to each behavior's logits (BVAEConfig.item_path)",
    )
    p.add_argument(
        "--item-path-scale",
        type=float,
        metavar="G",
        help="factor on the item path's per-pair weights, i.e. on their effective Adam "
        "learning rate (BVAEConfig.item_path_scale; default 1); needs --item-path",
    )
    p.add_argument(
        "--item-path-drop-overlap",
        type=float,
        metavar="P",
        help="in training, hide from the item path each item of another behavior that "
        "is also a reconstructed item, with probability P (BVAEConfig."
        "item_path_drop_overlap; default 0); needs --item-path",
    )
    p.add_argument(
        "--sampled-softmax",
        type=int,
        metavar="N",
        help="train each decoder with a sampled softmax over the batch's targets and N "
        "negatives per step (BVAEConfig.sampled_softmax; evaluation ranks every item)",
    )
    p.add_argument(
        "--sparse-updates",
        action="store_true",
        help="LazyAdam: the item tables' sparse gradients update only the batch's rows "
        "(BVAEConfig.sparse_updates)",
    )
    p.add_argument(
        "--sampled-proposal",
        choices=("uniform", "popularity"),
        help="how --sampled-softmax draws its negatives (BVAEConfig.sampled_proposal; "
        "default uniform; popularity: smoothed train frequency, logQ-corrected)",
    )
    p.add_argument(
        "--loss-weights",
        type=float,
        nargs="+",
        help="fixed per-behavior loss weights in place of SDWL (the paper's RQ2 manual "
        "weights), in behavior order",
    )
    p.add_argument(
        "--sdwl-form",
        choices=("reference", "paper"),
        help="SDWL's loss weighting (BVAEConfig.sdwl_form; unset: paper, eq. 14; "
        "reference: the released code's, losses.sdwl_term)",
    )
    p.add_argument(
        "--beta-schedule",
        choices=("linear", "reference"),
        help="the KL weight's ramp (unset: linear, 0 to --beta-cap over --anneal-steps "
        "updates; reference: the released code's formula, losses.kl_beta)",
    )
    p.add_argument(
        "--beta-cap", type=float, help="the KL weight's maximum (unset: 0.2, Mult-VAE's)"
    )
    p.add_argument(
        "--anneal-steps",
        type=int,
        help="updates of the KL weight's ramp to --beta-cap (unset: 200000, the paper's; "
        "0: --beta-cap from the start)",
    )
    p.add_argument("--latent-dim", type=int, help="the latent size d (unset: 100, the paper's)")
    p.add_argument(
        "--latent-dims",
        type=int,
        nargs="+",
        metavar="D",
        help="per-behavior latent sizes, in behavior order, each <= --latent-dim (a BVAE "
        "variant beyond the paper, BVAEConfig.latent_dims; --latent-dim defaults to "
        "their maximum)",
    )
    p.add_argument(
        "--dropout", type=float, help="input dropout rate in [0, 1) (unset: 0.5, Mult-VAE's)"
    )
    p.add_argument("--lr", type=_finite_float(positive=True), help="Adam learning rate")
    p.add_argument(
        "--weight-decay",
        type=float,
        metavar="LAMBDA",
        help="decoupled weight decay (AdamW) of BVAE, VAE (T.) and VAE (U.) "
        "(BVAEConfig.weight_decay; default 0)",
    )
    p.add_argument(
        "--weight-average",
        type=float,
        metavar="RHO",
        help="BVAE, VAE (T.) and VAE (U.): evaluate, select and keep an exponential "
        "moving average of the weights with decay RHO in [0, 1) per update "
        "(BVAEConfig.weight_average; default 0: the weights as trained)",
    )
    p.add_argument(
        "--lr-decay-steps",
        type=int,
        metavar="N",
        help="BVAE, VAE (T.) and VAE (U.): cosine decay of the learning rate over N updates "
        "to --lr-final-fraction of --lr (BVAEConfig.lr_schedule='cosine'); 0 (default): "
        "constant",
    )
    p.add_argument(
        "--lr-final-fraction",
        type=float,
        metavar="F",
        help="with --lr-decay-steps: the final learning rate / --lr, in [0, 1] (default 0.01)",
    )
    p.add_argument(
        "--batch-size", type=_int_at_least(1, _INT_MAX), default=500, help="train users per step"
    )
    p.add_argument(
        "--epochs",
        type=_int_at_least(1, _INT_MAX),
        default=200,
        help="at most (docs/RESULTS.md's runs: 150)",
    )
    p.add_argument(
        "--patience",
        type=_int_at_least(0, _INT_MAX),
        default=20,
        help="epochs without a better valid score before stopping (docs/RESULTS.md's: 40)",
    )
    p.add_argument(
        "--eval-batch-size",
        type=_int_at_least(1, _INT_MAX),
        default=2000,
        help="users per ranking batch",
    )
    p.add_argument("--paper-protocol", action="store_true", help="also score test per epoch")
    p.add_argument(
        "--table-k", type=int, default=5, choices=M.DEFAULT_KS, help="K of the Markdown table"
    )
    p.add_argument("--log-dir", help="TensorBoard root (one sub-folder per run)")
    p.add_argument("--precision", choices=("float32", "mixed_float16", "mixed_bfloat16"))
    p.add_argument("--jit-compile", action="store_true", help="XLA for the decoder loss")
    p.add_argument(
        "--optimizer-jit",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Keras' Adam compiled by XLA instead of the fused Adam kernel "
        "(optimizers.FusedAdam, the same update; faster on CPU with no compile)",
    )
    p.add_argument(
        "--recvae-gamma",
        type=_finite_float(positive=True),
        default=0.005,
        help="RecVAE: KL scale gamma (beta'(x) = gamma |x|; the paper's default)",
    )
    p.add_argument(
        "--ngcf-l2",
        type=_finite_float(positive=False),
        default=1e-5,
        help="NGCF: L2 regularisation weight of the BPR loss (its paper's grid: 1e-5 to 1e-1)",
    )
    p.add_argument(
        "--ngcf-layers",
        type=_int_at_least(1, 8),
        default=3,
        help="NGCF: propagation layers of 64 (its paper: 1 to 4, 3 best)",
    )
    p.add_argument(
        "--ehcf-dropout",
        type=float,
        default=0.5,
        help="EHCF: dropout rate on the user embedding, in [0, 1) (its code's 0.5)",
    )
    p.add_argument(
        "--ease-l2",
        type=_finite_float(positive=True),
        nargs="+",
        default=list(EASE_L2_GRID),
        help="EASE: lambda grid (tuned on valid)",
    )
    p.add_argument(
        "--ease-diagonal",
        nargs="+",
        choices=("zero", "free"),
        default=["zero", "free"],
        help="EASE: diagonal constraint(s) tried (tuned on valid)",
    )
    p.add_argument(
        "--ease-dtype",
        choices=("float64", "float32"),
        default="float64",
        help="EASE: float type of the Gram matrix and its inverse (float32 halves memory)",
    )
    p.add_argument(
        "--ease-sequential",
        action="store_true",
        help="EASE: fit one target behavior at a time (one m x m weight held at a time; "
        "one inversion per lambda)",
    )
    p.add_argument(
        "--ease-factored",
        action="store_true",
        help="EASE: score as ((x P) X^T) Y_b without forming any B_b (the same scores; "
        "one m x m matrix for every target; with --ease-dtype float32 shared with "
        "TensorFlow without a copy; "
        "bvae_tf.baselines.ease.FactoredEASE)",
    )
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help=f"tune on valid: train every combination (repeatable; NAME in {sorted(GRID_FLAGS)}), "
        "keep the best valid NDCG@5 (per behavior for one-per-target models), test it once",
    )
    p.add_argument(
        "--selected-from",
        metavar="RESULT.json",
        help="with --grid: search no more; train, at every seed, the point that RESULT's "
        "--grid search chose on valid (per behavior for one-per-target models), e.g. "
        "seeds 1-2 of the choice seed 0's search made. RESULT: a result file of the same "
        "settings (as parsed: 1e-3 and 0.001 are one value) but for its seeds and output "
        "flags, and of the same data",
    )
    p.add_argument(
        "--reuse-from",
        nargs="+",
        metavar="RESULT.json",
        help="with --selected-from: where the choice for a behavior (or the whole model) "
        "is what these result files of one untuned command trained, take this seed's run "
        "from them instead of training it again, if their seed-0 run is the chosen "
        "trial to the last bit (valid metrics, epochs, config; see reused_run); else "
        "train. E.g. the default row's files for a _tuned row. A file not there is "
        "skipped",
    )
    p.add_argument(
        "--boost-grid",
        metavar="V1,V2,...",
        help="BVAE variant beyond the paper: after training, choose per behavior on valid "
        "NDCG@5 the cross-behavior boost (BVAEConfig.cross_behavior_boost) among these "
        "values (0 is always tried), then score test once with it",
    )
    p.add_argument(
        "--tune",
        type=int,
        default=0,
        metavar="N",
        help="KerasTuner search of N trials on valid (bvae_tf.tuning, the pipeline Tuner's "
        "space) with the first seed, then every seed trained with the best values and "
        "test scored once; for models of all behaviors at once (per-target ones: --grid)",
    )
    p.add_argument("--tune-algorithm", choices=("random", "bayesian", "grid"), default="random")
    p.add_argument(
        "--tune-space",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...|NAME=none",
        help="override one name of the search space (bvae_tf.tuning.DEFAULT_SPACE)",
    )
    p.add_argument("--combine", nargs="+", help="result JSON files to render as one table")
    p.add_argument("--markdown", help="with --combine: the Markdown file to write")
    p.add_argument(
        "--anchor",
        help="with --combine: method label tested (paired t-test over users) against the "
        "best other row per behavior, e.g. 'BVAE (gates=gated)'",
    )
    p.add_argument(
        "--protocols",
        nargs="+",
        choices=PROTOCOLS,
        default=[HONEST, PAPER],
        help="with --combine: which tables to render",
    )
    return p


def _config(args, behaviors: Sequence[str], num_items: int, seed: int, variant: str = "bvae"):
    from bvae_tf import model as Mo

    overrides = {"seed": seed, "variant": variant}
    for flag, field in (
        ("gate_mode", "gate_mode"),
        ("encoder", "encoder"),
        ("sdwl_form", "sdwl_form"),
        ("beta_schedule", "beta_schedule"),
        ("beta_cap", "beta_cap"),
        ("anneal_steps", "anneal_steps"),
        ("latent_dim", "latent_dim"),
        ("dropout", "dropout"),
        ("lr", "learning_rate"),
        ("weight_decay", "weight_decay"),
        ("weight_average", "weight_average"),
        ("lr_decay_steps", "lr_decay_steps"),
        ("lr_final_fraction", "lr_final_fraction"),
        ("precision", "precision"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides[field] = value
    if overrides.get("lr_decay_steps"):
        overrides["lr_schedule"] = "cosine"
    if args.jit_compile:
        overrides["jit_compile"] = True
    if args.behavior_mean:
        overrides["behavior_mean"] = True
    if args.item_path:
        overrides["item_path"] = True
    if args.item_path_scale is not None:
        overrides["item_path_scale"] = args.item_path_scale
    if args.item_path_drop_overlap is not None:
        overrides["item_path_drop_overlap"] = args.item_path_drop_overlap
    if args.sampled_softmax:
        overrides["sampled_softmax"] = args.sampled_softmax
    if args.sampled_proposal:
        overrides["sampled_proposal"] = args.sampled_proposal
    if args.sparse_updates:
        overrides["sparse_updates"] = True
    if args.boost_grid:  # the values are chosen after training
        overrides["cross_behavior_boost"] = (0.0,) * len(behaviors)
    if args.loss_weights:
        overrides["loss_weights"] = tuple(args.loss_weights)
    if args.latent_dims:
        overrides["latent_dims"] = tuple(args.latent_dims)
        if args.latent_dim is None:
            overrides["latent_dim"] = max(args.latent_dims)
    for name in args.ablation:
        overrides[ABLATIONS[name]] = False
    if args.reference:
        return Mo.reference_config(behaviors, num_items, **overrides)
    return Mo.BVAEConfig(behaviors=tuple(behaviors), num_items=num_items, **overrides)


def _paper_best(history: list[dict], behaviors: Sequence[str], name: str = "test") -> dict:
    """Per behavior, the metrics of the epoch with the best ``name`` NDCG@5."""
    out = {}
    for b in behaviors:
        key = f"{name}/{b}/{M.SELECTION_METRIC}"
        best = max(history, key=lambda h: h.get(key, -1.0))
        prefix = f"{name}/{b}/"
        out[b] = {k[len(prefix) :]: v for k, v in best.items() if k.startswith(prefix)}
        out[b]["epoch"] = best["epoch"]
    return out


#: What a user lowers when a training needs more memory than there is
#: (``model.check_training_memory``).
_MEMORY_FLAGS = "--latent-dim or --batch-size"


def _memory_flags(args) -> str:
    """:data:`_MEMORY_FLAGS`, and the search's values under ``--tune``/``--grid``."""
    searched = getattr(args, "tune", 0) or getattr(args, "grid", None)
    return _MEMORY_FLAGS + (" (or the searched values)" if searched else "")


def _train_one(args, data, behaviors, *, variant, seed, log_dir, checkpoint_dir=None):
    import tensorflow as tf

    from bvae_tf import data as D
    from bvae_tf import model as Mo
    from bvae_tf import training

    tf.keras.utils.set_random_seed(seed)
    # VAE++ and EHCF read every behavior (the targets' auxiliaries); the others only
    # the behaviors they model.
    inputs = data.behaviors if variant in ("vae_pp", "ehcf") else behaviors
    with_user = variant in TRANSDUCTIVE
    train = D.train_dataset(
        data, args.batch_size, seed=seed, behaviors=inputs, with_user_index=with_user
    )
    valid, test = (
        D.eval_dataset(data, split, args.eval_batch_size, inputs, with_user_index=with_user)
        for split in (F.EVAL, F.TEST)
    )
    steps_per_epoch = None
    average = 0.0  # BVAEConfig.weight_average, for the BVAE family below
    lr = DEFAULT_LR.get(variant) if args.lr is None else args.lr
    if variant in _TRAINED_BASELINES:
        steps_per_pass = math.ceil(len(data.train_users()) / args.batch_size)
        model = _trained_baseline(
            variant,
            args,
            behaviors=data.behaviors,
            targets=behaviors,
            num_items=data.num_items,
            num_users=data.num_users,
            lr=lr,
            seed=seed,
            steps_per_pass=steps_per_pass,
        )
    if variant == "vae_pp":
        Mo.check_training_memory(
            data.num_items,
            len(model.targets),
            model.settings["latent"],
            min(args.batch_size, len(data.train_users())),
            True,
            flags=_memory_flags(args),
        )
        model.prepare(next(iter(train)))
        cfg_dict = dict(model.get_config())
    elif variant == "ehcf":
        model.prepare()
        cfg_dict = dict(model.get_config())
    elif variant == "ngcf":
        from bvae_tf.baselines import transductive

        matrix = data.matrix(F.TRAIN, behaviors[0])
        model.set_graph(matrix).prepare()
        train = transductive.bpr_triples(matrix, args.batch_size, seed=seed)
        steps_per_epoch = math.ceil(matrix.nnz / args.batch_size)
        cfg_dict = dict(model.get_config(), behaviors=list(behaviors))
    elif variant == "recvae":
        model.prepare(next(iter(train)))
        steps_per_epoch = model.steps_per_epoch
        train = train.repeat()
        cfg_dict = dict(model.get_config(), behaviors=list(behaviors))
    else:
        cfg = _config(args, behaviors, data.num_items, seed, variant)
        Mo.check_config_memory(
            cfg, min(args.batch_size, len(data.train_users())), flags=_memory_flags(args)
        )
        model = Mo.build_model(cfg, optimizer_jit_compile=args.optimizer_jit)
        if cfg.sampled_softmax and cfg.sampled_proposal == "popularity":
            model.fit_proposal(train)
        cfg_dict = cfg.to_dict()
        average = cfg.weight_average
    key = _run_key(args)
    result = training.fit(
        model,
        train,
        valid,
        epochs=args.epochs,
        patience=args.patience,
        log_dir=log_dir,
        monitor_datasets={"test": test} if args.paper_protocol else None,
        steps_per_epoch=steps_per_epoch,
        checkpoint_dir=checkpoint_dir,
        checkpoint_key=key,
        checkpoint_key_matches=_same_run(key),
        weight_average=average,
    )
    best = result.history[result.best_epoch - 1]
    run = {
        "config": cfg_dict,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "train_seconds": result.train_seconds,
        "eval_seconds": result.eval_seconds,
        "seconds_per_epoch": result.train_seconds / max(result.epochs_run, 1),
        **({"resumed_at": result.resumed_at} if result.resumed_at else {}),
        # The loss was not finite after this epoch: the run kept the best epoch before.
        **({"diverged_at": result.diverged_at} if result.diverged_at else {}),
        "selection_score": result.best_score,
        "valid": {
            b: {k.split("/", 2)[2]: v for k, v in best.items() if k.startswith(f"valid/{b}/")}
            for b in behaviors
        },
    }
    if args.paper_protocol:
        run[PAPER] = _paper_best(result.history, behaviors)
    run["curve"] = [
        {k: v for k, v in h.items() if k.endswith(M.SELECTION_METRIC) or "/" not in k}
        for h in result.history
    ]
    return run, model, test


def _data_stamp(data_dir) -> list[tuple[str, int, str]]:
    """``(name, size, SHA-256 hex)`` of every file in the ``--data`` folder, by name:
    contents, not modification times (a release copied afresh still matches)."""
    import hashlib

    data = pathlib.Path(data_dir)
    files = sorted(data.iterdir()) if data.is_dir() else [data]
    return [
        (f.name, f.stat().st_size, hashlib.sha256(f.read_bytes()).hexdigest())
        for f in files
        if f.is_file()
    ]


def data_digest(data_dir) -> str:
    """SHA-256 hex of :func:`_data_stamp`: what a kept result (and each kept part of
    one) must match to be reused by the same command."""
    import hashlib

    return hashlib.sha256(json.dumps(_data_stamp(data_dir)).encode()).hexdigest()


def _run_key(args) -> str:
    """What a kept training state must match to be resumed: the package version,
    every setting of the run the model reads (a ``--grid`` or ``--tune`` trial's values
    included; :data:`MODEL_FLAGS` says which flags a model reads) and
    the data files' names, sizes and SHA-256 digests (:func:`_data_stamp`)."""
    import bvae_tf

    # A flag the model does not read (MODEL_FLAGS) cannot change what it trains: left
    # out, so that a flag added for another model keeps this model's states resumable.
    unread = {k for k, models in MODEL_FLAGS.items() if args.model not in models}
    settings = {
        k: v for k, v in sorted(vars(args).items()) if k not in _NOT_IN_RUN_KEY and k not in unread
    }
    return json.dumps([bvae_tf.__version__, settings, _data_stamp(args.data)], default=str)


#: Settings that do not change what a run trains: how it is logged, reported or
#: spelled (the command line itself; ``--out``/``--name`` are where the state lives, and
#: the data files are identified by their contents).
_NOT_IN_RUN_KEY = frozenset(
    {
        "checkpoint_root",
        "data_digest",
        "argv",
        "overwrite",
        "command",
        "verbose",
        "table_k",
        "markdown",
        "protocols",
        "anchor",
        "combine",
        "out",
        "name",
        "data",
        "log_dir",
        # A reused run is the run the same settings train (reused_run); the chosen
        # trials' records are what the search file chose, which selected_points keys.
        "reuse_from",
        "reuse_runs",
        "selected_trials",
    }
)


def _same_run(key: str):
    """Whether a kept state's key is this run's ``key`` (:func:`_run_key`): the same version,
    data files and settings, except that a setting the kept key lacks matches when it
    is at its flag's default here (a flag added since that run began, whose default
    keeps the former behavior). A changed default, or a setting the kept key has and
    this run lacks, does not match. Settings of :data:`_NOT_IN_RUN_KEY` (logging,
    reporting, paths) are left out on both sides. A mismatch is logged with the
    settings that differ."""
    version, settings, stamp = json.loads(key)
    parser = _parser()
    default = json.loads(json.dumps({k: parser.get_default(k) for k in settings}, default=str))

    def matches(saved_key) -> bool:
        try:
            kept_version, kept, kept_stamp = json.loads(saved_key)
            kept = {k: v for k, v in kept.items() if k not in _NOT_IN_RUN_KEY}
        except (TypeError, ValueError, AttributeError):
            logging.warning("the kept state has no readable run key")
            return False
        differ = [k for k in settings if kept.get(k, default[k]) != settings[k]]
        differ += sorted(set(kept) - set(settings))
        if kept_version != version:
            differ.insert(0, f"version {kept_version} (now {version})")
        if [list(f) for f in kept_stamp] != [list(f) for f in stamp]:
            differ.insert(0, "data files")
        if differ:
            logging.warning("the kept state is another run's: it differs in %s", ", ".join(differ))
        return not differ

    return matches


_TRAINED = tuple(m for m in MODELS if m not in BASELINES)
_VAES = (*SAMPLED_SOFTMAX_MODELS, "vae_pp")
#: Model flags (their dest) and the models that read them: any other ``--model``
#: refuses them (given or searched by ``--grid``) rather than ignore them.
MODEL_FLAGS = {
    # BVAE's modules: VAE (T.) and VAE (U.) model one task, where they do nothing.
    **dict.fromkeys(
        (
            "gate_mode",
            "ablation",
            "encoder",
            "loss_weights",
            "latent_dims",
            "sdwl_form",
            "item_path",
        ),
        ("bvae",),
    ),
    **dict.fromkeys(
        ("reference", "precision", "jit_compile", "optimizer_jit"), SAMPLED_SOFTMAX_MODELS
    ),
    **dict.fromkeys(("epochs", "patience", "paper_protocol"), _TRAINED),
    **dict.fromkeys(("latent_dim", "dropout", "beta_cap", "anneal_steps", "beta_schedule"), _VAES),
    **dict.fromkeys(("weight_decay", "lr_decay_steps"), SAMPLED_SOFTMAX_MODELS),
    **dict.fromkeys(("lr", "batch_size"), _TRAINED),
    "recvae_gamma": ("recvae",),
    **dict.fromkeys(("ngcf_l2", "ngcf_layers"), ("ngcf",)),
    "ehcf_dropout": ("ehcf",),
    **dict.fromkeys(
        ("ease_l2", "ease_diagonal", "ease_dtype", "ease_sequential", "ease_factored"), ("ease",)
    ),
}
#: A refused setting's counterpart that a model does read (named in the refusal).
OWN_FLAGS = {
    ("ehcf", "dropout"): "ehcf_dropout",
    ("recvae", "beta_cap"): "recvae_gamma",
}


def foreign_flags(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The flags of :data:`MODEL_FLAGS` set away from their defaults (or searched by
    ``--grid``) that ``args.model`` does not read, as the user gave them: e.g.
    ``["--dropout"]`` for ``--model ngcf --dropout 0.2``, ``["--grid dropout"]`` for
    ``--model ngcf --grid dropout=0.2,0.5``, both for both."""
    searched = {spec.partition("=")[0].strip().replace("-", "_") for spec in args.grid}
    names = []
    for dest, models in MODEL_FLAGS.items():
        if args.model in models:
            continue
        if getattr(args, dest) != parser.get_default(dest):
            names.append(f"--{dest.replace('_', '-')}")
        if dest in searched:
            names.append(f"--grid {dest}")
    return names


#: Settings ``--grid`` may search, with their types (the dest of their flags).
GRID_FLAGS = {
    "lr": float,
    "dropout": float,
    "beta_cap": float,
    "anneal_steps": int,
    "batch_size": int,
    "recvae_gamma": float,
    "ngcf_l2": float,
    "ngcf_layers": int,
    "ehcf_dropout": float,
    "item_path_scale": float,
    "item_path_drop_overlap": float,
    "weight_decay": float,
    "lr_decay_steps": int,
}
#: The run-config fields a searched flag sets (they vary with the selection, so they
#: do not name the method).
GRID_CONFIG_FIELDS = {
    "lr": ("learning_rate",),
    "dropout": ("dropout",),
    "beta_cap": ("beta_cap",),
    "anneal_steps": ("anneal_steps",),
    "batch_size": (),
    "recvae_gamma": ("gamma",),
    "ngcf_l2": ("l2",),
    "ngcf_layers": ("layer_sizes",),
    "ehcf_dropout": ("dropout",),
    "item_path_scale": ("item_path_scale",),
    "item_path_drop_overlap": ("item_path_drop_overlap",),
    "weight_decay": ("weight_decay",),
    "lr_decay_steps": ("lr_decay_steps", "lr_schedule"),  # 0: constant, else cosine
}
#: ``--grid`` settings of BVAE's optimizer: for :data:`SAMPLED_SOFTMAX_MODELS` only,
#: with values >= 0.
OPTIMIZER_GRID_FLAGS = ("weight_decay", "lr_decay_steps")


def tuned_fields(grid: Sequence[str], boost_grid: str | None = None) -> set[str]:
    """Config fields searched by ``--grid`` specs (see :data:`GRID_CONFIG_FIELDS`), and
    ``cross_behavior_boost`` with a ``--boost-grid``."""
    names = {spec.partition("=")[0].strip().replace("-", "_") for spec in grid}
    fields = {f for n in names for f in GRID_CONFIG_FIELDS.get(n, ())}
    return fields | ({"cross_behavior_boost"} if boost_grid else set())


def boost_values(spec: str) -> list[float]:
    """The values of ``--boost-grid``, e.g. ``"1,4,1e4"`` -> ``[0.0, 1.0, 4.0, 10000.0]``
    (sorted, 0 added: on a tie the smaller boost is kept).

    Raises:
      ValueError: on a value that is not a finite number >= 0, or no value > 0.
    """
    try:
        values = {float(v) for v in spec.split(",")}
    except ValueError as e:
        raise ValueError(f"--boost-grid {spec!r}: {e}") from e
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"--boost-grid {spec!r}: values must be finite and >= 0")
    if not values - {0.0}:
        raise ValueError(f"--boost-grid {spec!r}: give a value > 0 (0 is always tried)")
    return sorted(values | {0.0})


def _select_boost(model, run: dict, valid, behaviors: Sequence[str], values: list[float]):
    """Chooses ``model.cross_behavior_boost`` per behavior on valid NDCG@5 among
    ``values`` (``training.choose_cross_behavior_boost``: one training, only the
    scoring changes) into ``run["boost_trials"]``, ``run["config"]`` and
    ``run["valid"]``. The paper protocol's per-epoch test scores are of the unboosted
    model, so they are dropped."""
    from bvae_tf import training

    boost, tried = training.choose_cross_behavior_boost(model, valid, values)
    trials = [{"value": value, "valid": _metrics(result, behaviors)} for value, result in tried]
    chosen = dict(zip(model.bvae_config.behaviors, boost, strict=True))
    best = {b: next(t for t in trials if t["value"] == chosen[b]) for b in behaviors}
    logging.info(
        "boost chosen on valid: %s",
        ", ".join(
            f"{b} {chosen[b]:g} (NDCG@5 {best[b]['valid'][b]['ndcg@5']:.4f})" for b in behaviors
        ),
        extra={console.CONSOLE: True},
    )
    run["boost_trials"] = trials
    run["config"] = dict(run["config"], cross_behavior_boost=boost)
    run["valid"] = {b: best[b]["valid"][b] for b in behaviors}
    run.pop(PAPER, None)


def grid_points(specs: Sequence[str]) -> list[dict]:
    """The trials of ``--grid`` specs, e.g. ``["lr=1e-4,1e-3", "dropout=0.2,0.5"]`` ->
    4 dicts (the Cartesian product, in the given order); ``[{}]`` for no spec.

    Raises:
      ValueError: on a malformed spec, an unknown or repeated setting, a value that
        does not parse as the setting's type, a repeated value or a batch size < 1. Other
        ranges (e.g. ``lr=-1``, ``dropout=1.5``) are checked by the model's config when
        the run's flags are checked (``--check``, and before any training).
    """
    axes: dict[str, list] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ValueError(f"--grid {spec!r}: expected NAME=V1,V2,...")
        if name not in GRID_FLAGS:
            raise ValueError(
                f"--grid {spec!r}: {name!r} is not searchable; use {sorted(GRID_FLAGS)}"
            )
        if name in axes:
            raise ValueError(f"--grid names {name!r} twice")
        try:
            axes[name] = [GRID_FLAGS[name](v) for v in values.split(",")]
        except ValueError as e:
            raise ValueError(f"--grid {spec!r}: {e}") from e
        if len(set(axes[name])) != len(axes[name]):
            raise ValueError(f"--grid {spec!r}: a value repeats (each trial must differ)")
        if name == "batch_size" and min(axes[name]) < 1:
            raise ValueError(f"--grid {spec!r}: batch sizes must be >= 1")
    points = [{}]
    for name, values in axes.items():
        points = [{**p, name: v} for p in points for v in values]
    return points


#: ``bvae_tf.tuning`` names counted in epochs -> the flag (dest) they set in updates.
_TUNE_SPACE_FLAGS = {"anneal_epochs": "anneal_steps", "lr_decay_epochs": "lr_decay_steps"}
#: ``bvae_tf.tuning`` names -> the experiment flag (dest) each sets.
TUNE_FLAGS = {
    "learning_rate": "lr",
    "beta_cap": "beta_cap",
    "dropout": "dropout",
    "latent_dim": "latent_dim",
    "weight_decay": "weight_decay",
    "batch_size": "batch_size",
}


def tune_space(specs: Sequence[str]) -> dict:
    """``bvae_tf.tuning.tuning_settings`` space overrides from ``--tune-space`` specs.

    Raises:
      ValueError: on a malformed spec (the tuning settings check the names/values).
    """
    space: dict = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not values.strip():
            raise ValueError(f"--tune-space {spec!r}: expected NAME=V1,V2,... or NAME=none")
        if name in space:
            raise ValueError(f"--tune-space {spec!r}: {name} is given twice")
        try:
            listed = None if values.strip() == "none" else [float(v) for v in values.split(",")]
        except ValueError as e:
            raise ValueError(f"--tune-space {spec!r}: {e}") from e
        if listed is not None and len(set(listed)) < len(listed):
            raise ValueError(f"--tune-space {spec!r}: a value is listed twice")
        space[name] = listed
    return space


def trial_args(args, values: Mapping[str, float], num_train_users: int) -> argparse.Namespace:
    """``args`` with a tuning trial's ``values`` set (``anneal_epochs`` as
    ``--anneal-steps`` and ``lr_decay_epochs`` as ``--lr-decay-steps`` at the trial's
    batch size)."""
    out = argparse.Namespace(**vars(args))
    for name, value in values.items():
        if name in TUNE_FLAGS:
            kind = int if name in ("latent_dim", "batch_size") else float
            setattr(out, TUNE_FLAGS[name], kind(value))
    steps = math.ceil(num_train_users / out.batch_size)
    if "anneal_epochs" in values:
        out.anneal_steps = int(values["anneal_epochs"]) * steps
    if "lr_decay_epochs" in values:  # 0: constant
        out.lr_decay_steps = int(values["lr_decay_epochs"]) * steps
    return out


#: Searched names that count (sizes, epochs): shown as whole numbers.
_COUNTED_NAMES = frozenset(("latent_dim", "batch_size", "anneal_epochs", "lr_decay_epochs"))


def shown_values(values: Mapping[str, float]) -> dict:
    """A trial's values as the console shows them: the counted names
    (:data:`_COUNTED_NAMES`) as ints (``--tune-space`` reads every value as a float)."""
    return {
        k: int(v) if k in _COUNTED_NAMES and float(v).is_integer() else v for k, v in values.items()
    }


def _tune_trial(seed: int, values: Mapping[str, float]) -> str:
    """A search trial's name for its state folder and part file:
    ``tune-s0-batch_size=100_learning_rate=0.001``."""
    return f"tune-s{seed}-" + "_".join(f"{k}={v}" for k, v in sorted(values.items()))


def _state_dir(root: pathlib.Path, seed: int, behaviors: Sequence[str], point: str = ""):
    """One training's state folder under ``<out>/<name>.ckpt/``: the seed, the behaviors
    it models and, for a ``--grid`` trial, its values (``s0-purchase-click-lr=0.01``)."""
    return root / "-".join([f"s{seed}", *behaviors, *([point] if point else [])])


def _search(args, data, variant: str, out: pathlib.Path) -> tuple[dict, list[dict]]:
    """``--tune``: the KerasTuner search with the first seed; returns the best values
    and every trial (values, valid selection score, epochs, seconds)."""
    from bvae_tf import tuning

    settings = tuning.tuning_settings(
        {
            "algorithm": args.tune_algorithm,
            "max_trials": args.tune,
            "seed": args.first_seed,
            "space": tune_space(args.tune_space),
        }
    )
    num_users = len(data.train_users())
    trials: list[dict] = []
    root = getattr(args, "checkpoint_root", None)
    project = args.name or args.model  # run()'s name: its parts and the tuner's folder

    def train_one_trial(values, checkpoint_dir) -> dict:
        run, model, _ = _train_one(
            trial_args(args, values, num_users),
            data,
            data.behaviors,
            variant=variant,
            seed=args.first_seed,
            log_dir=None,
            checkpoint_dir=checkpoint_dir,
        )
        del model
        gc.collect()  # Keras models are reference cycles: free a trial's weights now
        return {
            "values": dict(values),
            "selection_score": run["selection_score"],
            "best_epoch": run["best_epoch"],
            "epochs_run": run["epochs_run"],
            "train_seconds": run["train_seconds"],
            "valid": run["valid"],
        }

    def trial_record(values) -> dict:
        if root is None:
            return train_one_trial(values, None)
        # Resumable: a finished trial's record is read back, an interrupted trial
        # resumes at its next epoch.
        trial = _tune_trial(args.first_seed, values)
        return _resumable_part(
            out / f"{project}.parts" / f"{trial}.json",
            args.command,
            args.data_digest,
            functools.partial(train_one_trial, values, root / trial),
        )

    def train_trial(values):
        logging.info(
            "tune trial %d/%d: %s",
            len(trials) + 1,
            args.tune,
            shown_values(values),
            extra={console.CONSOLE: True},
        )
        trials.append(trial_record(values))
        return argparse.Namespace(best_score=trials[-1]["selection_score"])

    # The same command resumes its search: KerasTuner reloads the oracle it kept
    # (trials, scores, random state) and runs the remaining trials; another command's
    # search under the same name is started afresh.
    stamp = out / "tuning" / project / "command.json"
    this = {
        "command": getattr(args, "command", None),
        "data_digest": getattr(args, "data_digest", None),
    }
    try:
        resume = this["command"] is not None and json.loads(stamp.read_text()) == this
    except (OSError, ValueError):
        resume = False
    tuner = tuning.make_tuner(
        train_trial, settings, str(out / "tuning"), project_name=project, overwrite=not resume
    )
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(this))
    for done in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):
        if done.status == "COMPLETED":  # before a kill: its record read back
            trials.append(trial_record(dict(done.hyperparameters.values)))
    try:
        tuner.search()
    except RuntimeError as e:  # KerasTuner's stop after 3 failed trials in a row
        logging.info("the search stopped", exc_info=True)
        if trials:
            logging.warning(
                "tune: the search stopped: %s",
                str(e).splitlines()[0],
                extra={console.CONSOLE: True},
            )
    if not trials:
        first = f": the first failed with: {tuner.failures[0][1]}" if tuner.failures else ""
        raise ValueError(f"--tune: none of the {args.tune} trials finished{first}")
    best = max(trials, key=lambda t: t["selection_score"])
    if len(trials) < args.tune:
        failed = sum(t.status == "FAILED" for t in tuner.oracle.trials.values())
        why = [f"{failed} failed (their errors are in the log)"] if failed else []
        if len(trials) + failed < args.tune:  # KerasTuner stops when no point is new
            why.append("the space has no other combination to propose")
        logging.warning(
            "tune: %d of the %d trials finished: %s",
            len(trials),
            args.tune,
            "; ".join(why),
            extra={console.CONSOLE: True},
        )
    logging.info(
        "tune: best of %d trials %s (valid score %.4f)",
        len(trials),
        shown_values(best["values"]),
        best["selection_score"],
        extra={console.CONSOLE: True},
    )
    return best["values"], trials


def _train_tuned(args, data, behaviors, *, variant, seed, log_dir) -> dict:
    """Trains every ``--grid`` trial, keeps the one with the best valid selection score
    (the sum over ``behaviors`` of valid NDCG@5 at its selected epoch) and scores the
    test split once, with that trial's model only. With ``--selected-from``
    (``args.selected_points``, from :func:`selected_points`) it trains only the point
    chosen there for ``behaviors`` and records where the choice came from
    (``"selected_from"``) instead of ``"trials"``. A point whose training diverges
    or cannot fit in memory is skipped and kept in ``"failed_trials"``; if every point
    fails, ``ValueError`` names the first failure."""
    from bvae_tf import model as Mo

    chosen = getattr(args, "selected_points", None)
    points = grid_points(args.grid) if chosen is None else [chosen["+".join(behaviors)]]
    if chosen is not None and getattr(args, "reuse_runs", None):
        run, why = reused_run(
            args.reuse_runs,
            behaviors,
            seed,
            args.selected_trials.get("+".join(behaviors)),
            args.selected_source["seed"],
        )
        logging.info(
            "seed %d %s: %s %s",
            seed,
            "+".join(behaviors),
            "trained, not reused:" if run is None else "reused from",
            why,
            extra={console.CONSOLE: True},
        )
        if run is not None:
            run["selected"] = points[0]
            run["selected_from"] = dict(args.selected_source)
            return run
    trials, failed, best = [], [], None
    for i, point in enumerate(points):
        if point:
            logging.info(
                "trial %d/%d: %s", i + 1, len(points), point, extra={console.CONSOLE: True}
            )
        trial_args = argparse.Namespace(**{**vars(args), **point})
        point_name = "_".join(f"{k}={v}" for k, v in point.items())
        trial_log = log_dir / point_name if point and log_dir is not None else log_dir
        root = getattr(args, "checkpoint_root", None)
        try:
            run, model, test = _train_one(
                trial_args,
                data,
                behaviors,
                variant=variant,
                seed=seed,
                log_dir=trial_log,
                checkpoint_dir=None
                if root is None
                else _state_dir(root, seed, behaviors, point_name),
            )
        except (FloatingPointError, Mo.MemoryFloorError) as e:
            if len(points) == 1:
                raise
            # A point whose training diverges (or cannot fit): the search goes on.
            logging.info("trial %s failed", point, exc_info=True)
            logging.warning(
                "trial %d/%d %s failed: %s", i + 1, len(points), point, e,
                extra={console.CONSOLE: True},
            )  # fmt: skip
            failed.append({"point": point, "error": str(e)})
            continue
        trials.append(
            {
                "point": point,
                "selection_score": run["selection_score"],
                "best_epoch": run["best_epoch"],
                "epochs_run": run["epochs_run"],
                "train_seconds": run["train_seconds"],
                "valid": run["valid"],
            }
        )
        if best is None or run["selection_score"] > best[0]["selection_score"]:
            best = (run, model, test, point)
        del model
        gc.collect()  # Keras models are reference cycles: free a trial's weights now
    if best is None:
        raise ValueError(
            f"every --grid point failed for {'+'.join(behaviors)}; the first: "
            f"{failed[0]['point']}: {failed[0]['error']}"
        )
    run, model, test, point = best
    start = time.perf_counter()
    if args.boost_grid:
        from bvae_tf import data as D

        valid = D.eval_dataset(data, F.EVAL, args.eval_batch_size, behaviors)
        _select_boost(model, run, valid, behaviors, boost_values(args.boost_grid))
    _test(model, test, behaviors, run)
    run["eval_seconds"] += time.perf_counter() - start
    if chosen is not None:
        run["selected"] = point
        run["selected_from"] = dict(args.selected_source)
    elif points != [{}]:
        run["selected"] = point
        run["trials"] = trials
        run["train_seconds"] = sum(t["train_seconds"] for t in trials)
        if failed:  # kept apart: "trials" are the trained points
            run["failed_trials"] = failed
    return run


#: The flags in which a run of ``--selected-from RESULT`` may differ from RESULT's
#: command: which seeds, where the files go, the data's spelling (its files are compared
#: by digest) and the flag itself.
_SELECTION_FREE_FLAGS = frozenset(
    (
        "",
        "--data",
        "--first-seed",
        "--seeds",
        "--name",
        "--out",
        "--log-dir",
        "--overwrite",
        "--selected-from",
        "--reuse-from",
    )
)


def _read_result(path, where: str) -> dict:
    """The result file ``path`` (a JSON object with its ``command``), read for a flag
    (``where``: the flag and the path, for the messages).

    Raises:
      ValueError: naming ``where``: it cannot be read, is not UTF-8 or JSON, has no
        ``command``, or fails :func:`check_result` (e.g. a metric that is not finite,
        or an honest ``ndcg@5`` that is not the mean of its ``test_per_user``: a run
        taken from it would carry the damage into this result).
    """
    try:
        text = pathlib.Path(path).read_text()
    except OSError as e:
        raise ValueError(f"{where}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{where} is not UTF-8 text ({e}): not a result file") from e
    try:
        result = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{where} is not JSON ({e}): a truncated or foreign file?") from e
    if not isinstance(result, dict) or not isinstance(result.get("command"), str):
        raise ValueError(f"{where} is not a result file of this module (no 'command')")
    try:
        check_result(result)
    except ValueError as e:
        raise ValueError(f"{where} is not a sound result file: {e}") from e
    return result


def _selection_source(path, command: str, digest: str | None) -> dict:
    """The result file ``path`` of :func:`selected_points`, checked against this run:
    written by the same method (``command`` differs only in
    :data:`_SELECTION_FREE_FLAGS`) on the same data (``digest``; None skips it).
    ``--check`` calls it alone, before the data is read.

    Raises:
      ValueError: naming ``path``: it cannot be read, is not a result of this module,
        or another command or other data wrote it.
    """
    where = f"--selected-from {str(path)!r}"
    result = _read_result(path, where)
    try:
        differ = _flag_changes(result["command"], command, _SELECTION_FREE_FLAGS)
    except ValueError as e:
        raise ValueError(f"{where}: its command does not parse ({e})") from e
    if differ:  # the same settings written otherwise (1e-3 for 0.001, a flag twice) pass
        try:
            was = _settings(result["command"], _SELECTION_FREE_FLAGS)
            now = _settings(command, _SELECTION_FREE_FLAGS)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
        changed = {k for k in was.keys() | now.keys() if was.get(k) != now.get(k)}
        named = [  # only the flags whose settings differ
            d
            for d in differ
            if (flag := re.search(r"'(--[\w-]+)", d)) is None
            or flag.group(1)[2:].replace("-", "_") in changed
        ]
        differ = (named or differ) if changed else []
    if differ:
        raise ValueError(
            f"{where} was written by another command ({'; '.join(differ[:3])}): its choice "
            "is not of this method"
        )
    if digest is not None and result.get("data_digest", digest) != digest:
        raise ValueError(f"{where} was trained on other data files (its data_digest differs)")
    return result


def reuse_sources(paths, command: str, data, digest: str | None) -> list[tuple[str, dict]]:
    """The result files of ``--reuse-from`` that may hold runs of this command's choice:
    those written by one untuned command (no ``--grid``/``--tune``) whose settings are
    this ``command``'s but for :data:`_SELECTION_FREE_FLAGS` and the searched flags
    (which :func:`reused_run` compares in the trained configs), on the same data (by
    digest, or by the ``--data`` folder for a file without one). A file that is not
    there, or of another command or data, is skipped, with a console line saying why.

    Args:
      paths: the files given (``--reuse-from``).
      command: this run's command line (with its ``--grid``).
      data: this run's ``--data``.
      digest: :func:`data_digest` of ``data``.

    Returns:
      ``[(path, result)]`` in the order given.

    Raises:
      ValueError: naming a file that is there but is not a result of this module.
    """
    now = _settings(command, _SELECTION_FREE_FLAGS)
    searched = {k for point in now["grid"] for k in json.loads(point)}  # the searched flags
    kept: list[tuple[str, dict]] = []
    first: dict | None = None

    def skip(path, why):
        logging.info("--reuse-from %s: %s; not reused", path, why, extra={console.CONSOLE: True})

    for path in paths or []:
        where = f"--reuse-from {str(path)!r}"
        if not pathlib.Path(path).is_file():
            skip(path, "not there (yet)")
            continue
        result = _read_result(path, where)
        if not isinstance(result.get("runs"), list):
            raise ValueError(f"{where} is not a result file of this module (no 'runs')")
        kept_digest = result.get("data_digest")
        if kept_digest and digest and kept_digest != digest:
            skip(path, "trained on other data files (its data_digest differs)")
            continue
        if not kept_digest and os.path.realpath(str(result.get("data"))) != os.path.realpath(
            str(data)
        ):
            skip(path, f"no data digest, and its --data {result.get('data')!r} is not this one")
            continue
        try:
            was = _settings(result["command"], _SELECTION_FREE_FLAGS)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from e
        if any(json.loads(point) for point in was["grid"]) or was.get("tune"):
            skip(path, "a searched run (--grid/--tune), not an untuned command")
            continue
        differ = sorted(
            k
            for k in now.keys() | was.keys()
            if k not in searched | {"grid"} and now.get(k) != was.get(k)
        )
        if differ:
            skip(path, f"another command (it differs in {', '.join(differ[:3])})")
            continue
        if first is not None and was != first:
            skip(path, "another command than the files before it")
            continue
        first = was
        kept.append((str(path), result))
    return kept


def _part_of(run: dict, behaviors: Sequence[str]) -> dict | None:
    """A copy of the run record (one seed) of the model of ``behaviors`` in ``run``:
    its part for that target (``test_per_user`` put back) when ``run`` holds one model
    per target, else ``run`` itself when it modelled exactly ``behaviors``."""
    if "parts" in run:
        for part in run["parts"]:
            if isinstance(part, dict) and set(part.get(HONEST) or {}) == set(behaviors):
                found = copy.deepcopy(part)
                per_user = (run.get("test_per_user") or {}).get(behaviors[0])
                if len(behaviors) == 1 and per_user is not None:
                    found["test_per_user"] = {behaviors[0]: per_user}
                return found
        return None
    if set(run.get(HONEST) or {}) != set(behaviors):
        return None
    return copy.deepcopy(run)


def reused_run(
    sources: list[tuple[str, dict]],
    behaviors: Sequence[str],
    seed: int,
    chosen: dict | None,
    searched_seed: int,
) -> tuple[dict | None, str]:
    """This seed's run of the model of ``behaviors``, taken from the untuned command's
    files (:func:`reuse_sources`) instead of trained again, when their seed
    ``searched_seed`` run is the search's chosen trial to the last bit: the same valid
    metrics (every metric, in full float64), best epoch, epochs run and selection score,
    and the same config on the fields both record but the seed. Such a pair trained the
    same settings with the same code path; the same settings at ``seed`` then train
    the run kept at ``seed`` (a rerun of one command repeats it exactly: training is
    seeded and deterministic on one machine). The config of the kept run at ``seed``
    must match its seed-``searched_seed`` run's too.

    Args:
      sources: ``[(path, result)]`` of :func:`reuse_sources`.
      behaviors: the behaviors the model trains (one target, or all).
      seed: the seed to run.
      chosen: ``selected_points(...)[2]``'s entry for ``behaviors``.
      searched_seed: the seed of the search that chose.

    Returns:
      ``(run, why)``: the run record with ``"reused_from"`` (the file and seed it was
      taken from, and the evidence's file and seed), or ``(None, why not)``.
    """
    key = "+".join(behaviors)
    trial = (chosen or {}).get("trial")

    def find(wanted):
        for path, result in sources:
            for run in result["runs"]:
                if isinstance(run, dict) and run.get("seed") == wanted:
                    part = _part_of(run, behaviors)
                    if part is not None:
                        return path, part
        return None, None

    def config_difference(a, b):
        a, b = a or {}, b or {}
        # (not the seed, nor "name": the Keras model's name, "ehcf" or "ehcf_1")
        return ", ".join(sorted(k for k in a.keys() & b.keys() - {"seed", "name"} if a[k] != b[k]))

    twin0_path, twin0 = find(searched_seed)
    twin_path, twin = find(seed)
    why = None
    if not isinstance(trial, dict):
        why = f"the search file keeps no trial entry of {key}'s choice"
    elif twin0 is None or twin is None:
        why = f"no seed-{searched_seed if twin0 is None else seed} run of {key} in the files"
    elif differ := [
        k
        for k in ("valid", "best_epoch", "epochs_run", "selection_score")
        if (k in ("valid", "best_epoch") or None not in (twin0.get(k), trial.get(k)))
        and twin0.get(k) != trial.get(k)
    ]:
        why = (
            f"{twin0_path}'s seed-{searched_seed} run of {key} is not the chosen trial "
            f"(its {', '.join(differ)} differ: other settings or other code)"
        )
    elif differ := config_difference(twin0.get("config"), chosen.get("config")):
        why = f"{twin0_path}'s config differs from the choice's in {differ}"
    elif differ := config_difference(twin.get("config"), twin0.get("config")):
        why = f"{twin_path}'s seed-{seed} config differs in {differ}"
    if why is not None:
        return None, why
    twin["reused_from"] = {
        "file": twin_path,
        "seed": seed,
        "evidence": {"file": twin0_path, "seed": searched_seed},
    }
    twin.pop("seed", None)
    return twin, (
        f"{twin_path}'s seed {seed} (its seed {searched_seed} repeats the chosen trial exactly)"
    )


def _check_choice(trials: list, chosen: list, where: str) -> None:
    """Checks that a search's ``selected`` point is its best trial on valid: every
    trial's ``selection_score`` a finite number, the chosen trial's the highest (what
    the search selects by). A hand-edited choice or score is refused, not trained.

    Raises:
      ValueError: naming ``where``, the chosen and the best score.
    """
    scores = [t.get("selection_score") if isinstance(t, dict) else None for t in trials]
    if not all(
        isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s) for s in scores
    ):
        raise ValueError(f"{where}: a trial's selection_score is not a finite number: {scores}")
    if not chosen:
        raise ValueError(f"{where}: no trial of the selected point")
    if chosen[0]["selection_score"] != max(scores):
        raise ValueError(
            f"{where}: the selected point's trial scored {chosen[0]['selection_score']!r} on "
            f"valid, not the best trial's {max(scores)!r}: not what the search chose (an "
            "edited file?)"
        )


def selected_points(path, command: str, digest: str | None, behaviors: Sequence[str]):
    """The points a ``--grid`` search chose on valid, for ``--selected-from``.

    Args:
      path: a result JSON file written by ``--grid`` (its first seed's run is read).
      command: this run's command line; RESULT's may differ from it only in the flags
        of :data:`_SELECTION_FREE_FLAGS`, so that the choice is of this very method.
      digest: :func:`data_digest` of this run's ``--data``; RESULT's must match.
      behaviors: the behaviors this run models.

    Returns:
      ``(points, source, chosen)``: ``points`` maps the behaviors trained together
      (``"purchase"`` for one model per target, ``"purchase+click+favorite"`` for one
      model of all) to the chosen ``--grid`` point; ``source`` is
      ``{"file": path, "seed": the searched seed}``, recorded in each run; ``chosen``
      maps the same keys to ``{"trial": the chosen point's entry of "trials",
      "config": its model's config}``, what :func:`reused_run` compares.

    Raises:
      ValueError: naming ``path``: it cannot be read; another command or other data
        wrote it; it holds no search (no run with ``"trials"``); a behavior has no
        choice, a choice that is not a point of this run's ``--grid``, or one that is
        not its best trial on valid (:func:`_check_choice`).
    """
    where = f"--selected-from {str(path)!r}"
    result = _selection_source(path, command, digest)
    searched = sorted(  # runs that searched (not themselves trained on a choice)
        (
            r
            for r in result.get("runs") or []
            if isinstance(r, dict)
            and isinstance(r.get("parts", []), list)
            and not any("selected_from" in p for p in r.get("parts") or [r] if isinstance(p, dict))
        ),
        key=lambda r: r.get("seed") or 0,
    )
    if not searched:
        raise ValueError(f"{where} holds no finished --grid search to take a choice from")
    run = searched[0]
    grid = grid_points(_parsed_grid(command))
    points: dict[str, dict] = {}
    chosen: dict[str, dict] = {}
    for part in run.get("parts") or [run]:
        key = _choice_key(run, part, behaviors)
        point = part.get("selected")
        match = [p for p in grid if p == point]
        if not part.get("trials"):
            raise ValueError(
                f"{where}: seed {run.get('seed')}'s {key} holds no trials: not the run of a "
                "--grid search"
            )
        if not match:
            raise ValueError(
                f"{where}: seed {run.get('seed')}'s {key} holds no choice among this --grid's "
                f"points (selected: {point!r})"
            )
        points[key] = match[0]
        trial = [t for t in part["trials"] if isinstance(t, dict) and t.get("point") == point]
        _check_choice(part["trials"], trial, f"{where}: seed {run.get('seed')}'s {key}")
        chosen[key] = {
            # (a trial entry written before entries kept "epochs_run" has the run's)
            "trial": {"epochs_run": part.get("epochs_run"), **trial[0]} if trial else None,
            "config": part.get("config"),
        }
    wanted = list(behaviors) if "parts" in run else ["+".join(behaviors)]
    missing = [k for k in wanted if k not in points]
    if missing:
        raise ValueError(f"{where} has no choice for {', '.join(missing)}")
    return points, {"file": str(path), "seed": run.get("seed")}, chosen


def _choice_key(run: dict, part: dict, behaviors: Sequence[str]) -> str:
    """The key of :func:`selected_points` for one ``part`` of ``run`` (the run itself
    for one model of all ``behaviors``): the behaviors that part trained together."""
    return "+".join(part.get(HONEST) or {}) if "parts" in run else "+".join(behaviors)


def _parsed_grid(command: str) -> list[str]:
    """The ``--grid`` specs of an experiment command line."""
    return json.loads(_training_settings_json(command))["grid"]


#: Per-user test values kept in every run record (``"test_per_user"``), for the
#: paired significance test of ``--combine``.
PER_USER_METRIC = M.SELECTION_METRIC


def _test(model, dataset, behaviors, run: dict) -> None:
    """Scores the test split once into ``run[HONEST]`` and ``run["test_per_user"]``."""
    result = M.evaluate(model, dataset, behaviors=behaviors, per_user=(PER_USER_METRIC,))
    run.setdefault(HONEST, {}).update(_metrics(result))
    run.setdefault("test_per_user", {}).update(
        {b: result.per_user[b][PER_USER_METRIC].round(6).tolist() for b in behaviors}
    )


def _metrics(result, behaviors=None) -> dict:
    return {
        b: dict(r.metrics, num_users=r.num_users)
        for b, r in result.behaviors.items()
        if behaviors is None or b in behaviors
    }


def _brief(metrics: dict) -> str:
    """``purchase NDCG@5 0.0734 HR@5 0.1490; click ...`` (the full record is in the JSON)."""
    return "; ".join(
        f"{b} NDCG@5 {m['ndcg@5']:.4f} HR@5 {m['hit_rate@5']:.4f}" for b, m in metrics.items()
    )


def _check_ease_memory(args, num_targets: int, num_items: int) -> None:
    """Refuses an EASE grid whose estimated peak memory (a floor:
    :func:`bvae_tf.baselines.ease.peak_bytes`) exceeds the memory available now, before
    minutes of inversion end in the kernel's out-of-memory kill.

    Raises:
      ValueError: naming the estimate, the memory available and the smaller form.
    """
    from bvae_tf import memory
    from bvae_tf.baselines import ease

    form = "factored" if args.ease_factored else "sequential" if args.ease_sequential else "dense"
    need = ease.peak_bytes(num_items, num_targets, form=form, dtype=args.ease_dtype)
    room = memory.available_memory()
    have = room.bytes
    if need <= have:
        return
    small = ease.peak_bytes(num_items, num_targets, form="factored", dtype="float32")
    advice = (
        f"--ease-dtype float32 --ease-factored needs about {small / 1e9:.1f} GB "
        '(scripts/run_comparison.sh: EASE_FLAGS="--ease-dtype float32 --ease-factored")'
        if small <= have and (form, args.ease_dtype) != ("factored", "float32")
        else "no EASE form fits: free memory or use a machine with more"
    )
    raise ValueError(
        f"EASE ({form} form, {args.ease_dtype}) needs at least about {need / 1e9:.1f} GB at "
        f"{num_items:,} items and {room.describe()} "
        f"(benchmarks/ease_memory.py's peak, scaled): {advice}"
    )


def _fit_baseline(args, data, parts: pathlib.Path) -> dict:
    """One run of a closed-form baseline: fit on train, select on valid, test once.
    EASE keeps each lambda's fits in ``parts`` (a folder) until the result is written,
    so that a killed grid resumes at its next lambda."""
    from bvae_tf import data as D
    from bvae_tf.baselines import ease, floors

    behaviors = data.behaviors
    train = {b: data.matrix(F.TRAIN, b) for b in behaviors}
    valid = D.eval_dataset(data, F.EVAL, args.eval_batch_size, behaviors=behaviors)
    test = D.eval_dataset(data, F.TEST, args.eval_batch_size, behaviors=behaviors)
    start = time.perf_counter()
    if args.model != "ease":
        cls = floors.Popularity if args.model == "popularity" else floors.CrossBehaviorRepeat
        model = cls(behaviors, data.num_items).fit(train)
        run = {
            "config": {"model": args.model, "behaviors": list(behaviors)},
            "train_seconds": time.perf_counter() - start,
            "valid": _metrics(M.evaluate(model, valid, behaviors=behaviors)),
            "trials": [],
        }
        _test(model, test, behaviors, run)
        return run
    dtype = np.float32 if args.ease_dtype == "float32" else np.float64
    _check_ease_memory(args, len(behaviors), data.num_items)
    grid = {"l2": list(args.ease_l2), "diagonal": list(args.ease_diagonal)}
    groups = [(b,) for b in behaviors] if args.ease_sequential else [behaviors]
    size = len(grid["l2"]) * len(grid["diagonal"]) * len(groups)
    done = 0

    def fits(l2, diagonals, targets):
        """The EASE fits of one lambda for ``targets``, one inversion (the generator
        of ``ease.fit_factored`` or ``ease.fit_grid``)."""
        inputs = (behaviors, data.num_items, train, [l2])
        if args.ease_factored:
            return ease.fit_factored(*inputs, diagonals=diagonals, dtype=dtype, targets=targets)
        split = [(b,) for b in targets] if args.ease_sequential else [tuple(targets)]
        return ease.fit_grid(*inputs, diagonals=diagonals, dtype=dtype, groups=split)

    def fit_l2(l2) -> dict:
        """Every fit of one lambda (one inversion), scored on valid."""
        nonlocal done
        by_diagonal: dict[str, dict] = {}
        tick = time.perf_counter()
        for _, diagonal, model in fits(l2, grid["diagonal"], behaviors):
            scored = _metrics(M.evaluate(model, valid, behaviors=model.targets))
            trial = by_diagonal.setdefault(
                diagonal, {"l2": l2, "diagonal": diagonal, "valid": {}, "seconds": 0.0}
            )
            trial["valid"].update(scored)
            trial["seconds"] += time.perf_counter() - tick
            tick = time.perf_counter()
            done += 1
            logging.info(
                "EASE fit %d/%d: lambda=%g diagonal=%s valid NDCG@5 %s",
                done,
                size,
                l2,
                diagonal,
                " ".join(f"{b}={scored[b][M.SELECTION_METRIC]:.4f}" for b in model.targets),
                extra={console.CONSOLE: True},
            )
            del model  # fit_grid frees it before building the next group's
        return {"trials": list(by_diagonal.values())}

    trials = []
    for index, l2 in enumerate(grid["l2"]):
        # Each lambda's fits are kept until the result is written: a killed grid
        # resumes at its next lambda (minutes of inversion each on 30k items).
        done = index * len(grid["diagonal"]) * len(groups)
        part = parts / f"ease-l2-{l2:g}.json"
        trials += _resumable_part(
            part, args.command, args.data_digest, functools.partial(fit_l2, l2)
        )["trials"]
    selected = {
        b: max(trials, key=lambda t, b=b: t["valid"][b][M.SELECTION_METRIC]) for b in behaviors
    }
    run = {
        "config": {
            "model": "ease",
            "behaviors": list(behaviors),
            "grid": grid,
            "dtype": args.ease_dtype,
            **({"form": "factored"} if args.ease_factored else {}),
        },
        "train_seconds": sum(t["seconds"] for t in trials),  # resumed ones included
        "trials": trials,
        "selected": {b: {"l2": t["l2"], "diagonal": t["diagonal"]} for b, t in selected.items()},
        "valid": {b: t["valid"][b] for b, t in selected.items()},
        HONEST: {},
    }
    # Test once, with the fit each behavior selected: one inversion per selected lambda.
    for l2 in sorted({t["l2"] for t in selected.values()}):
        chosen = [b for b, t in selected.items() if t["l2"] == l2]
        diagonals = sorted({selected[b]["diagonal"] for b in chosen})
        for _, diagonal, model in fits(l2, diagonals, chosen):
            scored = [b for b in model.targets if selected[b]["diagonal"] == diagonal]
            if scored:
                _test(model, test, tuple(scored), run)
            del model  # fit_grid frees it before building the next group's
    run[HONEST] = {b: run[HONEST][b] for b in behaviors}
    run["test_per_user"] = {b: run["test_per_user"][b] for b in behaviors}
    return run


def _merge_runs(parts: list[dict]) -> dict:
    """Joins per-behavior VAE (T.) runs into one run record."""
    merged = {"parts": parts, HONEST: {}, "valid": {}, "best_epoch": {}, "train_seconds": 0.0}
    merged["test_per_user"] = {}
    for part in parts:
        (b,) = part[HONEST]  # the one behavior the part scored
        merged[HONEST][b] = part[HONEST][b]
        merged["test_per_user"][b] = part.pop("test_per_user")[b]
        merged["valid"][b] = part["valid"][b]
        merged["best_epoch"][b] = part["best_epoch"]
        merged["train_seconds"] += part["train_seconds"]
        merged["epochs_run"] = merged.get("epochs_run", 0) + part.get("epochs_run", 0)
        if PAPER in part:
            merged.setdefault(PAPER, {})[b] = part[PAPER][b]
    return merged


def summarize(runs: list[dict], protocol: str) -> dict:
    """``{behavior: {metric: [mean, sample std]}}`` over runs (std 0 for one run)."""
    runs = [r for r in runs if protocol in r]
    if not runs:
        return {}
    out = {}
    for b in runs[0][protocol]:
        out[b] = {}
        for key in runs[0][protocol][b]:
            values = np.array([r[protocol][b][key] for r in runs], np.float64)
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            out[b][key] = [float(values.mean()), std]
    return out


def _per_user(result: dict, behavior: str) -> np.ndarray | None:
    """Per-user test NDCG@5 of a result, averaged over its seeds; None unless every
    seed recorded them (a test over some of the seeds would not be the test of the
    row's mean, which is over all of them)."""
    arrays = [r.get("test_per_user", {}).get(behavior) for r in result["runs"]]
    if not arrays or any(a is None for a in arrays) or len({len(a) for a in arrays}) != 1:
        return None
    return np.mean(np.array(arrays, np.float64), axis=0)


def paired_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of a paired t-test over users (``scipy.stats.ttest_rel``);
    1.0 when the two are identical."""
    from scipy import stats

    if np.array_equal(a, b):
        return 1.0
    return float(stats.ttest_rel(a, b).pvalue)


def p_text(p: float) -> str:
    """A p-value to 2 significant digits, 3 where 2 would round it onto the other side
    of 0.05 (0.0498 reads 0.0498, not 0.05)."""
    shown = f"{p:.2g}"
    if (float(shown) < 0.05) != (p < 0.05):
        shown = f"{p:.3g}"
    return shown


def _significance(
    rows, behavior: str, anchor: str, k: int, rival: Callable[[dict], bool] | None = None
) -> tuple[str, bool] | None:
    """(sentence, whether ``anchor`` is significantly better) of ``anchor`` vs the best
    other row by NDCG@k (of the rows ``rival`` accepts, if given)."""
    key = M.metric_key("ndcg", k)
    scored = [(r, s[behavior][key][0]) for r, s in rows if behavior in s and key in s[behavior]]
    mine = [(r, v) for r, v in scored if r["method"] == anchor]
    others = sorted(
        [(r, v) for r, v in scored if r["method"] != anchor and (rival is None or rival(r))],
        key=lambda x: -x[1],
    )
    if not mine or not others or k != 5:
        return None
    (a, va), (b, vb) = mine[0], others[0]
    ua, ub = _per_user(a, behavior), _per_user(b, behavior)
    if ua is None or ub is None or len(ua) != len(ub):
        return (
            f"{behavior}: vs {b['method']}: no p-value (per-user test values not recorded "
            "for every seed of both rows)",
            False,
        )
    p = paired_test(ua, ub)
    better = "equal means" if va == vb else f"{anchor if va > vb else b['method']} higher"
    mark = "significant" if p < 0.05 else "not significant"
    sentence = (
        f"{behavior}: {anchor} {va:.4f} vs {b['method']} {vb:.4f}, p = {p_text(p)} "
        f"({mark} at 0.05; {better}; {len(ua)} users)"
    )
    return sentence, p < 0.05 and va > vb


def rival_tests(
    results: list[dict], anchor: str, rival: Callable[[dict], bool], k: int = 5
) -> list[str]:
    """Per behavior, the paired t-test of :func:`render_markdown` (honest protocol,
    per-user test NDCG@k) of ``anchor`` against the best row that ``rival`` accepts,
    e.g. the best baseline of a table that also holds BVAE's variants.

    Returns:
      One sentence per behavior with such a row (``[]`` without ``anchor``'s row).
    """
    rows = [(r, r["summary"][HONEST]) for r in results if r.get("summary", {}).get(HONEST)]
    behaviors = list(
        dict.fromkeys(b for r, s in rows for b in [*r.get("behaviors", []), *s] if b in s)
    )
    tests = [_significance(rows, b, anchor, k, rival) for b in behaviors]
    return [t[0] for t in tests if t]


def render_markdown(
    results: list[dict],
    k: int = 5,
    protocols: Sequence[str] = (HONEST, PAPER),
    anchor: str | None = None,
) -> str:
    """Tables in the paper's layout: behavior x method, Prec/Rec/NDCG/HR@k, mean +- std,
    and the number of seeds behind each row.

    Per behavior and column the best mean is **bold** and the second <u>underlined</u>,
    ranked as shown (4 decimals, so that equal-looking cells are marked alike).
    With ``anchor`` (a method label), the honest table is followed by a paired t-test
    over users (per-user test NDCG@5, mean over seeds) of that method against the best
    other method per behavior, as the paper marks BVAE against the second best; its
    NDCG@5 cell gets a ``*`` where it is higher and the difference significant
    (p < 0.05). The sentence under the table says which is higher either way.
    """
    lines = []
    for protocol in protocols:
        rows = [(r, r["summary"].get(protocol)) for r in results if r["summary"].get(protocol)]
        if not rows:
            continue
        lines.append(f"### {PROTOCOL_TITLES[protocol]}")
        lines.append("")
        header = " | ".join(f"{label}@{k}" for _, label in TABLE_METRICS)
        lines.append(f"| Behavior | Method | {header} | Seeds |")
        lines.append("|---|---|" + "---|" * len(TABLE_METRICS) + "---|")
        behaviors: list[str] = []
        for result, summary in rows:
            for b in [*result.get("behaviors", []), *sorted(summary)]:
                if b in summary and b not in behaviors:
                    behaviors.append(b)
        notes = []
        for b in behaviors:
            present = [(r, s) for r, s in rows if b in s]
            ranks = {}
            for metric, _ in TABLE_METRICS:
                key = M.metric_key(metric, k)
                # Ranked as shown (4 decimals): two cells that read the same rank the same.
                means = sorted(
                    {round(s[b][key][0], 4) for _, s in present if key in s[b]}, reverse=True
                )
                ranks[metric] = means[:2]
            test = None
            if anchor and protocol == HONEST:
                test = _significance(present, b, anchor, k)
                if test:
                    notes.append(test[0])
            for result, summary in present:
                seeds = len([r for r in result["runs"] if protocol in r])
                cells = []
                for metric, _ in TABLE_METRICS:
                    mean, std = summary[b].get(M.metric_key(metric, k), [math.nan, math.nan])
                    # One seed has no sample std: the mean alone (Seeds says 1).
                    cell = f"{mean:.4f}" if seeds == 1 else f"{mean:.4f} ± {std:.4f}"
                    if len(present) > 1 and ranks[metric][:1] == [round(mean, 4)]:
                        cell = f"**{cell}**"
                    elif len(present) > 2 and ranks[metric][1:2] == [round(mean, 4)]:
                        cell = f"<u>{cell}</u>"
                    if metric == "ndcg" and test and test[1] and result["method"] == anchor:
                        cell += " *"
                    cells.append(cell)
                lines.append(f"| {b} | {result['method']} | " + " | ".join(cells) + f" | {seeds} |")
        lines.append("")
        if notes:
            lines.append(
                "Paired t-test over users (per-user test NDCG@5, mean over seeds), "
                f"{anchor} vs the best other row:"
            )
            lines.append("")
            lines.extend(f"- {n}" for n in notes)
            lines.append("")
    if any(r.get("runs") for r in results):
        lines.extend(_compute_table(results))
    return "\n".join(lines)


def compute_cost(result: dict) -> dict:
    """What one result's runs cost, per seed (mean over its runs).

    Returns:
      ``{"seeds", "fits", "epochs", "train_minutes", "minutes_to_selected"}``: models
      fitted per seed (one per target and grid trial), epochs run per seed over all of
      them (0 for closed-form fits), training wall time per seed in minutes (evaluation
      excluded; ``None`` when a run did not record it), and the time to quality: wall
      minutes per seed until the selected epoch (``time_to_selected``), ``None`` when a
      run does not have it.
    """
    runs = result.get("runs") or []
    loop = training_settings(result)

    def trial_epochs(trial):  # older records lack it: the early-stopping rule gives it
        fallback = min(loop["epochs"], trial.get("best_epoch", 0) + loop["patience"])
        return trial.get("epochs_run", fallback)

    fits, epochs, minutes = [], [], []
    for run in runs:
        parts = run.get("parts") or [run]
        fits.append(sum(max(1, len(p.get("trials") or [])) for p in parts))
        epochs.append(
            sum(
                sum(trial_epochs(t) for t in p["trials"])
                if p.get("trials") and "best_epoch" in p
                else p.get("epochs_run", 0)
                for p in parts
            )
        )
        minutes.append(run["train_seconds"] / 60.0 if "train_seconds" in run else None)
    mean = lambda values: float(np.mean(values)) if values else 0.0  # noqa: E731
    to_selected = [time_to_selected(run) for run in runs]
    return {
        "seeds": len(runs),
        "fits": mean(fits),
        "epochs": mean(epochs),
        "train_minutes": None if None in minutes else mean(minutes),
        "minutes_to_selected": None
        if not runs or None in to_selected
        else mean(to_selected) / 60.0,
    }


def time_to_selected(run: dict) -> float | None:
    """Wall seconds of one seed's run until its selected epoch (time to quality).

    The sum over its epochs up to and including ``best_epoch`` of the epoch's training
    and evaluation seconds (``curve``; the evaluation scores valid, and test too under
    ``--paper-protocol``), over every target of a per-target model. A ``--grid`` run
    adds its other trials' training time: the selection needs every trial. ``None``
    for a run without a per-epoch curve (closed-form fits, floors, older records).
    """
    total = 0.0
    for part in run.get("parts") or [run]:
        curve, best = curve_rows(part.get("curve")), part.get("best_epoch")
        if not curve or not best or "train_seconds" not in curve[0]:
            return None
        total += sum(
            e["train_seconds"] + e.get("eval_seconds", 0.0) for e in curve if e["epoch"] <= best
        )
        trials = part.get("trials") or []
        selected = part.get("selected")
        total += sum(t["train_seconds"] for t in trials if t.get("point") != selected)
    return total


def _compute_table(results: list[dict]) -> list[str]:
    lines = [
        "### Compute (per seed, training only, this machine)",
        "",
        "| Method | Seeds | Budget | Models fitted | Epochs run | Train time (min) "
        "| Wall time to the selected epoch (min) | Cut by the budget |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        c = compute_cost(result)
        cut, trained = budget_cut(result)
        budget = budget_label(result) if trained else "—"
        fits = f"{c['fits']:.3g}"
        search = (result.get("search") or {}).get("trials")
        if search:
            minutes = sum(t["train_seconds"] for t in search) / 60.0
            fits += f" (+{len(search)} search trials, {minutes:.1f} min once)"
        to_selected, train = c["minutes_to_selected"], c["train_minutes"]
        lines.append(
            f"| {result['method']} | {c['seeds']} | {budget} | {fits} | {c['epochs']:.0f} | "
            f"{'—' if train is None else f'{train:.1f}'} | "
            f"{'—' if to_selected is None else f'{to_selected:.1f}'} | "
            f"{f'{cut} of {trained}' if trained else '—'} |"
        )
    lines.extend(
        [
            "",
            "Budget: the training loop's epoch limit and early-stopping patience (— for "
            "closed-form and no-learning rows). Wall time to the selected epoch: training "
            "and per-epoch evaluation up to the selected epoch (time to quality), plus the "
            "other trials of a search; — where a run has no per-epoch curve. Cut by the "
            "budget: the models (one per seed and target) that reached the epoch limit "
            "with their best epoch less than `patience` (at least 1) epochs before it: "
            "early stopping had not ended them, so they may still have been improving (a "
            "short trial run shows here).",
            "",
        ]
    )
    return lines


def budget_label(result: dict) -> str:
    """``≤N epochs, patience P``: a result's training loop (:func:`training_settings`)."""
    loop = training_settings(result)
    return f"≤{loop['epochs']} epochs, patience {loop['patience']}"


def budget_cut(result: dict) -> tuple[int, int]:
    """``(cut, trained)``: of a result's trained models (one per seed and target), how
    many the epoch budget stopped before early stopping could: at the epoch limit,
    fewer than ``max(1, patience)`` epochs after their best epoch.

    A model counts as trained when it records ``epochs_run`` and ``best_epoch``
    (closed-form and no-learning rows do not); a searched run is read at its
    selected trial (its own ``epochs_run`` and ``best_epoch``).
    """
    loop = training_settings(result)
    cut = trained = 0
    for run in result.get("runs") or []:
        for part in run.get("parts") or [run]:
            ran, best = part.get("epochs_run"), part.get("best_epoch")
            if not isinstance(ran, int) or not isinstance(best, int):
                continue
            trained += 1
            # Early stopping ends a run once ``max(1, patience)`` epochs pass without a
            # better score (training.py): patience 0 stops after one such epoch.
            cut += ran >= loop["epochs"] and ran - best < max(1, loop["patience"])
    return cut, trained


#: The BVAEConfig fields a VAE (T.) / VAE (U.) label shows when not at their defaults.
_VAE_LABELLED = (
    "learning_rate",
    "weight_decay",
    "weight_average",
    "lr_decay_steps",
    "lr_final_fraction",
    "dropout",
    "beta_cap",
    "anneal_steps",
    "latent_dim",
    "precision",
    "sparse_updates",
    "sampled_softmax",
    "sampled_proposal",
)
#: BVAEConfig fields a method label leaves out (not choices of the method).
_UNLABELLED = ("behaviors", "num_items", "seed", "variant", "jit_compile")


def method_label(model: str, config: dict, tuned: Sequence[str] = ()) -> str:
    """The table label of a run: ``BVAE (gates=<mode>, <every other setting that
    differs from BVAEConfig's defaults>, -<ablation>...)``; baselines by name.

    Args:
      model: one of :data:`MODELS`.
      config: ``BVAEConfig.to_dict()`` of the run.
      tuned: config fields chosen by a ``--grid`` search (left out of the label).
    """
    if model not in SAMPLED_SOFTMAX_MODELS:
        return METHOD_LABELS[model]
    # JSON round trip: tuples read back from a result file are lists.
    defaults = json.loads(config_defaults_json())
    config = json.loads(json.dumps(config))
    if model != "bvae":  # VAE (T.) / (U.): the training settings that differ
        changed = [
            f"{key}={config[key]}"
            for key in _VAE_LABELLED
            if key in config and key not in tuned and config[key] != defaults[key]
        ]
        return METHOD_LABELS[model] + (f" ({', '.join(changed)})" if changed else "")
    parts = [f"gates={config.get('gate_mode', defaults['gate_mode'])}"]
    ablations = []
    # SDWL's form does nothing when SDWL is off (removed, fixed loss weights, or one
    # behavior): left out, so that such runs are one method whatever form they name.
    sdwl_off = (
        not config.get("use_sdwl", True)
        or config.get("loss_weights") is not None
        or len(config.get("behaviors") or ()) == 1
    )
    for key, default in defaults.items():
        value = config.get(key, default)
        if key in _UNLABELLED or key == "gate_mode" or key in tuned or value == default:
            continue
        if key == "sdwl_form" and sdwl_off:
            continue
        if key in ABLATIONS.values():
            ablations.append("-" + key[len("use_") :].upper())
        else:
            parts.append(f"{key}={value}")
    return f"{METHOD_LABELS[model]} ({', '.join(parts + ablations)})"


@functools.lru_cache(maxsize=1)
def config_defaults_json() -> str:
    """``BVAEConfig``'s default values as JSON (computed once)."""
    from bvae_tf.config import BVAEConfig

    return json.dumps(BVAEConfig(behaviors=("x",), num_items=1).to_dict())


def method_key(result: dict) -> str:
    """What makes two result files the same method: the model, the behaviors modelled
    and every configuration value except the seed (so seeds run separately are
    pooled) and ``name``, the Keras model name a baseline's ``get_config()`` records
    (``vae_plus_plus``, ``vae_plus_plus_1``, ...: it counts the models built before
    in the process, not a setting)."""
    runs = result.get("runs") or [{}]
    configs = [part["config"] for part in runs[0].get("parts", [runs[0]]) if "config" in part]
    settings = training_settings(result)
    skip = {"seed", "behaviors", "name"} | tuned_fields(settings["grid"], settings["boost_grid"])
    # Fields at BVAEConfig's defaults are left out, so that a file written before a
    # field existed pools with one written after (same method, same values).
    defaults = json.loads(config_defaults_json())
    stripped = [
        {
            k: v
            for k, v in json.loads(json.dumps(c)).items()
            if k not in skip and not (k in defaults and v == defaults[k])
        }
        for c in configs
    ]
    behaviors = result.get("behaviors")
    return json.dumps(
        [result.get("model"), behaviors, stripped, training_settings(result)], sort_keys=True
    )


def boost_suffix(boost_grid: str | None) -> str:
    """The label suffix of a run with ``--boost-grid`` (its value chosen on valid)."""
    if not boost_grid:
        return ""
    values = ",".join(f"{v:g}" for v in boost_values(boost_grid))
    return f" [cross_behavior_boost on valid: {values}]"


#: The training-loop flags that make two runs of one configuration different methods.
_TRAINING_FLAGS = ("epochs", "patience", "batch_size", "grid", "tune", "boost_grid")


def training_settings(result: dict) -> dict:
    """``{epochs, patience, batch_size, grid}`` of a result, read back from its command
    line.

    Raises:
      ValueError: if ``command`` is not a string or does not parse.
    """
    command = result.get("command", "")
    if not isinstance(command, str):
        raise ValueError(f"'command' must be a string, got {command!r}")
    # Parsed once per command: the report reads every file's settings many times.
    return json.loads(_training_settings_json(command))


def _settings(command: str, ignore: frozenset[str]) -> dict:
    """The settings an experiment command line gives, as parsed (a flag given twice
    is its last value, ``1e-3`` is ``0.001``), less the flags in ``ignore``; the
    ``--grid`` as its set of points, in any order.

    Raises:
      ValueError: if the command does not parse.
    """
    args = _command_args(command, strict=True)
    dropped = {flag.lstrip("-").replace("-", "_") for flag in ignore}
    settings = {k: v for k, v in vars(args).items() if k not in dropped | {"check", "verbose"}}
    settings["grid"] = sorted(json.dumps(p, sort_keys=True) for p in grid_points(args.grid))
    return settings


def _command_args(command: str, *, strict: bool) -> argparse.Namespace:
    """The flags of an experiment command line, parsed by :func:`_parser` (``strict``:
    every word must parse; else unknown words are left out).

    Raises:
      ValueError: naming the command, where it does not parse.
    """
    parser = _parser()

    def fail(message):  # argparse would print the usage and exit
        raise ValueError(f"its command does not parse ({message}): {command!r}")

    parser.error = fail
    try:
        words = shlex.split(command)
    except ValueError as e:  # an unclosed quote
        fail(str(e))
    rest = words[3:]  # after "python -m bvae_tf.experiment"
    return parser.parse_args(rest) if strict else parser.parse_known_args(rest)[0]


@functools.lru_cache(maxsize=4096)
def _training_settings_json(command: str) -> str:
    args = _command_args(command, strict=False)
    return json.dumps({flag: getattr(args, flag) for flag in _TRAINING_FLAGS})


def command_line(argv: Sequence[str]) -> str:
    """The command a result records: ``python -m bvae_tf.experiment`` and ``argv`` quoted
    as a shell reads them (``shlex.join``: a path with a space is quoted, plain flags
    and paths are written as they are)."""
    return "python -m bvae_tf.experiment " + shlex.join(argv)


#: Significant digits a stored per-epoch curve keeps: float32's (the training
#: statistics are float32; the curve's metrics are for figures and per-epoch
#: analysis, the selected epoch's metrics are stored in full beside it).
CURVE_DIGITS = 7


def pack_curve(curve: list[dict] | dict) -> dict[str, list]:
    """A per-epoch curve by column, ``{name: [value per epoch]}`` (None where an epoch
    lacks the name), each float rounded to :data:`CURVE_DIGITS` significant digits:
    what a result file stores, about a third of the rows' size (each name is written
    once, not once per epoch). A packed curve is returned as it is.

    Args:
      curve: ``[{name: number}]``, one object per epoch (``training.FitResult.history``).
    """
    if isinstance(curve, dict):
        return curve
    names = sorted({name for row in curve for name in row})

    def stored(value):
        return float(f"{value:.{CURVE_DIGITS}g}") if isinstance(value, float) else value

    return {name: [stored(row.get(name)) for row in curve] for name in names}


def curve_rows(curve: list[dict] | dict | None) -> list[dict]:
    """A stored per-epoch curve as rows, ``[{name: number}]`` one per epoch: a packed
    one (:func:`pack_curve`) unpacked, without its None entries; rows (older files) as
    they are; ``[]`` for none.

    Raises:
      ValueError: if a packed curve's columns are not lists of one length.
    """
    if not curve:
        return []
    if isinstance(curve, list):
        return curve
    if not isinstance(curve, dict) or not all(isinstance(v, list) for v in curve.values()):
        raise ValueError("a packed curve must be an object of lists (one value per epoch)")
    lengths = {len(v) for v in curve.values()}
    if len(lengths) != 1:
        raise ValueError(f"a packed curve's columns differ in length: {sorted(lengths)}")
    (n,) = lengths
    return [{k: v[i] for k, v in curve.items() if v[i] is not None} for i in range(n)]


def stored_result(result: dict) -> dict:
    """``result`` as a file stores it: each run's (and run part's) curve packed
    (:func:`pack_curve`); ``result`` itself is left as it is."""

    def packed(record: dict) -> dict:
        return {**record, "curve": pack_curve(record["curve"])} if record.get("curve") else record

    runs = []
    for run in result["runs"]:
        stored = dict(packed(run))  # a copy: the result in memory keeps its rows
        if run.get("parts"):
            stored["parts"] = [packed(part) for part in run["parts"]]
        runs.append(stored)
    return {**result, "runs": runs}


def _write(path: pathlib.Path, result: dict, k: int) -> None:
    result["summary"] = {p: summarize(result["runs"], p) for p in PROTOCOLS}
    # Each file is written whole or not at all (a kill mid-write leaves the old one),
    # so a resumed command never meets a truncated result.
    for suffix, text in (
        (".json", json.dumps(stored_result(result), indent=1, sort_keys=True)),
        (".md", render_markdown([result], k)),
    ):
        tmp = path.parent / f"{path.name}{suffix}.tmp"
        tmp.write_text(text)
        tmp.replace(path.parent / f"{path.name}{suffix}")


#: Trained baselines, built by :func:`_trained_baseline` (the BVAE family: ``_config``).
_TRAINED_BASELINES = ("vae_pp", "ehcf", "ngcf", "recvae")


def _trained_baseline(
    variant: str,
    args: argparse.Namespace,
    *,
    behaviors: Sequence[str],
    targets: Sequence[str],
    num_items: int,
    num_users: int,
    lr: float,
    seed: int,
    steps_per_pass: int,
):
    """The unprepared model of a trained baseline from the experiment's flags.

    ``behaviors`` are the data's, ``targets`` the run's (one for the per-target
    models); ``steps_per_pass`` is RecVAE's updates per encoder or decoder pass.
    Also called by ``--check`` with placeholder sizes, so a value the model refuses
    stops the command before any data is read.

    Raises:
      ValueError: a setting the model refuses (``base.check_settings``).
    """
    if variant == "vae_pp":
        from bvae_tf.baselines import vaepp

        overrides = {
            key: value
            for key, value in (
                ("latent", args.latent_dim),
                ("dropout", args.dropout),
                ("beta_cap", args.beta_cap),
                ("anneal_steps", args.anneal_steps),
                ("beta_schedule", args.beta_schedule),
            )
            if value is not None
        }
        return vaepp.VAEPlusPlus(
            behaviors, num_items, targets=targets, learning_rate=lr, seed=seed, **overrides
        )
    from bvae_tf.baselines import recvae, transductive

    if variant == "ehcf":
        return transductive.EHCF(
            behaviors,
            num_items,
            num_users,
            dropout=args.ehcf_dropout,
            learning_rate=lr,
            seed=seed,
        )
    if variant == "ngcf":
        return transductive.NGCF(
            targets[0],
            num_items,
            num_users,
            layer_sizes=(64,) * args.ngcf_layers,
            l2=args.ngcf_l2,
            learning_rate=lr,
            seed=seed,
        )
    return recvae.RecVAE(
        targets[0],
        num_items,
        gamma=args.recvae_gamma,
        learning_rate=lr,
        steps_per_pass=steps_per_pass,
        seed=seed,
    )


def _variant(model: str) -> str:
    """The ``BVAEConfig.variant`` a whole-data ``--model`` trains (per-target models:
    :data:`PER_TARGET`)."""
    return {"vae_u": "union_vae", "ehcf": "ehcf"}.get(model, "bvae")


def machine() -> dict:
    """What a run ran on, kept in each run record (report captions read it).

    Returns:
      ``{"cpus": int, "cpu": str, "gpus": [str, ...]}``: logical CPUs
      (``os.cpu_count``), the CPU's model name (``/proc/cpuinfo``, else
      ``platform.processor()``, else ``""``), and the name of each GPU TensorFlow sees.
    """
    import tensorflow as tf

    cpu = platform.processor()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    gpus = [
        tf.config.experimental.get_device_details(d).get("device_name", d.name)
        for d in tf.config.list_physical_devices("GPU")
    ]
    return {"cpus": os.cpu_count() or 0, "cpu": cpu, "gpus": gpus}


def run(args) -> dict:
    """Runs one experiment (all seeds) and writes its JSON and Markdown."""
    from bvae_tf import data as D

    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    data = D.load_release(args.data, args.behaviors)
    empty = [
        f"{b} ({split})"
        for b in data.behaviors
        for split in (F.TRAIN, F.EVAL, F.TEST)
        if not len(data.split_users(split, [b]))
    ]
    if empty:  # nothing to learn, select on or score: a 0 would read as a result
        raise ValueError(
            f"{str(args.data)!r}: no interactions for {', '.join(empty)}; every modelled "
            "behavior needs train, valid and test interactions (choose others with "
            "--behaviors)"
        )
    name = args.name or args.model
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    label = METHOD_LABELS[args.model]
    if args.model in SAMPLED_SOFTMAX_MODELS:
        behaviors = data.behaviors[:1] if args.model == "vae_t" else data.behaviors
        cfg = _config(args, behaviors, data.num_items, args.first_seed, _variant(args.model))
        label = method_label(args.model, cfg.to_dict(), tuned_fields(args.grid, args.boost_grid))
    label += boost_suffix(args.boost_grid)
    if args.grid:
        label += f" [tuned: {'; '.join(args.grid)}]"
    if args.tune:
        label += f" [tuned: {args.tune} trials]"
    result = {
        "name": name,
        "model": args.model,
        "method": label,
        "data": str(args.data),
        "behaviors": list(data.behaviors),
        "command": command_line(args.argv),
        "data_digest": data_digest(args.data),
        # The protocols the runs record (``runs[i][HONEST]``, and ``[PAPER]`` too with
        # --paper-protocol for models with epochs).
        "protocol": "; ".join(
            PROTOCOL_TITLES[p]
            for p in (HONEST, PAPER)
            if p == HONEST or (args.paper_protocol and args.model not in BASELINES)
        ),
        "runs": [],
    }
    # Every training keeps its state here after each epoch (training.fit), so that a
    # killed run resumes at its next epoch; removed once the result is written.
    args.command, args.checkpoint_root = result["command"], out / f"{name}.ckpt"
    args.data_digest = result["data_digest"]
    kept = (
        None
        if args.overwrite
        else _kept_result(out / f"{name}.json", result["command"], args.data_digest, args.data)
    )
    done = {r.get("seed"): r for r in (kept or {}).get("runs", [])}
    if args.selected_from:
        args.selected_points, args.selected_source, args.selected_trials = selected_points(
            args.selected_from, result["command"], args.data_digest, data.behaviors
        )
        for seed, kept_run in done.items():  # kept seeds trained RESULT's choice then
            for part in kept_run.get("parts") or [kept_run]:
                key = _choice_key(kept_run, part, data.behaviors)
                chosen = args.selected_points.get(key)
                if part.get("selected") != chosen:
                    raise ValueError(
                        f"{out / f'{name}.json'} keeps seed {seed} trained on "
                        f"{part.get('selected')} for {key}, but "
                        f"{args.selected_from} now chooses {chosen} (its search was run "
                        "again?): move that file away, or pass --overwrite, to train the "
                        "current choice"
                    )
        args.reuse_runs = reuse_sources(
            args.reuse_from, result["command"], args.data, args.data_digest
        )
        logging.info(
            "%s: the choice of %s (seed %s's search): %s",
            name,
            args.selected_from,
            args.selected_source["seed"],
            "; ".join(f"{k} {v}" for k, v in args.selected_points.items()),
            extra={console.CONSOLE: True},
        )
    if args.model in BASELINES:
        record = done.get(None)
        if record is None:
            record = _fit_baseline(args, data, parts=out / f"{name}.parts")
            record["machine"] = machine()
        else:
            logging.info("%s: kept from %s", name, out / f"{name}.json")
        result["runs"].append(record)
        _write(out / name, result, args.table_k)
        shutil.rmtree(out / f"{name}.parts", ignore_errors=True)
        logging.info("%s: test %s", name, _brief(record[HONEST]), extra={console.CONSOLE: True})
        return result
    if args.tune:
        if kept and "search" in kept:
            result["search"] = kept["search"]
            logging.info("%s: the search kept from %s", name, out / f"{name}.json")
        else:
            best, trials = _search(args, data, _variant(args.model), out)
            result["search"] = {"best": best, "trials": trials, "algorithm": args.tune_algorithm}
        args = trial_args(args, result["search"]["best"], len(data.train_users()))
        # The first seed with the best values is the best trial itself (same seed and
        # settings, so the same run bit for bit): its finished state is read back.
        trial = args.checkpoint_root / _tune_trial(args.first_seed, result["search"]["best"])
        first = _state_dir(args.checkpoint_root, args.first_seed, data.behaviors)
        if trial.is_dir() and not first.exists() and args.first_seed not in done:
            trial.rename(first)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        if seed in done:  # the same command finished this seed before
            result["runs"].append(done[seed])
            logging.info(
                "%s: seed %d kept from %s",
                name,
                seed,
                out / f"{name}.json",
                extra={console.CONSOLE: True},
            )
            continue
        logging.info("%s: seed %d", name, seed, extra={console.CONSOLE: True})
        log_dir = None if args.log_dir is None else pathlib.Path(args.log_dir) / f"{name}_s{seed}"
        if args.model in PER_TARGET:
            parts = [
                _resumable_part(
                    out / f"{name}.parts" / f"s{seed}-{b}.json",
                    result["command"],
                    args.data_digest,
                    functools.partial(
                        _train_tuned,
                        args,
                        data,
                        (b,),
                        variant=PER_TARGET[args.model],
                        seed=seed,
                        log_dir=None if log_dir is None else log_dir / b,
                    ),
                )
                for b in data.behaviors
            ]
            record = _merge_runs(parts)
        else:
            record = _train_tuned(
                args, data, data.behaviors, variant=_variant(args.model), seed=seed, log_dir=log_dir
            )
        record["seed"] = seed
        if "reused_from" not in record:  # a reused run keeps the machine that trained it
            record["machine"] = machine()
        result["runs"].append(record)
        _write(out / name, result, args.table_k)
        logging.info(
            "%s: seed %d test %s", name, seed, _brief(record[HONEST]), extra={console.CONSOLE: True}
        )
    shutil.rmtree(out / f"{name}.parts", ignore_errors=True)
    shutil.rmtree(args.checkpoint_root, ignore_errors=True)
    return result


def _command_difference(path: pathlib.Path, command: str) -> str:
    """`` (it has '--seeds 1' where this has '--seeds 2'; this adds '--lr 0.01')``: the
    flags (each with its values) in which the command ``path`` records differs from
    ``command`` (at most three named; ``--flag=value`` read as ``--flag value``, a
    repeated flag's occurrences together; :data:`_LOCATION_FLAGS` left out); ``""``
    when it records no command or none differs."""
    try:
        kept = json.loads(path.read_text()).get("command")
        changes = _flag_changes(kept, command, _LOCATION_FLAGS)
    except (OSError, ValueError, AttributeError, TypeError):
        return ""
    if not changes:
        return ""
    return f" ({'; '.join(changes[:3])}{'; …' if len(changes) > 3 else ''})"


def _flag_changes(kept: str, command: str, ignore: frozenset[str] = frozenset()) -> list[str]:
    """How ``command`` differs from the command line ``kept``, flag by flag (each with
    its values; flags in ``ignore`` left out), e.g. ``["it has '--seeds 1' where this
    has '--seeds 2'", "this adds '--lr 0.01'"]``.

    Raises:
      ValueError: if either does not split into words (an unclosed quote).
    """
    old, new = _flag_groups(shlex.split(kept)), _flag_groups(shlex.split(command))
    changes = []
    for flag in dict.fromkeys([*old, *new]):
        was, now = old.get(flag), new.get(flag)
        if was == now or flag in ignore:
            continue
        if was is not None and now is not None:
            changes.append(f"it has {shlex.join(was)!r} where this has {shlex.join(now)!r}")
        elif now is not None:
            changes.append(f"this adds {shlex.join(now)!r}")
        else:
            changes.append(f"it has {shlex.join(was)!r}, this does not")
    return changes


def _flag_groups(words: list[str]) -> dict[str, list[str]]:
    """``{flag: [flag, value, ..., flag, value, ...]}`` of a command line's words, in
    order (a repeated flag's occurrences under one key); the words before the first
    ``--flag`` (the program) are keyed by ``""``."""
    groups: dict[str, list[str]] = {}
    flag = ""
    for word in words:
        if word.startswith("--"):
            flag, _, value = word.partition("=")
            groups.setdefault(flag, []).extend([flag] + ([value] if "=" in word else []))
        else:
            groups.setdefault(flag, [flag] if flag else []).append(word)
    return groups


#: Flags that say where a run's files are, not what it trains: left out when a kept
#: result's command is compared (:func:`_same_command`). The result file is found in
#: ``--out`` by its name, ``--reuse-from`` only says where a seed may be taken from
#: (:func:`reused_run`), the data is compared by its files (:func:`_same_data`), and a
#: kept seed's ``--selected-from`` choice by the choice it records (:func:`run`).
_LOCATION_FLAGS = frozenset(("--data", "--out", "--log-dir", "--reuse-from", "--selected-from"))


def _same_command(kept, command: str) -> bool:
    """Whether a kept file's command is ``command`` but for :data:`_LOCATION_FLAGS`:
    the same flags with the same values (a repeated flag's values in their order; the
    flags in any order, ``--flag=value`` as ``--flag value``)."""
    if not isinstance(kept, str):
        return False
    try:
        old, new = _flag_groups(shlex.split(kept)), _flag_groups(shlex.split(command))
    except ValueError:  # an unclosed quote: not a command this module wrote
        return False
    for groups in (old, new):
        for flag in _LOCATION_FLAGS:
            groups.pop(flag, None)
    return old == new


def _same_data(kept: dict, data, digest: str | None) -> str:
    """``""`` if a kept result was made from the data folder ``data``, else why not.

    Compared by the data files' SHA-256 digest (:func:`data_digest`; ``digest``, or
    computed here) where the result records one; else, for a result written before
    results recorded it, by the folder its ``data`` names, resolved from the working
    folder as the run resolved it (real paths: a link to the same folder is the same).
    Not compared where ``data`` is not a folder (the run names that) or the result
    records neither."""
    if data is None or not pathlib.Path(data).is_dir():
        return ""
    if "data_digest" in kept:
        if kept["data_digest"] == (digest or data_digest(data)):
            return ""
        return f"the files of --data {str(data)!r} differ from those it was trained on"
    recorded = kept.get("data")
    if not isinstance(recorded, str) or os.path.realpath(recorded) == os.path.realpath(data):
        return ""
    if not pathlib.Path(recorded).exists():
        return (
            f"it records no data digest, and its --data {recorded!r} does not exist from "
            "here, so its data cannot be compared with --data: run from the folder it was "
            "run from"
        )
    return (
        f"it records no data digest, and its --data {recorded!r} is another folder than "
        f"--data {str(data)!r}"
    )


def _kept_result(path: pathlib.Path, command: str, digest: str | None, data=None) -> dict | None:
    """The result ``path`` holds if the same ``command`` wrote it from the same data
    (its finished seeds are kept, so that the command resumes); None if there is none,
    it cannot be read, or another command or other data files wrote it.

    Args:
      path: a result JSON file.
      command: the experiment's command line (compared by :func:`_same_command`).
      digest: :func:`data_digest` of ``data``, if known.
      data: the ``--data`` folder (compared by :func:`_same_data`); None: not compared.
    """
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or not _same_command(kept.get("command"), command):
        return None
    if data is not None and _same_data(kept, data, digest):
        return None
    if digest is not None and kept.get("data_digest", digest) != digest:
        return None
    if not isinstance(kept.get("runs"), list):
        return None
    return kept


def _resumable_part(
    path: pathlib.Path, command: str, digest: str, train: Callable[[], dict]
) -> dict:
    """One part of a run, kept until the whole result is written, so that a killed
    run resumes at its next part: a target of a one-model-per-target method, or one
    lambda of EASE's grid.

    Args:
      path: the part's JSON file (``<out>/<name>.parts/s<seed>-<behavior>.json``,
        ``<out>/<name>.parts/ease-l2-<lambda>.json``).
      command: the experiment's command line; a part written by another command is
        trained again.
      digest: :func:`data_digest` of ``--data``; a part of other data is trained again.
      train: trains the part and returns its record.

    Returns:
      The run record, read back or trained.
    """
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            saved = {}
        if (
            isinstance(saved, dict)
            and _same_command(saved.get("command"), command)
            and saved.get("data_digest", digest) == digest
            and "run" in saved
        ):
            logging.info(
                "%s: finished earlier, read back", path.name, extra={console.CONSOLE: True}
            )
            return saved["run"]
    run = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"command": command, "data_digest": digest, "run": run}, sort_keys=True)
    )
    tmp.replace(path)
    return run


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _metric_names(run: dict, protocol: str) -> set[tuple[str, str]]:
    """``(behavior, metric)`` names a run records under ``protocol`` (empty if none)."""
    return {(b, m) for b, values in run.get(protocol, {}).items() for m in values}


#: The flags of ``--combine`` (the others set up a run).
_COMBINE_FLAGS = frozenset(
    {"combine", "markdown", "anchor", "table_k", "protocols", "verbose", "overwrite"}
)


def _replaceable_table(path: str | pathlib.Path) -> bool:
    """Whether ``--markdown PATH`` may be written without ``--overwrite``: it does not
    exist, is empty, or starts as :func:`render_markdown`'s output does (a protocol's
    title), so a README or a hand-written note is never replaced by mistake."""
    path = pathlib.Path(path)
    try:
        if not path.exists() or path.stat().st_size == 0:
            return True
        with path.open(encoding="utf-8", errors="replace") as f:
            first = f.readline().rstrip("\n")
    except OSError:
        return False
    return first in {f"### {t}" for t in PROTOCOL_TITLES.values()}


#: Metric families (the name before ``@K``) whose values are shares in [0, 1].
_SHARE_METRICS = frozenset(M.METRICS)


#: The metrics every selection, comparison and summary reads of each behavior's test
#: scores (the tables show any other one a file lacks as nan).
_REQUIRED_METRICS = ("ndcg@5",)
#: Largest gap allowed between a run's honest NDCG@5 and the mean of its
#: ``test_per_user`` values (written by the same scoring; 561 kept runs differ by
#: at most 2.1e-8, float32 sums).
PER_USER_TOLERANCE = 1e-6


def check_result(result: dict) -> None:
    """Checks what :func:`combine` and ``bvae_tf.report`` read of a result file.

    A result (as :func:`run` writes it) has string ``command``, ``model`` and
    ``method``; ``behaviors``, a non-empty list of names; ``model`` one of
    :data:`MODELS`; and ``runs``, each with ``honest`` (and optionally ``paper`` and
    ``valid``) metrics for exactly those behaviors, the same metric names in every run,
    every value a finite number, the honest ones with at least ``ndcg@5``, and
    ``train_seconds`` (if any) a finite number >= 0. A run's
    optional ``seed`` is an integer, once per file; ``best_epoch`` and ``epochs_run``
    integers (or objects of one per behavior); ``config`` an object (required for
    BVAE, whose variants the report reads from it; its ``loss_weights`` one number per
    behavior); ``curve`` a list of objects of numbers (None: not measured) with an
    ``epoch``, or those columns packed (:func:`pack_curve`); ``test_per_user`` one
    value per test user (the ``num_users`` of the behavior's honest metrics), averaging
    to its honest ``ndcg@5`` (within :data:`PER_USER_TOLERANCE`);
    ``machine`` (:func:`machine`) an object with integer ``cpus``.

    Raises:
      ValueError: naming the first key that is missing or malformed.
    """
    for key in ("command", "model", "method"):
        if not isinstance(result.get(key), str):
            raise ValueError(f"'{key}' must be a string, got {result.get(key)!r}")
    behaviors = result.get("behaviors")
    if not (
        isinstance(behaviors, list)
        and behaviors
        and all(isinstance(b, str) and b for b in behaviors)
        and len(set(behaviors)) == len(behaviors)
    ):
        raise ValueError(f"'behaviors' must be a list of distinct names, got {behaviors!r}")
    if result["model"] not in MODELS:
        raise ValueError(f"'model' must be one of {', '.join(MODELS)}, got {result['model']!r}")
    training_settings(result)  # its command must parse
    seeds: set[int] = set()
    names: dict[str, set[str]] = {}  # behavior -> the first run's metric names
    for i, run in enumerate(result["runs"]):
        where = f"runs[{i}]"
        seed = run.get("seed")
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ValueError(f"{where}.seed must be an integer, got {seed!r}")
            if seed in seeds:
                raise ValueError(f"{where} repeats seed {seed} of an earlier run")
            seeds.add(seed)
        _check_fit(run, where, result["model"], behaviors)
        parts = run.get("parts", [])
        if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
            raise ValueError(f"{where}.parts must be a list of objects (one fit each)")
        for j, part in enumerate(parts):
            _check_fit(part, f"{where}.parts[{j}]", result["model"], behaviors)
        for protocol in (HONEST, PAPER, "valid"):
            if protocol not in run:
                continue
            metrics = run[protocol]
            if not isinstance(metrics, dict) or set(metrics) != set(behaviors):
                got = sorted(metrics) if isinstance(metrics, dict) else metrics
                raise ValueError(
                    f"{where}.{protocol} must hold the metrics of the behaviors "
                    f"{behaviors}, got {got!r}"
                )
            for b, values in metrics.items():
                if not isinstance(values, dict) or not values:
                    raise ValueError(f"{where}.{protocol}.{b} must be an object of metrics")
                bad = [m for m, v in values.items() if not (_is_number(v) and math.isfinite(v))]
                if bad:
                    raise ValueError(
                        f"metrics that are not finite numbers: {protocol} {b} "
                        f"{', '.join(bad[:5])} ({where})"
                    )
                # Ranking metrics are shares in [0, 1]; the user count a whole number.
                out_of_range = [
                    m
                    for m, v in values.items()
                    if (m.partition("@")[0] in _SHARE_METRICS and not 0.0 <= v <= 1.0)
                    or (m == "num_users" and not (v >= 0 and float(v).is_integer()))
                ]
                if out_of_range:
                    raise ValueError(
                        f"metrics out of range: {protocol} {b} "
                        + ", ".join(f"{m}={values[m]!r}" for m in out_of_range[:5])
                        + f" ({where}; ranking metrics lie in [0, 1], num_users is a count)"
                    )
                missing = [m for m in _REQUIRED_METRICS if m not in values]
                if protocol == HONEST and missing:
                    raise ValueError(
                        f"{where}.{protocol}.{b} lacks {', '.join(missing)} (what every "
                        "comparison reads)"
                    )
                if protocol == HONEST and names.setdefault(b, set(values)) != set(values):
                    raise ValueError(
                        f"{where}.{protocol}.{b} has the metrics {sorted(values)}, the first "
                        f"run {sorted(names[b])}"
                    )
        seconds = run.get("train_seconds", 0.0)  # older records may lack it
        if not (_is_number(seconds) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"{where}.train_seconds must be a finite number >= 0, got {seconds!r}")
        per_user = run.get("test_per_user")
        if per_user is not None and not (
            isinstance(per_user, dict)
            and set(per_user) <= set(behaviors)
            and all(
                isinstance(v, list) and all(_is_number(x) and 0.0 <= x <= 1.0 for x in v)
                for v in per_user.values()
            )
        ):
            raise ValueError(
                f"{where}.test_per_user must map behaviors to lists of per-user NDCG@5 "
                "values in [0, 1]"
            )
        for b, values in (per_user or {}).items():
            users = run.get(HONEST, {}).get(b, {}).get("num_users")
            if users is not None and len(values) != users:
                raise ValueError(
                    f"{where}.test_per_user.{b} has {len(values)} values, for "
                    f"{users:g} test users (its honest num_users)"
                )
            # One scoring wrote both: a mean that differs from the honest NDCG@5 is an
            # edited file (float32 sums differ by < 1e-7 from the float64 mean).
            honest_ndcg = run.get(HONEST, {}).get(b, {}).get("ndcg@5")
            if values and honest_ndcg is not None:
                mean = math.fsum(values) / len(values)
                if abs(mean - honest_ndcg) > PER_USER_TOLERANCE:
                    raise ValueError(
                        f"{where}.test_per_user.{b} averages {mean:.6g} but "
                        f"{where}.{HONEST}.{b}.ndcg@5 is {honest_ndcg:.6g}: one test scoring "
                        "writes both, so one of them was edited"
                    )
        if result["model"] == "bvae" and "config" not in run:
            raise ValueError(f"{where} of a BVAE run has no 'config'")
        config = run.get("config", {})
        host = run.get("machine")  # written since runs record it (see machine())
        if host is not None and not (
            isinstance(host, dict)
            and type(host.get("cpus")) is int
            and isinstance(host.get("gpus", []), list)
            and all(isinstance(g, str) for g in host.get("gpus", []))
        ):
            raise ValueError(
                f"{where}.machine must be an object with an integer 'cpus' (and a list of "
                "GPU names 'gpus')"
            )
        weights = config.get("loss_weights")
        if weights is not None and not (
            isinstance(weights, list)
            and len(weights) == len(behaviors)
            and all(_is_number(w) for w in weights)
        ):
            raise ValueError(
                f"{where}.config.loss_weights must be one number per behavior "
                f"({len(behaviors)}), got {weights!r}"
            )


@functools.cache
def _config_types() -> dict[str, type]:
    """``BVAEConfig``'s keys -> the type of their default (None defaults left out)."""
    from bvae_tf.config import BVAEConfig  # not bvae_tf.model: no TensorFlow to import

    defaults = BVAEConfig(behaviors=("x",), num_items=1).to_dict()
    return {k: type(v) for k, v in defaults.items() if v is not None}


def _check_fit(record: dict, where: str, model: str, behaviors: Sequence[str]) -> None:
    """What :func:`check_result` checks of one fit: a run or one of its ``parts``.

    ``best_epoch`` and ``epochs_run`` are integers >= 0 (one per behavior for a run of a
    per-target model, :data:`PER_TARGET`); ``config`` an object whose BVAEConfig
    settings have their default's type (None: not set); ``curve`` a list of objects of
    numbers (None: not measured) with a whole, finite ``epoch`` >= 0, or the same
    packed by column (:func:`pack_curve`).
    """
    for key in ("best_epoch", "epochs_run"):
        value = record.get(key, 0)
        per_behavior = isinstance(value, dict)
        values = value.values() if per_behavior else [value]
        if (
            (per_behavior and (model not in PER_TARGET or not set(value) <= set(behaviors)))
            or not all(type(v) is int and v >= 0 for v in values)
        ):  # fmt: skip
            raise ValueError(
                f"{where}.{key} must be an integer >= 0 (or one per behavior, for the "
                f"one-model-per-target {', '.join(PER_TARGET)}), got {value!r}"
            )
    config = record.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"{where}.config must be an object, got {config!r}")
    if model in SAMPLED_SOFTMAX_MODELS:  # BVAEConfig.to_dict()
        types = _config_types()
        for key, value in config.items():
            want = types.get(key)
            if value is None or want is None:
                continue
            ok = (
                type(value) is bool
                if want is bool
                else _is_number(value)
                and (want is not int or float(value).is_integer())
                and math.isfinite(value)
                if want in (int, float)
                else isinstance(value, want)
            )
            if not ok:
                raise ValueError(
                    f"{where}.config.{key} must be a {want.__name__} (BVAEConfig), got {value!r}"
                )
    try:
        curve = curve_rows(record.get("curve"))
    except ValueError as e:
        raise ValueError(f"{where}.curve: {e}") from e
    if not isinstance(curve, list) or not all(
        isinstance(e, dict)
        and _is_number(e.get("epoch"))
        and math.isfinite(e["epoch"])
        and float(e["epoch"]).is_integer()
        and e["epoch"] >= 0
        and all(_is_number(v) or v is None for v in e.values())
        for e in curve
    ):
        raise ValueError(
            f"{where}.curve must be a list of objects of numbers with a whole 'epoch' >= 0"
        )
    if curve and "best_epoch" not in record:
        raise ValueError(f"{where} has a curve but no 'best_epoch'")


def dataset_name(result: dict) -> str:
    """The name of the data folder a result was trained on (``data``'s last part, e.g.
    ``"JD"``); ``""`` when it records none."""
    return pathlib.PurePath(str(result.get("data") or "")).name


def combine(paths: Sequence[str | pathlib.Path]) -> list[dict]:
    """Result files as table rows: files of the same method pooled (e.g. seeds run
    separately), each with its ``summary`` and table label (``method``).

    Args:
      paths: result JSON files written by this module.

    Returns:
      One result per method, in the order first seen.

    Raises:
      ValueError: naming a file that cannot be read, is not JSON, holds no finished run
        or a metric that is not a finite number; a file given twice; two files that
        hold the same seed of one method, or the same seedless run (a copy counted
        twice); two runs of one method with the same ``test_per_user`` (one run under
        two seeds); files of different datasets (``data``'s last folder name) or data files
        (``data_digest``, where recorded); or runs of one method scoring different
        numbers of test users.
    """
    results: list[dict] = []
    seen: dict[tuple[str, object], str] = {}  # (method key, seed) -> the file holding it
    runs_by_scores: dict[tuple[str, str], tuple[str, object]] = {}  # -> (file, seed)
    given: set[pathlib.Path] = set()
    datasets: dict[str, str] = {}  # dataset name -> the first file of it
    digests: dict[str, str] = {}  # data_digest -> the first file of it
    for path in paths:
        if pathlib.Path(path).resolve() in given:
            raise ValueError(f"{str(path)!r} is given twice")
        given.add(pathlib.Path(path).resolve())
        try:
            result = json.loads(pathlib.Path(path).read_text())
            if not isinstance(result, dict) or not result.get("runs"):
                raise ValueError("it holds no finished run")
            runs = result["runs"]
            if not isinstance(runs, list) or not all(
                isinstance(r, dict) and isinstance(r.get(HONEST), dict) for r in runs
            ):
                raise ValueError("'runs' is not a list of finished runs (each with test metrics)")
            check_result(result)  # names a missing label ('method') among the rest
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot use {str(path)!r}: {e}") from e
        dataset = dataset_name(result)
        datasets.setdefault(dataset, str(path))
        digest = result.get("data_digest")
        if digest is not None:
            digests.setdefault(digest, str(path))
            if len(digests) > 1:
                other = next(f for d, f in digests.items() if d != digest)
                raise ValueError(
                    f"{str(path)!r} and {other!r} were trained on different data files "
                    "(their data_digest differs: the files changed, or another folder of "
                    "the same name): they cannot share a table"
                )
        if len(datasets) > 1:
            (a, fa), (b, fb) = list(datasets.items())[:2]
            raise ValueError(
                f"results of different datasets cannot share a table: {fa!r} ({a or '?'}) "
                f"and {fb!r} ({b or '?'})"
            )
        key = method_key(result)
        for run in result["runs"]:
            first = seen.setdefault((key, run.get("seed")), str(path))
            if first != str(path):
                what = "a run" if run.get("seed") is None else f"seed {run['seed']}"
                raise ValueError(
                    f"{str(path)!r} and {first!r} both hold {what} of {result['method']!r}: "
                    "pass each run once"
                )
            # One run under two seeds (a copy with its seed changed) would pass as two.
            per_user = run.get("test_per_user")
            if per_user:
                scores = json.dumps(per_user, sort_keys=True)
                other = runs_by_scores.setdefault((key, scores), (str(path), run.get("seed")))
                if other != (str(path), run.get("seed")):
                    raise ValueError(
                        f"seed {run.get('seed')} of {str(path)!r} and seed {other[1]} of "
                        f"{other[0]!r} ({result['method']!r}) have the same test score for "
                        "every user: one run under two seeds (a copy?); pass each run once"
                    )
        same = [r for r in results if method_key(r) == key]
        if same:  # e.g. seeds run in separate invocations: pool them
            first_file = seen[(key, same[0]["runs"][0].get("seed"))]
            for b in result["behaviors"]:  # the same test users (files without a digest)
                ours, theirs = (r["runs"][0][HONEST][b].get("num_users") for r in (result, same[0]))
                if ours != theirs:
                    raise ValueError(
                        f"{str(path)!r} scores {ours} {b} test users, {first_file!r} of the "
                        f"same method {result['method']!r} {theirs}: runs of different data "
                        "cannot be pooled"
                    )
            for protocol in (HONEST, PAPER):
                ours, theirs = (_metric_names(r["runs"][0], protocol) for r in (result, same[0]))
                if ours != theirs:
                    raise ValueError(
                        f"{str(path)!r} records other {protocol} metrics than "
                        f"{seen[(key, same[0]['runs'][0].get('seed'))]!r} of the same method "
                        f"{result['method']!r} (e.g. files from different code): only "
                        f"one has {sorted(ours ^ theirs)[:5]}"
                    )
            same[0]["runs"] += result["runs"]
        else:
            results.append(result)
    for result in results:
        result["summary"] = {p: summarize(result["runs"], p) for p in PROTOCOLS}
        settings = training_settings(result)
        grid = settings["grid"]
        if result.get("model") == "bvae" and "config" in result["runs"][0]:
            config = result["runs"][0]["config"]
            result["method"] = method_label(
                "bvae", config, tuned_fields(grid, settings["boost_grid"])
            ) + boost_suffix(settings["boost_grid"])
        suffix = f" [tuned: {'; '.join(grid)}]"
        if grid and not result["method"].endswith(suffix):  # run() labels it already
            result["method"] += suffix
        # A --tune search: the chosen values are in the label, the budget beside them.
        suffix = f" [tuned: {settings['tune']} trials]"
        if settings.get("tune") and not result["method"].endswith(suffix):
            result["method"] += suffix
    # A row that models fewer behaviors than the table's widest says which it models:
    # its scores are not like for like with the other rows' (one method on fewer
    # behaviors scores differently; a row missing from a behavior's block is explained).
    widest = max((len(r.get("behaviors") or ()) for r in results), default=0)
    for result in results:
        behaviors = result.get("behaviors") or []
        if len(behaviors) < widest:
            result["method"] += f" [{' + '.join(behaviors)} only]"
    labels = [r["method"] for r in results]
    for label in dict.fromkeys(labels):  # same label, other training loop: say which
        group = [r for r in results if r["method"] == label]
        loops = [training_settings(r) for r in group]
        if len({(t["epochs"], t["patience"]) for t in loops}) > 1:
            for result, t in zip(group, loops, strict=True):
                result["method"] += f" [≤{t['epochs']} epochs, patience {t['patience']}]"
    labels = [r["method"] for r in results]
    for label in dict.fromkeys(labels):  # same label, other settings (a baseline's): say which
        group = [r for r in results if r["method"] == label]
        if len(group) < 2:
            continue
        configs = [_first_config(r) for r in group]
        differ = [
            k
            for k in dict.fromkeys(k for c in configs for k in c)
            if len({repr(c.get(k)) for c in configs}) > 1
        ]
        for result, config in zip(group, configs, strict=True):
            if differ:
                result["method"] += f" ({', '.join(f'{k}={config.get(k)}' for k in differ)})"
    return results


def _first_config(result: dict) -> dict:
    """The configuration of a result's first run (of its first part, for one model per
    target), without what does not tell two methods apart (seed, behaviors)."""
    run = result["runs"][0]
    part = (run.get("parts") or [run])[0]
    return {k: v for k, v in part.get("config", {}).items() if k not in ("seed", "behaviors")}


def check_commands(lines: Iterable[str]) -> int:
    """Checks experiment commands as ``--check`` does, in one process.

    Args:
      lines: one command's flags per line, shell-quoted (``shlex``); empty lines skipped.

    Returns:
      0 when every command passes, else 2 (each failure printed to stderr as
      ``command N: <error>``, N counted from 1 over the non-empty lines).
    """
    failed = 0
    for number, line in enumerate((x for x in lines if x.strip()), 1):
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            try:
                code = main([*shlex.split(line), "--check"], data_must_exist=False)
            except SystemExit as e:  # argparse's usage errors
                code = e.code
        if code:  # argparse's last line is "<prog>: error: <message>"
            said = [x for x in errors.getvalue().splitlines() if x.strip()] or [f"exit {code}"]
            message = said[-1].partition("error: ")[2] or said[-1]
            print(f"command {number}: {message}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0


def _training_failure(error: BaseException) -> str:
    """What stopped a training, in one line: a diverged loss (``FloatingPointError``)
    as it says, running out of memory with what to shrink."""
    if isinstance(error, FloatingPointError):
        return str(error)
    # TensorFlow's message lists every input tensor: its first line is the news.
    said = getattr(error, "message", None) or str(error) or type(error).__name__
    return (
        f"out of memory ({said.splitlines()[0][:300]}): try a smaller --batch-size, "
        "--eval-batch-size or --latent-dim"
    )


def main(argv: Sequence[str] | None = None, *, data_must_exist: bool = True) -> int:
    """CLI entry point (``bvae-experiment``).

    ``data_must_exist=False`` lets ``--check`` pass without the ``--data`` folder
    (:func:`check_commands`: ``scripts/run_comparison.sh`` checks DATA itself, and its
    ``DRY_RUN=1`` lists commands without it).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    for flag, value in itertools.pairwise(argv):  # argparse reads "-1,2" as an option
        if flag == "--boost-grid" and value[:1] == "-" and value[1:2] in set("0123456789."):
            _parser().error(f"--boost-grid {value!r}: values must be finite and >= 0")
    args = _parser().parse_args(argv)
    args.argv = argv
    if args.combine:
        defaults = vars(_parser().parse_args([]))
        ignored = [
            f"--{key.replace('_', '-')}"
            for key, value in vars(args).items()
            if key not in _COMBINE_FLAGS and key in defaults and value != defaults[key]
        ]
        if ignored:
            _parser().error(f"{', '.join(ignored)}: run flags do not go with --combine")
        if args.markdown and any(
            pathlib.Path(args.markdown).resolve() == pathlib.Path(f).resolve() for f in args.combine
        ):
            _parser().error(f"--markdown {args.markdown!r} is one of the --combine inputs")
        if args.markdown and args.markdown.endswith(".json"):
            _parser().error(
                f"--markdown {args.markdown!r}: a Markdown table is not written to a .json "
                "file (result files are .json)"
            )
        if args.markdown and pathlib.Path(args.markdown).is_dir():
            _parser().error(f"--markdown {args.markdown!r} is a folder: name a file in it")
        if args.markdown and not pathlib.Path(args.markdown).resolve().parent.is_dir():
            _parser().error(f"--markdown {args.markdown!r}: its folder does not exist")
        if args.markdown and not args.overwrite and not _replaceable_table(args.markdown):
            _parser().error(
                f"--markdown {args.markdown!r} exists and is not a table --combine wrote; "
                "pass --overwrite to replace it"
            )
        try:
            results = combine(args.combine)
        except ValueError as e:
            _parser().error(f"--combine: {e}")
        labels = [r["method"] for r in results]
        if args.anchor is not None and args.table_k != 5:
            _parser().error(
                f"--anchor's paired t-test reads the per-user test NDCG@5 the runs record "
                f"(K = 5 only), not K = {args.table_k}: drop --table-k or --anchor"
            )
        if args.anchor is not None and args.anchor not in labels:
            _parser().error(
                f"--anchor {args.anchor!r} is none of the combined rows' labels: "
                + "; ".join(dict.fromkeys(labels))
            )
        text = render_markdown(results, args.table_k, args.protocols, args.anchor)
        for protocol in args.protocols:
            if not any(r["summary"].get(protocol) for r in results):
                print(
                    f"note: no {protocol} table: no run holds that protocol's numbers"
                    + (" (the paper protocol needs --paper-protocol)" if protocol == PAPER else ""),
                    file=sys.stderr,
                )
        if args.markdown:
            try:
                pathlib.Path(args.markdown).write_text(text)
            except OSError as e:
                _parser().error(f"--markdown {args.markdown!r}: {e.strerror or e}")
        print(text)
        return 0
    if args.markdown or args.anchor or args.protocols != _parser().get_default("protocols"):
        _parser().error("--markdown, --anchor and --protocols go with --combine")
    if len(set(args.ablation)) < len(args.ablation):
        _parser().error(f"--ablation names a part twice: {' '.join(args.ablation)}")
    seeds_given = any(a == "--seeds" or a.startswith("--seeds=") for a in argv)
    if args.model in BASELINES and seeds_given and args.seeds > 1:
        _parser().error(
            f"--model {args.model} has no randomness: one run, not --seeds {args.seeds}"
        )
    if not args.data:
        _parser().error("--data is required (or --combine)")
    name = args.model if args.name is None else args.name
    if not name or name in {".", ".."} or "/" in name or "\\" in name:
        _parser().error(
            f"--name must be a non-empty file stem without a path separator, got {name!r}"
        )
    if pathlib.Path(args.out).exists() and not pathlib.Path(args.out).is_dir():
        _parser().error(f"--out {args.out!r} exists and is not a folder")
    try:
        points = grid_points(args.grid)
    except ValueError as e:
        _parser().error(str(e))
    for flag in OPTIMIZER_GRID_FLAGS:
        values = [p[flag] for p in points if flag in p]
        if values and (
            args.model not in SAMPLED_SOFTMAX_MODELS
            or not all(math.isfinite(v) and 0 <= v < 2**31 for v in values)
        ):
            _parser().error(
                f"--grid {flag} takes finite values in [0, 2**31), for "
                f"{', '.join(SAMPLED_SOFTMAX_MODELS)}; got {values} with --model {args.model}"
            )
    if args.selected_from is not None and not args.grid:
        _parser().error(
            "--selected-from trains the choice of a --grid search: give the same --grid "
            "as the run that searched"
        )
    selected_from = args.selected_from
    if selected_from is not None and data_must_exist and not pathlib.Path(selected_from).is_file():
        _parser().error(
            f"--selected-from {selected_from!r} is not a file (a --grid run writes it when "
            "its seed has finished: has that search run to its end?)"
        )
    own = pathlib.Path(args.out) / f"{args.model if args.name is None else args.name}.json"
    if selected_from is not None and pathlib.Path(selected_from).resolve() == own.resolve():
        _parser().error(
            f"--selected-from {selected_from!r} is this run's own result file: it would "
            "replace the search it reads; give the later seeds another --name"
        )
    if args.reuse_from and selected_from is None:
        _parser().error(
            "--reuse-from takes runs that train the choice of a search: give --selected-from"
        )
    given = [a for a in argv if a == "--selected-from" or a.startswith("--selected-from=")]
    if len(given) > 1:  # argparse keeps the last: say so rather than drop one
        _parser().error("--selected-from is given more than once: give the one search's file")
    reused = [os.path.realpath(path) for path in args.reuse_from or []]
    twice = sorted(
        {path for path in args.reuse_from or [] if reused.count(os.path.realpath(path)) > 1}
    )
    if twice:
        _parser().error(f"--reuse-from names a file more than once: {', '.join(twice)}")
    for path in args.reuse_from or []:
        if pathlib.Path(path).resolve() == own.resolve():
            _parser().error(
                f"--reuse-from {path!r} is this run's own result file: give the files of "
                "the untuned command (e.g. the default row's)"
            )
    if (args.grid or args.tune) and args.model in BASELINES:
        _parser().error(f"--grid/--tune tune trained models; {args.model} has its own grid flags")
    if args.tune and (args.grid or args.model in PER_TARGET):
        _parser().error(
            "--tune searches one model of all behaviors; use --grid for one-per-target "
            "models and do not combine the two"
        )
    if args.tune < 0:
        _parser().error(f"--tune must be >= 0 trials, got {args.tune}")
    if args.first_seed + args.seeds - 1 > _INT_MAX:
        _parser().error(
            f"--first-seed {args.first_seed} with --seeds {args.seeds} reaches seed "
            f"{args.first_seed + args.seeds - 1}, above the largest seed {_INT_MAX}"
        )
    if args.tune_space and not args.tune:
        _parser().error("--tune-space shapes the search of --tune N: give --tune too")
    if args.sampled_softmax is not None or args.sampled_proposal:
        if args.model not in SAMPLED_SOFTMAX_MODELS:
            _parser().error(
                f"--sampled-softmax/--sampled-proposal train BVAE's decoders "
                f"({', '.join(SAMPLED_SOFTMAX_MODELS)}); --model {args.model} has none"
            )
        if args.sampled_softmax is None or args.sampled_softmax < 1:
            _parser().error(
                "--sampled-softmax must be a number of negatives >= 1 (given with "
                f"--sampled-proposal too), got {args.sampled_softmax}"
            )
    if args.behavior_mean and (
        args.model != "bvae" or (args.encoder or "base") != "base" or "no_base" in args.ablation
    ):
        _parser().error(
            "--behavior-mean adds behavior means to BASE: it needs --model bvae, no "
            f"--encoder other than base and no --ablation no_base (got --model {args.model}, "
            f"--encoder {args.encoder}, --ablation {' '.join(args.ablation) or 'none'})"
        )
    if args.item_path_scale is not None and not (args.item_path and args.item_path_scale > 0):
        _parser().error(
            f"--item-path-scale needs --item-path and a value > 0, got {args.item_path_scale}"
        )
    drop = args.item_path_drop_overlap
    if drop is not None and not (args.item_path and 0.0 <= drop < 1.0):
        _parser().error(f"--item-path-drop-overlap needs --item-path and 0 <= P < 1, got {drop}")
    if args.ease_factored and args.ease_sequential:
        _parser().error(
            "--ease-factored holds one m x m matrix for every target: --ease-sequential "
            "(one target at a time) does not apply to it"
        )
    for flag, values in (("--ease-l2", args.ease_l2), ("--ease-diagonal", args.ease_diagonal)):
        if len(set(values)) != len(values):
            _parser().error(f"{flag} lists a value twice: {values} (each is one more fit)")
    if args.boost_grid is not None:
        if args.model != "bvae":
            _parser().error(f"--boost-grid is a BVAE variant; --model {args.model} has none")
        try:
            boost_values(args.boost_grid)
        except ValueError as e:
            _parser().error(str(e))
    optimizer_flags = [
        f"--{name.replace('_', '-')}"
        for name in ("weight_decay", "weight_average", "lr_decay_steps", "lr_final_fraction")
        if getattr(args, name) is not None
    ]
    if optimizer_flags and args.model not in SAMPLED_SOFTMAX_MODELS:
        _parser().error(
            f"{', '.join(optimizer_flags)}: for {', '.join(SAMPLED_SOFTMAX_MODELS)} only; "
            f"--model {args.model} has its own optimizer or none"
        )
    if args.weight_decay is not None and not (
        math.isfinite(args.weight_decay) and args.weight_decay >= 0
    ):
        _parser().error(f"--weight-decay must be a finite value >= 0, got {args.weight_decay}")
    if args.weight_average is not None and not 0 <= args.weight_average < 1:
        _parser().error(f"--weight-average must be in [0, 1), got {args.weight_average}")
    if args.lr_decay_steps is not None and not 0 <= args.lr_decay_steps < 2**31:
        _parser().error(f"--lr-decay-steps must be in [0, 2**31), got {args.lr_decay_steps}")
    if args.lr_final_fraction is not None and not 0 <= args.lr_final_fraction <= 1:
        _parser().error(f"--lr-final-fraction must be in [0, 1], got {args.lr_final_fraction}")
    decays = (
        args.lr_decay_steps
        or any(p.get("lr_decay_steps") for p in points)
        or any(s.partition("=")[0].strip() == "lr_decay_epochs" for s in args.tune_space)
    )
    if args.lr_final_fraction is not None and not decays:
        _parser().error(
            "--lr-final-fraction is the end of the cosine decay: it needs --lr-decay-steps "
            "N > 0, --grid lr_decay_steps=... or --tune-space lr_decay_epochs=..."
        )
    if args.sparse_updates and args.model not in SAMPLED_SOFTMAX_MODELS:
        _parser().error(
            f"--sparse-updates trains BVAE's item tables with LazyAdam "
            f"({', '.join(SAMPLED_SOFTMAX_MODELS)}); --model {args.model} has none"
        )
    if args.sdwl_form is not None and ("no_sdwl" in args.ablation or args.loss_weights):
        _parser().error(
            "--sdwl-form sets how SDWL weights the behaviors' losses, and SDWL is off "
            "(--ablation no_sdwl or --loss-weights): drop --sdwl-form"
        )
    if args.gate_mode is not None and {"no_gff", "no_tff"} <= set(args.ablation):
        _parser().error(
            "--gate-mode sets the GFF and TFF gates, and --ablation removes both: drop --gate-mode"
        )
    foreign = foreign_flags(args, _parser())
    if foreign:
        hint = "".join(
            f"{args.model}'s own: --{own.replace('_', '-')}, {own} in --grid; "
            for (model, dest), own in OWN_FLAGS.items()
            if model == args.model
            and {f"--{dest.replace('_', '-')}", f"--grid {dest}"} & set(foreign)
        )
        _parser().error(
            f"{', '.join(foreign)}: --model {args.model} does not read "
            f"{'it' if len(foreign) == 1 else 'them'} ({hint}python -m bvae_tf.experiment "
            "--help)"
        )
    try:
        from bvae_tf import tuning

        space = tuning.tuning_settings({"space": tune_space(args.tune_space)})["space"]
        if args.tune and args.latent_dim is None:  # else --latent-dim is refused below
            tuning.check_space_for_latent_dims(space, args.latent_dims)
    except ValueError as e:
        _parser().error(str(e))
    if args.tune:  # a searched name the model does not read would only repeat trials
        dest = {**TUNE_FLAGS, **_TUNE_SPACE_FLAGS}
        mute = sorted(n for n in space if args.model not in MODEL_FLAGS.get(dest.get(n, n), MODELS))
        if mute:
            _parser().error(
                f"--tune-space {', '.join(mute)}: --model {args.model} does not read "
                f"{'it' if len(mute) == 1 else 'them'} (drop them with NAME=none)"
            )
    searched = {
        *(spec.partition("=")[0].strip().replace("-", "_") for spec in args.grid),
        *((_TUNE_SPACE_FLAGS.get(n, TUNE_FLAGS.get(n, n)) for n in space) if args.tune else ()),
    }
    flags = {f"--{name.replace('_', '-')}" for name in searched}
    given = sorted(f for f in flags if any(t == f or t.startswith(f"{f}=") for t in argv))
    if given:
        _parser().error(
            f"{', '.join(given)} given and also searched (--grid / --tune); give one of the two"
        )
    origin = "--grid"
    if args.tune and space.get("latent_dim"):  # its largest d, as a --grid point is checked
        points = [{**p, "latent_dim": int(max(space["latent_dim"]))} for p in points]
        origin = "--grid / --tune-space" if args.grid else "--tune-space"
    if args.model in SAMPLED_SOFTMAX_MODELS:  # what only BVAEConfig checks, before any data
        from bvae_tf import model as Mo

        # Placeholder behaviors (the data is read later): as many as the flags imply.
        count = (
            len(args.loss_weights or ())
            or len(args.latent_dims or ())
            or len(args.behaviors or ())
            or 3
        )
        behaviors = tuple(args.behaviors or (f"b{i}" for i in range(count)))  # named if given
        behaviors = behaviors[:1] if args.model == "vae_t" else behaviors
        for point in points:
            try:
                trial = argparse.Namespace(**{**vars(args), **point})
                cfg = _config(trial, behaviors, 1, 0, _variant(args.model))
                # What cannot fit whatever the catalog: BVAE's [d, d] GFF kernels (as
                # few as 2 where the data decides the behaviors).
                kernels = Mo.config_square_kernels(cfg)
                kernels = kernels if count != 3 or args.behaviors else min(kernels, 2)
                Mo.check_gate_kernel_memory(cfg.latent_dim, kernels, flags=_memory_flags(trial))
            except ValueError as e:
                message = str(e)
                if not args.behaviors:  # placeholder names: the data is read later
                    message = message.replace(repr(behaviors), "in the data's behavior order")
                _parser().error(
                    f"{message} (from the flags{f' and {origin} {point}' if point else ''})"
                )
    if args.model in _TRAINED_BASELINES:  # what only the model checks, before any data
        behaviors = tuple(args.behaviors or ("b0", "b1", "b2"))
        for point in points:
            trial = argparse.Namespace(**{**vars(args), **point})
            try:
                _trained_baseline(
                    args.model,
                    trial,
                    behaviors=behaviors,
                    targets=behaviors[:1],
                    num_items=2,
                    num_users=2,
                    lr=DEFAULT_LR.get(args.model) if trial.lr is None else trial.lr,
                    seed=0,
                    steps_per_pass=1,
                )
            except ValueError as e:
                _parser().error(
                    f"{e} (from the flags{' and --grid ' + str(point) if point else ''})"
                )
    # File names and first non-blank bytes, no parsing; a folder without any release
    # file is left to the run (load_release names what it lacks).
    from bvae_tf import data as D

    if pathlib.Path(args.data).is_dir() and D.release_behaviors(args.data):
        try:
            modelled = D.modelled_release_behaviors(args.data, args.behaviors)
        except ValueError as e:
            _parser().error(f"{'--behaviors' if args.behaviors else '--data'}: {e}")
        for flag, values in (
            ("--loss-weights", args.loss_weights),
            ("--latent-dims", args.latent_dims),
        ):
            if values and len(values) != len(modelled):
                _parser().error(
                    f"{flag}: {len(values)} values for the {len(modelled)} modelled behaviors "
                    f"{modelled} (one per behavior, in this order)"
                )
    command = command_line([a for a in argv if a != "--check"])  # what a run records
    if args.check:
        if data_must_exist and not pathlib.Path(args.data).is_dir():
            what = "is not a folder" if pathlib.Path(args.data).exists() else "does not exist"
            _parser().error(f"--data {args.data!r} {what} (a run reads it)")
        if pathlib.Path(args.data).is_dir() and not D.release_behaviors(args.data):
            _parser().error(  # e.g. the folder above the release's
                f"--data {args.data!r} holds no release files '<behavior>_<split>' (e.g. "
                "target_train): name the folder that holds them"
            )
        if args.selected_from is not None and pathlib.Path(args.selected_from).is_file():
            # The run's own checks of RESULT and of the --reuse-from files. Where the
            # data folder is there: its digest, and RESULT's choice for every modelled
            # behavior (the behaviors come from the file names, not the data parsed).
            there = pathlib.Path(args.data).is_dir()
            digest = data_digest(args.data) if there else None
            try:
                if there and D.release_behaviors(args.data):
                    selected_points(args.selected_from, command, digest, modelled)
                else:
                    _selection_source(args.selected_from, command, digest)
                reuse_sources(args.reuse_from, command, args.data, digest)
            except ValueError as e:
                _parser().error(str(e))
    # After the flags are checked: a bad flag is named, not a kept result's command.
    existing = pathlib.Path(args.out) / f"{name}.json"
    if existing.exists() and not existing.is_file():  # found now, not at the first write
        _parser().error(f"{str(existing)!r} exists and is not a file: choose another --name")
    try:
        kept_json = json.loads(existing.read_text()) if existing.is_file() else None
        kept_model = kept_json.get("model") if kept_json is not None else None
    except (OSError, ValueError, AttributeError) as e:
        if not args.overwrite:
            _parser().error(
                f"{str(existing)!r} is not a readable result (truncated or not a JSON "
                f"object: {e}): delete it, or pass --overwrite to replace it"
            )
        kept_json = kept_model = None
    if kept_model not in (None, args.model):
        _parser().error(
            f"{str(existing)!r} holds a result of --model {kept_model}, not {args.model}: "
            "choose another --name or --out"
        )
    if existing.is_file() and not args.overwrite:
        try:  # its runs are kept as they are: damaged ones would pass into the tables
            check_result(kept_json)
        except ValueError as e:
            _parser().error(
                f"{str(existing)!r} is not a sound result ({e}): delete it, or pass "
                "--overwrite to replace it"
            )
        if _kept_result(existing, command, None) is None:
            _parser().error(
                f"{str(existing)!r} holds the result of another command"
                f"{_command_difference(existing, command)}: choose another --name or "
                "--out, or pass --overwrite to replace it (the same command resumes)"
            )
        other_data = _same_data(kept_json, args.data, None)
        if other_data:
            _parser().error(
                f"{str(existing)!r} holds the result of this command on other data "
                f"({other_data}): choose another --out or --name for this data"
            )
    if args.check:  # the flags, RESULT and the kept result checked: nothing written
        return 0
    if not pathlib.Path(args.data).is_dir():  # after the flags, before the log file
        what = "is not a folder" if pathlib.Path(args.data).exists() else "does not exist"
        _parser().error(f"--data {args.data!r} {what}")
    if args.log_dir is not None and any(
        parent.exists() and not parent.is_dir()
        for parent in (pathlib.Path(args.log_dir), *pathlib.Path(args.log_dir).parents)
    ):
        _parser().error(f"--log-dir {args.log_dir!r} is (or is below) a file, not a folder")
    if args.log_dir is not None:
        try:
            pathlib.Path(args.log_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:  # e.g. a read-only place
            _parser().error(f"--log-dir {args.log_dir!r} cannot be a folder: {e.strerror or e}")
    try:
        pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a file on the way
        _parser().error(f"--out {args.out!r} cannot be a folder: {e.strerror or e}")
    log_file = console.log_file_path(args.out, "experiment")
    try:  # here, not at the first record: a logging error would print and go on
        os.makedirs(os.path.dirname(log_file), exist_ok=True)
        open(log_file, "a", encoding="utf-8").close()
    except OSError as e:  # e.g. a read-only --out
        _parser().error(
            f"--out {args.out!r}: cannot write the log file {log_file!r}: {e.strerror or e}"
        )
    path = console.setup(log_file, verbose=args.verbose)
    print(f"Full log: {path}", flush=True)
    import tensorflow as tf  # (what run trains with)

    try:
        run(args)
    except ValueError as e:  # bad data or settings found once the data is read
        # The traceback goes to the full log only (INFO: not shown on the console).
        logging.info("stopped by an error", exc_info=True)
        print(f"{PROG}: error: {e} (the traceback: {path})", file=sys.stderr)
        return 2
    except (FloatingPointError, MemoryError, tf.errors.ResourceExhaustedError) as e:
        logging.info("stopped by an error", exc_info=True)
        print(f"{PROG}: error: {_training_failure(e)} (the traceback: {path})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        kept = pathlib.Path(args.out) / f"{name}.ckpt"
        print(
            "\ninterrupted: the same command resumes at the next epoch"
            + (f" (kept state: {kept})" if kept.exists() else ""),
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
