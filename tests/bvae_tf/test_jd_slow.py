"""Real-data checks on the released JD dataset (``make test-slow``)."""

import numpy as np
import pytest

from bvae_tf import data as D
from bvae_tf import features as F
from bvae_tf import metrics as M
from bvae_tf import model as Mo
from bvae_tf import training as T
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def jd_trained():
    """A BVAE trained for 6 epochs on JD (shared by the tests of this module)."""
    jd_dir = SHARED_DATA / "bvae" / "JD"
    if not jd_dir.is_dir():
        pytest.skip(f"JD dataset not found at {jd_dir} (set BVAE_SHARED_DATA)")
    data = D.load_release(jd_dir)
    model = Mo.build_model(
        Mo.BVAEConfig(behaviors=data.behaviors, num_items=data.num_items, learning_rate=3e-3)
    )
    result = T.fit(
        model,
        D.train_dataset(data, 500, seed=0),
        D.eval_dataset(data, F.EVAL),
        epochs=6,
        patience=6,
    )
    return data, model, result


def test_jd_data_matches_the_published_statistics(jd_dir):
    data = D.load_release(jd_dir)
    assert data.behaviors == (F.PURCHASE, F.CLICK, F.FAVORITE)
    assert (data.num_users, data.num_items) == (10_690, 13_465)
    assert data.matrix(F.TRAIN, F.PURCHASE).nnz == 60_967
    assert data.matrix(F.TRAIN, F.CLICK).nnz == 217_977
    assert data.matrix(F.TEST, F.FAVORITE).nnz == 954


def test_short_jd_training_learns(jd_trained):
    _, _, result = jd_trained
    first, best = result.history[0], result.history[result.best_epoch - 1]
    assert best["loss"] < first["loss"]
    # Six epochs at lr 3e-3 reach about 0.05-0.07 valid NDCG@5 per behavior; an
    # untrained model (popularity-free random scores) is below 0.001.
    for b in (F.PURCHASE, F.CLICK, F.FAVORITE):
        assert best[f"valid/{b}/ndcg@5"] > 0.03, b


def _independent_ndcg(scores, heldout, excluded, k):
    """Per-user sort with the pessimistic tie-break, written out directly."""
    values = []
    for u in range(scores.shape[0]):
        relevant = heldout[u].indices
        if not len(relevant):
            continue
        row = scores[u].astype(np.float64).copy()
        row[excluded[u].indices] = -np.inf
        is_relevant = np.zeros(len(row), bool)
        is_relevant[relevant] = True
        allowed = np.flatnonzero(~np.isneginf(row) | is_relevant)
        # Sort by score descending, then non-relevant first, then item index.
        order = allowed[np.lexsort((allowed, is_relevant[allowed], -row[allowed]))]
        gains = is_relevant[order[:k]] & ~np.isneginf(row[order[:k]])
        dcg = (gains / np.log2(np.arange(2, k + 2))).sum()
        idcg = (1.0 / np.log2(np.arange(2, min(k, len(relevant)) + 2))).sum()
        values.append(dcg / idcg)
    return float(np.mean(values)), len(values)


def test_streamed_metrics_equal_numpy_and_an_independent_computation(jd_trained):
    data, model, _ = jd_trained
    streamed = M.evaluate(model, D.eval_dataset(data, F.TEST))
    users = data.split_users(F.TEST)
    batch = next(iter(D.eval_dataset(data, F.TEST, batch_size=len(users))))
    logits = model(batch)
    for b in data.behaviors:
        scores = logits[b].numpy()
        heldout = data.matrix(F.TEST, b)[users]
        excluded = data.matrix(F.TRAIN, b)[users]
        numpy_result = M.ranking_metrics(scores, heldout, excluded)
        assert streamed.behaviors[b].num_users == numpy_result.num_users
        for key, value in numpy_result.metrics.items():
            assert streamed.behaviors[b].metrics[key] == pytest.approx(value, abs=1e-12)
        subset = slice(0, 800)
        ndcg, n = _independent_ndcg(scores[subset], heldout[subset], excluded[subset], 5)
        sub = M.ranking_metrics(scores[subset], heldout[subset], excluded[subset], ks=(5,))
        assert sub.num_users == n
        assert sub.metrics["ndcg@5"] == pytest.approx(ndcg, abs=1e-12)
