"""EASE: the closed-form linear item-item autoencoder (Steck, WWW 2019), per target behavior.

Steck's EASE learns ``B`` (``[m, m]``) minimising ``||X - X B||_F^2 + lambda ||B||_F^2``
subject to ``diag(B) = 0``, with the closed form (his eq. 8)::

    P = (X^T X + lambda I)^-1,     B = I - P diag(1 / diag(P)).

Here the input is the union multi-hot ``X`` of all modelled behaviors (BVAE's
``x^{B0}``, paper eq. 1) and each target behavior ``b`` gets its own ``B_b`` that
reconstructs that behavior's matrix ``Y_b``: minimise ``||Y_b - X B_b||^2 +
lambda ||B_b||^2``, i.e. ``B_b = P X^T Y_b``. The diagonal is a choice (``diagonal``):

- ``"zero"`` (Steck's constraint, with his Lagrangian solution generalised to
  ``Y_b != X``): ``B_b = P X^T Y_b - P diag(gamma)``, ``gamma_j = (P X^T Y_b)_jj / P_jj``;
  with ``Y_b = X`` this is exactly eq. 8. An item never predicts itself.
- ``"free"``: no constraint. ``B_b[j, j]`` then learns how often touching ``j`` under
  any behavior leads to ``b`` on ``j`` -- the cross-behavior repeat signal. (With
  ``Y_b = X`` the free solution would be near the identity, useless; here the user's
  own ``b`` items are excluded from the ranking, so only the transfer from *other*
  behaviors is scored.)

``lambda`` and ``diagonal`` are tuned on the validation split (``bvae_tf.experiment
--model ease``). Scores: ``s_b(u) = x_u B_b`` (``[m]``), computed as a sparse-dense
product, so a batch costs ``O(nnz(x) * m)``.

Memory: fitting holds the ``m x m`` Gram matrix, then its inverse, in ``dtype``
(float64: ``8 m^2`` bytes; 1.45 GB for JD's 13,465 items) and ``X P`` (``[n, m]``),
and the model keeps one float32 ``m x m`` matrix per target behavior, written block
by block (``_BLOCK`` rows at a time), so no second ``m x m`` array is formed.

Factored form (:class:`FactoredEASE`, :func:`fit_factored`): ``B_b`` is never formed.
Since ``B_b = P X^T Y_b - P diag(gamma_b)``, a user's scores are
``x B_b = ((x P) X^T) Y_b - (x P) * gamma_b``: one ``m x m`` matrix ``P`` for every
target, and per batch of ``B`` users two sparse-dense products of cost
``O(B (nnz(X) + nnz(Y_b)))``. The same numbers as :class:`EASE`, holding one float32
``m x m`` for every target instead of one per target (and ``P`` in ``dtype`` while
fitting; ``benchmarks/ease_memory.py`` measures the peaks). It keeps the train
matrices in memory, not as weights, so it is for experiments (fit, score, drop) and
is not saved; :class:`EASE` is the form the pipeline exports.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import tensorflow as tf
from scipy.linalg import lapack

from bvae_tf import layers as L
from bvae_tf.baselines.base import ItemScoreModel, check_train

_PACKAGE = "bvae"
DIAGONALS = ("zero", "free")
_BLOCK = 1024
#: TensorFlow's CPU tensors need their buffer aligned to 64 bytes (Eigen's
#: EIGEN_MAX_ALIGN_BYTES); numpy's large arrays start 16 bytes into a page.
_TF_ALIGN = 64


def _aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` (C-ordered) whose buffer starts on a ``_TF_ALIGN``-byte
    boundary, so that TensorFlow can take it without a copy (:func:`_as_tensor`)."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + _TF_ALIGN, np.uint8)
    start = -raw.ctypes.data % _TF_ALIGN
    return raw[start : start + size].view(dtype).reshape(shape)


def _as_tensor(array: np.ndarray) -> tf.Tensor:
    """A float32 CPU tensor of ``array``: the same memory (DLPack, no copy) when the
    array is C-contiguous writeable float32 on a ``_TF_ALIGN``-byte boundary, else a copy
    (``tf.constant``).

    ``tf.constant`` of an unaligned array copies it twice over and keeps both in
    TensorFlow's memory: on an ``m x m`` ``P`` that was 2 ``m^2`` where 1 is needed
    (measured at 8,000 items; ``benchmarks/ease_memory.py``). The tensor shares the
    array's buffer, which stays alive while the tensor does; neither may be written.
    """
    if (
        array.dtype == np.float32
        and array.flags.c_contiguous
        and array.flags.writeable  # DLPack refuses a read-only buffer
        and array.ctypes.data % _TF_ALIGN == 0
    ):
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    return tf.constant(array, tf.float32)


def spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite matrix by Cholesky (LAPACK potrf/potri),
    overwriting ``matrix``.

    Args:
      matrix: ``[m, m]`` float32/float64 SPD array (C- or F-ordered).

    Returns:
      ``[m, m]`` symmetric inverse, same dtype.

    Raises:
      np.linalg.LinAlgError: if the matrix is not positive definite.
    """
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (matrix,))
    factor, info = potrf(matrix, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky factorisation failed (potrf info={info})")
    inverse, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"inverse from the Cholesky factor failed (potri info={info})")
    # potri fills the upper triangle: mirror it in blocks (no second m x m array).
    m = inverse.shape[0]
    for start in range(0, m, _BLOCK):
        stop = min(start + _BLOCK, m)
        inverse[stop:, start:stop] = inverse[start:stop, stop:].T
        block = inverse[start:stop, start:stop]
        block[np.tril_indices(stop - start, -1)] = block.T[np.tril_indices(stop - start, -1)]
    return inverse


