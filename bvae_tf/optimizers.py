"""Optimizers: Adam in TensorFlow's fused kernel, and Adam with lazy sparse updates
for large item tables.

:class:`FusedAdam` (the default, ``model.make_optimizer``) runs Keras' Adam update for
each variable in one ``ResourceApplyAdam`` kernel.

Keras' Adam applies a sparse (``tf.IndexedSlices``) gradient by decaying the whole
first and second moment tables and then adding the rows, so every step costs
``O(num_items * d)`` per table whatever the batch touched. :class:`LazyAdam` updates
only the rows in the gradient (the semantics of TF Addons' ``LazyAdam``, Kingma and
Ba 2015, Algorithm 1 applied per touched row): a row's moments decay only on the
steps that touch it, and untouched rows stay as they are.
"""

from __future__ import annotations

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="bvae_tf")
class FusedAdam(tf.keras.optimizers.Adam):
    """Keras' Adam, each variable's step in TensorFlow's fused ``ResourceApplyAdam``
    kernel: the same update (Kingma and Ba 2015, Algorithm 1, with Keras' bias
    correction folded into the step size) in one pass over the variable, instead of
    some ten element-wise ops, and with no XLA compilation. A sparse gradient is
    summed into a dense one first, which is what Keras' Adam computes for it (every
    row's moments decay on every step). With ``amsgrad=True`` Keras' own step.
    """

    def _step_constants(self, variable):
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        epsilon = tf.cast(self.epsilon, dtype)
        if self.adaptive_epsilon:
            epsilon = epsilon * tf.sqrt(1 - tf.pow(beta_2, step))
        key = self._index_dict[self._var_key(variable)]
        return step, beta_1, beta_2, epsilon, self._momentums[key], self._velocities[key]

    def update_step(self, gradient, variable):
        if self.amsgrad:
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        step, beta_1, beta_2, epsilon, m, v = self._step_constants(variable)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            m=m.handle,
            v=v.handle,
            beta1_power=tf.pow(beta_1, step),
            beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(self.learning_rate, dtype),
            beta1=beta_1,
            beta2=beta_2,
            epsilon=epsilon,
            grad=tf.convert_to_tensor(gradient, dtype),  # IndexedSlices: summed, dense
        )
        return None


@tf.keras.utils.register_keras_serializable(package="bvae_tf")
class LazyAdam(FusedAdam):
    """Adam whose sparse updates touch only the gradient's rows (module docstring).

    Dense gradients (the decoders' under a full softmax) take :class:`FusedAdam`'s
    step; with ``amsgrad=True`` Keras' own. With a sparse gradient that names every
    row once per step the result equals Adam's.
    Repeated indices in one gradient are summed first. Keras' ``weight_decay``
    (``BVAEConfig.weight_decay``; off by default) is applied by the base class to
    every row on every step, not only to the touched rows.
    """

    def update_step(self, gradient, variable):
        if self.amsgrad or not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        step, beta_1, beta_2, epsilon, m, v = self._step_constants(variable)
        lr = tf.cast(self.learning_rate, variable.dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        rows, position = tf.unique(gradient.indices)
        values = tf.math.unsorted_segment_sum(gradient.values, position, tf.size(rows))
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * values
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(values)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + epsilon), rows))
        return None
