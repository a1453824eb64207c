"""Batch recommendations: every user's top-K per behavior from the whole history, as
CSV and TFRecord rows equal to what the served model answers."""

import csv
import json
import pathlib
import shutil

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from benchmarks import standin_model
from bvae_tf import export, features
from components.batch_recommender import BatchRecommendations, executor, recommend
from components.batch_recommender import __main__ as cli

pytestmark = pytest.mark.unit

P, C, F = features.PURCHASE, features.CLICK, features.FAVORITE
BEHAVIORS = (P, C, F)
TOP_K = 5


def _example(user, items, heldout=None):
    feature = {features.USER_ID: tf.train.Feature(bytes_list=tf.train.BytesList(value=[user]))}
    for b in BEHAVIORS:
        feature[features.items_key(b)] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[i.encode() for i in items.get(b, [])])
        )
        if heldout is not None:
            feature[features.heldout_key(b)] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[i.encode() for i in heldout.get(b, [])])
            )
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


#: user -> split -> (train items, held-out items); u3 only in train, u4 has nothing
#: in train but a held-out purchase (the ExampleGen keeps cold users out; the job
#: does not assume it).
LOG = {
    b"u1": {
        "train": ({P: ["i1"], C: ["i2", "i3"]}, None),
        "eval": ({P: ["i1"], C: ["i2", "i3"]}, {P: ["i4"], F: ["i5"]}),
        "test": ({P: ["i1"], C: ["i2", "i3"]}, {C: ["i6"]}),
    },
    b"u2": {"train": ({F: ["i7", "i8"]}, None), "test": ({F: ["i7", "i8"]}, {P: ["i9"]})},
    b"u3": {"train": ({C: ["i10"]}, None)},
    b"u,4": {"eval": ({}, {P: ["i11"]})},  # a comma in the id: quoted in the CSV
}
FULL_HISTORY = {
    "u1": {P: ["i1", "i4"], C: ["i2", "i3", "i6"], F: ["i5"]},
    "u2": {P: ["i9"], C: [], F: ["i7", "i8"]},
    "u3": {P: [], C: ["i10"], F: []},
    "u,4": {P: ["i11"], C: [], F: []},
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """An ExampleGen-like Examples folder and a stand-in SavedModel (50 items)."""
    root = tmp_path_factory.mktemp("batch")
    examples = root / "examples"
    for split in features.SPLITS:
        folder = examples / f"Split-{split}"
        folder.mkdir(parents=True)
        with tf.io.TFRecordWriter(str(folder / "data_tfrecord-00000-of-00001.gz"), "GZIP") as w:
            for user, splits in LOG.items():
                if split in splits:
                    w.write(_example(user, *splits[split]))
    model_dir = standin_model.export_standin_model(root / "model", num_items=50, top_k=TOP_K)
    return examples, str(model_dir)


def _run(inputs, out, **kwargs):
    examples, model_dir = inputs
    patterns = [str(examples / f"Split-{s}" / "*") for s in features.SPLITS]
    with beam.Pipeline() as pipeline:
        recommend.build(pipeline, patterns, model_dir, str(out), behaviors=BEHAVIORS, **kwargs)
    return recommend.read_summary(str(out))


def _csv_rows(out):
    rows = []
    for path in sorted(pathlib.Path(out).glob("recommendations-*.csv")):
        with open(path, newline="") as f:
            reader = csv.reader(f)
            assert next(reader) == list(recommend.COLUMNS)
            rows += [(u, b, int(r), i, float(s)) for u, b, r, i, s in reader]
    return sorted(rows)


def _tfrecord_rows(out):
    """The TFRecord output (one example per user and behavior) as rows."""
    rows = []
    files = sorted(map(str, pathlib.Path(out).glob("recommendations-*.tfrecord.gz")))
    for raw in tf.data.TFRecordDataset(files, "GZIP"):
        f = tf.train.Example.FromString(raw.numpy()).features.feature
        user = f["user_id"].bytes_list.value[0].decode()
        behavior = f["behavior"].bytes_list.value[0].decode()
        items = [i.decode() for i in f["item_ids"].bytes_list.value]
        scores = list(f["scores"].float_list.value)
        assert len(items) == len(scores) == TOP_K
        ranked = enumerate(zip(items, scores, strict=True), 1)
        rows += [(user, behavior, rank, i, s) for rank, (i, s) in ranked]
    return sorted(rows)


def test_every_user_gets_the_served_top_k_of_the_whole_history(inputs, tmp_path):
    summary = _run(inputs, tmp_path)
    assert summary["users"] == 4 and summary["users_without_history"] == 0
    assert summary["rows"] == 4 * len(BEHAVIORS) * TOP_K
    rows = _csv_rows(tmp_path)
    assert len(rows) == summary["rows"]
    # The same rows as the served model answers for the merged history.
    serve = tf.saved_model.load(inputs[1]).signatures[features.SERVING_SIGNATURE]
    users = sorted(FULL_HISTORY)
    out = serve(examples=tf.constant(export.serialize_histories([FULL_HISTORY[u] for u in users])))
    by_key = {(u, b, r): (i, s) for u, b, r, i, s in rows}
    for row, user in enumerate(users):
        for b in BEHAVIORS:
            ids = out[features.item_ids_output(b)].numpy()[row]
            scores = out[features.scores_output(b)].numpy()[row]
            for rank in range(1, TOP_K + 1):
                item, score = by_key[(user, b, rank)]
                assert item == ids[rank - 1].decode()
                assert score == pytest.approx(float(scores[rank - 1]), rel=1e-6)
            # Nothing the user already did with b, in any split, is recommended for b.
            assert not {by_key[(user, b, r)][0] for r in range(1, TOP_K + 1)} & set(
                FULL_HISTORY[user][b]
            )
    # The TFRecord lists hold the same rows (float32 scores).
    tf_rows = _tfrecord_rows(tmp_path)
    assert [r[:4] for r in tf_rows] == [r[:4] for r in rows]
    assert np.allclose([r[4] for r in tf_rows], [r[4] for r in rows], rtol=1e-6)


def test_a_user_list_keeps_only_its_users_and_counts_the_unknown_ones(inputs, tmp_path):
    summary = _run(inputs, tmp_path, users=["u2", "nobody", "u2"], formats=["csv"])
    assert summary["users"] == 2  # u2 and "nobody" (the duplicate is dropped)
    assert summary["users_without_history"] == 1
    assert summary["users_without_history_ids"] == ["nobody"]
    assert summary["users_not_requested"] == 3
    rows = _csv_rows(tmp_path)
    assert {r[0] for r in rows} == {"u2", "nobody"}
    assert not list(tmp_path.glob("*.tfrecord.gz"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"formats": ["parquet"]}, "formats must be a non-empty subset"),
        ({"formats": []}, "formats must be a non-empty subset"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
    ],
)
def test_bad_job_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        recommend.build(beam.Pipeline(), [], "m", "o", behaviors=BEHAVIORS, **kwargs)


