"""Server-side batching: concurrent calls share model calls, each gets its own rows."""

from __future__ import annotations

import threading
import time
from concurrent import futures

import numpy as np
import pytest

from serving.batching import Batcher

pytestmark = pytest.mark.unit


class _Model:
    """Doubles ``x``; fails on any row equal to -1; first call can be held back."""

    def __init__(self):
        self.batch_sizes: list[int] = []
        self.hold = threading.Event()
        self.entered = threading.Event()
        self.hold.set()

    def __call__(self, inputs):
        self.entered.set()
        self.hold.wait(10)
        x = inputs["x"]
        self.batch_sizes.append(len(x))
        if np.any(x == -1):
            raise ValueError("row -1 is bad")
        return {"y": x * 2, "n": np.full(len(x), len(x))}


def _call_concurrently(batcher, model, inputs_list):
    """Holds the model on a first call until the other calls have queued up behind it."""
    model.hold.clear()
    model.entered.clear()
    with futures.ThreadPoolExecutor(len(inputs_list) + 1) as pool:
        first = pool.submit(batcher, {"x": np.array([100])})
        assert model.entered.wait(10)
        rest = [pool.submit(batcher, inputs) for inputs in inputs_list]
        deadline = time.monotonic() + 10
        while batcher._queue.qsize() < len(inputs_list) and time.monotonic() < deadline:
            time.sleep(0.01)
        model.hold.set()
        return first.result(), rest


def test_queued_calls_run_as_one_batch_and_get_their_own_rows():
    model = _Model()
    batcher = Batcher(model, max_batch_size=16)
    inputs = [{"x": np.array([i, i + 10])} for i in range(5)]  # 5 calls of 2 rows
    first, rest = _call_concurrently(batcher, model, inputs)
    assert first["y"].tolist() == [200]
    for call, result in zip(inputs, rest, strict=True):
        assert result.result()["y"].tolist() == (call["x"] * 2).tolist()
    assert model.batch_sizes == [1, 10]  # the held call, then all 5 queued calls at once
    batcher.close()


def test_batches_never_exceed_the_maximum():
    model = _Model()
    batcher = Batcher(model, max_batch_size=4)
    inputs = [{"x": np.array([i, i])} for i in range(5)]  # 10 rows behind the held call
    _, rest = _call_concurrently(batcher, model, inputs)
    assert [r.result()["y"][0] for r in rest] == [0, 2, 4, 6, 8]
    assert model.batch_sizes[0] == 1
    assert max(model.batch_sizes) <= 4
    assert sum(model.batch_sizes) == 11
    batcher.close()


def test_a_failing_call_fails_alone():
    model = _Model()
    batcher = Batcher(model, max_batch_size=16)
    inputs = [{"x": np.array([1])}, {"x": np.array([-1])}, {"x": np.array([3])}]
    _, rest = _call_concurrently(batcher, model, inputs)
    assert rest[0].result()["y"].tolist() == [2]
    with pytest.raises(ValueError, match="row -1"):
        rest[1].result()
    assert rest[2].result()["y"].tolist() == [6]
    batcher.close()


def test_empty_large_and_mismatched_calls():
    model = _Model()
    batcher = Batcher(model, max_batch_size=2)
    assert batcher({"x": np.zeros(0, int)})["y"].shape == (0,)
    # Larger than the maximum: split into slices of at most 2 rows, results in order.
    result = batcher({"x": np.arange(5)})
    assert result["y"].tolist() == [0, 2, 4, 6, 8]
    assert result["n"].tolist() == [2, 2, 2, 2, 1]
    assert model.batch_sizes == [0, 2, 2, 1]
    with pytest.raises(ValueError, match="same 0th-dimension size"):
        batcher({"x": np.arange(2), "z": np.arange(3)})
    with pytest.raises(ValueError, match="same 0th-dimension size"):
        batcher({"x": np.array(1)})
    batcher.close()
    assert batcher({"x": np.array([4])})["y"].tolist() == [8]  # closed: runs unbatched
    assert batcher({"x": np.arange(3)})["y"].tolist() == [0, 2, 4]  # still in slices
    assert model.batch_sizes[-3:] == [1, 2, 1]


