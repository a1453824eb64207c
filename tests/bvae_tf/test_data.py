"""Release-format reader and tf.data pipelines."""

import logging

import numpy as np
import pytest
import tensorflow as tf

from bvae_tf import data as D
from bvae_tf import features as F

pytestmark = pytest.mark.unit


def _write_release(folder, files):
    for name, pairs in files.items():
        (folder / name).write_text("".join(f"{u} {i}\n" for u, i in pairs))


@pytest.fixture
def release(tmp_path):
    _write_release(
        tmp_path,
        {
            "target_train": [(1, 1), (1, 2), (2, 3), (2, 3)],
            "target_valid": [(1, 4)],
            "target_test": [(3, 5)],
            "click_train": [(1, 3), (3, 1), (3, 2)],
            "click_valid": [],
            "click_test": [(2, 6)],
            "cart_train": [],
            "cart_test": [(4, 6)],
            "unrelated.txt": [(9, 9)],
        },
    )
    return tmp_path


def test_load_release_maps_names_ids_and_skips_empty_train(release, caplog):
    with caplog.at_level(logging.WARNING):
        data = D.load_release(release)
    assert data.behaviors == (F.PURCHASE, F.CLICK)  # cart has no train data
    # Both are said where the run's output shows them, not only in the full log.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "not modelled, their train file empty or missing: cart (cart_train)" in w for w in warnings
    )
    assert any("not read" in w and "['unrelated.txt']" in w for w in warnings)
    assert (data.num_users, data.num_items) == (4, 6)
    purchase = data.matrix(F.TRAIN, F.PURCHASE)
    assert purchase.shape == (4, 6)
    assert purchase.toarray()[1].tolist() == [0, 0, 1, 0, 0, 0]  # duplicate kept once
    assert data.matrix(F.EVAL, F.PURCHASE)[0, 3] == 1.0
    assert data.matrix(F.TEST, F.CART)[3, 5] == 1.0
    assert data.train_users().tolist() == [0, 1, 2]
    assert data.split_users(F.TEST).tolist() == [1, 2]


def test_modelled_release_behaviors_from_file_names_and_first_bytes(release, tmp_path):
    # The default: non-blank train files in DEFAULT_BEHAVIORS order, as load_release;
    # click's empty valid file is named (a run would find no valid interactions), and
    # so is one of blank lines only (it parses to no interaction either).
    with pytest.raises(ValueError, match=r"click_valid in .* missing, empty or blank"):
        D.modelled_release_behaviors(release)
    (release / "click_valid").write_text(" \n\t\n\n")
    with pytest.raises(ValueError, match=r"click_valid in .* missing, empty or blank"):
        D.modelled_release_behaviors(release)
    (release / "click_valid").write_text("\n 1 9\n")
    assert D.modelled_release_behaviors(release) == [F.PURCHASE, F.CLICK]
    assert D.modelled_release_behaviors(release, [F.CLICK]) == [F.CLICK]
    (release / "cart_train").write_text("\n \n")  # blank: not modelled by default
    assert D.modelled_release_behaviors(release) == [F.PURCHASE, F.CLICK]
    with pytest.raises(ValueError, match=r"cart_train, cart_valid in .* missing, empty or b"):
        D.modelled_release_behaviors(release, [F.PURCHASE, F.CART])
    with pytest.raises(ValueError, match=r"behaviors \['favorite'\] have no files"):
        D.modelled_release_behaviors(release, [F.FAVORITE])
    with pytest.raises(ValueError, match="must be distinct"):
        D.modelled_release_behaviors(release, [F.CLICK, F.CLICK])
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="no behavior has train data"):
        D.modelled_release_behaviors(tmp_path / "nothing")
    (release / "favourite_train").symlink_to(tmp_path / "missing")
    with pytest.raises(ValueError, match="favourite_train' cannot be read: it is a link to"):
        D.modelled_release_behaviors(release)