def test_an_example_without_a_user_id_is_a_clear_error():
    example = tf.train.Example().SerializeToString()
    with pytest.raises(ValueError, match="without exactly one 'user_id'"):
        recommend.example_history(example, BEHAVIORS)


def test_excluded_items_are_not_written_when_fewer_than_k_are_left():
    """A ``-inf`` score is an item the user already did the behavior on (the signature
    pads with them when fewer than K items are left): the list stops before it."""
    outputs = {
        features.item_ids_output(P): np.array([[b"i1", b"i2", b"i3"], [b"i4", b"i5", b"i6"]]),
        features.scores_output(P): np.array(
            [[2.0, -np.inf, -np.inf], [3.0, 1.0, -5.0]], np.float32
        ),
    }
    rows = list(recommend.recommendation_rows(["u1", "u2"], outputs, [P]))
    assert rows == [
        ("u1", P, 1, "i1", 2.0),
        ("u2", P, 1, "i4", 3.0),
        ("u2", P, 2, "i5", 1.0),
        ("u2", P, 3, "i6", -5.0),
    ]


def test_csv_lines_quote_ids_with_commas_and_quotes():
    line = recommend.csv_line(("u,1", P, 1, 'i"2', 0.5))
    assert next(csv.reader([line])) == ["u,1", P, "1", 'i"2', "0.5"]