def test_a_large_call_never_runs_outside_the_batch_threads():
    model = _Model()
    batcher = Batcher(model, max_batch_size=4)
    callers = set()
    original = model.__call__

    def record(inputs):
        callers.add(threading.current_thread().name)
        return original(inputs)

    batcher._function = record
    assert batcher({"x": np.arange(10)})["y"].tolist() == list(range(0, 20, 2))
    assert callers == {"batch-0"}
    assert model.batch_sizes == [4, 4, 2]
    batcher.close()


def test_a_failing_slice_fails_its_call():
    model = _Model()
    batcher = Batcher(model, max_batch_size=2)
    with pytest.raises(ValueError, match="row -1"):
        batcher({"x": np.array([1, 2, 3, -1, 5])})
    assert batcher({"x": np.array([1, 2, 3])})["y"].tolist() == [2, 4, 6]
    batcher.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_batch_size": 0},
        {"max_batch_size": 2, "num_threads": 0},
        {"max_batch_size": 2, "batch_timeout_s": -1},
    ],
)
def test_bad_options_are_rejected(kwargs):
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(lambda inputs: inputs, **kwargs)


def test_a_batch_timeout_waits_for_more_calls():
    model = _Model()
    batcher = Batcher(model, max_batch_size=8, batch_timeout_s=0.5)
    with futures.ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(batcher, {"x": np.array([i])}) for i in (1, 2)]
        assert [c.result()["y"].tolist() for c in calls] == [[2], [4]]
    assert model.batch_sizes == [2]
    batcher.close()


class _Lists(_Model):
    """Like a padded-list signature: each row ``i`` becomes ``[i]*i`` padded with -1 to
    the call's longest row; ``n`` has a fixed width."""

    def __call__(self, inputs):
        self.entered.set()
        self.hold.wait(10)
        x = inputs["x"]
        self.batch_sizes.append(len(x))
        width = int(x.max(initial=0))
        rows = np.full((len(x), width), -1)
        for r, i in enumerate(x):
            rows[r, :i] = i
        return {"lists": rows, "n": np.stack([x, x], axis=1)}


def test_a_split_call_pads_its_slices_outputs_to_the_widest():
    model = _Lists()
    batcher = Batcher(model, max_batch_size=2, padding={"lists": -1})
    x = np.array([1, 1, 3, 0, 2])
    got = batcher({"x": x})
    alone = model({"x": x})
    assert model.batch_sizes[:3] == [2, 2, 1]  # three slices, each narrower than the call
    np.testing.assert_array_equal(got["lists"], alone["lists"])
    np.testing.assert_array_equal(got["n"], alone["n"])
    batcher.close()


def test_each_call_in_a_batch_gets_its_own_width():
    model = _Lists()
    batcher = Batcher(model, max_batch_size=16, padding={"lists": -1})
    calls = [{"x": np.array([1, 1])}, {"x": np.array([4])}, {"x": np.array([0])}]
    _, results = _call_concurrently(batcher, model, calls)
    assert model.batch_sizes == [1, 4]  # the held call, then the 3 calls as one batch
    for call, result in zip(calls, results, strict=True):
        alone = model({"x": call["x"]})
        np.testing.assert_array_equal(result.result()["lists"], alone["lists"])
        np.testing.assert_array_equal(result.result()["n"], alone["n"])
    batcher.close()


def test_slices_of_an_unpadded_output_that_differ_are_an_error():
    batcher = Batcher(_Lists(), max_batch_size=2)  # "lists" not declared padded
    with pytest.raises(ValueError, match=r"output 'lists' has shapes .* cannot be joined"):
        batcher({"x": np.array([1, 1, 3])})
    batcher.close()


@pytest.mark.parametrize("timeout_s", [-1.0, 61.0, float("inf"), float("nan")])
def test_a_batch_timeout_outside_a_minute_is_refused(timeout_s):
    with pytest.raises(ValueError, match=r"batch_timeout_s in \[0, 60\]"):
        Batcher(_Model(), max_batch_size=2, batch_timeout_s=timeout_s)
