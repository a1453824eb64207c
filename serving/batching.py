"""Server-side batching of concurrent Predict calls into one model call.

The local server's counterpart of TF Serving's ``--enable_batching``
(``BasicBatchScheduler``): calls to one signature of one model version queue up, and
a batch thread runs all the queued rows (up to ``max_batch_size``) as one call,
concatenated along dimension 0, then hands each caller its slice. With
``batch_timeout_s == 0`` a batch is whatever queued while the previous one ran, so an
idle server adds no latency and a busy one batches more. A call with more rows than
``max_batch_size`` is split into slices of at most that many rows, which queue like
other calls (TF Serving's ``enable_large_batch_splitting``), so no model call ever
runs more rows and no call runs outside the batch threads. Unlike TF Serving, a batch
that fails is retried call by call, so a bad request fails only itself.

Outputs whose width depends on the rows (``transform_features``' padded item lists,
``rank_heldout``'s ranks: ``padding``) are padded to the widest slice when a split
call's slices are joined, and each call's share of a batch is trimmed of the columns
that only other calls' rows needed: every caller gets what the model would have
answered to its call alone.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent import futures

import numpy as np

Arrays = Mapping[str, np.ndarray]
#: The longest a batch may wait for more calls: a minute (TF Serving's batch timeouts
#: are milliseconds; a wait beyond ``threading``'s timeout range would kill the batch
#: thread).
MAX_BATCH_TIMEOUT_S = 60.0


@dataclasses.dataclass(eq=False)
class _Task:
    inputs: Arrays
    rows: int
    future: futures.Future


class Batcher:
    """Batches calls of one function whose inputs and outputs share dimension 0.

    Args:
      function: maps input name -> ``[rows, …]`` array to output name -> ``[rows, …]``
        array (every output has the same number of rows as the inputs).
      max_batch_size: most rows run in one model call; larger calls are split into
        slices of at most this many rows.
      batch_timeout_s: how long a batch waits for more rows after its first call;
        0 takes only what is already queued.
      num_threads: batch threads (model calls running at once).
      name: thread name prefix.
      padding: output name -> the value that pads its ``[rows, width]`` rows (outputs
        whose width is the longest row's); other outputs must have the same shape
        beyond dimension 0 in every model call.

    Raises:
      ValueError: on a non-positive size or thread count, or a timeout outside
        ``[0, MAX_BATCH_TIMEOUT_S]``.
    """

    def __init__(
        self,
        function: Callable[[Arrays], Arrays],
        *,
        max_batch_size: int,
        batch_timeout_s: float = 0.0,
        num_threads: int = 1,
        name: str = "batch",
        padding: Mapping[str, float] | None = None,
    ):
        if max_batch_size < 1 or num_threads < 1 or not 0 <= batch_timeout_s <= MAX_BATCH_TIMEOUT_S:
            raise ValueError(
                f"need max_batch_size >= 1, num_threads >= 1, batch_timeout_s in [0, "
                f"{MAX_BATCH_TIMEOUT_S:g}]; got {max_batch_size}, {num_threads}, {batch_timeout_s}"
            )
        self._function = function
        self._padding = dict(padding or {})
        self._max_batch_size = max_batch_size
        self._timeout_s = batch_timeout_s
        self._queue: queue.Queue[_Task | None] = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self._pending: _Task | None = None
        #: Model calls made by the batch threads and the calls (requests) they served.
        self.batches = 0
        self.batched_calls = 0
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(num_threads)
        ]
        for thread in self._threads:
            thread.start()

    def __call__(self, inputs: Arrays) -> dict[str, np.ndarray]:
        """Runs ``function(inputs)``, batched with concurrent calls.

        A call with more than ``max_batch_size`` rows runs as slices of at most
        ``max_batch_size`` rows (queued in order, so they may share batches with
        other calls); their outputs are concatenated along dimension 0.

        Raises:
          ValueError: if the inputs do not all have the same number of rows, or the
            slices' outputs cannot be joined (an output not in ``padding`` whose
            shape beyond dimension 0 differs between slices).
          Exception: whatever the function raised for these inputs.
        """
        rows = {len(value) if np.ndim(value) else -1 for value in inputs.values()}
        if len(rows) != 1 or -1 in rows:
            raise ValueError(
                "Batching needs inputs with the same 0th-dimension size, got shapes "
                f"{ {k: list(np.shape(v)) for k, v in inputs.items()} }"
            )
        count = rows.pop()
        if count == 0:
            return dict(self._function(inputs))
        size = self._max_batch_size
        tasks = [
            _Task(
                {k: v[start : start + size] for k, v in inputs.items()},
                min(size, count - start),
                futures.Future(),
            )
            for start in range(0, count, size)
        ]
        with self._lock:
            closed = self._closed
            if not closed:
                for task in tasks:
                    self._queue.put(task)
        if closed:
            for task in tasks:
                self._run_alone(task)
        results = [task.future.result() for task in tasks]
        if len(results) == 1:
            return results[0]
        return {name: self._join(name, [r[name] for r in results]) for name in results[0]}

    def _join(self, name: str, parts: list[np.ndarray]) -> np.ndarray:
        """Concatenates one output's slices along dimension 0, padding the rows of a
        padded output to the widest slice."""
        shapes = {np.shape(p)[1:] for p in parts}
        if len(shapes) > 1 and name in self._padding and {len(s) for s in shapes} == {1}:
            width = max(s[0] for s in shapes)
            parts = [
                np.pad(p, ((0, 0), (0, width - p.shape[1])), constant_values=self._padding[name])
                for p in parts
            ]
        elif len(shapes) > 1:
            raise ValueError(
                f"output {name!r} has shapes {sorted(shapes)} beyond dimension 0 in the "
                f"slices of one call (max_batch_size {self._max_batch_size}): they cannot "
                "be joined"
            )
        return np.concatenate(parts)

    def _share(self, name: str, value: np.ndarray) -> np.ndarray:
        """One call's rows of a padded output, without the trailing columns that are
        padding in all of them (the width its call alone would have had)."""
        if name not in self._padding or np.ndim(value) != 2:
            return value
        used = np.flatnonzero((value != self._padding[name]).any(axis=0))
        return value[:, : used[-1] + 1 if len(used) else 0]

    def close(self) -> None:
        """Runs what is queued, then stops the threads; later calls run unbatched."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)

    def _next_batch(self) -> list[_Task] | None:
        with self._lock:
            first, self._pending = self._pending, None
        if first is None:
            first = self._queue.get()
            if first is None:
                return None
        batch, rows = [first], first.rows
        deadline = time.monotonic() + self._timeout_s
        while rows < self._max_batch_size:
            try:
                remaining = deadline - time.monotonic()
                task = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if task is None:
                self._queue.put(None)
                break
            if rows + task.rows > self._max_batch_size:
                with self._lock:
                    self._pending = task
                break
            batch.append(task)
            rows += task.rows
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _run(self, batch: list[_Task]) -> None:
        self.batches += 1
        self.batched_calls += len(batch)
        if len(batch) == 1:
            self._run_alone(batch[0])
            return
        try:
            names = batch[0].inputs.keys()
            merged = {name: np.concatenate([t.inputs[name] for t in batch]) for name in names}
            outputs = self._function(merged)
            total = sum(t.rows for t in batch)
            if any(np.ndim(v) == 0 or len(v) != total for v in outputs.values()):
                raise ValueError("an output does not have one row per input row")
        except Exception:
            for task in batch:
                self._run_alone(task)
            return
        start = 0
        for task in batch:
            stop = start + task.rows
            task.future.set_result(
                {name: self._share(name, value[start:stop]) for name, value in outputs.items()}
            )
            start = stop

    def _run_alone(self, task: _Task) -> None:
        try:
            task.future.set_result(dict(self._function(task.inputs)))
        except Exception as e:
            task.future.set_exception(e)