class _TargetModel(ItemScoreModel):
    """An :class:`ItemScoreModel` that scores ``targets``, a subset of its input
    behaviors (default: all of them).

    Raises:
      ValueError: if a target is not an input behavior, or there is none.
    """

    def __init__(self, behaviors, num_items, targets: Sequence[str] | None = None, **kwargs):
        super().__init__(behaviors, num_items, **kwargs)
        targets = tuple(self.behaviors if targets is None else targets)
        unknown = [t for t in targets if t not in self.behaviors]
        if unknown or not targets:
            raise ValueError(
                f"targets must be a non-empty subset of {self.behaviors}, got {targets}"
            )
        self._targets = targets

    @property
    def targets(self) -> tuple[str, ...]:
        return self._targets

    @property
    def scored_behaviors(self) -> tuple[str, ...]:
        return self._targets


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class EASE(_TargetModel):
    """EASE per target behavior over the union of all input behaviors (module docstring).

    Args:
      behaviors: input behaviors (their union is ``X``), in model order.
      num_items: ``m``.
      targets: behaviors scored (default: all of ``behaviors``); each has a ``B_b``.

    Weights: ``item_item``, one ``[m, m]`` float32 matrix ``B_b`` per target, set by
    :meth:`fit`.

    Raises:
      ValueError: if a target is not an input behavior.
    """

    def __init__(self, behaviors, num_items, targets: Sequence[str] | None = None, **kwargs):
        super().__init__(behaviors, num_items, targets, **kwargs)
        self.item_item = [
            self.add_weight(
                name=f"item_item_{t}",
                shape=(self.num_items, self.num_items),
                initializer="zeros",
                trainable=False,
            )
            for t in self.targets
        ]

    def get_config(self):
        return {**super().get_config(), "targets": list(self._targets)}

    def fit(
        self,
        train: Mapping[str, sp.spmatrix],
        l2: float,
        diagonal: str = "zero",
        dtype=np.float64,
    ) -> EASE:
        """Closed-form fit from ``{b: [n, m] train matrix}`` (values ignored; 0/1).

        Args:
          train: train matrices of every input behavior.
          l2: ``lambda > 0``.
          diagonal: ``"zero"`` or ``"free"`` (module docstring).
          dtype: float type of the Gram matrix and its inverse.

        Returns:
          self.

        Raises:
          ValueError: on ``l2 <= 0``, an unknown ``diagonal`` or bad matrices.
        """
        for _ in self.fit_path(train, [l2], [diagonal], dtype):
            pass
        return self

    def fit_path(
        self,
        train: Mapping[str, sp.spmatrix],
        l2s: Sequence[float],
        diagonals: Sequence[str] = ("zero",),
        dtype=np.float64,
    ) -> Iterator[tuple[float, str]]:
        """Fits every ``(l2, diagonal)`` of a grid in turn, inverting once per ``l2``.

        Yields ``(l2, diagonal)`` with the model's weights set to that fit (score or
        evaluate it before advancing). Arguments as :meth:`fit`, as lists.

        Raises:
          ValueError: on an empty grid, ``l2 <= 0``, an unknown diagonal or bad matrices.
        """
        train = self._check_train(train)
        for l2, diagonal, _ in _grid(
            train, self.behaviors, l2s, diagonals, dtype=dtype, model_for=lambda i: self
        ):
            yield l2, diagonal

    def score(self, rows: dict[str, L.SparseRows]) -> dict[str, tf.Tensor]:
        union = L.union_rows([rows[b] for b in self.behaviors], self.num_items)
        x = self.sparse_matrix(union)
        return {
            b: tf.sparse.sparse_dense_matmul(x, self.item_item[i])
            for i, b in enumerate(self._targets)
        }


