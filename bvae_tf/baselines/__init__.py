"""Baselines of the BVAE comparison, with BVAE's input/output contract.

Every model maps ``{features.items_key(b): SparseTensor}`` to ``{b: [B, m] scores}``
(:class:`base.ItemScoreModel`), so ``bvae_tf.metrics.evaluate`` and
``bvae_tf.experiment`` score them exactly as BVAE:

- :mod:`floors`: :class:`floors.Popularity`, :class:`floors.CrossBehaviorRepeat`
  (no learning);
- :mod:`ease`: :class:`ease.EASE` (Steck 2019), per target behavior;
- :mod:`recvae`: :class:`recvae.RecVAE` (Shenbin et al. 2020), one behavior, and
  :class:`recvae.PerBehaviorRecVAE`, one per behavior, trainable in the pipeline
  (``variant="recvae"``);
- :mod:`vaepp`: :class:`vaepp.VAEPlusPlus` (Ma et al. 2022), one per target behavior,
  trainable in the pipeline (``variant="vae_pp"``);
- :mod:`transductive`: :class:`transductive.EHCF` (Chen et al. 2020) and
  :class:`transductive.NGCF` (Wang et al. 2019), experiment-only (they need the
  user's row, ``features.USER_INDEX``).
"""


def build(config):
    """The closed-form model of a ``BVAEConfig`` whose ``variant`` is in
    ``config.CLOSED_FORM_VARIANTS``, unfitted.

    Raises:
      ValueError: for any other variant.
    """
    from bvae_tf.baselines import ease, floors
    from bvae_tf.config import CLOSED_FORM_VARIANTS

    if config.variant not in CLOSED_FORM_VARIANTS:
        raise ValueError(
            f"variant {config.variant!r} is not a closed-form baseline {CLOSED_FORM_VARIANTS}"
        )
    classes = {
        "popularity": floors.Popularity,
        "repeat": floors.CrossBehaviorRepeat,
        "ease": ease.EASE,
    }
    return classes[config.variant](config.behaviors, config.num_items)


def fit(model, config, train):
    """Fits ``build(config)`` on ``{behavior: [n, m] train matrix}``; returns it."""
    if config.variant == "ease":
        return model.fit(train, config.ease_l2, config.ease_diagonal)
    return model.fit(train)