def test_load_release_explicit_behaviors_and_errors(release, tmp_path_factory):
    data = D.load_release(release, behaviors=[F.CLICK, F.CART])
    assert data.behaviors == (F.CLICK, F.CART)
    with pytest.raises(ValueError, match="favorite"):
        D.load_release(release, behaviors=[F.FAVORITE])
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(ValueError, match="no release files"):
        D.load_release(empty)
    with pytest.raises(ValueError, match="does not exist"):
        D.load_release(empty / "missing")
    bad = tmp_path_factory.mktemp("bad")
    (bad / "target_train").write_text("1 2 3\n")
    with pytest.raises(ValueError, match="line 1: expected 'user item', got 3 fields"):
        D.load_release(bad)
    # Three columns on an even number of lines: the fields must not pair up across lines.
    (bad / "target_train").write_text("1 2\n\n1 2 7\n3 4 7\n")
    with pytest.raises(ValueError, match="target_train, line 3: expected 'user item', got 3"):
        D.load_release(bad)
    (bad / "target_train").write_text(f"1 {10**23}\n")
    with pytest.raises(ValueError, match="ids must be below 2\\*\\*63"):
        D.load_release(bad)
    (bad / "target_train").write_text("1.0 2\n")  # not too large: not an integer
    with pytest.raises(ValueError, match="line 1: ids must be integers written as decimal"):
        D.load_release(bad)
    (bad / "target_train").write_text("1 2\n3 4\n", encoding="utf-16")
    with pytest.raises(ValueError, match="holds NUL bytes \\(UTF-16 or UTF-32 text"):
        D.load_release(bad)
    (bad / "target_train").write_text("1 2\n2 50000000\n")
    with pytest.raises(ValueError, match="largest item id is 50,000,000 but only 2 distinct"):
        D.load_release(bad)
    (bad / "target_train").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        D.load_release(bad, behaviors=[F.PURCHASE])
    (bad / "target_train").write_text("1 2\n\n3 0\n")
    with pytest.raises(
        ValueError, match="line 3: ids must be 1-based positive integers, got '3 0'"
    ):
        D.load_release(bad)
    for line in ("1 1_0", "+7 2"):  # numpy alone would read 10 and 7
        (bad / "target_train").write_text(f"1 2\n{line}\n")
        with pytest.raises(ValueError, match="line 2: ids must be written as decimal digits"):
            D.load_release(bad)
    (bad / "target_train").write_text("1 2\n")
    (bad / "target_test").symlink_to(bad / "nowhere")
    with pytest.raises(ValueError, match="target_test' cannot be read: it is a link to nothing"):
        D.load_release(bad)
    (bad / "target_test").unlink()
    (bad / "target_test").mkdir()
    with pytest.raises(ValueError, match="target_test' cannot be read: it is not a file"):
        D.load_release(bad)
    with pytest.raises(ValueError, match="split"):
        data.matrix("holdout", F.CLICK)


def test_train_dataset_yields_sparse_rows_of_every_user_once(tiny_data):
    ds = D.train_dataset(tiny_data, batch_size=5, seed=1)
    spec = ds.element_spec
    assert set(spec) == {F.items_key(b) for b in tiny_data.behaviors}
    assert all(isinstance(s, tf.SparseTensorSpec) and s.dtype == tf.int64 for s in spec.values())
    seen = []
    rebuilt = {b: np.zeros((tiny_data.num_users, tiny_data.num_items)) for b in tiny_data.behaviors}
    users = tiny_data.train_users()
    order = []
    for batch in ds:
        n = int(batch[F.items_key("purchase")].dense_shape[0])
        order.append(n)
        seen.append(batch)
    assert sum(order) == len(users)

    # Reshuffled each epoch but repeatable with the same seed.
    def epochs(dataset, n=2):
        return [
            [b[F.items_key("click")].values.numpy().tolist() for b in dataset] for _ in range(n)
        ]

    first = epochs(D.train_dataset(tiny_data, batch_size=5, seed=1))
    assert first == epochs(D.train_dataset(tiny_data, batch_size=5, seed=1))
    assert first[0] != first[1]
    unshuffled = D.train_dataset(tiny_data, batch_size=100, shuffle=False)
    batch = next(iter(unshuffled))
    for b in tiny_data.behaviors:
        st = batch[F.items_key(b)]
        rows = users[st.indices.numpy()[:, 0]]
        rebuilt[b][rows, st.values.numpy()] = 1.0
        np.testing.assert_array_equal(
            rebuilt[b][users], tiny_data.matrix(F.TRAIN, b).toarray()[users]
        )