#: Peak memory of fitting a grid and scoring every user, in float32 ``m x m`` matrices
#: (``4 m^2`` bytes) above the process's baseline, by form and Gram ``dtype``, with
#: 3 targets: ``benchmarks/ease_memory.py`` at 8,000 items and 10,000 users
#: (docs/RESULTS.md). The dense form holds one ``B_b`` per target at once (about one
#: unit each: dense minus sequential at 3 targets), the others one at a time.
PEAK_UNITS = {
    ("dense", "float32"): 7.41,
    ("sequential", "float32"): 5.29,
    ("factored", "float32"): 2.07,
    ("dense", "float64"): 10.23,
    ("sequential", "float64"): 7.98,
    ("factored", "float64"): 6.93,
}


def peak_bytes(num_items: int, num_targets: int, *, form: str, dtype) -> int:
    """Estimated peak memory (bytes) of fitting an EASE grid and scoring with it.

    Scales :data:`PEAK_UNITS` (measured with 3 targets) by ``4 num_items^2`` bytes; the
    dense form's estimate moves by one unit per target more or fewer than 3. The
    process's other memory is not included (on UB's 30,947 items the factored float32
    grid's process peaked at 10.6 GB, 2.8 units, against the estimate's 2.07), so it is
    a floor: a run estimated above the memory available cannot fit.

    Args:
      num_items: ``m``.
      num_targets: target behaviors fitted.
      form: ``"dense"`` (:func:`fit_grid`, all targets in one model), ``"sequential"``
        (:func:`fit_grid`, one target per model) or ``"factored"`` (:func:`fit_factored`).
      dtype: float type of the Gram matrix and its inverse (float32 or float64).

    Raises:
      ValueError: an unknown form or dtype.
    """
    key = (form, np.dtype(dtype).name)
    if key not in PEAK_UNITS:
        raise ValueError(f"no EASE memory figure for form {form!r} and dtype {key[1]!r}")
    units = PEAK_UNITS[key] + (num_targets - 3 if form == "dense" else 0)
    return int(max(units, 1.0) * 4 * num_items**2)


def fit_grid(
    behaviors: Sequence[str],
    num_items: int,
    train: Mapping[str, sp.spmatrix],
    l2s: Sequence[float],
    *,
    diagonals: Sequence[str] = ("zero",),
    dtype=np.float64,
    groups: Sequence[Sequence[str]] | None = None,
) -> Iterator[tuple[float, str, EASE]]:
    """Fits EASE over a grid for target behaviors in groups, inverting once per ``l2``.

    The inverse ``P = (X^T X + lambda I)^-1`` depends on the input ``X`` only, so every
    target group shares it. Per ``l2`` each group gets a new model in turn, built
    only after the previous group's model is freed: with one group per target, the
    models' memory is one ``m x m`` float32 matrix at a time (beside ``P`` and
    ``X P``), and the Cholesky inversion (``O(m^3)``, minutes for 30,000 items) runs
    once per ``l2`` instead of once per ``l2`` and group.

    Args:
      behaviors: input behaviors (their union is ``X``).
      num_items: ``m``.
      train: train matrices of every input behavior (values ignored; 0/1).
      l2s: the ``lambda > 0`` to fit, in order.
      diagonals: ``"zero"`` and/or ``"free"`` (module docstring).
      dtype: float type of the Gram matrix and its inverse.
      groups: target groups, one model each (default: one group of all behaviors).

    Yields:
      ``(l2, diagonal, model)``: an :class:`EASE` for one group with that fit. Score it,
      then drop every reference to it before advancing (the next group's model is
      built when the generator resumes).

    Raises:
      ValueError: (when called) on an empty grid, ``l2 <= 0``, an unknown diagonal,
        an empty group or one with a behavior not in ``behaviors``, or bad matrices.
    """
    behaviors = tuple(behaviors)
    groups = [tuple(g) for g in ([behaviors] if groups is None else groups)]
    bad = [g for g in groups if not g or not set(g) <= set(behaviors)]
    if not groups or bad:
        raise ValueError(f"groups must be non-empty subsets of {behaviors}, got {groups}")
    train = check_train(train, behaviors, num_items)

    def model_for(i):
        return EASE(behaviors, num_items, targets=groups[i])

    return _grid(
        train, behaviors, l2s, diagonals, dtype=dtype, model_for=model_for, groups=len(groups)
    )


