"""Tiny synthetic multi-behavior data shared by the bvae_tf tests."""

import numpy as np
import pytest
import scipy.sparse as sp

from bvae_tf import data as D
from bvae_tf import features as F

BEHAVIORS = ("purchase", "click", "favorite")
NUM_USERS = 24
NUM_ITEMS = 30


def random_matrix(rng, density, num_users=NUM_USERS, num_items=NUM_ITEMS):
    dense = rng.random((num_users, num_items)) < density
    return sp.csr_matrix(dense.astype(np.float32))


@pytest.fixture
def tiny_data() -> D.MultiBehaviorData:
    """24 users, 30 items, 3 behaviors; user 0 has no items at all, user 1 no clicks."""
    rng = np.random.default_rng(0)
    splits = {}
    for split, density in ((F.TRAIN, 0.25), (F.EVAL, 0.05), (F.TEST, 0.05)):
        matrices = {b: random_matrix(rng, density) for b in BEHAVIORS}
        for b in BEHAVIORS:
            m = matrices[b].tolil()
            if split == F.TRAIN:
                m[0, :] = 0
                if b == "click":
                    m[1, :] = 0
            else:
                # Held-out items of a behavior are never its train items.
                train = splits[F.TRAIN][b].toarray() > 0
                m[train] = 0
            matrices[b] = m.tocsr()
            matrices[b].eliminate_zeros()
        splits[split] = matrices
    return D.MultiBehaviorData(BEHAVIORS, NUM_USERS, NUM_ITEMS, splits)


def sparse_batch(matrices: dict, rows=None):
    """``{items_key(b): SparseTensor}`` for the given CSR matrices (rows subset)."""
    import tensorflow as tf

    out = {}
    for key, matrix in matrices.items():
        m = matrix if rows is None else matrix[rows]
        coo = sp.csr_matrix(m).tocoo()
        order = np.lexsort((coo.col, coo.row))
        rows_, cols = coo.row[order], coo.col[order]
        positions = (
            np.concatenate([np.arange(n) for n in np.bincount(rows_, minlength=m.shape[0])]).astype(
                np.int64
            )
            if len(rows_)
            else np.zeros(0, np.int64)
        )
        width = max(int(np.bincount(rows_, minlength=1).max()) if len(rows_) else 0, 0)
        out[key] = tf.SparseTensor(
            np.stack([rows_, positions], axis=1).astype(np.int64).reshape(-1, 2),
            cols.astype(np.int64),
            [m.shape[0], width],
        )
    return out


@pytest.fixture
def tiny_batch(tiny_data):
    return sparse_batch({F.items_key(b): tiny_data.matrix(F.TRAIN, b) for b in BEHAVIORS})


def runs_after(op, earlier) -> bool:
    """Whether graph op ``op`` depends on op ``earlier`` through data or control
    inputs (so that the executor cannot run it before ``earlier``)."""
    seen, stack = set(), [op]
    while stack:
        current = stack.pop()
        for parent in [t.op for t in current.inputs] + list(current.control_inputs):
            if parent is earlier:
                return True
            if parent.name not in seen:
                seen.add(parent.name)
                stack.append(parent)
    return False
