"""RecVAE (Shenbin, Alekseev, Tutubalina, Malykh, Nikolenko; WSDM 2020) for one behavior.

Mult-VAE (Liang et al., 2018) with four changes, as in the authors' code
(github.com/ilya-shenbin/RecVAE):

- **Encoder**: the L2-normalised, dropped-out multi-hot row through five dense layers
  of width ``hidden`` with dense skip connections, each
  ``h_i = LayerNorm(swish(W_i h_{i-1} + b_i + sum_{j<i} h_j))`` (``h_0`` the input,
  not summed), then linear heads to ``mu`` and ``logvar`` (``latent`` each).
- **Composite prior** (paper eq. 6): ``p(z | x) = 3/20 N(0, I) + 3/4 q_old(z | x) +
  1/10 N(0, e^10 I)``, with ``q_old`` the encoder as it was before the current
  decoder pass, evaluated without dropout.
- **User-specific KL weight** (eq. 8): ``beta'(x) = gamma * |x|`` (the user's number of
  items); the KL is estimated with the one reparameterised sample ``z``:
  ``log q(z|x) - log p(z|x)``.
- **Alternating updates**: each RecVAE epoch is ``encoder_passes`` passes over the
  users updating only the encoder (dropout on), one copy of the encoder into
  ``q_old``, then one pass updating only the decoder (dropout off), each part with
  its own Adam.

Here one Keras "epoch" (``steps_per_epoch = (encoder_passes + 1) * steps_per_pass``)
is one RecVAE epoch; :meth:`train_step` picks the phase from the step counter, so
the dataset must repeat. Scores are the decoder's logits.

Input/output: ``{features.items_key(behavior): SparseTensor}`` (other keys ignored) to
``{behavior: [B, m] float32}``; the multi-behavior comparison trains one per behavior
on that behavior's own items (as VAE (T.)).
"""

from __future__ import annotations

import math

import tensorflow as tf

from bvae_tf import layers as L
from bvae_tf.baselines.base import ItemScoreModel, check_settings

_PACKAGE = "bvae"
#: Mixture weights of the composite prior: standard, old posterior, wide (paper sec. 3.3).
PRIOR_WEIGHTS = (3 / 20, 3 / 4, 1 / 10)
_WIDE_LOGVAR = 10.0
#: The graph code here has no tensor-dependent Python control flow (``tf.cond`` is
#: explicit): converting it, and the Keras layers it calls, with AutoGraph took ~20 s
#: per trace.
_NO_AUTOGRAPH = tf.autograph.experimental.do_not_convert
_LOG_2PI = math.log(2.0 * math.pi)