def _grid(train, behaviors, l2s, diagonals, *, dtype, model_for, groups=None, solve=None):
    """The loop of :meth:`EASE.fit_path`, :func:`fit_grid` and :func:`fit_factored`
    (arguments checked when called): per ``l2``, one inversion, then ``model_for(i)``
    fitted for each group ``i``: one model fitted in place (``groups`` None), or a new
    model per group and ``l2`` (``groups`` of them), freed after it. ``solve``: the
    fitting loop (default :func:`_solve`, the dense ``B_b``)."""
    l2s, diagonals = [float(v) for v in l2s], list(diagonals)
    if not l2s or not diagonals:
        raise ValueError(f"the grid is empty: l2s={l2s}, diagonals={diagonals}")
    bad = [v for v in l2s if not v > 0]
    if bad:
        raise ValueError(f"l2 must be > 0, got {bad[0]}")
    unknown = [d for d in diagonals if d not in DIAGONALS]
    if unknown:
        raise ValueError(f"diagonal must be one of {DIAGONALS}, got {unknown[0]!r}")
    solve = _solve if solve is None else solve
    return solve(train, behaviors, l2s, diagonals, dtype=dtype, model_for=model_for, groups=groups)


def _union(train, behaviors, dtype) -> sp.csr_matrix:
    """``X``: the 0/1 union of the behaviors' train matrices, ``[n, m]`` CSR in ``dtype``."""
    union = sum(train[b] for b in behaviors).tocsr()
    union.data[:] = 1.0
    return union.astype(dtype)


def _inverses(x: sp.csr_matrix, l2s, dtype) -> Iterator[tuple[float, np.ndarray]]:
    """``(l2, P)`` with ``P = (X^T X + l2 I)^-1`` (``[m, m]``, symmetric, F-ordered) for
    each ``l2`` in turn. The generator keeps no reference to a yielded ``P``: one
    ``m x m`` array is alive at a time if the caller drops each before advancing."""
    x_t, x_c = x.T.tocsr(), x.tocsc()
    for l2 in l2s:
        yield l2, _inverse(x_t, x_c, l2, dtype)


def _inverse(x_t, x_c, l2, dtype) -> np.ndarray:
    # X^T X column block by column block: no sparse m x m intermediate.
    gram = _aligned_empty((x_c.shape[1], x_c.shape[1]), dtype)  # see _as_tensor
    for start in range(0, x_c.shape[1], _BLOCK):
        cols = slice(start, start + _BLOCK)
        gram[:, cols] = (x_t @ x_c[:, cols]).toarray()
    gram[np.diag_indices_from(gram)] += l2
    return spd_inverse(gram.T)  # symmetric: the F-ordered view LAPACK takes as is


