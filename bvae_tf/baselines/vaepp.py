"""VAE++ (Ma, Chen, Pan, Ming; WSDM 2022): Mult-VAE for one target behavior, with the
other behaviors as auxiliary feedback.

For a target behavior ``t`` with auxiliary behaviors ``A`` (all other modelled
behaviors), per user:

- **Target encoder**: ``[mu_t, logvar_t] = Enc_t(x_t)`` (one linear layer on the
  L2-normalised, dropped-out multi-hot row, as BVAE's semi-encoders).
- **Target representation enhancement** (TRE): a union encoder
  ``mu_mix = Enc_mix(x_t OR x_A)`` and a *transfer gating network*
  ``g = sigmoid(w^T [mu_t, mu_mix] + b)`` (one scalar per user) give the enhanced mean
  ``mu_e = g * mu_t + (1 - g) * mu_mix``; the posterior is ``N(mu_e, exp(logvar_t))``,
  sampled ``z = mu_e + eps * exp(logvar_t / 2)`` (the mean ``mu_e`` at inference).
- **Target representation refinement** (TRR): an auxiliary encoder
  ``mu_A = Enc_A(x_A)`` and ``z_r = W_r [z, mu_A] + b_r`` (``2d -> d``, linear) refine
  the representation, decoded by a softmax over items, ``logits = z_r E^T + b``.
- **Loss**: the Mult-VAE negative ELBO on the target behavior,
  ``-sum_i x_ti log softmax(logits)_i + beta * KL(N(mu_e, sigma_t) || N(0, I))``,
  with BVAE's beta annealing (``losses.kl_beta``).

Choices where the paper leaves room (the authors' TF 1.x code is not public; two
public PyTorch re-implementations were read):

- Every encoder is linear (no hidden layer, no ``tanh``), as BVAE's semi-encoders and
  one of the two re-implementations; the other adds ``tanh``.
- The refinement is ``2d -> d`` then the ``d -> m`` decoder (one re-implementation);
  the other maps ``2d -> m`` directly. Both are linear, so they differ only in rank.
- Users without any item of the target behavior contribute nothing to that target's
  loss (masked), so training one target equals training VAE++ on the target's users.

Multi-target use (the BVAE paper's comparison): VAE++ is single-target; this class
holds one independent VAE++ per behavior of ``targets`` (no shared parameters; their
losses are summed, which with Adam's per-parameter steps equals separate training up
to the shared batch order), so one model scores every behavior with BVAE's contract
and can be exported and served like BVAE. The experiment CLI trains one model per
target so that each target keeps its own early-stopping epoch.

Input/output: ``{features.items_key(b): SparseTensor}`` for every behavior of
``behaviors`` to ``{t: [B, m] float32 logits}`` for ``t`` in ``targets``.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from bvae_tf import layers as L
from bvae_tf import losses
from bvae_tf.baselines.base import ItemScoreModel, check_settings
from bvae_tf.config import BETA_SCHEDULES

_PACKAGE = "bvae"
_NO_AUTOGRAPH = tf.autograph.experimental.do_not_convert


class _Head:
    """The layers of one target's VAE++ (attribute holder; tracked by the model)."""

    def __init__(self, num_items: int, latent: int, seed: int, name: str):
        self.target = L.SparseLinearEncoder(num_items, 2 * latent, seed=seed, name=f"{name}_enc")
        self.mix = L.SparseLinearEncoder(num_items, latent, seed=seed + 2, name=f"{name}_mix")
        self.aux = L.SparseLinearEncoder(num_items, latent, seed=seed + 4, name=f"{name}_aux")
        self.gate = tf.keras.layers.Dense(
            1, kernel_initializer=L.xavier(seed + 6), name=f"{name}_transfer_gate"
        )
        self.refine = tf.keras.layers.Dense(
            latent, kernel_initializer=L.xavier(seed + 7), name=f"{name}_refine"
        )
        self.decoder = L.ItemDecoder(num_items, latent, seed=seed + 8, name=f"{name}_decoder")

    @property
    def layers(self) -> list[tf.keras.layers.Layer]:
        return [self.target, self.mix, self.aux, self.gate, self.refine, self.decoder]


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class VAEPlusPlus(ItemScoreModel):
    """VAE++ per target behavior (module docstring).

    Args:
      behaviors: behaviors read as input (the auxiliaries of a target are the others).
      num_items: ``m``.
      targets: behaviors scored, each with its own VAE++ (default: all).
      latent: ``d`` (the BVAE paper fixes 100 for every method).
      dropout: input dropout rate (the paper: 0.5, as Mult-VAE).
      beta_cap, anneal_steps, beta_schedule: the KL weight, ``losses.kl_beta``.
      learning_rate: Adam learning rate (the paper tunes {1e-4, 1e-3, 1e-2}).
      seed: initialisers, dropout and sampling.

    Raises:
      ValueError: on targets outside ``behaviors`` or an invalid setting.
    """

    def __init__(
        self,
        behaviors: Sequence[str],
        num_items: int,
        *,
        targets: Sequence[str] | None = None,
        latent: int = 100,
        dropout: float = 0.5,
        beta_cap: float = 0.2,
        anneal_steps: int = 200_000,
        beta_schedule: str = "linear",
        learning_rate: float = 1e-3,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(behaviors, num_items, **kwargs)
        targets = tuple(self.behaviors if targets is None else targets)
        if (
            not targets
            or not set(targets) <= set(self.behaviors)
            or len(set(targets)) < len(targets)
        ):
            raise ValueError(
                f"targets must be a non-empty subset of {self.behaviors}, got {targets}"
            )
        check_settings(
            "VAE++",
            {
                "latent": (latent, latent >= 1, ">= 1"),
                "dropout": (dropout, 0.0 <= dropout < 1.0, "in [0, 1)"),
                "beta_cap": (beta_cap, beta_cap >= 0.0, ">= 0"),
                "anneal_steps": (anneal_steps, anneal_steps >= 0, ">= 0"),
                "beta_schedule": (
                    beta_schedule,
                    beta_schedule in BETA_SCHEDULES,
                    "one of " + ", ".join(BETA_SCHEDULES),
                ),
                "learning_rate": (learning_rate, learning_rate > 0.0, "> 0"),
            },
        )
        self.targets = targets
        self.settings = dict(
            latent=int(latent),
            dropout=float(dropout),
            beta_cap=float(beta_cap),
            anneal_steps=int(anneal_steps),
            beta_schedule=beta_schedule,
            learning_rate=float(learning_rate),
            seed=int(seed),
        )
        self.heads = [
            _Head(num_items, int(latent), seed + 20 * i, f"vaepp_{t}")
            for i, t in enumerate(targets)
        ]
        # Track the heads' layers (a plain attribute holder is not tracked by Keras).
        self.head_layers = [layer for head in self.heads for layer in head.layers]
        self.anneal_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="anneal_step")
        self._trackers = {
            "loss": tf.keras.metrics.Mean("loss"),
            "beta": tf.keras.metrics.Mean("beta"),
        }
        for t in targets:
            for kind in ("nll", "kl", "gate"):
                self._trackers[f"{t}_{kind}"] = tf.keras.metrics.Mean(f"{t}_{kind}")

    @classmethod
    def from_bvae_config(cls, config) -> VAEPlusPlus:
        """VAE++ over every behavior of a ``BVAEConfig`` (``variant="vae_pp"``), with
        its ``latent_dim``, ``dropout``, KL schedule, learning rate and seed."""
        return cls(
            config.behaviors,
            config.num_items,
            latent=config.latent_dim,
            dropout=config.dropout,
            beta_cap=config.beta_cap,
            anneal_steps=config.anneal_steps,
            beta_schedule=config.beta_schedule,
            learning_rate=config.learning_rate,
            seed=config.seed,
        )

    @property
    def scored_behaviors(self) -> tuple[str, ...]:
        return self.targets

    def get_config(self):
        return {**super().get_config(), "targets": list(self.targets), **self.settings}

    @property
    def metrics(self):
        return list(self._trackers.values())

    def _seed(self, salt: int) -> tf.Tensor:
        base = tf.stack([tf.constant(self.settings["seed"], tf.int64), self.anneal_step.value()])
        return tf.random.experimental.stateless_fold_in(base, salt)

    def beta(self) -> tf.Tensor:
        """Current KL weight (scalar float32), from ``anneal_step``."""
        s = self.settings
        return losses.kl_beta(
            self.anneal_step, s["beta_cap"], s["anneal_steps"], s["beta_schedule"]
        )

    @_NO_AUTOGRAPH
    def _forward(self, rows: dict[str, L.SparseRows], training: bool) -> dict[str, dict]:
        """Per target: ``mu`` (enhanced mean), ``logvar``, ``gate`` ``[B, 1]`` and
        ``z_r`` ``[B, d]`` (refined representation, sampled when ``training``)."""
        d = self.settings["latent"]
        m = self.num_items
        salts = iter(range(1, 10_000))

        def encode(encoder, items):
            seed = self._seed(next(salts)) if training else None
            return encoder(items, L.normalised_weights(items, self.settings["dropout"], seed))

        out = {}
        for i, (t, head) in enumerate(zip(self.targets, self.heads, strict=True)):
            others = [rows[b] for b in self.behaviors if b != t]
            aux_rows = (
                L.union_rows(others, m)
                if others
                else L.SparseRows(rows[t].rows[:0], rows[t].cols[:0], rows[t].batch_size)
            )
            mix_rows = L.union_rows([rows[t], *others], m)
            mu_lv = encode(head.target, rows[t])
            mu_t, logvar = mu_lv[:, :d], mu_lv[:, d:]
            mu_mix = encode(head.mix, mix_rows)
            mu_aux = encode(head.aux, aux_rows)
            gate = tf.sigmoid(head.gate(tf.concat([mu_t, mu_mix], axis=1)))
            mu = gate * mu_t + (1.0 - gate) * mu_mix
            z = mu
            if training:
                noise = tf.random.stateless_normal(tf.shape(mu), seed=self._seed(5000 + i))
                z = mu + noise * tf.exp(0.5 * logvar)
            z_r = head.refine(tf.concat([z, mu_aux], axis=1))
            out[t] = {"mu": mu, "logvar": logvar, "gate": gate, "z_r": z_r}
        return out

    @_NO_AUTOGRAPH
    def score(self, rows):
        forward = self._forward(rows, training=False)
        return {
            t: head.decoder(forward[t]["z_r"])
            for t, head in zip(self.targets, self.heads, strict=True)
        }

    @_NO_AUTOGRAPH
    def compute_loss(self, inputs, training: bool = False) -> tf.Tensor:
        """Sum over targets of the mean negative ELBO of the users with target items."""
        rows = self._inputs(inputs)
        forward = self._forward(rows, training)
        beta = self.beta()
        total = tf.constant(0.0)
        for t, head in zip(self.targets, self.heads, strict=True):
            target = rows[t]
            f = forward[t]
            nll = losses.nll_on_rows_with_targets(  # decodes the users with targets only
                head.decoder.queries(f["z_r"]),
                head.decoder.item_table(),
                target.rows,
                target.cols,
                target.batch_size,
            )
            kl = losses.gaussian_kl(f["mu"], f["logvar"])
            counts = tf.math.unsorted_segment_sum(
                tf.ones_like(target.rows, tf.float32), target.rows, target.batch_size
            )
            has_target = tf.cast(counts > 0, tf.float32)
            users = tf.maximum(tf.reduce_sum(has_target), 1.0)
            total += tf.reduce_sum(has_target * (nll + beta * kl)) / users
            self._trackers[f"{t}_nll"].update_state(nll, sample_weight=has_target)
            self._trackers[f"{t}_kl"].update_state(kl, sample_weight=has_target)
            self._trackers[f"{t}_gate"].update_state(f["gate"][:, 0], sample_weight=has_target)
        self._trackers["loss"].update_state(total)
        self._trackers["beta"].update_state(beta)
        # Summed replica gradients equal the global-batch mean (as BVAE).
        return total / float(tf.distribute.get_strategy().num_replicas_in_sync)

    @_NO_AUTOGRAPH
    def train_step(self, inputs):
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
        variables = self.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optimizer.apply_gradients(zip(grads, variables, strict=True))
        self.anneal_step.assign_add(1)
        return {m.name: m.result() for m in self.metrics}

    @_NO_AUTOGRAPH
    def test_step(self, inputs):
        self.compute_loss(inputs, training=False)
        return {m.name: m.result() for m in self.metrics}

    def prepare(self, batch) -> None:
        """Builds the layers on one batch and compiles with Adam at ``learning_rate``."""
        self(batch)
        self.compile(
            optimizer=tf.keras.optimizers.Adam(self.settings["learning_rate"], jit_compile=False)
        )
