"""Optimizers: Adam with lazy sparse updates for large item tables.

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
class LazyAdam(tf.keras.optimizers.Adam):
    """Adam whose sparse updates touch only the gradient's rows (module docstring).

    Dense gradients, and ``amsgrad=True``, take Keras' Adam step unchanged. With a
    sparse gradient that names every row once per step the result equals Adam's.
    Repeated indices in one gradient are summed first. Keras' ``weight_decay`` (off
    here) is applied by the base class to every row on every step.
    """

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices) or self.amsgrad:
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        epsilon = self.epsilon
        if self.adaptive_epsilon:
            epsilon = self.epsilon * tf.sqrt(1 - tf.pow(beta_2, step))
        key = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[key], self._velocities[key]
        rows, position = tf.unique(gradient.indices)
        values = tf.math.unsorted_segment_sum(gradient.values, position, tf.size(rows))
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * values
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(values)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + epsilon), rows))
        return None