def _executor_run(inputs, tmp_path, blessed, **properties):
    examples_dir, model_dir = inputs
    examples = standard_artifacts.Examples()
    examples.uri = str(examples_dir)
    examples.split_names = artifact_utils.encode_split_names(list(features.SPLITS))
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    pathlib.Path(model.uri).mkdir(parents=True)
    (pathlib.Path(model.uri) / "Format-Serving").symlink_to(model_dir)
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("blessed", int(blessed))
    output = BatchRecommendations()
    output.uri = str(tmp_path / "out")
    pathlib.Path(output.uri).mkdir(parents=True)
    executor.Executor().Do(
        {"examples": [examples], "model": [model], "model_blessing": [blessing]},
        {executor.OUTPUT_KEY: [output]},
        properties,
    )
    return output


def test_the_executor_writes_for_a_blessed_model_only(inputs, tmp_path):
    skipped = _executor_run(inputs, tmp_path / "a", blessed=False)
    assert skipped.get_int_custom_property("blessed") == 0
    assert not list(pathlib.Path(skipped.uri).iterdir())
    written = _executor_run(
        inputs, tmp_path / "b", blessed=True, splits=json.dumps(["train"]), formats='["csv"]'
    )
    assert written.get_int_custom_property("blessed") == 1
    # Only the train split's histories: u4 (no train example) is not a user here.
    assert written.get_int_custom_property("users") == 3
    assert written.get_int_custom_property("rows") == 3 * len(BEHAVIORS) * TOP_K
    assert {r[0] for r in _csv_rows(written.uri)} == {"u1", "u2", "u3"}


def test_the_executor_refuses_an_unknown_split_and_an_empty_users_file(inputs, tmp_path):
    with pytest.raises(ValueError, match=r"batch_inference.splits \['serving'\]"):
        _executor_run(inputs, tmp_path / "a", True, splits=json.dumps(["serving"]))
    empty = tmp_path / "users.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match="lists no user id"):
        _executor_run(inputs, tmp_path / "b", True, users_file=str(empty))


def test_a_users_file_drops_a_byte_order_mark_and_warns_of_a_repeated_user(tmp_path, caplog):
    users = tmp_path / "users.txt"
    users.write_bytes(b"\xef\xbb\xbfu10\r\nu102\r\n u10 \r\n")  # as spreadsheets write it
    assert executor.read_users(str(users)) == ["u10", "u102", "u10"]  # served once: build
    assert "lists 1 user ids more than once (first: 'u10')" in caplog.text


def test_cli_writes_the_files_and_prints_users_per_second(inputs, tmp_path, capsys):
    examples_dir, model_dir = inputs
    users = tmp_path / "users.txt"
    users.write_text(" u1 \nu3\n")
    out = tmp_path / "out"
    argv = ["--examples", str(examples_dir), "--model", model_dir, "--output", str(out)]
    assert cli.main([*argv, "--users", str(users)]) == 0
    printed = capsys.readouterr().out
    assert "2 users, 30 rows in" in printed and "users/s" in printed
    assert "(0 users/s" not in printed  # a small job is not rounded to nothing
    # Short: the counts are in summary.json, which the output names.
    assert len(printed.splitlines()) == 2 and f"{out}/summary.json" in printed, printed
    assert {r[0] for r in _csv_rows(out)} == {"u1", "u3"}
    with pytest.raises(SystemExit):
        missing = str(tmp_path / "missing")
        cli.main(["--examples", missing, "--model", model_dir, "--output", str(tmp_path / "o")])
    assert "is not a folder" in capsys.readouterr().err


