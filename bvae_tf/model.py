"""BVAE: Behavior-aware Variational Autoencoder (Rao et al., RecSys 2023), and baselines.

Notation (paper): ``c`` behaviors, ``m`` items, latent size ``d``, user ``u``.

- BASE (eq. 1-2): the mean ``mu_0`` comes from one encoder on the union multi-hot
  ``x^{B0}``; each behavior ``k`` has its own std encoder on ``x^{Bk}`` giving a
  log-variance (clamped to ``logvar_range``), ``sigma_k = exp(logvar_k / 2)``.
- GFF (eq. 3-4): ``mu_k = g_k * mu_0``; TFF (eq. 7-8): ``z_hat_k = sum_k' G_kk' z_k'``
  (see ``layers.GlobalFeatureFilter`` / ``layers.TargetFeatureFusion`` for the two gate
  readings, ``gate_mode="reference"`` or ``"gated"``).
- The paper's RQ2 replacements of BASE (``BVAEConfig.encoder``), each with BASE's
  ``c + 1`` sparse ``m x d`` encoders. ``"exchange"``: the roles swapped -- a mean
  encoder per behavior on ``x^{Bk}`` and one std encoder on ``x^{B0}`` (GFF then
  gates each ``mu_k``). ``"mmoe"`` (Ma et al., KDD 2018) and ``"cgc"`` (Tang et al., RecSys 2020,
  PLE's single layer) replace BASE's behavior-specific part, the ``c`` std encoders,
  by experts with the same parameters; the mean stays ``mu_0``. MMoE: ``c`` experts on
  ``x^{B0}`` shared by all behaviors; behavior ``k``'s softmax gate (a sparse linear map
  of ``x^{B0}``) mixes them into ``logvar_k``. CGC: behavior ``k``'s own expert on
  ``x^{Bk}`` and the shared expert ``mu_0`` (the union encoder), mixed by ``k``'s gate.
  The paper gives no equations for these; this is our reading. Two readings that
  also took the mean from the experts failed on JD (valid NDCG@5 below 0.001 on
  purchase after 4 epochs, against 0.027 for BASE): with dense towers to ``mu_k`` and
  ``logvar_k`` the SDWL term (``1 / 2 sigma^2``, eq. 14) drove ``sigma`` from 1 to 3 in
  three epochs; with both mixed from the same experts, ``logvar_k`` starts equal to
  ``mu_k`` and the noise sits in the informative directions. The gates add ``c^2 m``
  (MMoE) or ``2 c m`` (CGC) parameters: 9% / 6% of BASE's ``(c + 1) m d`` on JD.
- ``z_k = mu_k + eps * sigma_k`` in training, ``z_k = mu_k`` otherwise (eq. 5-6).
- Decoder ``k``: ``logits_k = z_hat_k E_k^T + b_k``, multinomial likelihood (eq. 9-10).
- Loss: per behavior negative log-likelihood + beta * KL, weighted by SDWL (eq. 11-14,
  ``losses.sdwl_term``), beta from ``losses.kl_beta``.

With ``c = 1`` there is nothing to gate or weigh: GFF, TFF and SDWL are off and the
model is Mult-VAE (Liang et al., 2018) with one linear encoder ``m -> 2d`` (mean and
log-variance from the same dropped-out input) and a linear decoder.

``variant="union_vae"`` is the VAE (U.) baseline: one Mult-VAE on the union of all
behaviors, whose logits are used for every behavior. VAE (T.) is a ``c = 1`` model per
behavior.

Input contract (exactly what parsing transformed tf.Examples gives)::

    {features.items_key(b): tf.SparseTensor int64 [batch, None]}   for every behavior b

(``tf.RaggedTensor`` works too; other keys are ignored; rows may be empty).
``model(features)`` returns ``{b: [batch, num_items] float32 logits}`` (deterministic
unless ``training=True``); ``model.recommend(features, k)`` returns per behavior the
top-``k`` ``(scores [batch, k] float32, items [batch, k] int64)`` with the user's own
``items_key(b)`` excluded. Only ``[batch, num_items]`` tensors are ever dense.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from bvae_tf import features as F
from bvae_tf import layers as L
from bvae_tf import losses, optimizers
from bvae_tf.config import (  # noqa: F401  -- BVAEConfig and its helpers are part of this API
    ENCODERS,
    PRECISIONS,
    UNION_TASK,
    VARIANTS,
    BVAEConfig,
    reference_config,
)

#: BVAE's graph code has no tensor-dependent Python control flow; converting it, and
#: every Keras layer it calls, with AutoGraph made tracing a training step take
#: ~20 s (the tiny test model) instead of ~2 s.
_NO_AUTOGRAPH = tf.autograph.experimental.do_not_convert


class _Compiled:
    """Holds a function out of Keras/SavedModel tracking."""

    def __init__(self, fn):
        self.fn = fn


@tf.keras.utils.register_keras_serializable(package="bvae")
class BVAE(tf.keras.Model):
    """The BVAE model (and the Mult-VAE baselines), see the module docstring.

    A plain Keras model with its own ``train_step``/``test_step`` around
    :meth:`compute_loss`: a training step must also advance the KL annealing step
    (``anneal_step``) and, under ``mixed_float16``, scale the loss, which the
    TensorFlow Recommenders ``tfrs.models.Model`` step does not do, so that base class
    would contribute nothing.

    Args:
      config: a :class:`BVAEConfig` or its ``to_dict()``.

    Raises:
      ValueError: on an invalid configuration.
    """

    def __init__(self, config: BVAEConfig | Mapping[str, Any], **kwargs):
        super().__init__(**kwargs)
        cfg = config if isinstance(config, BVAEConfig) else BVAEConfig.from_dict(config)
        if cfg.variant not in ("bvae", "union_vae"):
            raise ValueError(
                f"variant {cfg.variant!r} is a baseline: build it with build_model "
                "(trained) or bvae_tf.baselines.build (closed form), not BVAE"
            )
        self._cfg = cfg
        policy = tf.keras.mixed_precision.Policy(cfg.precision)
        m, d, seed = cfg.num_items, cfg.latent_dim, cfg.seed
        self.mean_encoders, self.std_encoders, self.experts = [], [], []
        self.expert_gates = []
        per_task = cfg.tasks if cfg.use_base else (UNION_TASK,)
        if cfg.encoder in ("base", "mmoe", "cgc"):
            self.mean_encoder = L.SparseLinearEncoder(m, d, seed=seed, dtype=policy, name="mu0")
            self.mean_encoders = [self.mean_encoder]
        else:  # exchange
            self.mean_encoders = [
                L.SparseLinearEncoder(m, d, seed=seed + 90 + i, dtype=policy, name=f"mu_{t}")
                for i, t in enumerate(per_task)
            ]
        if cfg.encoder in ("base", "exchange"):
            std_names = per_task if cfg.encoder == "base" else (UNION_TASK,)
            self.std_encoders = [
                L.SparseLinearEncoder(m, d, seed=seed + 10 + i, dtype=policy, name=f"logvar_{t}")
                for i, t in enumerate(std_names)
            ]
        else:  # mmoe / cgc: c experts in place of the c std encoders (BASE's budget)
            self.experts = [
                L.SparseLinearEncoder(m, d, seed=seed + 10 + i, dtype=policy, name=f"expert_{t}")
                for i, t in enumerate(cfg.tasks)
            ]
            width = len(self.experts) if cfg.encoder == "mmoe" else 2
            self.expert_gates = [
                L.SparseLinearEncoder(m, width, seed=seed + 130 + i, name=f"expert_gate_{t}")
                for i, t in enumerate(cfg.tasks)
            ]
        # BASE + behavior means (config.behavior_mean): a residual encoder per behavior
        # and its scale a_k, 0 at the start.
        self.residual_encoders, self.residual_scale = [], None
        if cfg.behavior_mean:
            self.residual_encoders = [
                L.SparseLinearEncoder(m, d, seed=seed + 150 + i, dtype=policy, name=f"mu_{t}")
                for i, t in enumerate(cfg.tasks)
            ]
            self.residual_scale = tf.Variable(
                tf.zeros([len(cfg.tasks)]), name="behavior_mean_scale"
            )
        gates = cfg.multi_behavior
        self.filters = [
            L.GlobalFeatureFilter(d, cfg.gate_mode, seed=seed + 30 + i, name=f"gff_{t}")
            for i, t in enumerate(cfg.tasks)
            if gates and cfg.use_gff
        ]
        self.fusions = [
            L.TargetFeatureFusion(d, cfg.gate_mode, seed=seed + 50 + i, name=f"tff_{t}")
            for i, t in enumerate(cfg.tasks)
            if gates and cfg.use_tff
        ]
        self.decoders = [
            L.ItemDecoder(m, d, seed=seed + 70 + 2 * i, dtype=policy, name=f"decoder_{t}")
            for i, t in enumerate(cfg.tasks)
        ]
        # Per-behavior latent sizes (config.latent_dims): behavior k keeps the first d_k
        # coordinates, a [1, d] float32 mask per task; None: all d.
        self.latent_masks = None
        if cfg.latent_dims is not None:
            self.latent_masks = [
                tf.constant(np.arange(d)[None, :] < d_k, tf.float32) for d_k in cfg.latent_dims
            ]
        self.item_path = None
        if cfg.item_path:
            self.item_path = L.CrossBehaviorItemPath(
                len(cfg.behaviors), m, scale=cfg.item_path_scale, name="item_path"
            )
            # Built here: its weights must exist when a saved model's are restored.
            self.item_path.build()
        # Scoring-time boost of items touched under another behavior (not trained; set
        # on the eval split after training, e.g. by bvae_tf.experiment --boost-grid).
        self.cross_behavior_boost = None
        if cfg.cross_behavior_boost is not None:
            self.cross_behavior_boost = tf.Variable(
                cfg.cross_behavior_boost, trainable=False, dtype=tf.float32, name="boost"
            )
        # The popularity proposal of the sampled softmax: log(count + 1) per item and
        # decoder, set from the train data by fit_proposal (uniform until then).
        self.proposal_logits = [
            tf.Variable(tf.zeros([m]), trainable=False, name=f"proposal_{t}")
            for t in cfg.tasks
            if cfg.sampled_softmax and cfg.sampled_proposal == "popularity"
        ]
        self.top_k_layers = [
            L.DecoderTopK(
                dec, k=F.DEFAULT_TOP_K, chunk_size=cfg.top_k_chunk_size or None, name=f"top_k_{t}"
            )
            for dec, t in zip(self.decoders, cfg.tasks, strict=True)
        ]
        self.anneal_step = tf.Variable(
            0,
            dtype=tf.int64,
            trainable=False,
            name="anneal_step",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        self._trackers = {
            "loss": tf.keras.metrics.Mean("loss"),
            "beta": tf.keras.metrics.Mean("beta"),
        }
        for t in cfg.tasks:
            for kind in ("nll", "kl", "sdwl_weight", "sigma", "logvar_clamped"):
                self._trackers[f"{t}_{kind}"] = tf.keras.metrics.Mean(f"{t}_{kind}")
        for name in self.gate_tracker_names():
            self._trackers[name] = tf.keras.metrics.Mean(name)
        self._dense_nll = _Compiled(
            tf.function(losses.multinomial_nll, jit_compile=True)
            if cfg.jit_compile
            else losses.multinomial_nll
        )

    # --- configuration ---------------------------------------------------------------
    @property
    def bvae_config(self) -> BVAEConfig:
        return self._cfg

    def gate_tracker_names(self) -> list[str]:
        """Names of the gate trackers (see :meth:`compute_loss`): ``<task>_gff_gate``
        and ``<task>_gff_gate_std`` with GFF, ``<target>_tff_from_<source>`` with TFF."""
        tasks = self._cfg.tasks
        names = []
        if self.filters:
            names += [f"{t}_gff_gate{s}" for t in tasks for s in ("", "_std")]
        if self.fusions:
            names += [f"{t}_tff_from_{source}" for t in tasks for source in tasks]
        return names

    @property
    def behaviors(self) -> tuple[str, ...]:
        return self._cfg.behaviors

    @property
    def num_items(self) -> int:
        return self._cfg.num_items

    def get_config(self) -> dict[str, Any]:
        return {"config": self._cfg.to_dict(), "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(config["config"], name=config.get("name"))

    @property
    def metrics(self):
        return list(self._trackers.values())

    # --- forward ---------------------------------------------------------------------
    def _task_index(self, behavior: str) -> int:
        return 0 if self._cfg.variant == "union_vae" else self._cfg.behaviors.index(behavior)

    def _inputs(self, inputs: Mapping[str, Any]) -> dict[str, L.SparseRows]:
        return L.behavior_inputs(inputs, self._cfg.behaviors, self._cfg.num_items, "BVAE")

    def _seed(self, salt: int) -> tf.Tensor:
        base = tf.stack([tf.constant(self._cfg.seed, tf.int64), self.anneal_step.value()])
        replica = tf.distribute.get_replica_context()
        replica_id = 0 if replica is None else replica.replica_id_in_sync_group
        base = tf.random.experimental.stateless_fold_in(base, replica_id)
        return tf.random.experimental.stateless_fold_in(base, salt)

    @_NO_AUTOGRAPH
    def encode(self, inputs: Mapping[str, Any], training: bool = False) -> dict[str, Any]:
        """Runs the encoders and gates.

        Args:
          inputs: the feature dict of the module docstring.
          training: dropout and sampling on (seeded by ``config.seed`` and the step).

        Returns:
          dict with ``inputs`` (behavior -> ``layers.SparseRows``), ``targets``
          (task -> SparseRows), ``mean`` (before GFF) / ``mu`` / ``logvar`` / ``z``
          (sampled, or ``mu`` when not training) / ``z_hat`` (task -> ``[B, d]``
          float32; with ``config.latent_dims``, 0 beyond the task's ``d_k``) and
          ``batch_size``.
        """
        cfg = self._cfg
        per_behavior = self._inputs(inputs)
        union = L.union_rows(list(per_behavior.values()), cfg.num_items)
        targets = {UNION_TASK: union} if cfg.variant == "union_vae" else per_behavior
        seeds = iter(range(1, 10_000))

        def weights(items):
            return L.normalised_weights(
                items, cfg.dropout, self._seed(next(seeds)) if training else None
            )

        task_weights = {}  # one dropout mask per behavior input, shared by its encoders

        def encode_task_inputs(encoders):
            out = []
            for task, encoder in zip(cfg.tasks, encoders, strict=True):
                items = targets[task]
                # With one task its input is the union: one dropout mask, as Mult-VAE.
                shared = len(per_behavior) == 1 or cfg.variant == "union_vae"
                if task not in task_weights:
                    task_weights[task] = union_weights if shared else weights(items)
                out.append(tf.cast(encoder(items, task_weights[task]), tf.float32))
            return out

        def on_union(encoder):
            return tf.cast(encoder(union, union_weights), tf.float32)

        union_weights = weights(union)
        lo, hi = cfg.logvar_range
        n = len(cfg.tasks)
        if cfg.encoder == "exchange":
            means = encode_task_inputs(self.mean_encoders)
            logvars = [on_union(self.std_encoders[0])] * n
        else:
            mu0 = on_union(self.mean_encoder)
            means = [mu0] * n
            if cfg.encoder == "base":
                logvars = encode_task_inputs(self.std_encoders) if cfg.use_base else None
                logvars = logvars or [on_union(self.std_encoders[0])] * n
                if self.residual_encoders:  # mu_0 + a_k r_k(x^{B_k})
                    residuals = encode_task_inputs(self.residual_encoders)
                    means = [mu0 + self.residual_scale[i] * r for i, r in enumerate(residuals)]
            elif cfg.encoder == "mmoe":  # c shared experts on x^{B0}, a gate per behavior
                experts = tf.stack([on_union(e) for e in self.experts], axis=1)  # [B, c, d]
                logvars = [self._mix(on_union(g), experts) for g in self.expert_gates]
            else:  # cgc: behavior k's own expert on x^{Bk} and the shared mu_0
                own = encode_task_inputs(self.experts)
                logvars = [
                    self._mix(on_union(g), tf.stack([own[i], mu0], axis=1))
                    for i, g in enumerate(self.expert_gates)
                ]
        logvars = [tf.clip_by_value(lv, lo, hi) for lv in logvars]
        masks = self.latent_masks
        if masks:  # behavior k's coordinates beyond d_k: mean 0 (its GFF gate reads d_k),
            # logvar 0 (a KL term of 0)
            means = [mu * mask for mu, mask in zip(means, masks, strict=True)]
            logvars = [lv * mask for lv, mask in zip(logvars, masks, strict=True)]
        mus = [f(mu) for f, mu in zip(self.filters, means, strict=True)] if self.filters else means
        if training:
            zs = [
                mu
                + tf.random.stateless_normal(tf.shape(mu), seed=self._seed(5000 + i))
                * tf.exp(0.5 * lv)
                for i, (mu, lv) in enumerate(zip(mus, logvars, strict=True))
            ]
            if masks:
                zs = [z * mask for z, mask in zip(zs, masks, strict=True)]
        else:
            zs = mus
        z_hat = [fuse(zs) for fuse in self.fusions] if self.fusions else zs
        if masks and self.fusions:  # TFF adds other behaviors' wider samples
            z_hat = [z * mask for z, mask in zip(z_hat, masks, strict=True)]
        return {
            "inputs": per_behavior,
            "targets": targets,
            "mean": dict(zip(cfg.tasks, means, strict=True)),
            "mu": dict(zip(cfg.tasks, mus, strict=True)),
            "logvar": dict(zip(cfg.tasks, logvars, strict=True)),
            "z": dict(zip(cfg.tasks, zs, strict=True)),
            "z_hat": dict(zip(cfg.tasks, z_hat, strict=True)),
            "batch_size": union.batch_size,
        }

    @staticmethod
    def _mix(gate_logits: tf.Tensor, experts: tf.Tensor) -> tf.Tensor:
        """``sum_e softmax(gate_logits)_e experts[:, e]``: ``[B, E]``, ``[B, E, d]`` to
        ``[B, d]``."""
        return tf.einsum("be,bed->bd", tf.nn.softmax(gate_logits, axis=-1), experts)

    @_NO_AUTOGRAPH
    def call(self, inputs, training=False):
        """Logits per behavior: ``{b: [B, num_items] float32}``."""
        encoded = self.encode(inputs, training=bool(training))
        rows = list(encoded["inputs"].values())
        return {
            b: self._decode(self._task_index(b), encoded["z_hat"], rows)
            for b in self._cfg.behaviors
        }

    def _decode(self, k: int, z_hat: dict, rows: list[L.SparseRows]) -> tf.Tensor:
        """``[B, m]`` logits of task ``k`` from the encoded ``z_hat`` and the batch's
        input rows: the decoder (eq. 9), then the item path and the boost if any."""
        logits = self.decoders[k](z_hat[self._cfg.tasks[k]])
        if self.item_path is not None:
            logits = self.item_path.add_to(logits, rows, k)
        if self.cross_behavior_boost is not None:
            logits = self._boost(logits, rows, k)
        return logits

    def _boost(self, logits: tf.Tensor, rows: list[L.SparseRows], k: int) -> tf.Tensor:
        """``[B, m]`` ``logits`` of behavior ``k`` plus its ``cross_behavior_boost`` on
        the items the user has under another behavior."""
        touched = L.cross_behavior_indicator(rows, k, self._cfg.num_items)
        return logits + self.cross_behavior_boost[k] * touched

    def row_scorer(self, inputs) -> Callable[[str, tf.Tensor], tf.Tensor]:
        """Encodes a batch once; returns ``score(behavior, keep)``, the ``[n, m]``
        float32 logits of the batch rows ``keep`` (``[n]`` int64, increasing): the
        rows ``keep`` of ``self(inputs)[behavior]``, decoded for those rows only
        (what ``metrics.evaluate`` uses to skip users with nothing held out)."""
        encoded = self.encode(inputs, training=False)
        rows = list(encoded["inputs"].values())

        def score(behavior: str, keep: tf.Tensor) -> tf.Tensor:
            k = self._task_index(behavior)
            task = self._cfg.tasks[k]
            z_hat = {task: tf.gather(encoded["z_hat"][task], keep)}
            return self._decode(k, z_hat, [L.gather_rows(r, keep) for r in rows])

        return score

    @property
    def eval_chunk_size(self) -> int | None:
        """Items per chunk of ``metrics.evaluate``'s full ranking: the config's
        ``top_k_chunk_size`` when it splits the catalog, else ``None`` (whole rows)."""
        size = self._cfg.top_k_chunk_size
        return size if size and size < self._cfg.num_items else None

    def chunk_scorer(self, inputs) -> Callable[[str, int, int], tf.Tensor]:
        """Encodes a batch once; returns ``score(behavior, start, stop)``, the
        ``[B, stop - start]`` float32 logits of the items ``[start, stop)``: the
        columns of ``self(inputs)[behavior]`` computed alone (no item path:
        ``top_k_chunk_size`` excludes it)."""
        encoded = self.encode(inputs, training=False)

        def score(behavior: str, start: int, stop: int) -> tf.Tensor:
            i = self._task_index(behavior)
            return self.decoders[i].chunk_logits(encoded["z_hat"][self._cfg.tasks[i]], start, stop)

        return score

    @_NO_AUTOGRAPH
    def recommend(self, inputs, k: int = F.DEFAULT_TOP_K) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
        """Top-``k`` items per behavior, the user's own items of that behavior excluded.

        Equal to arg-sorting ``self(inputs)[b]`` after setting the user's
        ``items_key(b)`` to ``-inf`` (ties: lower item index first). Usable inside a
        ``tf.function`` serving signature, any batch size including 0.

        Args:
          inputs: the feature dict of the module docstring.
          k: static int in ``[1, num_items]``.

        Returns:
          ``{b: (scores [B, k] float32, items [B, k] int64)}``, scores descending.

        Raises:
          ValueError: if ``k`` is out of range.
        """
        encoded = self.encode(inputs, training=False)
        indexes = getattr(self, "approximate_indexes", None)
        out = {}
        for b in self._cfg.behaviors:
            i = self._task_index(b)
            z = encoded["z_hat"][self._cfg.tasks[i]]
            seen = encoded["inputs"][b]
            if indexes:
                k_checked = self.top_k_layers[i]._check_k(k)
                out[b] = indexes[i].query_with_exclusions(z, seen, k_checked)
                continue
            if self.item_path is None and self.cross_behavior_boost is None:
                out[b] = self.top_k_layers[i].query_with_exclusions(z, seen, k=k)
                continue
            top = self.top_k_layers[i]
            scores = self._decode(i, encoded["z_hat"], list(encoded["inputs"].values()))
            values, items = tf.math.top_k(L.mask_scores(scores, seen), k=top._check_k(k))
            out[b] = (values, tf.cast(items, tf.int64))
        return out

    def attach_approximate_top_k(self, probe: float | None = None) -> None:
        """Builds one IVF index per decoder (``approximate.ApproximateTopK``, seeded
        by the config's ``seed``) from the current item tables; :meth:`recommend`
        then serves from them. For export, after training: the index does not follow
        later updates of the tables' clustering (its scores are always the current
        logits).

        Args:
          probe: share of the catalog scored per query, in ``(0, 1]`` (default: the
            config's ``approximate_top_k``).

        Raises:
          ValueError: if neither ``probe`` nor the config's ``approximate_top_k`` is
            set, or the model has an item path or a cross-behavior boost.
        """
        from bvae_tf import approximate

        probe = probe or self._cfg.approximate_top_k
        if not probe or self.item_path is not None or self.cross_behavior_boost is not None:
            raise ValueError(
                "attach_approximate_top_k needs a probe share in (0, 1] (BVAEConfig."
                f"approximate_top_k, got {probe!r}) and a model without item_path or "
                "cross_behavior_boost"
            )
        self.approximate_indexes = [
            approximate.ApproximateTopK(dec, probe, seed=self._cfg.seed, name=f"ivf_{t}")
            for dec, t in zip(self.decoders, self._cfg.tasks, strict=True)
        ]

    # --- loss ------------------------------------------------------------------------
    def beta(self) -> tf.Tensor:
        """Current KL weight (scalar float32), from ``anneal_step``."""
        cfg = self._cfg
        return losses.kl_beta(self.anneal_step, cfg.beta_cap, cfg.anneal_steps, cfg.beta_schedule)

    @_NO_AUTOGRAPH
    def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
        """Total BVAE loss of a batch (eq. 11-14), updating the loss trackers.

        Trackers (``model.metrics``, reset every epoch by Keras): ``loss``, ``beta``
        and per task (behavior, or ``union``) ``<task>_nll`` (reconstruction NLL per
        user; in training with ``sampled_softmax``, the sampled-softmax NLL),
        ``<task>_kl``, ``<task>_sdwl_weight`` (``1 / (2 sigma_bar^2)``, 1 when
        SDWL is off), ``<task>_sigma`` (``sigma_bar``) and ``<task>_logvar_clamped``
        (fraction of log-variances at the ``logvar_range`` bounds). With GFF, per task
        ``<task>_gff_gate`` and ``<task>_gff_gate_std``: mean and standard deviation of
        the gate ``g_k`` (eq. 3-4) over users and dimensions (1 and 0: no filtering).
        With TFF, ``<target>_tff_from_<source>``: the mean share of ``z_source`` in
        ``z_hat_target`` (eq. 7-8, the target's weights normalised to sum to 1 over
        sources; ``1/c`` each is the plain sum).

        Args:
          inputs: the feature dict (extra keys, e.g. held-out items, are ignored).
          training: dropout and sampling on.

        Returns:
          scalar float32 loss, scaled by ``1/num_replicas`` under a distribution
          strategy so that summed replica gradients equal the global-batch mean.
        """
        cfg = self._cfg
        enc = self.encode(inputs, training=training)
        beta = self.beta()
        total = tf.constant(0.0)
        sdwl_on = cfg.use_sdwl and cfg.multi_behavior and cfg.loss_weights is None
        for k, (task, dec) in enumerate(zip(cfg.tasks, self.decoders, strict=True)):
            target = enc["targets"][task]
            extra = None
            if self.item_path is not None:
                drop = cfg.item_path_drop_overlap if training else 0.0
                seed = self._seed(9000 + k) if drop else None
                extra = self.item_path.entries(
                    list(enc["inputs"].values()), k, drop_overlap=drop, seed=seed
                )
            queries = dec.queries(enc["z_hat"][task])
            targets = (target.rows, target.cols, target.batch_size)
            if cfg.sampled_softmax and training:
                candidates, log_q = self._candidates(target.cols, 7000 + k, k)
                table, nll_fn = dec.candidate_table(candidates), losses.sampled_multinomial_nll
                options = {"candidates": candidates, "log_q": log_q}
            else:
                table, nll_fn, options = dec.item_table(), self._dense_nll.fn, {"extra": extra}
            if nll_fn is self._dense_nll.fn and cfg.jit_compile:  # XLA: static shapes
                nll = nll_fn(queries, table, *targets, **options)
            else:  # only the users with targets of this behavior are decoded
                nll = losses.nll_on_rows_with_targets(
                    queries, table, *targets, nll_fn=nll_fn, **options
                )
            logvar = enc["logvar"][task]
            kl = losses.gaussian_kl(enc["mu"][task], logvar)  # 0 beyond d_k (latent_dims)
            if cfg.latent_dims is not None:  # sigma_bar and the clamp share over d_k
                logvar = logvar[:, : cfg.latent_dims[k]]
            log_sigma = losses.log_mean_sigma(logvar)
            term, weight = losses.sdwl_term(
                nll, kl, log_sigma if sdwl_on else None, beta, form=cfg.sdwl_form
            )
            if cfg.loss_weights is not None:  # RQ2's manual weights in place of SDWL
                term *= cfg.loss_weights[k]
                weight *= cfg.loss_weights[k]
            total += term
            self._trackers[f"{task}_nll"].update_state(nll)
            self._trackers[f"{task}_kl"].update_state(kl)
            self._trackers[f"{task}_sdwl_weight"].update_state(weight)
            self._trackers[f"{task}_sigma"].update_state(tf.exp(log_sigma))
            lo, hi = cfg.logvar_range
            clamped = tf.cast((logvar <= lo) | (logvar >= hi), tf.float32)
            self._trackers[f"{task}_logvar_clamped"].update_state(clamped)
        self._track_gates(enc)
        self._trackers["loss"].update_state(total)
        self._trackers["beta"].update_state(beta)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return total / float(replicas)

    def _candidates(
        self, cols: tf.Tensor, salt: int, task_index: int
    ) -> tuple[tf.Tensor, tf.Tensor | None]:
        """The sampled softmax's candidates of one decoder and step.

        Returns:
          ``(candidates, log_q)``: sorted unique ``[C]`` int64, the batch's target
          items ``cols`` and ``sampled_softmax`` draws (seeded by the config seed and
          the step) from the proposal; ``log_q`` ``[C]`` float32 the log proposal
          probability of each candidate for the logQ correction, or ``None`` for the
          uniform proposal (a constant that cancels).
        """
        cfg = self._cfg
        seed = self._seed(salt)
        if self.proposal_logits:
            logits = self.proposal_logits[task_index]
            negatives = tf.random.stateless_categorical(
                logits[None, :], cfg.sampled_softmax, seed=seed, dtype=tf.int64
            )[0]
        else:
            negatives = tf.random.stateless_uniform(
                [cfg.sampled_softmax], seed=seed, minval=0, maxval=cfg.num_items, dtype=tf.int64
            )
        candidates = tf.sort(tf.unique(tf.concat([tf.cast(cols, tf.int64), negatives], 0))[0])
        if not self.proposal_logits:
            return candidates, None
        return candidates, tf.gather(tf.nn.log_softmax(logits), candidates)

    def fit_proposal(self, dataset) -> dict[str, np.ndarray]:
        """Sets the popularity proposal (``config.sampled_proposal="popularity"``) from
        the train items of a dataset: ``q_j ∝ count_j + 1`` per decoder, ``count_j``
        the number of users with item ``j`` in the decoder's behavior (the union
        decoder: the behaviors' counts summed).

        Args:
          dataset: finite ``tf.data.Dataset`` of the model's input dicts (the train
            split; ``items_key(b)`` sparse or ragged ``[B, None]`` int64).

        Returns:
          ``{task: [num_items] float64 counts}``.

        Raises:
          ValueError: if the config has no popularity proposal.
        """
        cfg = self._cfg
        if not self.proposal_logits:
            raise ValueError(
                "fit_proposal needs sampled_softmax > 0 and sampled_proposal='popularity'"
            )
        counts = {b: np.zeros(cfg.num_items) for b in cfg.behaviors}
        for batch in dataset:
            for b in cfg.behaviors:
                items = batch[F.items_key(b)]
                values = items.values if isinstance(items, tf.SparseTensor) else items.flat_values
                counts[b] += np.bincount(values.numpy(), minlength=cfg.num_items)
        out = {}
        for variable, task in zip(self.proposal_logits, cfg.tasks, strict=True):
            out[task] = counts[task] if task in counts else sum(counts.values())
            variable.assign(np.log1p(out[task]).astype(np.float32))
        return out

    def _track_gates(self, enc: dict) -> None:
        """Updates the gate trackers of :meth:`compute_loss` from an :meth:`encode` output."""
        tasks = self._cfg.tasks
        dims = self._cfg.latent_dims or (self._cfg.latent_dim,) * len(tasks)
        filters = enumerate(zip(tasks, self.filters, strict=True)) if self.filters else ()
        for k, (task, gff) in filters:
            gate = gff.gate(enc["mean"][task])[:, : dims[k]]  # the coordinates in use
            self._trackers[f"{task}_gff_gate"].update_state(tf.reduce_mean(gate))
            self._trackers[f"{task}_gff_gate_std"].update_state(tf.math.reduce_std(gate))
        latents = [enc["z"][t] for t in tasks]
        for target, tff in zip(tasks, self.fusions, strict=True) if self.fusions else ():
            shares = tf.reduce_mean(tff.mixing(latents), axis=0)  # [c]
            for j, source in enumerate(tasks):
                self._trackers[f"{target}_tff_from_{source}"].update_state(shares[j])

    @_NO_AUTOGRAPH
    def train_step(self, inputs):
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            if self.losses:
                loss += tf.add_n(self.losses)
            scaled = loss
            if isinstance(self.optimizer, tf.keras.mixed_precision.LossScaleOptimizer):
                scaled = self.optimizer.get_scaled_loss(loss)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        if isinstance(self.optimizer, tf.keras.mixed_precision.LossScaleOptimizer):
            grads = self.optimizer.get_unscaled_gradients(grads)
        # Only after a batch: a call that finds none (Keras' end-of-data probe of a
        # dataset of unknown size) must count no step, neither Adam's (its bias
        # correction) nor the annealing step (the beta ramp and the noise seeds), so
        # that a resumed run, which probes again, replays an unbroken one exactly.
        with tf.control_dependencies([loss]):
            self.optimizer.apply_gradients(zip(grads, variables, strict=True))
            self.anneal_step.assign_add(1)
        return {m.name: m.result() for m in self.metrics}

    @_NO_AUTOGRAPH
    def test_step(self, inputs):
        self.compute_loss(inputs, training=False)
        return {m.name: m.result() for m in self.metrics}


class MemoryFloorError(ValueError):
    """A training refused by :func:`check_training_memory`: it cannot fit in the
    memory available."""


#: Bytes each trained float32 decoder weight holds at least while training: the
#: weight and Adam's two moment slots (the gradient is not counted: a sampled
#: softmax's is sparse).
_BYTES_PER_TRAINED_WEIGHT = 12


def training_memory_floor(
    num_items: int,
    num_decoders: int,
    latent_dim: int,
    batch_size: int,
    full_softmax: bool,
    *,
    square_kernels: int = 0,
) -> int:
    """A floor of the memory, in bytes, that training a VAE-family model needs.

    Counts only what every trained variant (BVAE and its ablations, VAE (U.)/(T.),
    VAE++, RecVAE) has: one ``[latent_dim, num_items]`` float32 softmax decoder per
    reconstruction task, with Adam's two slots; with a full softmax also one batch of
    ``[batch_size, num_items]`` float32 logits per decoder; and ``square_kernels``
    ``[latent_dim, latent_dim]`` kernels with their slots (BVAE's gated GFF:
    :func:`config_square_kernels`). Encoders, other layers, activations and
    TensorFlow itself come on top, so the true peak is higher.

    Args:
      num_items: ``m``, the catalog size.
      num_decoders: the reconstruction tasks (one decoder each; 1 for VAE (U.)).
      latent_dim: ``d``.
      batch_size: users in the largest training batch (0 if unknown).
      full_softmax: False under ``sampled_softmax`` (no ``[B, m]`` logits).
      square_kernels: ``[d, d]`` kernels of the model.

    Returns:
      The floor, in bytes (an int).
    """
    weights = num_decoders * latent_dim * num_items + square_kernels * latent_dim**2
    logits = 4 * num_decoders * batch_size * num_items if full_softmax else 0
    return _BYTES_PER_TRAINED_WEIGHT * weights + logits


def config_square_kernels(config: BVAEConfig) -> int:
    """The ``[d, d]`` kernels a trained ``config`` has for certain: one GFF kernel per
    task for BVAE with several tasks, GFF on and a gate reading other than
    ``"reference"`` (whose kernel is ``[d, 1]``); else 0."""
    gff = (
        config.variant == "bvae"
        and config.multi_behavior
        and config.use_gff
        and config.gate_mode != "reference"
    )
    return len(config.tasks) if gff else 0


def check_config_memory(
    config: BVAEConfig, batch_size: int, *, flags: str, available: int | None = None
) -> None:
    """:func:`check_training_memory` of a trained ``config`` (its tasks, latent size,
    softmax and GFF kernels) with batches of ``batch_size`` users (0 if unknown) and
    ``available`` bytes (default: measured now).

    Raises:
      ValueError: as :func:`check_training_memory`.
    """
    check_training_memory(
        config.num_items,
        len(config.tasks),
        config.latent_dim,
        batch_size,
        not config.sampled_softmax,
        flags=flags,
        available=available,
        square_kernels=config_square_kernels(config),
    )


def check_gate_kernel_memory(
    latent_dim: int, square_kernels: int, *, flags: str, available: int | None = None
) -> None:
    """Refuses a ``latent_dim`` whose ``square_kernels`` ``[d, d]`` GFF kernels, with
    Adam's slots, alone exceed the memory available (:func:`check_training_memory`'s
    floor without decoders or logits): what cannot fit whatever the catalog, so the
    experiment's flag check refuses it before any data is read.

    Args:
      latent_dim: ``d``.
      square_kernels: ``[d, d]`` kernels (:func:`config_square_kernels`).
      flags: the settings to name in the error.
      available: bytes available (default: :func:`bvae_tf.memory.available_memory`).

    Raises:
      MemoryFloorError: naming the kernels' floor, the memory available and ``flags``.
    """
    from bvae_tf import memory

    need = training_memory_floor(0, 0, latent_dim, 0, False, square_kernels=square_kernels)
    room = memory.room(available)
    if square_kernels and need > room.bytes:
        raise MemoryFloorError(
            f"latent_dim {latent_dim:,}: BVAE's {square_kernels} [d, d] GFF kernels alone need "
            f"{need / 1e9:,.1f} GB with Adam's slots, whatever the catalog, and "
            f"{room.describe()}: lower {flags}"
        )


def check_training_memory(
    num_items: int,
    num_decoders: int,
    latent_dim: int,
    batch_size: int,
    full_softmax: bool,
    *,
    flags: str,
    available: int | None = None,
    square_kernels: int = 0,
) -> None:
    """Refuses a training whose :func:`training_memory_floor` exceeds the memory
    available now (:func:`bvae_tf.memory.available_memory`: free memory, or less where
    a container's memory cgroup or ``ulimit -v`` sets less), before its weights are
    allocated: a ``latent_dim`` or ``batch_size`` typo would otherwise end in the
    kernel's out-of-memory kill, with no message.

    Args:
      num_items, num_decoders, latent_dim, batch_size, full_softmax, square_kernels:
        as :func:`training_memory_floor`.
      flags: the settings to name in the error (e.g. ``"--latent-dim / --batch-size"``).
      available: bytes available (default: measured now).

    Raises:
      MemoryFloorError: (a ``ValueError``) naming the floor, the memory available and
        ``flags``.
    """
    from bvae_tf import memory

    room = memory.room(available)
    need = training_memory_floor(
        num_items, num_decoders, latent_dim, batch_size, full_softmax, square_kernels=square_kernels
    )
    if need > room.bytes:
        counted = ["decoder weights and Adam slots"]
        if square_kernels:
            counted.append(f"{square_kernels} [d, d] gate kernel(s)")
        if full_softmax and batch_size:
            counted.append(f"one batch of logits ({batch_size:,} users)")
        raise MemoryFloorError(
            f"training at latent_dim {latent_dim:,} over {num_items:,} items with "
            f"{num_decoders} decoder(s) needs at least {need / 1e9:,.1f} GB "
            f"({', '.join(counted)}) and {room.describe()}: lower {flags}"
        )


def learning_rate(config: BVAEConfig) -> float | tf.keras.optimizers.schedules.LearningRateSchedule:
    """The optimizer's learning rate: ``config.learning_rate``, or under
    ``config.lr_schedule="cosine"`` ``CosineDecay(learning_rate, lr_decay_steps,
    alpha=lr_final_fraction)`` (Keras docs: ``lr * ((1 - alpha) * 0.5 * (1 + cos(pi *
    min(step, decay_steps) / decay_steps)) + alpha)``, ``step`` the update count).
    """
    if config.lr_schedule == "cosine":
        return tf.keras.optimizers.schedules.CosineDecay(
            config.learning_rate, config.lr_decay_steps, alpha=config.lr_final_fraction
        )
    return config.learning_rate


def make_optimizer(config: BVAEConfig, jit_compile: bool = False) -> tf.keras.optimizers.Optimizer:
    """Adam at ``config.learning_rate`` (loss-scaled under mixed float16):
    ``optimizers.FusedAdam`` (TensorFlow's fused Adam kernel), or
    ``optimizers.LazyAdam`` with ``config.sparse_updates``; with
    ``config.weight_decay > 0`` Keras' decoupled weight decay on every trainable
    variable (AdamW); with ``config.lr_schedule="cosine"`` the learning rate follows
    Keras' ``CosineDecay`` of the optimizer's update count (so a resumed run continues
    the schedule where it stopped).

    Args:
      config: the model configuration.
      jit_compile: Keras' Adam with its update compiled by XLA instead of
        ``FusedAdam`` (the same update). On JD on 2 CPU cores ``FusedAdam`` trained an
        epoch in 2.07-2.15 s against 2.54-2.62 s, with no compile at the first step;
        not with ``sparse_updates``.
    """
    args = {"learning_rate": learning_rate(config)}
    if config.weight_decay > 0.0:
        args["weight_decay"] = config.weight_decay
    if config.sparse_updates:  # its row de-duplication (tf.unique) does not compile
        optimizer = optimizers.LazyAdam(**args, jit_compile=False)
    elif jit_compile:
        optimizer = tf.keras.optimizers.Adam(**args, jit_compile=True)
    else:
        optimizer = optimizers.FusedAdam(**args, jit_compile=False)
    if config.precision == "mixed_float16":
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def build_model(
    config: BVAEConfig, optimizer_jit_compile: bool = False, steps_per_pass: int | None = None
) -> tf.keras.Model:
    """Creates the trained model of ``config`` compiled with :func:`make_optimizer`:
    a :class:`BVAE`, VAE++ for ``variant="vae_pp"``
    (:meth:`bvae_tf.baselines.vaepp.VAEPlusPlus.from_bvae_config`) or RecVAE (T.) for
    ``variant="recvae"`` (:class:`bvae_tf.baselines.recvae.PerBehaviorRecVAE`, not yet
    built: call its ``prepare`` on one batch, repeat the train dataset and train
    ``steps_per_epoch`` batches per epoch).

    Call inside ``strategy.scope()`` to distribute.

    Args:
      config: the model configuration.
      optimizer_jit_compile: see :func:`make_optimizer`.
      steps_per_pass: RecVAE's batches per pass over the train users (its alternating
        phases); needed for ``variant="recvae"`` only.

    Raises:
      ValueError: for a closed-form variant (``bvae_tf.baselines.build`` fits those),
        or ``variant="recvae"`` without ``steps_per_pass >= 1``.
    """
    if config.variant == "recvae":
        from bvae_tf.baselines import recvae

        if not steps_per_pass or steps_per_pass < 1:
            raise ValueError(f"variant 'recvae' needs steps_per_pass >= 1, got {steps_per_pass!r}")
        return recvae.PerBehaviorRecVAE.from_bvae_config(config, steps_per_pass)
    if config.variant == "vae_pp":
        from bvae_tf.baselines import vaepp

        model = vaepp.VAEPlusPlus.from_bvae_config(config)
    else:
        model = BVAE(config)
    model.compile(optimizer=make_optimizer(config, optimizer_jit_compile))
    return model
