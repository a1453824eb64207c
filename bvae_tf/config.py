"""Configuration of the model and its training, as plain data.

Everything here is importable without TensorFlow, so that a pipeline configuration
can be loaded and checked in well under a second (``pipeline.configs``):
:class:`BVAEConfig` (the model's hyperparameters), :func:`training_settings` (the
Trainer's loop settings), :func:`check_top_k`, the accepted values of the choice
fields, and :func:`reject_unknown`, the one check for unknown keys used by every
configuration class of the project.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bvae_tf import features

#: ``BVAEConfig.gate_mode`` values (``layers.GlobalFeatureFilter``).
GATE_MODES = ("reference", "gated")
#: ``BVAEConfig.sdwl_form`` values (``losses.sdwl_term``); the default is ``"paper"``.
SDWL_FORMS = ("reference", "paper")
DEFAULT_SDWL_FORM = "paper"
#: ``BVAEConfig.beta_schedule`` values (``losses.kl_beta``).
BETA_SCHEDULES = ("linear", "reference")
#: ``BVAEConfig.lr_schedule`` values (``model.make_optimizer``).
LR_SCHEDULES = ("constant", "cosine")
#: Models fitted in closed form from the train matrices (``bvae_tf.baselines``): no
#: epochs, no optimizer; they export the same signatures as BVAE.
CLOSED_FORM_VARIANTS = ("popularity", "repeat", "ease")
#: Trained baselines built by ``model.build_model`` in place of BVAE (same training
#: loop, export and serving): ``"vae_pp"`` is VAE++ (``bvae_tf.baselines.vaepp``),
#: ``"recvae"`` RecVAE (T.), one RecVAE per behavior (``bvae_tf.baselines.recvae``).
TRAINED_BASELINE_VARIANTS = ("vae_pp", "recvae")
VARIANTS = ("bvae", "union_vae", *TRAINED_BASELINE_VARIANTS, *CLOSED_FORM_VARIANTS)
#: ``BVAEConfig.ease_diagonal`` values (``baselines.ease``).
EASE_DIAGONALS = ("zero", "free")
#: ``BVAEConfig.encoder`` values: BASE and the paper's RQ2 replacements of it.
ENCODERS = ("base", "exchange", "mmoe", "cgc")
#: Proposals of the sampled softmax's negatives (``BVAEConfig.sampled_proposal``).
SAMPLED_PROPOSALS = ("uniform", "popularity")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
#: The one reconstruction task of ``variant="union_vae"`` (VAE (U.)).
UNION_TASK = "union"


def reject_unknown(what: str, values: Mapping[str, Any], known: type | Iterable[str]) -> None:
    """Raises ``ValueError`` naming the keys of ``values`` that are not known.

    Args:
      what: how the message calls the keys, e.g. ``"training settings"``.
      values: the mapping to check.
      known: a dataclass (its field names) or the known names.

    Raises:
      ValueError: ``unknown <what> [...]; known: [...]``.
    """
    names = (
        {f.name for f in dataclasses.fields(known)}
        if isinstance(known, type) and dataclasses.is_dataclass(known)
        else set(known)
    )
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {sorted(names)}")


def unique_keys(pairs: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s ``object_pairs_hook`` for hand-written JSON (configs, histories):
    a key given twice is an error, where the standard library keeps the last value.

    Raises:
      ValueError: naming the repeated key.
    """
    record: dict[str, Any] = {}
    for key, value in pairs:
        if key in record:
            raise ValueError(f"key {key!r} appears twice")
        record[key] = value
    return record


#: The ``BVAEConfig`` fields that take any real number (range checks follow).
_REAL_FIELDS = (
    "dropout",
    "beta_cap",
    "learning_rate",
    "weight_decay",
    "lr_final_fraction",
    "weight_average",
    "ease_l2",
    "recvae_gamma",
    "item_path_scale",
    "item_path_drop_overlap",
)