def test_cli_refuses_an_earlier_jobs_output_and_unknown_users_and_wrong_examples(
    inputs, tmp_path, capsys
):
    examples_dir, model_dir = inputs
    out = tmp_path / "out"
    argv = ["--examples", str(examples_dir), "--model", model_dir, "--output", str(out)]
    assert cli.main([*argv, "--formats", "csv"]) == 0
    capsys.readouterr()
    # Its shards would be read with a second job's (another number of shards).
    with pytest.raises(SystemExit) as stop:
        cli.main([*argv, "--formats", "csv"])
    assert stop.value.code == 2 and "holds an earlier job's files" in capsys.readouterr().err
    users = tmp_path / "users.txt"
    users.write_text("u1\nu70,5\n")  # a second column: no such user
    assert cli.main([*argv, "--formats", "csv", "--overwrite", "--users", str(users)]) == 0
    warning = capsys.readouterr().err
    # The warning names the user without history, not the file's first ids.
    assert "1 of the 2 users listed in --users" in warning
    assert warning.rstrip().endswith("no header): 'u70,5'") and "'u1'" not in warning
    assert {r[0] for r in _csv_rows(out)} == {"u1", "u70,5"}  # only this job's rows
    users.write_text("u1\nu1\n")  # a repeated id: a warning line as the others are
    assert cli.main([*argv, "--formats", "csv", "--overwrite", "--users", str(users)]) == 0
    assert "warning: --users " in capsys.readouterr().err
    users.write_text("user_id\nu70,5\n")
    with pytest.raises(SystemExit) as stop:
        cli.main([*argv, "--overwrite", "--users", str(users)])
    said = capsys.readouterr()
    assert stop.value.code == 2 and "error: none of the 2 users listed in --users" in said.err
    assert "has a history in the examples (ids are matched as written less surrounding" in said.err
    assert "they got the ranking" not in said.err  # nothing was ranked
    assert "No output written" in said.err and said.out == ""  # no success lines
    # A failed job: nothing of it is left, so the same command runs again as it is.
    assert not cli.previous_outputs(str(out))
    assert not list(out.glob("beam-temp-*"))
    (tmp_path / "afile").write_text("x")
    versions = tmp_path / "serving"  # the Pusher's folder of versions, not a model
    shutil.copytree(model_dir, versions / "7")
    for bad, message in (
        (["--output", str(tmp_path / "afile")], "exists and is not a folder"),
        (["--output", str(tmp_path / "afile" / "o")], "cannot be created: Not a directory"),
        (["--output", str(tmp_path / "o2"), "--examples", model_dir], "is not a GZIP TFRecord"),
        (["--output", str(tmp_path / "o3"), "--users", str(tmp_path / "no")], "--users '"),
        (["--output", str(tmp_path / "o4"), "--batch-size", "0"], "--batch-size: must be a"),
        (["--output", str(tmp_path / "o5"), "--formats", "parquet"], "--formats: invalid choice"),
        (["--output", str(tmp_path / "o6"), "--model", str(tmp_path / "no")], "' does not exist"),
        (["--output", str(tmp_path / "o7"), "--model", str(tmp_path / "afile")], "is not a folder"),
        (
            ["--output", str(tmp_path / "o8"), "--model", str(versions)],
            f"holds 1 model version folder(s), not a model: name one, e.g. the latest, "
            f"{str(versions / '7')!r}",
        ),
    ):
        with pytest.raises(SystemExit) as stop:
            cli.main([*argv, *bad])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and message in err
        assert "{{function_node" not in err and "[Op:" not in err  # TF's eager wrapper
    # Refused on its arguments: no output folder, no logs/ in it.
    assert not any((tmp_path / f"o{i}").exists() for i in (3, 4, 5, 6, 7, 8))


def test_a_failed_job_is_one_clear_error_and_leaves_no_partial_output(inputs, tmp_path, capsys):
    """A file that is no GZIP TFRecord beside good ones fails inside the Beam job: the
    CLI says so in one line (the traceback goes to the log) and removes Beam's
    temporary folders."""
    examples_dir, model_dir = inputs
    split = next(pathlib.Path(examples_dir).glob("Split-*"))
    bad = tmp_path / "examples" / split.name
    shutil.copytree(split, bad)
    (bad / "zz-garbage.gz").write_bytes(b"not gzip at all")
    out = tmp_path / "out"
    argv = ["--examples", str(bad), "--model", model_dir, "--output", str(out), "--formats", "csv"]
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "error: the batch job failed: " in err, err
    assert "incorrect header check" in err and "Traceback" not in err, err
    assert sorted(p.name for p in out.iterdir()) == ["logs"]
    assert "Traceback" in next((out / "logs").iterdir()).read_text()
