"""``python -m serving.client`` against the local server: table, JSON, files, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tensorflow as tf

from bvae_tf import features
from serving import client_cli
from serving.client_requests import serialize_histories
from tests.serving.conftest import MODEL_NAME, TOP_K, assert_same_ranking

pytestmark = pytest.mark.e2e


def _run(local_server, capsys, *args):
    code = client_cli.main(["--server", local_server.target, "--model_name", MODEL_NAME, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_json_matches_the_python_client(local_server, client, capsys):
    code, out, _ = _run(
        local_server,
        capsys,
        "--json",
        "predict",
        "--history",
        "purchase=i1,i2",
        "--history",
        "click=i3,zz",
        "--top_k",
        "3",
    )
    assert code == 0
    (user,) = json.loads(out)
    assert user["user_id"] is None  # --history gives no id (not a made-up "0")
    expected = client.recommend(
        [{features.PURCHASE: ["i1", "i2"], features.CLICK: ["i3", "zz"]}], top_k=3
    )[0]
    assert user["oov_count"] == expected.oov_count == 1
    assert user["model_version"] == 1
    assert set(user["recommendations"]) == set(expected.items)
    for b, items in user["recommendations"].items():
        assert_same_ranking([(r["item_id"], r["score"]) for r in items], expected.items[b])


def test_predict_table_names_the_history_user_without_an_id(local_server, capsys):
    code, out, _ = _run(local_server, capsys, "predict", "--history", "purchase=i1")
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith(
        "user from --history (no id)  (model version 1, unknown item ids dropped: 0)"
    )
    assert "user 0" not in out


def test_predict_table_from_files(local_server, capsys, tmp_path):
    histories = tmp_path / "users.jsonl"
    histories.write_text(
        json.dumps({"user_id": "u1", "purchase": ["i1"]}) + "\n\n" + json.dumps({}) + "\n"
    )
    code, out, _ = _run(local_server, capsys, "predict", "--histories_file", str(histories))
    assert code == 0
    assert "user u1  (model version 1, unknown item ids dropped: 0)" in out
    assert "user 1  (model version 1" in out
    header = next(line for line in out.splitlines() if line.strip().startswith("rank"))
    assert all(b in header for b in (features.PURCHASE, features.CLICK, features.FAVORITE))
    assert sum(line.strip().startswith(f"{TOP_K} ") for line in out.splitlines()) == 2

    records = tmp_path / "users.tfrecord.gz"
    with tf.io.TFRecordWriter(str(records), options="GZIP") as writer:
        for record in serialize_histories([{features.CLICK: ["i2"]}]):
            writer.write(record)
    code, out, _ = _run(local_server, capsys, "--json", "predict", "--examples_file", str(records))
    assert code == 0
    assert len(json.loads(out)) == 1
    # --json may also follow the subcommand.
    code, after, _ = _run(
        local_server, capsys, "predict", "--examples_file", str(records), "--json"
    )
    assert code == 0
    assert json.loads(after) == json.loads(out)
    (tmp_path / "empty.jsonl").write_text("\n")
    code, _, err = _run(
        local_server, capsys, "predict", "--histories_file", str(tmp_path / "empty.jsonl")
    )
    assert code == 1 and "empty.jsonl: no user histories" in err
    (tmp_path / "text.tfrecord").write_text("not a record\n")
    (tmp_path / "empty.tfrecord").write_bytes(b"")
    for bad, message in (
        ("missing.tfrecord", "does not exist"),
        ("text.tfrecord", "corrupted"),
        ("empty.tfrecord", "holds no tf.Example records"),
    ):
        code, _, err = _run(local_server, capsys, "predict", "--examples_file", str(tmp_path / bad))
        assert code == 1 and message in err and "Traceback" not in err


def test_a_user_id_that_is_not_utf8_labels_its_answer_escaped():
    from serving import client_cli

    examples = [tf.train.Example(), tf.train.Example()]
    examples[0].features.feature[features.USER_ID].bytes_list.value.append(b"u\xff")
    assert client_cli._users_of(examples) == ["u\\xff", "1"]


def test_metadata_and_status_commands(local_server, capsys):
    code, out, _ = _run(local_server, capsys, "--json", "metadata")
    assert code == 0
    metadata = json.loads(out)
    serving = metadata["signatures"][features.SERVING_SIGNATURE]
    assert serving["inputs"] == {features.SERVING_INPUT: {"dtype": "string", "shape": [-1]}}
    assert serving["outputs"][features.scores_output(features.CLICK)] == {
        "dtype": "float",
        "shape": [-1, TOP_K],
    }
    code, out, _ = _run(local_server, capsys, "status")
    assert code == 0
    assert "version 1: AVAILABLE" in out


def test_errors_exit_with_status_1(local_server, capsys):
    code = client_cli.main(["--server", local_server.target, "--model_name", "nope", "status"])
    err = capsys.readouterr().err
    assert code == 1
    assert "NOT_FOUND: Could not find any versions of model nope" in err
    assert "--model_name 'nope' must be the name the server serves" in err
    code, _, err = _run(local_server, capsys, "predict", "--history", "cart=i1")
    assert code == 1
    assert "'cart'" in err
    code, _, err = _run(local_server, capsys, "predict", "--history", "no-equals-sign")
    assert code == 1
    assert "BEHAVIOR=ID1,ID2" in err


def test_too_many_users_per_request_points_to_batch_size(exported_model_base, capsys, tmp_path):
    """The server refuses a request over its row limit; the user's fix is the client's
    --batch_size, which the message names (with the server's limit as the reason)."""
    from serving.server import LocalServer

    base, name = exported_model_base
    users = tmp_path / "users.jsonl"
    users.write_text("".join(json.dumps({features.CLICK: [f"i{i}"]}) + "\n" for i in range(5)))
    with LocalServer(base, name, port=0, enable_warmup=False, max_rows_per_request=3) as server:
        argv = ["--server", server.target, "--model_name", name, "predict"]
        code = client_cli.main([*argv, "--histories_file", str(users), "--batch_size", "4"])
        err = capsys.readouterr().err
        assert code == 1
        assert err.strip() == (
            "error: INVALID_ARGUMENT: --batch_size 4 sends 4 users per request, more than the "
            "3 the server takes (its --max_rows_per_request): give --batch_size 3 or less"
        )
        code = client_cli.main([*argv, "--histories_file", str(users), "--batch_size", "3"])
        assert code == 0, capsys.readouterr().err
        assert capsys.readouterr().out.count("user ") == 5


def test_a_reader_that_closes_the_pipe_early_is_not_an_error(local_server):
    """``python -m serving.client ... | head``: no error line, exit status 0 (the reader
    here, ``true``, exits before the client writes, so its write always fails)."""
    done = subprocess.run(
        f"{sys.executable} -m serving.client --server {local_server.target} "
        f"--model_name {MODEL_NAME} metadata | true; "
        "echo status=${PIPESTATUS[0]} >&2",
        check=False,
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "status=0" in done.stderr, done.stderr
    assert "error" not in done.stderr.lower() and "Broken pipe" not in done.stderr, done.stderr


def test_a_signature_without_top_k_outputs_is_named_for_predict(local_server, capsys):
    code, _, err = _run(
        local_server,
        capsys,
        "--signature_name",
        features.TRANSFORM_SIGNATURE,
        "predict",
        "--history",
        "click=i1",
    )
    assert code == 1
    assert f"signature '{features.TRANSFORM_SIGNATURE}'" in err
    assert "returns no top-K recommendations" in err and "'serving_default'" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--server", "127.0.0.1:99999"], "port 99999 is not in 1-65535"),
        (["--server", "localhost:"], "give host:port"),
        # gRPC would read these as ports 65535, 0 and 80.
        (["--server", "127.0.0.1:-1"], "port '-1' is not a number"),
        (["--server", "127.0.0.1:abc"], "port 'abc' is not a number"),
        (["--server", "127.0.0.1:80x"], "port '80x' is not a number"),
        # gRPC would resolve "http://127.0.0.1:8500" as a host name, three times.
        (["--server", "http://127.0.0.1:8500"], "give host:port of the gRPC API without http://"),
        # gRPC fails such deadlines at once, as DEADLINE_EXCEEDED.
        (["--timeout", "inf"], "must be > 0 and at most 86400 seconds"),
        (["--timeout", "nan"], "must be > 0 and at most 86400 seconds"),
        (["--version", "9223372036854775808"], "--version: must be in 0 to 2**63 - 1"),
    ],
    ids=[
        "port-range",
        "no-port",
        "port-negative",
        "port-letters",
        "port-suffix",
        "http-scheme",
        "inf",
        "nan",
        "version",
    ],
)
def test_bad_connection_flags_are_refused_before_any_call(flags, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        client_cli.main([*flags, "--model_name", MODEL_NAME, "status"])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_grpc_target_schemes_pass_the_server_check():
    parser = client_cli.argparse.ArgumentParser()
    for target in ("dns:///localhost:8500", "unix:/tmp/serving.sock", "[::1]:8500"):
        client_cli._check_server(parser, target)  # no SystemExit


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"purchase": ["i1"]}\n{"purchase": [\n', "users.jsonl:2: Expecting value"),
        (b'{"purchase": {"i1": 1}}\n', "users.jsonl:1: history['purchase'] must be a list"),
        (b'["i1"]\n', "users.jsonl:1: expected a JSON object"),
        (b'{"purchase": ["\xff"]}\n', "users.jsonl: not UTF-8 text"),
        (b"\n" + b"[" * 100_000 + b"]" * 100_000 + b"\n", "users.jsonl:2: JSON nested too deeply"),
        (b'{"purchase": ["i1"]}\n\n{"bogus": ["i1"]}\n', "users.jsonl:3: behavior(s) ['bogus']"),
        (b'{"user_id": null, "purchase": ["i1"]}\n', "users.jsonl:1: user_id must be a string"),
        (b'{"user_id": 1.5, "purchase": ["i1"]}\n', "or an integer, got 1.5"),
        (b'{"purchase": ["i1"], "purchase": ["i2"]}\n', "users.jsonl:1: key 'purchase' appears"),
    ],
    ids=[
        *("bad-json", "object-not-list", "not-an-object", "not-utf8", "deep"),
        *("unknown-behavior", "null-user", "float-user", "duplicate-key"),
    ],
)
def test_bad_histories_files_name_the_file_and_line(
    local_server, capsys, tmp_path, content, message
):
    (tmp_path / "users.jsonl").write_bytes(content)
    code, _, err = _run(
        local_server, capsys, "predict", "--histories_file", str(tmp_path / "users.jsonl")
    )
    assert code == 1 and message in err and "Traceback" not in err, err