def _solve(train, behaviors, l2s, diagonals, *, dtype, model_for, groups):
    x = _union(train, behaviors, dtype)
    for l2, inverse in _inverses(x, l2s, dtype):
        diag_p = np.diag(inverse).copy()
        # B_b = P X^T Y_b = (Y_b^T (X P))^T: two sparse-dense products, O(nnz(X) m)
        # and O(nnz(Y_b) m), instead of one of O(nnz(X^T Y_b) m).
        # P is symmetric and F-ordered (LAPACK's): X P^T takes its C-ordered view, where
        # X P would have scipy copy all m x m of it first.
        x_p = np.asarray(x @ inverse.T)  # [n, m]
        for i in range(groups or 1):
            model = model_for(i)
            targets = [train[b].astype(dtype).tocsr() for b in model.targets]
            transposed = [y.T.tocsr() for y in targets]
            for diagonal in diagonals:
                for j, (y, y_t) in enumerate(zip(targets, transposed, strict=True)):
                    # diag(B_b)_j = sum_u (X P)_uj Y_uj; zero diagonal: B_b - P diag(gamma).
                    gamma = None
                    if diagonal == "zero":
                        gamma = np.asarray(y.multiply(x_p).sum(axis=0)).ravel() / diag_p
                    # B_b row block by row block, B_b[rows] = (Y_b^T (X P)[:, rows])^T,
                    # written into the weight in place (a scatter: ``weight[rows].assign``
                    # reads the weight first, so TensorFlow copies all of it on write,
                    # and keeps the copy's memory in its pool): no second m x m array.
                    for start in range(0, x_p.shape[1], _BLOCK):
                        rows = slice(start, start + _BLOCK)
                        block = np.asarray(y_t @ np.ascontiguousarray(x_p[:, rows])).T
                        if gamma is not None:
                            block -= inverse[rows] * gamma[None, :]
                        model.item_item[j].scatter_update(
                            tf.IndexedSlices(
                                block.astype(np.float32),
                                tf.range(start, start + block.shape[0]),
                            )
                        )
                yield l2, diagonal, model
            del model, targets, transposed
            if groups:
                gc.collect()  # Keras models are reference cycles: free the m x m weight now
        del inverse, x_p


class FactoredEASE(_TargetModel):
    """EASE's scores from ``P`` and the train matrices, ``B_b`` never formed (module
    docstring, "Factored form"). Fitted only by :func:`fit_factored`, which yields a new
    model per fit: :func:`bvae_tf.metrics.evaluate` traces and caches one function per
    model, so a model refitted in place would go on scoring its first fit.

    Args:
      behaviors: input behaviors (their union is ``X``), in model order.
      num_items: ``m``.
      targets: behaviors scored (default: all of ``behaviors``).

    Holds no weights: ``P`` (``[m, m]`` float32), ``X``, ``Y_b`` and ``gamma_b`` are
    tensors set by :func:`fit_factored`. ``P`` is a constant, not a variable: TensorFlow
    copies a variable written by a scatter on every later read (its copy-on-read mode
    for sparse access), which would hold a second ``m x m``.

    Raises:
      ValueError: if a target is not an input behavior; on scoring before a fit.
      NotImplementedError: on ``get_config`` (it is not saved; see the module docstring).
    """

    def __init__(self, behaviors, num_items, targets: Sequence[str] | None = None, **kwargs):
        super().__init__(behaviors, num_items, targets, **kwargs)
        self._fitted: _Fitted | None = None

    def get_config(self):
        raise NotImplementedError(
            "FactoredEASE keeps its fit outside any weights and is not saved; "
            "use EASE for a model to export"
        )

    def score(self, rows: dict[str, L.SparseRows]) -> dict[str, tf.Tensor]:
        if self._fitted is None:
            raise ValueError("FactoredEASE scores only after fit_factored has fitted it")
        fitted = self._fitted
        union = L.union_rows([rows[b] for b in self.behaviors], self.num_items)
        q = tf.sparse.sparse_dense_matmul(self.sparse_matrix(union), fitted.inverse)  # [B, m]
        h = tf.sparse.sparse_dense_matmul(fitted.x, q, adjoint_b=True)  # (x P) X^T: [n, B]
        return {
            b: tf.transpose(tf.sparse.sparse_dense_matmul(fitted.y[b], h, adjoint_a=True))
            - q * fitted.gamma[b][None, :]
            for b in self._targets
        }


class _Fitted:
    """What :class:`FactoredEASE` scores with (a plain holder, so Keras does not track
    the tensors): ``inverse`` (``P``, ``[m, m]`` float32), ``x`` (``X``, ``[n, m]``) and
    ``y`` (``{b: Y_b [n, m]}``), both float32 ``tf.SparseTensor``, and ``gamma``
    (``{b: [m] float32}``)."""

    def __init__(self, inverse, x, y, gamma):
        self.inverse, self.x, self.y, self.gamma = inverse, x, y, gamma