def _log_normal(z: tf.Tensor, mu: tf.Tensor, logvar: tf.Tensor) -> tf.Tensor:
    """Element-wise ``log N(z; mu, exp(logvar))``."""
    return -0.5 * (logvar + _LOG_2PI + tf.square(z - mu) / tf.exp(logvar))


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class RecVAE(ItemScoreModel):
    """RecVAE for one behavior (module docstring).

    Args:
      behavior: the behavior read and scored.
      num_items: ``m``.
      hidden: encoder width (paper: 600).
      latent: latent size (paper: 200).
      dropout: input dropout of the encoder passes (paper: 0.5).
      gamma: KL scale, ``beta'(x) = gamma |x|`` (paper: 0.005).
      encoder_passes: encoder passes per decoder pass (paper: 3).
      steps_per_pass: batches in one pass over the train users (sets the phases).
      learning_rate: Adam learning rate of both parts (paper: 5e-4).
      seed: initialisers, dropout and sampling.

    Raises:
      ValueError: on a non-positive size, rate or count.
    """

    def __init__(
        self,
        behavior: str,
        num_items: int,
        *,
        hidden: int = 600,
        latent: int = 200,
        dropout: float = 0.5,
        gamma: float = 0.005,
        encoder_passes: int = 3,
        steps_per_pass: int = 1,
        learning_rate: float = 5e-4,
        seed: int = 0,
        **kwargs,
    ):
        kwargs.pop("behaviors", None)
        super().__init__((behavior,), num_items, **kwargs)
        check_settings(
            "RecVAE",
            {
                "hidden": (hidden, hidden >= 1, ">= 1"),
                "latent": (latent, latent >= 1, ">= 1"),
                "dropout": (dropout, 0.0 <= dropout < 1.0, "in [0, 1)"),
                "gamma": (gamma, gamma >= 0.0, ">= 0"),
                "encoder_passes": (encoder_passes, encoder_passes >= 1, ">= 1"),
                "steps_per_pass": (steps_per_pass, steps_per_pass >= 1, ">= 1"),
                "learning_rate": (learning_rate, learning_rate > 0.0, "> 0"),
            },
        )
        self.behavior = behavior
        self.settings = dict(
            hidden=int(hidden),
            latent=int(latent),
            dropout=float(dropout),
            gamma=float(gamma),
            encoder_passes=int(encoder_passes),
            steps_per_pass=int(steps_per_pass),
            learning_rate=float(learning_rate),
            seed=int(seed),
        )
        self.encoder = self._make_encoder("encoder", seed)
        self.old_encoder = self._make_encoder("old_encoder", seed)
        self.decoder = tf.keras.layers.Dense(
            num_items, kernel_initializer=L.xavier(seed + 50), name="decoder"
        )
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # No XLA for the updates: compiling both branches' updates costs ~20 s.
        self.encoder_optimizer = tf.keras.optimizers.Adam(learning_rate, jit_compile=False)
        self.decoder_optimizer = tf.keras.optimizers.Adam(learning_rate, jit_compile=False)
        self._loss = tf.keras.metrics.Mean("loss")

    def _make_encoder(self, name: str, seed: int) -> dict:
        h, d = self.settings["hidden"], self.settings["latent"]
        return {
            "input": L.SparseLinearEncoder(self.num_items, h, seed=seed, name=f"{name}_fc1"),
            "dense": [
                tf.keras.layers.Dense(
                    h, kernel_initializer=L.xavier(seed + i), name=f"{name}_fc{i}"
                )
                for i in range(2, 6)
            ],
            "norms": [
                tf.keras.layers.LayerNormalization(epsilon=0.1, name=f"{name}_ln{i}")
                for i in range(1, 6)
            ],
            "mu": tf.keras.layers.Dense(
                d, kernel_initializer=L.xavier(seed + 20), name=f"{name}_mu"
            ),
            "logvar": tf.keras.layers.Dense(
                d, kernel_initializer=L.xavier(seed + 21), name=f"{name}_logvar"
            ),
        }

    @property
    def steps_per_epoch(self) -> int:
        """Batches of one RecVAE epoch: ``(encoder_passes + 1) * steps_per_pass``."""
        return (self.settings["encoder_passes"] + 1) * self.settings["steps_per_pass"]

    def get_config(self):
        config = super().get_config()
        config.pop("behaviors")
        return {**config, "behavior": self.behavior, **self.settings}

    @property
    def metrics(self):
        return [self._loss]

    @_NO_AUTOGRAPH
    def _encode(self, encoder: dict, items: L.SparseRows, seed=None):
        weights = L.normalised_weights(items, self.settings["dropout"], seed)
        h = encoder["norms"][0](tf.nn.swish(encoder["input"](items, weights)))
        previous = [h]
        for dense, norm in zip(encoder["dense"], encoder["norms"][1:], strict=True):
            h = norm(tf.nn.swish(dense(h) + tf.add_n(previous)))
            previous.append(h)
        return encoder["mu"](h), encoder["logvar"](h)

    @_NO_AUTOGRAPH
    def score(self, rows):
        mu, _ = self._encode(self.encoder, rows[self.behavior])
        return {self.behavior: self.decoder(mu)}

    def _seed(self, salt: int) -> tf.Tensor:
        base = tf.stack([tf.constant(self.settings["seed"], tf.int64), self.step.value()])
        return tf.random.experimental.stateless_fold_in(base, salt)

    @_NO_AUTOGRAPH
    def compute_loss(self, inputs, dropout: bool) -> tf.Tensor:
        """Negative ELBO with the composite prior and ``beta'(x)``, mean over users."""
        items = self._inputs(inputs)[self.behavior]
        mu, logvar = self._encode(self.encoder, items, self._seed(1) if dropout else None)
        z = mu + tf.random.stateless_normal(tf.shape(mu), seed=self._seed(2)) * tf.exp(0.5 * logvar)
        logits = self.decoder(z)
        log_softmax = tf.nn.log_softmax(logits)
        picked = tf.gather_nd(log_softmax, tf.stack([items.rows, items.cols], axis=1))
        nll = -tf.math.unsorted_segment_sum(picked, items.rows, items.batch_size)
        old_mu, old_logvar = self._encode(self.old_encoder, items)
        old_mu, old_logvar = tf.stop_gradient(old_mu), tf.stop_gradient(old_logvar)
        log_prior = tf.reduce_logsumexp(
            tf.stack(
                [
                    _log_normal(z, 0.0, tf.zeros_like(z)) + math.log(PRIOR_WEIGHTS[0]),
                    _log_normal(z, old_mu, old_logvar) + math.log(PRIOR_WEIGHTS[1]),
                    _log_normal(z, 0.0, tf.fill(tf.shape(z), _WIDE_LOGVAR))
                    + math.log(PRIOR_WEIGHTS[2]),
                ]
            ),
            axis=0,
        )
        kl = tf.reduce_sum(_log_normal(z, mu, logvar) - log_prior, axis=1)
        counts = tf.math.unsorted_segment_sum(
            tf.ones_like(items.rows, tf.float32), items.rows, items.batch_size
        )
        return tf.reduce_mean(nll + self.settings["gamma"] * counts * kl)

    def _encoder_variables(self, encoder: dict) -> list[tf.Variable]:
        layers = [encoder["input"], *encoder["dense"], *encoder["norms"], encoder["mu"]]
        return [v for layer in [*layers, encoder["logvar"]] for v in layer.trainable_variables]

    def _copy_prior(self) -> None:
        """``q_old`` <- the current encoder (the composite prior's middle component)."""
        pairs = zip(
            self._encoder_variables(self.old_encoder),
            self._encoder_variables(self.encoder),
            strict=True,
        )
        for old, new in pairs:
            old.assign(new)

    @_NO_AUTOGRAPH
    def train_step(self, inputs):
        passes = self.settings["encoder_passes"] + 1
        phase = (self.step // self.settings["steps_per_pass"]) % passes
        first_decoder_step = tf.equal(
            self.step % (passes * self.settings["steps_per_pass"]),
            self.settings["encoder_passes"] * self.settings["steps_per_pass"],
        )

        def update(variables, optimizer, dropout):
            with tf.GradientTape() as tape:
                loss = self.compute_loss(inputs, dropout=dropout)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
            return loss

        def copy_prior():
            self._copy_prior()
            return tf.constant(True)

        tf.cond(first_decoder_step, copy_prior, lambda: tf.constant(False))
        loss = tf.cond(
            phase < self.settings["encoder_passes"],
            lambda: update(self._encoder_variables(self.encoder), self.encoder_optimizer, True),
            lambda: update(self.decoder.trainable_variables, self.decoder_optimizer, False),
        )
        self.step.assign_add(1)
        self._loss.update_state(loss)
        return {"loss": self._loss.result()}

    @_NO_AUTOGRAPH
    def test_step(self, inputs):
        self._loss.update_state(self.compute_loss(inputs, dropout=False))
        return {"loss": self._loss.result()}

    def prepare(self, batch) -> None:
        """Builds the layers and both optimizers' slots on one batch (before ``fit``:
        the phase branches of :meth:`train_step` must not create variables) and
        compiles the model; the old encoder starts as a copy of the encoder."""
        self(batch)
        self._encode(self.old_encoder, self._inputs(batch)[self.behavior])
        self.decoder_optimizer.build(self.decoder.trainable_variables)
        self.encoder_optimizer.build(self._encoder_variables(self.encoder))
        self._copy_prior()
        self.compile(optimizer=self.encoder_optimizer)


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class PerBehaviorRecVAE(ItemScoreModel):
    """RecVAE (T.): one :class:`RecVAE` per behavior, each on its own items, trained
    side by side in one Keras ``fit`` (the pipeline's ``variant="recvae"``).

    Each behavior's RecVAE keeps its own encoder, composite prior, decoder, two Adam
    optimizers and phase counter; one training step runs every member's step on the
    same batch (:meth:`RecVAE.train_step`), so the members are exactly the
    single-behavior RecVAEs the experiment trains one at a time
    (``bvae_tf.experiment --model recvae``), with the same seed each.

    Input/output: ``{features.items_key(b): SparseTensor [B, None] int64}`` for every
    behavior to ``{b: [B, m] float32}`` decoder logits.

    Args:
      behaviors: the behaviors, each read and scored by its own RecVAE.
      num_items: ``m``.
      steps_per_pass: batches in one pass over the train users; the dataset given to
        ``fit`` must repeat and ``steps_per_epoch`` be :attr:`steps_per_epoch`.
      **settings: :class:`RecVAE`'s ``hidden``, ``latent``, ``dropout``, ``gamma``,
        ``encoder_passes``, ``learning_rate`` and ``seed`` (its defaults otherwise).

    Raises:
      ValueError: on the errors of :class:`RecVAE` or of ``ItemScoreModel``.
    """

    def __init__(self, behaviors, num_items: int, *, steps_per_pass: int = 1, **settings):
        name = settings.pop("name", None)
        kwargs = {"name": name} if name else {}
        super().__init__(behaviors, num_items, **kwargs)
        self.members = [
            RecVAE(b, num_items, steps_per_pass=steps_per_pass, name=f"recvae_{b}", **settings)
            for b in self.behaviors
        ]
        self.settings = dict(self.members[0].settings)

    @classmethod
    def from_bvae_config(cls, config, steps_per_pass: int) -> PerBehaviorRecVAE:
        """RecVAE (T.) over the behaviors of a ``BVAEConfig`` (``variant="recvae"``): its
        ``latent_dim``, ``dropout``, ``learning_rate``, ``seed``, ``recvae_hidden`` and
        ``recvae_gamma``."""
        return cls(
            config.behaviors,
            config.num_items,
            steps_per_pass=steps_per_pass,
            hidden=config.recvae_hidden,
            latent=config.latent_dim,
            dropout=config.dropout,
            gamma=config.recvae_gamma,
            learning_rate=config.learning_rate,
            seed=config.seed,
        )

    @property
    def steps_per_epoch(self) -> int:
        """Batches of one RecVAE epoch (:attr:`RecVAE.steps_per_epoch`, the same for
        every member)."""
        return self.members[0].steps_per_epoch

    def get_config(self):
        return {**super().get_config(), **self.settings}

    @property
    def metrics(self):
        return [m._loss for m in self.members]

    def score(self, rows):
        out = {}
        for member in self.members:
            out.update(member.score(rows))
        return out

    def _logs(self, outputs) -> dict[str, tf.Tensor]:
        logs = {f"{m.behavior}_loss": o["loss"] for m, o in zip(self.members, outputs, strict=True)}
        logs["loss"] = tf.add_n(list(logs.values()))
        return logs

    @_NO_AUTOGRAPH
    def train_step(self, inputs):
        return self._logs([m.train_step(inputs) for m in self.members])

    @_NO_AUTOGRAPH
    def test_step(self, inputs):
        return self._logs([m.test_step(inputs) for m in self.members])

    def prepare(self, batch) -> None:
        """Builds every member and its optimizers on one batch (:meth:`RecVAE.prepare`)
        and compiles this model (its own optimizer is unused: each member updates
        itself)."""
        self(batch)
        for member in self.members:
            member.prepare(batch)
        self.compile(optimizer=self.members[0].encoder_optimizer)