def test_eval_dataset_has_inputs_and_targets(tiny_data):
    ds = D.eval_dataset(tiny_data, F.TEST, batch_size=100)
    batch = next(iter(ds))
    users = tiny_data.split_users(F.TEST)
    for b in tiny_data.behaviors:
        held = batch[F.heldout_key(b)]
        dense = np.zeros((len(users), tiny_data.num_items))
        dense[held.indices.numpy()[:, 0], held.values.numpy()] = 1
        np.testing.assert_array_equal(dense, tiny_data.matrix(F.TEST, b).toarray()[users])
        assert F.items_key(b) in batch
    with pytest.raises(ValueError, match="batch_size"):
        D.eval_dataset(tiny_data, F.TEST, batch_size=0)


def test_a_byte_order_mark_is_dropped_and_ids_missing_from_train_anywhere_are_counted(
    tmp_path, caplog
):
    _write_release(
        tmp_path,
        {
            "target_train": [(1, 1), (2, 3), (3, 6)],
            "target_valid": [(1, 4)],  # item 4: below train's largest id, in no train line
            "target_test": [(2, 2)],  # item 2 likewise
        },
    )
    text = (tmp_path / "target_train").read_bytes()
    (tmp_path / "target_train").write_bytes(b"\xef\xbb\xbf" + text)  # an editor's BOM
    with caplog.at_level(logging.WARNING):
        data = D.load_release(tmp_path, behaviors=[F.PURCHASE])
    assert data.matrix(F.TRAIN, F.PURCHASE).nnz == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("2 item ids occur only in valid/test (e.g. 2, 4; up to 4)" in w for w in warnings)


def test_load_release_counts_what_it_drops_or_cannot_learn(tmp_path, caplog):
    _write_release(
        tmp_path,
        {
            "target_train": [(1, 1), (1, 2), (1, 2), (2, 3)],
            # (1, 2) repeats a train line: seen items are never ranked, so it is dropped.
            "target_valid": [(1, 2), (1, 3), (2, 1)],
            # Item 9 and user 5 occur only here; user 4 has no train history either.
            "target_test": [(2, 9), (4, 1), (5, 2)],
            "click_train": [(1, 3), (3, 1)],
            # (2, 3) is in both held-out files of click: kept, and counted.
            "click_valid": [(2, 3)],
            "click_test": [(2, 3)],
        },
    )
    with caplog.at_level(logging.WARNING):
        data = D.load_release(tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("repeated lines" in w and "target_train 1" in w for w in warnings)
    assert any("dropped from the targets" in w and "target_valid 1" in w for w in warnings)
    assert any("1 item ids occur only in valid/test (e.g. 9; up to 9)" in w for w in warnings)
    assert any("2 user ids occur only in valid/test" in w for w in warnings)
    assert any("2 of 3 test users have no train interaction" in w for w in warnings)
    assert any("both the valid and the test" in w and "click_test 1" in w for w in warnings)
    assert not any("both the valid" in w and "target_valid" in w for w in warnings)
    valid = data.matrix(F.EVAL, F.PURCHASE)
    assert valid.nnz == 2 and valid[0, 1] == 0 and valid[0, 2] == 1
    assert data.num_items == 9  # still every id gets a row: the warnings say so
    # Items 4-8 occur in no file (a stray large id, short of the sparse-id error).
    assert any("5 of the 9 item ids 1..9 occur in no file (56%)" in w for w in warnings)
    assert not any("user ids 1.." in w for w in warnings)


def test_load_release_names_the_line_and_the_folder(tmp_path):
    (tmp_path / "target_train").write_text("1 2\n2 u7\n")
    with pytest.raises(ValueError, match=r"target_train, line 2: .*got '2 u7'"):
        D.load_release(tmp_path)
    (tmp_path / "target_train").write_text("")
    (tmp_path / "target_test").write_text("1 2\n")
    with pytest.raises(
        ValueError, match=r"no behavior has train data in .*_train. file is missing or empty"
    ):
        D.load_release(tmp_path)


def test_a_missing_behavior_is_named_with_those_the_folder_has_and_which_have_no_train_data(
    tmp_path,
):
    (tmp_path / "target_train").write_text("0 1\n")
    (tmp_path / "cart_train").write_text("")  # as JD's release: cart is not modelled
    (tmp_path / "cart_test").write_text("0 2\n")
    with pytest.raises(ValueError) as refused:
        D.check_release_behaviors(tmp_path, ["click"])
    message = str(refused.value)
    assert "behaviors ['click'] have no files in" in message
    assert "purchase (target_*)," in message
    assert "cart (cart_*; no train data: not modelled)" in message