def _sparse_tensor(matrix: sp.spmatrix) -> tf.SparseTensor:
    coo = matrix.tocoo()
    return tf.sparse.reorder(
        tf.SparseTensor(
            np.stack([coo.row, coo.col], axis=1).astype(np.int64),
            coo.data.astype(np.float32),
            coo.shape,
        )
    )


def fit_factored(
    behaviors: Sequence[str],
    num_items: int,
    train: Mapping[str, sp.spmatrix],
    l2s: Sequence[float],
    *,
    diagonals: Sequence[str] = ("zero",),
    dtype=np.float64,
    targets: Sequence[str] | None = None,
) -> Iterator[tuple[float, str, FactoredEASE]]:
    """Fits :class:`FactoredEASE` over a grid, one inversion per ``l2`` for every target.

    Memory: one ``m x m`` array whatever the number of targets: the Gram matrix,
    inverted in place into ``P``, which TensorFlow then reads without a copy when
    ``dtype`` is float32 (:func:`_as_tensor`; float64 adds a float32 copy). Measured
    peak (``benchmarks/ease_memory.py``, ``docs/RESULTS.md``): 2.07 float32 ``m^2`` at
    8,000 items, the process's other allocations included; on UB's 30,947 items 4.5 GB
    while the first ``lambda`` is inverted and 10.6 GB over a whole grid.

    Args:
      behaviors: input behaviors (their union is ``X``).
      num_items: ``m``.
      train: train matrices of every input behavior (values ignored; 0/1).
      l2s: the ``lambda > 0`` to fit, in order.
      diagonals: ``"zero"`` and/or ``"free"`` (module docstring).
      dtype: float type of the Gram matrix and its inverse.
      targets: behaviors scored (default: all of ``behaviors``).

    Yields:
      ``(l2, diagonal, model)``: a new model per fit. Score it, then drop every
      reference to it before advancing (the next ``lambda``'s Gram matrix is built
      once the previous ``P`` is freed).

    Raises:
      ValueError: (when called) on an empty grid, ``l2 <= 0``, an unknown diagonal, a
        target not in ``behaviors``, or bad matrices.
    """
    behaviors = tuple(behaviors)
    FactoredEASE(behaviors, num_items, targets=targets)  # checks the targets now
    train = check_train(train, behaviors, num_items)
    return _grid(
        train,
        behaviors,
        l2s,
        diagonals,
        dtype=dtype,
        model_for=lambda i: FactoredEASE(behaviors, num_items, targets=targets),
        solve=_solve_factored,
    )


def _solve_factored(train, behaviors, l2s, diagonals, *, dtype, model_for, groups):
    targets = model_for(0).targets
    x = _union(train, behaviors, dtype)
    columns = {b: train[b].tocsc() for b in targets}
    ys = {b: _sparse_tensor(train[b]) for b in targets}
    x_tensor = _sparse_tensor(x)
    for l2, inverse in _inverses(x, l2s, dtype):
        diag_p = np.diag(inverse).copy()
        # gamma_b,j = (P X^T Y_b)_jj / P_jj = sum_u (X P)_uj (Y_b)_uj / P_jj, from X P
        # column block by column block (no [n, m] array).
        sums = {b: np.empty(x.shape[1], dtype) for b in targets}
        for start in range(0, x.shape[1], _BLOCK):
            cols = slice(start, start + _BLOCK)
            x_p = np.asarray(x @ inverse[:, cols])  # [n, block]
            for b, y in columns.items():
                sums[b][cols] = np.asarray(y[:, cols].multiply(x_p).sum(axis=0)).ravel()
            del x_p
        # P is symmetric and F-ordered: its transpose is the same matrix, C-ordered, which
        # TensorFlow takes as is, without a copy in float32 (_as_tensor).
        p = _as_tensor(inverse.T)
        del inverse
        for diagonal in diagonals:
            gamma = {
                b: tf.constant(
                    sums[b] / diag_p if diagonal == "zero" else np.zeros_like(diag_p), tf.float32
                )
                for b in targets
            }
            model = model_for(0)
            model._fitted = _Fitted(p, x_tensor, ys, gamma)
            yield l2, diagonal, model
            del model
            gc.collect()  # Keras models are reference cycles: free the fit's traced scorer
        del p
