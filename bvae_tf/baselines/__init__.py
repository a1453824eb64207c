"""Baselines of the BVAE comparison, with BVAE's input/output contract.

Every model maps ``{features.items_key(b): SparseTensor}`` to ``{b: [B, m] scores}``
(:class:`base.ItemScoreModel`), so ``bvae_tf.metrics.evaluate`` and
``bvae_tf.experiment`` score them exactly as BVAE:

- :mod:`floors`: :class:`floors.Popularity`, :class:`floors.CrossBehaviorRepeat`
  (no learning);
- :mod:`ease`: :class:`ease.EASE` (Steck 2019), per target behavior.
"""