#: What :class:`BVAEConfig`'s numeric and flag settings must be, for its errors.
_COUNT_RULE = "an integer in [0, 2**31)"
_RULES = {
    "num_items": ">= 1",
    "latent_dim": "an integer in [1, 2**31)",
    "dropout": "in [0, 1)",
    "beta_cap": ">= 0",
    "anneal_steps": _COUNT_RULE,
    "seed": _COUNT_RULE,
    "learning_rate": "> 0",
    "weight_decay": ">= 0",
    "lr_decay_steps": _COUNT_RULE,
    "lr_final_fraction": "in [0, 1]",
    "weight_average": "in [0, 1)",
    "ease_l2": "> 0",
    "recvae_hidden": "an integer in [1, 2**31)",
    "recvae_gamma": ">= 0",
    "item_path_scale": "> 0",
    "item_path_drop_overlap": "in [0, 1)",
    "sampled_softmax": _COUNT_RULE + " (0: the full softmax)",
    "sparse_updates": "true or false",
    "behavior_mean": "true or false",
    "top_k_chunk_size": _COUNT_RULE + " (0: no chunks)",
    "approximate_top_k": "a number in [0, 1]",
    "logvar_range": "two increasing numbers",
}


def _count(value) -> bool:
    """A non-negative int below 2**31 (not a bool): the large-catalog sizes."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


#: Settings only some variants read, and those variants; another variant refuses a
#: value other than the default rather than ignore it. (``encoder``, ``item_path``,
#: ``behavior_mean``, ``loss_weights`` and the large-catalog settings have their own
#: checks.)
VARIANT_FIELDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("gate_mode", "use_base", "use_gff", "use_tff", "use_sdwl", "sdwl_form", "logvar_range"),
        ("bvae", "union_vae"),
    ),
    # Training settings: the closed-form variants (CLOSED_FORM_VARIANTS) fit without
    # any, and RecVAE's KL weight is its own (recvae_gamma).
    **dict.fromkeys(("beta_cap", "anneal_steps", "beta_schedule"), ("bvae", "union_vae", "vae_pp")),
    **dict.fromkeys(
        (
            "latent_dim",
            "dropout",
            "learning_rate",
            "weight_decay",
            "lr_schedule",
            "lr_decay_steps",
            "lr_final_fraction",
            "weight_average",
            "precision",
            "jit_compile",
            "sparse_updates",
        ),
        ("bvae", "union_vae", *TRAINED_BASELINE_VARIANTS),
    ),
    **dict.fromkeys(("ease_l2", "ease_diagonal"), ("ease",)),
    **dict.fromkeys(("recvae_hidden", "recvae_gamma"), ("recvae",)),
}


@dataclasses.dataclass(frozen=True)
class BVAEConfig:
    """Hyper-parameters of a BVAE (or baseline) model.

    Attributes:
      behaviors: behavior names (any ``c >= 1``), in priority order.
      num_items: ``m``, size of the item index space.
      latent_dim: ``d``.
      dropout: input dropout rate ``rho`` (training only).
      gate_mode: ``"reference"`` (eq. 3 / 8 as printed: identity GFF, sum TFF) or
        ``"gated"`` (feature-wise GFF, softmax-across-behaviors TFF).
      use_base: False = -BASE ablation: one shared encoder on the union gives the mean
        and one log-variance for all behaviors.
      use_gff: False = -GFF ablation (``mu_k = mu_0``).
      use_tff: False = -TFF ablation (``z_hat_k = z_k``).
      use_sdwl: False = -SDWL ablation (equal weights).
      sdwl_form: ``"paper"`` (eq. 14, the default) or ``"reference"`` (released
        code), see ``losses.sdwl_term``.
      beta_cap: maximum KL weight.
      anneal_steps: updates of the beta ramp (0: constant ``beta_cap``).
      beta_schedule: ``"linear"`` or ``"reference"``, see ``losses.kl_beta``.
      logvar_range: (min, max) clamp of every log-variance.
      learning_rate: Adam learning rate.
      weight_decay: decoupled weight decay ``lambda`` (AdamW, Loshchilov and Hutter
        2019), Keras' optimizer ``weight_decay``: before each Adam step every trainable
        variable ``w`` becomes ``w - learning_rate * lambda * w`` (with
        ``sparse_updates``, every row of the item tables too). Not in the BVAE paper;
        >= 0, 0 (default): none.
      lr_schedule: ``"constant"`` (default, the paper's) or ``"cosine"``: the
        learning rate decays from ``learning_rate`` to ``learning_rate *
        lr_final_fraction`` along half a cosine over ``lr_decay_steps`` updates and
        stays there (Loshchilov and Hutter 2017, SGDR without restarts; Keras'
        ``CosineDecay``). Not in the BVAE paper.
      lr_decay_steps: updates of the cosine decay, > 0 with ``"cosine"``; 0 (default)
        otherwise.
      lr_final_fraction: the learning rate after the decay as a fraction of
        ``learning_rate``, in [0, 1] (default 0.01).
      weight_average: decay ``rho`` in [0, 1) of an exponential moving average of
        the trainable weights, updated after every step (Polyak and Juditsky 1992;
        ``training.fit``): every evaluation, early stopping and the exported model use
        the bias-corrected average ``a_t / (1 - rho^t)``, ``a_t = rho a_{t-1} + (1 -
        rho) w_t``. Its horizon is about ``1 / (1 - rho)`` updates. Not in the BVAE
        paper; 0 (default): the weights as trained.
      seed: seeds initialisers, dropout and the reparameterisation noise.
      precision: ``"float32"``, ``"mixed_float16"`` or ``"mixed_bfloat16"`` (Keras
        mixed precision: matrix products in 16 bit, variables and losses in float32;
        the decoders' softmax in float32 under float16 and in bfloat16 under
        bfloat16, see ``losses.multinomial_nll``).
      jit_compile: compile the training step's dense decoder work with XLA.
      variant: ``"bvae"``, ``"union_vae"`` (the VAE (U.) baseline), ``"vae_pp"``
        (VAE++, one per behavior with the others as auxiliaries; it reads
        ``latent_dim``, ``dropout``, ``beta_*``, ``anneal_steps``, ``learning_rate``
        and ``seed``; ``bvae_tf.baselines.vaepp``), ``"recvae"`` (RecVAE (T.): one
        RecVAE per behavior on its own items; it reads ``latent_dim``, ``dropout``,
        ``learning_rate``, ``seed`` and the ``recvae_*`` fields; RecVAE's paper uses
        latent 200 and learning rate 5e-4; ``bvae_tf.baselines.recvae``) or a closed-form
        baseline of ``bvae_tf.baselines``: ``"popularity"``, ``"repeat"`` (cross-behavior
        repeat) or ``"ease"`` (those read only ``behaviors``, ``num_items`` and the
        ``ease_*`` fields; the pipeline's Trainer fits them instead of training).
      ease_l2: EASE's ``lambda`` (``variant="ease"``).
      recvae_hidden: RecVAE's encoder width (``variant="recvae"``; its paper: 600).
      recvae_gamma: RecVAE's KL scale, ``beta'(x) = gamma |x|`` (``variant="recvae"``;
        its paper: 0.005).
      ease_diagonal: EASE's diagonal, ``"zero"`` (Steck's constraint) or ``"free"``.
      encoder: ``"base"`` (BASE, paper eq. 1-2) or one of the paper's RQ2
        replacements of it with the same ``c + 1`` sparse ``m x d`` encoders:
        ``"exchange"`` (-BASE (Exchange): one mean encoder per behavior on its own
        input, one std encoder on the union), ``"mmoe"`` (-BASE (+MMoE): the
        mean from the union, each behavior's log-variance a gated mixture of ``c``
        shared experts on the union) or ``"cgc"`` (-BASE (+CGC): each behavior's gate
        over its own expert and the shared union encoder); see
        ``model.BVAE.encode``. Needs ``use_base`` and ``variant="bvae"``.
      latent_dims: a labelled BVAE variant beyond the paper, per-behavior latent
        sizes (the paper's RQ3 closes with assigning dimensions by each behavior's data
        volume as future work): behavior ``k``'s posterior ``mu_k`` and
        ``log sigma_k^2``, its sample ``z_k`` and its fused ``z_hat_k`` keep the first
        ``d_k`` of the ``latent_dim`` coordinates and hold the others at 0 (so their KL
        terms are 0, SDWL's ``sigma_bar_k`` is the mean over the ``d_k`` kept ones, and
        decoder ``k`` reads ``d_k`` coordinates). Masks, not narrower layers: the union
        mean encoder, GFF and TFF keep one ``latent_dim``-wide space shared by the
        behaviors (TFF adds their samples coordinate by coordinate), and behavior ``k``
        uses its first ``d_k`` coordinates (its GFF gate reads those of the union mean
        only). One int in ``[1, latent_dim]`` per behavior in ``behaviors`` order, the
        largest equal to ``latent_dim`` (no coordinate unused); needs
        ``variant="bvae"``, ``c >= 2`` and no ``approximate_top_k`` (its index would
        cluster the decoders' unread columns); ``None`` (default): every behavior uses
        ``latent_dim``.
      loss_weights: fixed per-behavior loss weights in ``behaviors`` order, in place of
        SDWL (the paper's RQ2 "manual weights"): behavior ``k`` adds
        ``w_k * mean_u(nll_u + beta kl_u)``. ``None`` (default): SDWL as configured.
        Needs one positive weight per behavior and ``variant="bvae"``.
      behavior_mean: a labelled BVAE variant beyond the paper ("BASE + behavior
        means"): behavior ``k``'s mean becomes ``mu_0 + a_k r_k(x^{B_k})``, the union
        mean of BASE plus a residual from one more sparse ``m x d`` encoder on the
        behavior's own input, scaled by a learned ``a_k`` that starts at 0 (so training
        starts from BVAE). BASE's union mean and per-behavior std encoders, GFF (on
        the summed mean), TFF, the decoders and SDWL are unchanged; it adds ``c``
        encoders' parameters. -BASE (Exchange), whose means come from the behaviors'
        inputs alone, is the paper's nearest row. Needs ``encoder="base"``,
        ``use_base``, ``variant="bvae"`` and ``c >= 2``.
      item_path: a labelled BVAE variant beyond the paper: adds to behavior ``k``'s
        logits a learned weight on the user's own items of every other behavior
        (``layers.CrossBehaviorItemPath``). Needs ``variant="bvae"`` and ``c >= 2``.
      item_path_scale: a constant factor on the item path's per-pair weights, > 0;
        with Adam it multiplies their effective learning rate (default 1: the shared
        rate; the per-item weights keep it).
      item_path_drop_overlap: in training, the probability of hiding from the item
        path an item of another behavior that is also among the reconstructed
        behavior's items (``layers.CrossBehaviorItemPath.entries``), in ``[0, 1)``;
        0 (default): none.
      cross_behavior_boost: a labelled BVAE variant beyond the paper, applied when
        scoring only (training is unchanged): one value ``beta_b >= 0`` per behavior
        in ``behaviors`` order, added to behavior ``b``'s logit of every item the
        user has in train under another behavior (``layers.cross_behavior_indicator``);
        a large value ranks those items first, in the model's order, as the
        cross-behavior repeat rule does in popularity order. Chosen on the eval split
        after training (``bvae_tf.experiment --boost-grid``). ``None`` (default): no
        boost. Needs ``variant="bvae"`` and ``c >= 2``; not with ``top_k_chunk_size``
        or ``approximate_top_k``.
      sampled_softmax: negatives drawn per decoder and training step for a sampled
        softmax over the batch's target items and those negatives
        (``losses.sampled_multinomial_nll``, uniform proposal); 0 (default): the full
        softmax over every item. Evaluation and serving always rank every item.
        Not with ``item_path``.
      sampled_proposal: how the negatives are drawn: ``"uniform"`` (default) or
        ``"popularity"``, from the smoothed train frequency of each item in the
        decoder's behavior, ``q_j ∝ count_j + 1`` (``BVAE.fit_proposal``), with the
        logQ correction (``losses.sampled_multinomial_nll``'s ``log_q``). Only with
        ``sampled_softmax``.
      sparse_updates: train with ``optimizers.LazyAdam``: the item tables' sparse
        gradients (the encoders', and the decoders' under ``sampled_softmax``) update
        only the rows of the batch's items; False (default): Keras' Adam, which decays
        every row's moments on every step.
      top_k_chunk_size: ``recommend`` (and so the serving signature) scores the items
        this many at a time (``layers.DecoderTopK``), bounding its memory by
        ``[B, chunk]`` for large catalogs, and so do ``metrics.evaluate`` and the
        export's ``rank_heldout`` (``metrics.chunked_behavior_ranks``); 0 (default):
        all items at once.
      approximate_top_k: serve ``recommend`` from an inverted-file index
        (``approximate.ApproximateTopK``, built at export by
        ``BVAE.attach_approximate_top_k``) that scores about this share of the catalog
        per query, exactly, instead of every item: the returned scores are exact
        logits, the items an approximation of the exact top K (recall measured in
        ``benchmarks/large_catalog.py``). In ``(0, 1]``; 0 (default): exact serving.
        Training, ``metrics.evaluate``, ``score_items`` and ``rank_heldout`` (the
        Evaluator) stay exact. Not with ``item_path``.
    """

    behaviors: tuple[str, ...]
    num_items: int
    latent_dim: int = 100
    dropout: float = 0.5
    gate_mode: str = "gated"
    use_base: bool = True
    use_gff: bool = True
    use_tff: bool = True
    use_sdwl: bool = True
    sdwl_form: str = DEFAULT_SDWL_FORM
    beta_cap: float = 0.2
    anneal_steps: int = 200_000
    beta_schedule: str = "linear"
    logvar_range: tuple[float, float] = (-10.0, 10.0)
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_decay_steps: int = 0
    lr_final_fraction: float = 0.01
    weight_average: float = 0.0
    seed: int = 0
    precision: str = "float32"
    jit_compile: bool = False
    variant: str = "bvae"
    encoder: str = "base"
    ease_l2: float = 200.0
    ease_diagonal: str = "free"
    recvae_hidden: int = 600
    recvae_gamma: float = 0.005
    behavior_mean: bool = False
    item_path: bool = False
    item_path_scale: float = 1.0
    item_path_drop_overlap: float = 0.0
    cross_behavior_boost: tuple[float, ...] | None = None
    latent_dims: tuple[int, ...] | None = None
    loss_weights: tuple[float, ...] | None = None
    sampled_softmax: int = 0
    sampled_proposal: str = "uniform"
    sparse_updates: bool = False
    top_k_chunk_size: int = 0
    approximate_top_k: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "behaviors", features.validate_behaviors(self.behaviors))
        object.__setattr__(self, "logvar_range", tuple(float(v) for v in self.logvar_range))
        if self.loss_weights is not None:
            weights = tuple(float(w) for w in self.loss_weights)
            positive = all(math.isfinite(w) and w > 0 for w in weights)
            if len(weights) != len(self.behaviors) or not positive or self.variant != "bvae":
                raise ValueError(
                    f"BVAEConfig.loss_weights must be one finite positive weight per behavior "
                    f"{self.behaviors} of variant 'bvae', got {self.loss_weights!r}"
                )
            object.__setattr__(self, "loss_weights", weights)
        if self.cross_behavior_boost is not None:
            boost = tuple(float(v) for v in self.cross_behavior_boost)
            if (
                len(boost) != len(self.behaviors)
                or not all(math.isfinite(v) and v >= 0 for v in boost)
                or self.variant != "bvae"
                or len(self.behaviors) < 2
                or self.top_k_chunk_size
                or self.approximate_top_k
            ):
                raise ValueError(
                    "BVAEConfig.cross_behavior_boost must be one finite value >= 0 per "
                    f"behavior {self.behaviors} (at least 2) of variant 'bvae', without "
                    f"top_k_chunk_size or approximate_top_k; got {self.cross_behavior_boost!r}"
                )
            object.__setattr__(self, "cross_behavior_boost", boost)
        for name in _REAL_FIELDS:
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not math.isfinite(value)
            ):
                raise ValueError(f"invalid BVAEConfig.{name}: {value!r} (not a finite number)")
        checks = [
            (self.num_items >= 1, "num_items", self.num_items),
            (_count(self.latent_dim) and self.latent_dim >= 1, "latent_dim", self.latent_dim),
            (0.0 <= self.dropout < 1.0, "dropout", self.dropout),
            (self.gate_mode in GATE_MODES, "gate_mode", self.gate_mode),
            (self.sdwl_form in SDWL_FORMS, "sdwl_form", self.sdwl_form),
            (self.beta_schedule in BETA_SCHEDULES, "beta_schedule", self.beta_schedule),
            (self.beta_cap >= 0.0, "beta_cap", self.beta_cap),
            (_count(self.anneal_steps), "anneal_steps", self.anneal_steps),
            (_count(self.seed), "seed", self.seed),
            (self.learning_rate > 0.0, "learning_rate", self.learning_rate),
            (self.weight_decay >= 0.0, "weight_decay", self.weight_decay),
            (self.lr_schedule in LR_SCHEDULES, "lr_schedule", self.lr_schedule),
            (_count(self.lr_decay_steps), "lr_decay_steps", self.lr_decay_steps),
            (0.0 <= self.lr_final_fraction <= 1.0, "lr_final_fraction", self.lr_final_fraction),
            (0.0 <= self.weight_average < 1.0, "weight_average", self.weight_average),
            (self.precision in PRECISIONS, "precision", self.precision),
            (self.variant in VARIANTS, "variant", self.variant),
            (self.encoder in ENCODERS, "encoder", self.encoder),
            (self.ease_l2 > 0.0, "ease_l2", self.ease_l2),
            (
                _count(self.recvae_hidden) and self.recvae_hidden >= 1,
                "recvae_hidden",
                self.recvae_hidden,
            ),
            (self.recvae_gamma >= 0.0, "recvae_gamma", self.recvae_gamma),
            (self.item_path_scale > 0.0, "item_path_scale", self.item_path_scale),
            (
                0.0 <= self.item_path_drop_overlap < 1.0,
                "item_path_drop_overlap",
                self.item_path_drop_overlap,
            ),
            (self.ease_diagonal in EASE_DIAGONALS, "ease_diagonal", self.ease_diagonal),
            (_count(self.sampled_softmax), "sampled_softmax", self.sampled_softmax),
            (self.sampled_proposal in SAMPLED_PROPOSALS, "sampled_proposal", self.sampled_proposal),
            (isinstance(self.sparse_updates, bool), "sparse_updates", self.sparse_updates),
            (isinstance(self.behavior_mean, bool), "behavior_mean", self.behavior_mean),
            (_count(self.top_k_chunk_size), "top_k_chunk_size", self.top_k_chunk_size),
            (
                isinstance(self.approximate_top_k, int | float)
                and not isinstance(self.approximate_top_k, bool)
                and 0.0 <= self.approximate_top_k <= 1.0,
                "approximate_top_k",
                self.approximate_top_k,
            ),
            (
                len(self.logvar_range) == 2 and self.logvar_range[0] < self.logvar_range[1],
                "logvar_range",
                self.logvar_range,
            ),
        ]
        choices = {
            "gate_mode": GATE_MODES,
            "sdwl_form": SDWL_FORMS,
            "beta_schedule": BETA_SCHEDULES,
            "lr_schedule": LR_SCHEDULES,
            "precision": PRECISIONS,
            "variant": VARIANTS,
            "encoder": ENCODERS,
            "ease_diagonal": EASE_DIAGONALS,
            "sampled_proposal": SAMPLED_PROPOSALS,
        }
        for ok, name, value in checks:
            if not ok:
                allowed = (
                    f" (one of {list(choices[name])})"
                    if name in choices
                    else f" (must be {_RULES[name]})"
                    if name in _RULES
                    else ""
                )
                raise ValueError(f"invalid BVAEConfig.{name}: {value!r}{allowed}")
        if self.latent_dims is not None:
            dims = self.latent_dims
            ok = (
                not isinstance(dims, str | bytes)
                and isinstance(dims, Sequence)
                and all(_count(v) and v >= 1 for v in dims)
                and max(dims, default=0) == self.latent_dim
            )
            if (
                not ok
                or len(dims) != len(self.behaviors)
                or self.variant != "bvae"
                or len(self.behaviors) < 2
                or self.approximate_top_k
            ):
                raise ValueError(
                    "BVAEConfig.latent_dims must be one int in [1, latent_dim="
                    f"{self.latent_dim!r}] per behavior {self.behaviors} (at least 2), the "
                    "largest equal to latent_dim, of variant 'bvae' without "
                    f"approximate_top_k; got {self.latent_dims!r} (variant {self.variant!r})"
                )
            object.__setattr__(self, "latent_dims", tuple(dims))
        if (self.lr_schedule == "cosine") != (self.lr_decay_steps > 0):
            raise ValueError(
                "BVAEConfig.lr_decay_steps must be > 0 with lr_schedule='cosine' and 0 "
                f"otherwise; got lr_schedule={self.lr_schedule!r}, "
                f"lr_decay_steps={self.lr_decay_steps!r}"
            )
        if self.behavior_mean and (
            self.encoder != "base"
            or not self.use_base
            or self.variant != "bvae"
            or len(self.behaviors) < 2
        ):
            raise ValueError(
                "BVAEConfig.behavior_mean adds behavior means to BASE: it needs "
                "encoder='base', use_base=True, variant='bvae' and at least 2 behaviors "
                f"(got encoder={self.encoder!r}, use_base={self.use_base}, "
                f"variant={self.variant!r}, behaviors={self.behaviors})"
            )
        if self.item_path and (self.variant != "bvae" or len(self.behaviors) < 2):
            raise ValueError(
                "BVAEConfig.item_path links behaviors: it needs variant='bvae' and at least "
                f"2 behaviors (got variant={self.variant!r}, behaviors={self.behaviors})"
            )
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        item_path_settings = [
            name
            for name in ("item_path_scale", "item_path_drop_overlap")
            if getattr(self, name) != defaults[name]
        ]
        if item_path_settings and not self.item_path:
            pronoun = "it" if len(item_path_settings) == 1 else "them"
            raise ValueError(
                f"BVAEConfig: {', '.join(item_path_settings)} tune the item path, which is "
                f"off: set item_path=True or remove {pronoun}"
            )
        if self.sampled_proposal != "uniform" and not self.sampled_softmax:
            raise ValueError(
                f"BVAEConfig.sampled_proposal={self.sampled_proposal!r} draws the sampled "
                "softmax's negatives: set sampled_softmax to their number (> 0)"
            )
        large = {
            "sampled_softmax": self.sampled_softmax,
            "top_k_chunk_size": self.top_k_chunk_size,
            "approximate_top_k": self.approximate_top_k,
        }
        if self.item_path and any(large.values()):
            raise ValueError(
                "BVAEConfig.sampled_softmax, top_k_chunk_size and approximate_top_k cannot "
                f"be combined with item_path (the item path adds logits to every item): {large}"
            )
        if self.variant not in ("bvae", "union_vae") and any(large.values()):
            raise ValueError(
                "BVAEConfig.sampled_softmax / top_k_chunk_size / approximate_top_k need the "
                f"BVAE model (variant 'bvae' or 'union_vae'); got variant={self.variant!r} "
                f"with {large}"
            )
        if self.encoder != "base" and (not self.use_base or self.variant != "bvae"):
            raise ValueError(
                f"BVAEConfig.encoder={self.encoder!r} replaces BASE: it needs use_base=True "
                f"and variant='bvae' (got use_base={self.use_base}, variant={self.variant!r})"
            )
        unread = [
            name
            for name, variants in VARIANT_FIELDS.items()
            if self.variant not in variants and getattr(self, name) != defaults[name]
        ]
        if unread:
            raise ValueError(
                f"BVAEConfig: variant {self.variant!r} does not read "
                + ", ".join(f"{n} (variant {' or '.join(VARIANT_FIELDS[n])})" for n in unread)
                + f": remove {'it' if len(unread) == 1 else 'them'} or choose such a variant"
            )

    @property
    def num_behaviors(self) -> int:
        return len(self.behaviors)

    @property
    def tasks(self) -> tuple[str, ...]:
        """Reconstruction tasks: one per behavior, or the union for VAE (U.)."""
        return (UNION_TASK,) if self.variant == "union_vae" else self.behaviors

    @property
    def multi_behavior(self) -> bool:
        """Whether the multi-behavior modules (GFF, TFF, SDWL) apply (c >= 2 tasks)."""
        return len(self.tasks) >= 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (lists for tuples)."""
        out = dataclasses.asdict(self)
        out["behaviors"] = list(self.behaviors)
        out["logvar_range"] = list(self.logvar_range)
        for name in ("loss_weights", "latent_dims"):
            if getattr(self, name) is not None:
                out[name] = list(getattr(self, name))
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BVAEConfig:
        """Inverse of :meth:`to_dict`.

        Raises:
          ValueError: on unknown keys.
        """
        reject_unknown("BVAEConfig keys", values, cls)
        values = dict(values)
        values["behaviors"] = tuple(values["behaviors"])
        if "logvar_range" in values:
            values["logvar_range"] = tuple(values["logvar_range"])
        for name in ("loss_weights", "latent_dims"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return cls(**values)

    def replace(self, **changes) -> BVAEConfig:
        return dataclasses.replace(self, **changes)


def reference_config(behaviors, num_items: int, **overrides) -> BVAEConfig:
    """The configuration matching the released BVAE code (the authors' repository).

    Degenerate gates, SDWL as released, ``beta = min(0.2, step / 200000)``, lr 1e-3.
    The defaults of :class:`BVAEConfig` deviate from it in three measured choices
    (docs/RESULTS.md, JD validation, 3 seeds): ``gate_mode="gated"`` (the printed
    gates are identically 1), ``sdwl_form="paper"`` (eq. 14 as printed) and
    ``beta_schedule="linear"`` (the written definition of the annealing).
    """
    values = dict(
        behaviors=tuple(behaviors),
        num_items=num_items,
        gate_mode="reference",
        sdwl_form="reference",
        beta_schedule="reference",
        beta_cap=0.2,
        anneal_steps=200_000,
        learning_rate=1e-3,
    )
    values.update(overrides)
    return BVAEConfig(**values)


def model_config(
    behaviors: Iterable[str], num_items: int, section: Mapping[str, Any] | None
) -> BVAEConfig:
    """The :class:`BVAEConfig` of a pipeline's ``model`` section (Trainer
    ``custom_config["model"]``), whose behaviors and item count the pipeline sets.

    Raises:
      ValueError: if the section sets ``behaviors`` or ``num_items``, names an unknown
        key, or holds a bad value.
    """
    values = dict(section or {})
    for reserved in ("behaviors", "num_items"):
        if reserved in values:
            raise ValueError(f"model.{reserved} is set by the pipeline; remove it from the config")
    reject_unknown("model settings", values, BVAEConfig)
    return BVAEConfig(behaviors=tuple(behaviors), num_items=num_items, **values)


DEFAULT_TRAINING: Mapping[str, Any] = {
    "epochs": 200,
    "patience": 20,
    "batch_size": 500,
    "eval_batch_size": 2000,
    "seed": 0,
    "distribution_strategy": "auto",
    "devices": None,
    "verbose": 1,
    # Start from the latest blessed model (the pipeline's base_model): weights carried
    # over by item id (bvae_tf.warm_start); the first run, with none, starts cold.
    "warm_start": False,
    # The cross-behavior boosts (BVAEConfig.cross_behavior_boost) the Trainer tries on
    # the eval split after training, with 0 (plain BVAE), choosing one per behavior;
    # None: none tried.
    "boost_grid": None,
}
STRATEGIES = ("auto", "default", "mirrored", "multi_worker_mirrored")


def training_settings(custom: Mapping[str, Any] | None) -> dict[str, Any]:
    """Training settings with defaults filled in.

    Raises:
      ValueError: on unknown keys or bad values.
    """
    custom = dict(custom or {})
    reject_unknown("training settings", custom, DEFAULT_TRAINING)
    settings = {**DEFAULT_TRAINING, **custom}
    for name in ("epochs", "batch_size", "eval_batch_size"):
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"training.{name} must be an integer >= 1, got {value!r}")
    for name in ("patience", "seed", "verbose"):
        value = settings[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"training.{name} must be an integer >= 0, got {value!r}")
    if settings["distribution_strategy"] not in STRATEGIES:
        raise ValueError(
            f"training.distribution_strategy must be one of {list(STRATEGIES)}, "
            f"got {settings['distribution_strategy']!r}"
        )
    if not isinstance(settings["warm_start"], bool):
        raise ValueError(f"training.warm_start must be a bool, got {settings['warm_start']!r}")
    grid = settings["boost_grid"]
    if grid is not None and (
        isinstance(grid, str | bytes)
        or not hasattr(grid, "__len__")
        or not grid
        or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in grid
        )
    ):
        raise ValueError(
            f"training.boost_grid must be null or a non-empty list of numbers >= 0, got {grid!r}"
        )
    devices = settings["devices"]
    if devices is not None:
        if (
            isinstance(devices, str)
            or not isinstance(devices, list | tuple)
            or not devices
            or not all(isinstance(d, str) and d.strip() for d in devices)
        ):
            raise ValueError(
                "training.devices must be null or a non-empty list of device names "
                f'(e.g. ["/gpu:0", "/gpu:1"]), got {devices!r}'
            )
        if settings["distribution_strategy"] in ("default", "multi_worker_mirrored"):
            raise ValueError(
                "training.devices names the replicas of a Mirrored strategy; "
                f"distribution_strategy {settings['distribution_strategy']!r} does not read "
                "it: set distribution_strategy to 'mirrored' (or 'auto'), or remove devices"
            )
    return settings


def check_top_k(top_k: object, num_items: int) -> int:
    """Returns ``top_k`` if it is an integer in ``[1, num_items]``.

    Raises:
      ValueError: otherwise, naming the config key and the vocabulary size.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_items:
        raise ValueError(
            f"top_k must be an integer in [1, {num_items}] (the item vocabulary has "
            f"{num_items} items), got {top_k!r}: lower the config's top_k"
        )
    return top_k
