"""The BVAE release format and ``tf.data`` pipelines over per-behavior CSR matrices.

Release format (the paper's JD/UB data, https://github.com/WitnessForest/BVAE): one file per
behavior and split, ``<prefix>_<suffix>``, each line ``user_id item_id`` (1-based
integers, space separated); prefixes map to behaviors by
``features.RELEASE_BEHAVIOR_MAPPING`` (``target`` -> purchase, ...) and suffixes to
splits by ``features.RELEASE_SPLIT_MAPPING`` (``valid`` -> eval, ...).

Datasets yield exactly what parsing transformed tf.Examples gives: dicts of
``tf.SparseTensor`` int64 ``[batch, None]`` item indices, ``features.items_key(b)``
(train items) and, for evaluation, ``features.heldout_key(b)`` (the split's items).
Rows are gathered in-graph from the CSR arrays, so feeding costs well under a
millisecond per batch.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from absl import logging

from bvae_tf import console
from bvae_tf import features as F


@dataclasses.dataclass
class MultiBehaviorData:
    """Interactions of ``num_users`` users with ``num_items`` items, per split/behavior.

    Attributes:
      behaviors: the behaviors to model, in priority order.
      num_users: ``n`` (0-based user index = release id - 1).
      num_items: ``m`` (0-based item index = release id - 1).
      splits: ``{split: {behavior: csr_matrix [n, m] float32 of 0/1}}`` for the splits
        in ``features.SPLITS``; a missing file gives an empty matrix.
    """

    behaviors: tuple[str, ...]
    num_users: int
    num_items: int
    splits: dict[str, dict[str, sp.csr_matrix]]

    def matrix(self, split: str, behavior: str) -> sp.csr_matrix:
        """``[n, m]`` 0/1 CSR matrix of one split and behavior.

        Raises:
          ValueError: for an unknown split or behavior.
        """
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r}; have {sorted(self.splits)}")
        if behavior not in self.splits[split]:
            raise ValueError(f"unknown behavior {behavior!r}; have {sorted(self.splits[split])}")
        return self.splits[split][behavior]

    def train_users(self) -> np.ndarray:
        """``[n_train]`` int64 users with any train interaction of the modelled behaviors."""
        total = sum(self.matrix(F.TRAIN, b).getnnz(axis=1) for b in self.behaviors)
        return np.flatnonzero(total).astype(np.int64)

    def split_users(self, split: str, behaviors: Sequence[str] | None = None) -> np.ndarray:
        """``[n_split]`` int64 users with >= 1 item of ``split`` for any of ``behaviors``."""
        behaviors = self.behaviors if behaviors is None else behaviors
        total = sum(self.matrix(split, b).getnnz(axis=1) for b in behaviors)
        return np.flatnonzero(total).astype(np.int64)


#: A largest id above both ``SPARSE_ID_FACTOR`` times the ids present and
#: ``SPARSE_ID_FLOOR`` is refused: the release format numbers users and items 1..n.
SPARSE_ID_FACTOR, SPARSE_ID_FLOOR = 10, 100_000
#: Below the error above, a warning when more than this share of the ids 1..largest
#: occur in no file (JD's items: 0.1%, UB's: 2%).
UNUSED_ID_SHARE = 0.1


def _read_pairs(path: pathlib.Path) -> np.ndarray:
    # A UTF-8 byte-order mark (an editor's) is dropped, as the ExampleGen's CSV reader
    # drops it.
    raw = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    if b"\x00" in raw[:4096]:  # UTF-16/32 text or a binary file: no line would parse
        raise ValueError(
            f"{path}: holds NUL bytes (UTF-16 or UTF-32 text, or not text): expected "
            "ASCII or UTF-8 lines of 'user item'"
        )
    rows = [line.split() for line in raw.splitlines()]
    for number, fields in enumerate(rows, 1):
        if fields and len(fields) != 2:
            raise ValueError(
                f"{path}, line {number}: expected 'user item', got {len(fields)} fields"
            )
    # Plain decimal digits only: numpy would also read "1_0" as 10 and "+7" as 7.
    odd = next((n for n, fields in enumerate(rows, 1) if not all(t.isdigit() for t in fields)), 0)
    if odd and _integers(rows[odd - 1]):
        raise ValueError(
            f"{path}, line {odd}: ids must be written as decimal digits, got "
            f"{b' '.join(rows[odd - 1]).decode(errors='replace')!r}"
        )
    tokens = [token for fields in rows for token in fields]
    try:
        pairs = np.array(tokens, dtype=np.int64).reshape(-1, 2)
    except (ValueError, OverflowError) as e:
        number = next(n for n, fields in enumerate(rows, 1) if not _integers(fields))
        digits = all(t.isdigit() for t in rows[number - 1])
        raise ValueError(
            f"{path}, line {number}: ids must be "
            + ("below 2**63" if digits else "integers written as decimal digits")
            + f", got {b' '.join(rows[number - 1]).decode(errors='replace')!r} ({e})"
        ) from e
    if len(pairs) and pairs.min() < 1:
        first = int(np.flatnonzero((pairs < 1).any(axis=1))[0])
        line = [n for n, fields in enumerate(rows, 1) if fields][first]
        raise ValueError(
            f"{path}, line {line}: ids must be 1-based positive integers, got "
            f"{b' '.join(rows[line - 1]).decode(errors='replace')!r}"
        )
    return pairs


def _integers(fields: list[bytes]) -> bool:
    try:
        np.array(fields, dtype=np.int64)
    except (ValueError, OverflowError):
        return False
    return True


def release_behaviors(data_dir: str | pathlib.Path) -> set[str]:
    """Canonical behaviors with at least one release file (``<prefix>_<split>``) in
    ``data_dir``, from the file names alone: nothing is read (empty set: no such file or
    no such folder)."""
    data_dir = pathlib.Path(data_dir)
    return {
        behavior
        for prefix, behavior in F.RELEASE_BEHAVIOR_MAPPING.items()
        for suffix in F.RELEASE_SPLIT_MAPPING
        if (data_dir / f"{prefix}_{suffix}").is_file()
    }


def check_release_behaviors(data_dir: str | pathlib.Path, behaviors: Sequence[str]) -> None:
    """Checks that each of ``behaviors`` has release files in ``data_dir``, by name only
    (what :func:`load_release` refuses after reading, refused before).

    Raises:
      ValueError: naming the behaviors without files and the behaviors the folder has.
    """
    found = release_behaviors(data_dir)
    unknown = [b for b in behaviors if b not in found]
    if unknown:

        def described(prefix: str, behavior: str) -> str:
            train = pathlib.Path(data_dir) / f"{prefix}_train"
            empty = not train.is_file() or train.stat().st_size == 0
            return f"{behavior} ({prefix}_*{'; no train data: not modelled' if empty else ''})"

        files = ", ".join(
            described(prefix, b) for prefix, b in F.RELEASE_BEHAVIOR_MAPPING.items() if b in found
        )
        raise ValueError(
            f"behaviors {unknown} have no files in {str(data_dir)!r}; it has {files} "
            "(behavior names, with their files' prefix)"
        )


def _check_readable(path: pathlib.Path) -> None:
    """Refuses a release file name that is a folder or a dangling link (ValueError)."""
    if not path.is_file() and (path.is_symlink() or path.exists()):
        what = "a link to nothing" if not path.exists() else "not a file"
        raise ValueError(f"release file {str(path)!r} cannot be read: it is {what}")


def _no_train_data(data_dir: pathlib.Path) -> ValueError:
    return ValueError(
        f"no behavior has train data in {str(data_dir)!r}: every "
        f"'<prefix>_train' file is missing or empty (prefixes "
        f"{list(F.RELEASE_BEHAVIOR_MAPPING)})"
    )


def modelled_release_behaviors(
    data_dir: str | pathlib.Path, behaviors: Sequence[str] | None = None
) -> list[str]:
    """The behaviors :func:`load_release` would model, from file names and each file's
    first non-blank byte (nothing further is read): ``behaviors`` if given, else those
    in ``features.DEFAULT_BEHAVIORS`` order whose train file is not blank.

    A pre-check: a file with a non-blank byte may still hold no usable line, which only
    parsing finds (:func:`load_release` then names the line).

    Raises:
      ValueError: a release file name is a folder or a dangling link, ``behaviors``
        repeats or misspells a name (:func:`features.validate_behaviors`), a requested
        behavior has no release files
        (:func:`check_release_behaviors`), no behavior has a non-empty train file, or a
        modelled behavior's train, valid or test file is missing or blank (naming them:
        every modelled behavior needs all three).
    """
    data_dir = pathlib.Path(data_dir)
    prefix = {b: p for p, b in F.RELEASE_BEHAVIOR_MAPPING.items()}
    suffix = {split: s for s, split in F.RELEASE_SPLIT_MAPPING.items()}
    for p in F.RELEASE_BEHAVIOR_MAPPING:  # what load_release refuses before reading
        for s in F.RELEASE_SPLIT_MAPPING:
            _check_readable(data_dir / f"{p}_{s}")

    @functools.cache  # a train file is asked twice
    def has_lines(behavior: str, split: str) -> bool:
        path = data_dir / f"{prefix[behavior]}_{suffix[split]}"
        if not path.is_file():
            return False
        with path.open("rb") as f:  # blank: empty, or only spaces, tabs and newlines
            while chunk := f.read(1 << 20):
                if chunk.strip():
                    return True
        return False

    if behaviors is None:
        behaviors = [b for b in F.DEFAULT_BEHAVIORS if b in prefix and has_lines(b, F.TRAIN)]
        if not behaviors:
            raise _no_train_data(data_dir)
    else:
        behaviors = F.validate_behaviors(behaviors)
        check_release_behaviors(data_dir, behaviors)
    empty = [
        f"{prefix[b]}_{suffix[split]}"
        for b in behaviors
        for split in F.SPLITS
        if not has_lines(b, split)
    ]
    if empty:
        raise ValueError(
            f"{', '.join(empty)} in {str(data_dir)!r} missing, empty or blank: every modelled "
            "behavior needs train, valid and test interactions"
        )
    return list(behaviors)


def load_release(
    data_dir: str | pathlib.Path, behaviors: Sequence[str] | None = None
) -> MultiBehaviorData:
    """Reads a released, pre-split dataset (e.g. ../shared/data/bvae/JD).

    Args:
      data_dir: folder with ``<prefix>_<suffix>`` files.
      behaviors: canonical behaviors to model (default: those, in
        ``features.DEFAULT_BEHAVIORS`` order, whose train file is non-empty; JD gives
        purchase, click, favorite).

    Returns:
      :class:`MultiBehaviorData`; ``num_users`` / ``num_items`` are the largest ids
      over all files, so every item of every split is rankable.

    Held-out lines that repeat a train line of their behavior are dropped, and repeated
    lines, held-out-only ids and held-out users without history are counted in warnings
    (:func:`_check_splits`).

    Raises:
      ValueError: if the folder has no release files or only empty ones, no train file
        has data (and ``behaviors`` is not given), a line has
        other than two fields or a non-positive or non-integer id, the ids are
        sparse (see :data:`SPARSE_ID_FACTOR`), a requested behavior has no file, or a
        release file's name is a folder or a dangling link.
    """
    data_dir = pathlib.Path(data_dir)
    if not data_dir.is_dir():
        what = "is not a folder" if data_dir.exists() else "does not exist"
        raise ValueError(f"data dir {str(data_dir)!r} {what}")
    pairs: dict[str, dict[str, np.ndarray]] = {s: {} for s in F.SPLITS}
    for prefix, behavior in F.RELEASE_BEHAVIOR_MAPPING.items():
        for suffix, split in F.RELEASE_SPLIT_MAPPING.items():
            path = data_dir / f"{prefix}_{suffix}"
            _check_readable(path)  # a dangling link, a folder, ...
            if path.is_file():
                pairs[split][behavior] = _read_pairs(path)
    found = {b for split in pairs.values() for b in split}
    if not found:
        raise ValueError(f"no release files '<behavior>_<split>' found in {str(data_dir)!r}")
    known = {
        f"{prefix}_{suffix}"
        for prefix in F.RELEASE_BEHAVIOR_MAPPING
        for suffix in F.RELEASE_SPLIT_MAPPING
    }
    ignored = sorted(
        f.name for f in data_dir.iterdir() if f.name not in known and not f.name.startswith(".")
    )
    if ignored:
        logging.warning(
            "files in %s not read (release files are named <prefix>_<split>, prefixes %s, "
            "splits %s): %s",
            data_dir,
            list(F.RELEASE_BEHAVIOR_MAPPING),
            list(F.RELEASE_SPLIT_MAPPING),
            ignored,
            extra={console.CONSOLE: True},
        )
    if behaviors is None:
        behaviors = [b for b in F.DEFAULT_BEHAVIORS if len(pairs[F.TRAIN].get(b, ())) > 0]
        if not behaviors:
            raise _no_train_data(data_dir)
        skipped = [
            f"{b} ({prefix}_train)"
            for prefix, b in F.RELEASE_BEHAVIOR_MAPPING.items()
            if b in found and b not in behaviors
        ]
        if skipped:
            logging.warning(
                "behaviors not modelled, their train file empty or missing: %s",
                ", ".join(skipped),
                extra={console.CONSOLE: True},
            )
    behaviors = F.validate_behaviors(behaviors)
    check_release_behaviors(data_dir, behaviors)
    everything = [p for split in pairs.values() for p in split.values() if len(p)]
    if not everything:
        raise ValueError(f"every release file in {str(data_dir)!r} is empty")
    num_users = int(max(p[:, 0].max() for p in everything))
    num_items = int(max(p[:, 1].max() for p in everything))
    for column, kind, largest in ((0, "user", num_users), (1, "item", num_items)):
        distinct = len(np.unique(np.concatenate([p[:, column] for p in everything])))
        if largest > max(SPARSE_ID_FACTOR * distinct, SPARSE_ID_FLOOR):
            raise ValueError(
                f"{str(data_dir)!r}: the largest {kind} id is {largest:,} but only "
                f"{distinct:,} distinct {kind}s occur; the release format numbers them "
                f"1..n (every id up to the largest gets a row of the model)"
            )
        if largest - distinct > UNUSED_ID_SHARE * largest:
            logging.warning(
                "%s: %s of the %s %s ids 1..%s occur in no file (%.0f%%): the model has a "
                "row for each that no data reaches; the release format numbers %ss 1..n "
                "(a stray large id?)",
                data_dir,
                f"{largest - distinct:,}",
                f"{largest:,}",
                kind,
                f"{largest:,}",
                100 * (largest - distinct) / largest,
                kind,
                extra={console.CONSOLE: True},
            )
    splits = {
        split: {b: to_csr(pairs[split].get(b), num_users, num_items) for b in sorted(found)}
        for split in F.SPLITS
    }
    _check_splits(data_dir, pairs, splits, behaviors)
    return MultiBehaviorData(tuple(behaviors), num_users, num_items, splits)


def _release_name(behavior: str, split: str) -> str:
    prefix = next(p for p, b in F.RELEASE_BEHAVIOR_MAPPING.items() if b == behavior)
    suffix = next(s for s, t in F.RELEASE_SPLIT_MAPPING.items() if t == split)
    return f"{prefix}_{suffix}"


def _check_splits(
    data_dir: pathlib.Path,
    pairs: Mapping[str, Mapping[str, np.ndarray]],
    splits: dict[str, dict[str, sp.csr_matrix]],
    behaviors: Sequence[str],
) -> None:
    """Counts and reports, in place, what the release format rules out or cannot learn.

    - Repeated lines of a file are kept once (counted).
    - A valid/test line that repeats a train line of the same behavior is dropped from
      the held-out targets (counted): seen items are excluded from the ranking
      (``metrics``), so it could never be hit and would only lower recall.
    - A line in both the valid and the test file of a behavior is kept in both
      (counted): the release says its splits are disjoint, and model selection on
      valid would see those test targets.
    - Held-out ids above train's largest user/item id, and held-out users of the
      modelled behaviors without any train interaction, are reported (counted): the
      catalog gets a row for every id up to the largest, which no training reaches,
      and such a user is scored from an empty history.
    """
    duplicates = [
        f"{_release_name(b, split)} {len(p) - splits[split][b].nnz:,}"
        for split in F.SPLITS
        for b, p in sorted(pairs[split].items())
        if len(p) > splits[split][b].nnz
    ]
    if duplicates:
        logging.warning(
            "repeated lines in %s counted once: %s",
            data_dir,
            ", ".join(duplicates),
            extra={console.CONSOLE: True},
        )
    held_out_splits = [split for split in F.SPLITS if split != F.TRAIN]
    repeats = []
    for split in held_out_splits:
        for b, matrix in sorted(splits[split].items()):
            seen = matrix.multiply(splits[F.TRAIN][b]).tocsr()
            if seen.nnz:
                repeats.append(f"{_release_name(b, split)} {seen.nnz:,}")
                kept = (matrix - seen).tocsr()
                kept.eliminate_zeros()
                kept.sort_indices()
                splits[split][b] = kept
    if repeats:
        logging.warning(
            "held-out lines in %s that repeat a train line of the same behavior, dropped "
            "from the targets (seen items are never recommended, so they could not be "
            "hit): %s",
            data_dir,
            ", ".join(repeats),
            extra={console.CONSOLE: True},
        )
    # A pair in both held-out splits: selection on valid then sees test's targets.
    shared = [
        f"{_release_name(b, F.EVAL)} / {_release_name(b, F.TEST)} {both:,}"
        for b, matrix in sorted(splits[F.EVAL].items())
        if (both := matrix.multiply(splits[F.TEST][b]).nnz)
    ]
    if shared:
        logging.warning(
            "lines in both the valid and the test file of a behavior in %s (kept in both: "
            "model selection on valid then sees those test targets): %s",
            data_dir,
            ", ".join(shared),
            extra={console.CONSOLE: True},
        )
    train = [p for p in pairs[F.TRAIN].values() if len(p)]
    held_out = [p for split in held_out_splits for p in pairs[split].values() if len(p)]
    for column, kind in ((0, "user"), (1, "item")) if train and held_out else ():
        only = np.setdiff1d(
            np.concatenate([p[:, column] for p in held_out]),
            np.concatenate([p[:, column] for p in train]),
        )
        if len(only):
            logging.warning(
                "%s: %s %s ids occur only in valid/test (e.g. %s; up to %s): the model "
                "has a row for each but no train data reaches it",
                data_dir,
                f"{len(only):,}",
                kind,
                ", ".join(f"{i:,}" for i in only[:5]),
                f"{only.max():,}",
                extra={console.CONSOLE: True},
            )
    history = sum(splits[F.TRAIN][b].getnnz(axis=1) for b in behaviors)
    cold = []
    for split in held_out_splits:
        users = np.flatnonzero(sum(splits[split][b].getnnz(axis=1) for b in behaviors))
        count = int((history[users] == 0).sum())
        if count:
            cold.append(f"{count:,} of {len(users):,} {split} users")
    if cold:
        logging.warning(
            "%s: %s have no train interaction of %s; they are scored from an empty history",
            data_dir,
            ", ".join(cold),
            "/".join(behaviors),
            extra={console.CONSOLE: True},
        )


def to_csr(pairs: np.ndarray | None, num_users: int, num_items: int) -> sp.csr_matrix:
    """1-based ``[k, 2]`` (user, item) pairs -> ``[n, m]`` 0/1 float32 CSR (duplicates once)."""
    if pairs is None or not len(pairs):
        return sp.csr_matrix((num_users, num_items), dtype=np.float32)
    matrix = sp.csr_matrix(
        (np.ones(len(pairs), np.float32), (pairs[:, 0] - 1, pairs[:, 1] - 1)),
        shape=(num_users, num_items),
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix


def _csr_dataset(
    users: np.ndarray,
    tables: Mapping[str, sp.csr_matrix],
    batch_size: int,
    shuffle: bool,
    seed: int,
    *,
    with_user_index: bool = False,
):
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    arrays = {
        key: (tf.constant(t.indptr.astype(np.int64)), tf.constant(t.indices.astype(np.int64)))
        for key, t in tables.items()
    }

    def lookup(batch_users):
        out = {F.USER_INDEX: batch_users} if with_user_index else {}
        for key, (indptr, indices) in arrays.items():
            ragged = tf.RaggedTensor.from_row_splits(indices, indptr, validate=False)
            out[key] = tf.gather(ragged, batch_users).to_sparse()
        return out

    ds = tf.data.Dataset.from_tensor_slices(np.asarray(users, np.int64))
    if shuffle:
        ds = ds.shuffle(len(users), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    return ds.map(lookup, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(
        tf.data.AUTOTUNE
    )


def train_dataset(
    data: MultiBehaviorData,
    batch_size: int = 500,
    seed: int = 0,
    shuffle: bool = True,
    behaviors: Sequence[str] | None = None,
    *,
    with_user_index: bool = False,
):
    """Training batches: ``{items_key(b): SparseTensor [B, None] int64}`` for all b.

    One pass = one epoch over the users with any train interaction (the released
    code's protocol), reshuffled every epoch from ``seed``.

    Args:
      data: the dataset.
      batch_size: users per batch.
      seed: shuffle seed.
      shuffle: reshuffle every epoch.
      behaviors: behaviors to include (default ``data.behaviors``).
      with_user_index: also yield ``features.USER_INDEX`` (int64 ``[B]`` user rows),
        for the transductive baselines.

    Returns:
      ``tf.data.Dataset``.
    """
    behaviors = data.behaviors if behaviors is None else tuple(behaviors)
    tables = {F.items_key(b): data.matrix(F.TRAIN, b) for b in behaviors}
    return _csr_dataset(
        data.train_users(), tables, batch_size, shuffle, seed, with_user_index=with_user_index
    )


def eval_dataset(
    data: MultiBehaviorData,
    split: str = F.EVAL,
    batch_size: int = 2000,
    behaviors: Sequence[str] | None = None,
    *,
    with_user_index: bool = False,
):
    """Evaluation batches over the users with >= 1 ``split`` item of any behavior.

    Each element holds ``items_key(b)`` (train items: model input and exclusions) and
    ``heldout_key(b)`` (the split's items) as ``SparseTensor [B, None] int64``.

    Args:
      data: the dataset.
      split: ``features.EVAL`` or ``features.TEST``.
      batch_size: users per batch.
      behaviors: behaviors to include (default ``data.behaviors``).
      with_user_index: also yield ``features.USER_INDEX`` (see :func:`train_dataset`).

    Returns:
      ``tf.data.Dataset`` (fixed order).
    """
    behaviors = data.behaviors if behaviors is None else tuple(behaviors)
    tables = {}
    for b in behaviors:
        tables[F.items_key(b)] = data.matrix(F.TRAIN, b)
        tables[F.heldout_key(b)] = data.matrix(split, b)
    users = data.split_users(split, behaviors)
    return _csr_dataset(users, tables, batch_size, False, 0, with_user_index=with_user_index)