def test_a_histories_file_may_begin_with_a_byte_order_mark(local_server, capsys, tmp_path):
    (tmp_path / "users.jsonl").write_bytes(b'\xef\xbb\xbf{"user_id": "u1", "purchase": ["i1"]}\n')
    code, out, err = _run(
        local_server, capsys, "predict", "--histories_file", str(tmp_path / "users.jsonl")
    )
    assert code == 0, err
    assert "user u1  (model version 1" in out
    assert "warning" not in err


def test_a_user_id_given_twice_is_answered_twice_with_a_warning(local_server, capsys, tmp_path):
    lines = [{"user_id": "u1", "purchase": ["i1"]}, {"user_id": "u2"}, {"user_id": "u1"}]
    (tmp_path / "users.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    code, out, err = _run(
        local_server, capsys, "predict", "--histories_file", str(tmp_path / "users.jsonl")
    )
    assert code == 0, err
    assert out.count("user u1  (model version 1") == 2
    assert "user_id 'u1' is given 2 times (line 1, line 3); each is answered" in err
    assert "'u2'" not in err


def test_the_table_says_why_a_behavior_has_fewer_items():
    from serving.client_requests import Recommendations

    full = (("i1", 0.5), ("i2", 0.25))
    table = client_cli._format_table(
        ["u1", "u2"],
        [
            Recommendations(items={"purchase": full, "click": ()}, oov_count=0, model_version=3),
            Recommendations(items={"purchase": full, "click": full}, oov_count=0, model_version=3),
        ],
    )
    lines = table.splitlines()
    assert lines[4] == (
        "  fewer items for click 0: the items the user already did under a behavior are "
        "never recommended for it"
    )
    assert "fewer items" not in "\n".join(lines[5:])  # u2: both lists full
    done = client_cli._format_table(
        ["u3"], [Recommendations(items={"click": ()}, oov_count=0, model_version=3)]
    )
    assert "fewer items for click 0" in done
