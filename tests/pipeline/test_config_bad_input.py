"""Careless and hostile configurations fail when the config loads, naming the value.

Every case here was either accepted (and failed, or silently did something else, deep
inside a run) or escaped as a ``TypeError`` without naming the setting.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from pipeline import configs, local_runner, runtime

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # An unknown key of a section named, not "unexpected keyword argument".
        (["data.foo=1"], r"unknown data settings \['foo'\]"),
        (["data..input_base=x"], r"unknown data settings \[''\]"),
        (["synthetic.bogus=1"], r"unknown synthetic settings \['bogus'\]"),
        # Checked even when the synthetic log is not used (a typo is still a typo).
        (["data.input_base=/data/events.csv", "synthetic.bogus=1"], "unknown synthetic"),
        # An empty input path used to fall back on the synthetic log without a word.
        (["data.input_base="], "data.input_base must be a path, or null"),
        (['data.input_base="  "'], "data.input_base must be a path, or null"),
        (["data.input_base=5"], "data.input_base must be a path, or null"),
        # Fractions left in place when switching to cut timestamps: all events -> test.
        (["data.split_method=cut_timestamps"], r"\[0.8, 0.9\] look like fractions"),
        # Values of the wrong type reach a constructor: ValueError naming the section.
        (['model.latent_dim="8"'], r"^invalid model\.latent_dim: '8'"),
        (["model.variant=foo"], r"^invalid model\.variant: 'foo' \(one of \['bvae', "),
        (["model.latent_dims=[1, 2]"], r"^model\.latent_dims must be one int in \[1, latent_dim="),
        (["pipeline_name=123"], r"got 123 \(a number: quote it, e.g. --set 'pipeline_name="),
        (["synthetic.num_users=abc"], "^synthetic.num_users must be an integer, got 'abc'"),
        (["synthetic.num_users=1.5"], "^synthetic.num_users must be an integer, got 1.5"),
        (["synthetic.num_users=true"], "^synthetic.num_users must be an integer, got True"),
        (['synthetic.start="x"'], "^synthetic.start must be an integer, got 'x'"),
        (["synthetic.sessions_per_user=Infinity"], "^synthetic.sessions_per_user must be finite"),
        (["synthetic.sessions_per_user=1e9"], r"^synthetic.sessions_per_user must be <= 10,000"),
        (['data.behaviors={"purchase": 1}'], "behaviors must be a list of names, got {'purchase'"),
        # Named by its key, with the JSON form the value needs.
        (
            ["data.behaviors=purchase,click"],
            r"^data\.behaviors must be a list of names, got 'purchase,click' \(in JSON, e\.g\. "
            r"--set 'data\.behaviors=\[\"purchase\", \"click\"\]'\)",
        ),
        # An unknown metric is named as such, under its section.
        (
            ['evaluation.lower_bounds={"*": {"ndgc@5": 0.05}}'],
            r"^evaluation: metric 'ndgc@5': unknown metric 'ndgc'; known: \['precision', ",
        ),
        (
            ['evaluation.lower_bounds={"*": {"ndcg5": 0.05}}'],
            r"^evaluation: metric 'ndcg5' must look",
        ),
        (["data.behaviors.0=foo"], "behaviors must be a list of names, got {'0': 'foo'}"),
        (["evaluation.ks=5"], "^evaluation: a value has the wrong type"),
        (["synthetic.seed=-1"], "synthetic.seed must be an integer >= 0, got -1"),
        # A bound on a behavior that is not modelled (a typo) would silently not gate.
        (
            ['evaluation.lower_bounds={"purchse": {"ndcg@5": 0.1}}'],
            "names behavior 'purchse', which is not modelled",
        ),
        (
            ['evaluation.lower_bounds={"*": {"ndcg@5": -0.5}}'],
            r"lower_bounds\['\*'\]\['ndcg@5'\] must lie in \[0, 1\]",
        ),
        (
            ['evaluation.lower_bounds={"*": {"ndcg@5": 2.0}}'],
            r"must lie in \[0, 1\] \(as the metrics do; a higher bound could never pass\)",
        ),
        (["evaluation.ks=[10]"], r"ndcg@5' of lower_bounds\['\*'\] uses K=5"),
        (["evaluation.regression_metrics=null"], "regression_metrics must be a list"),
        (['evaluation.report_splits={"test": 1}'], "report_splits must be a list"),
        (["evaluation.ks=[100000000000000000000]"], r"ks must be integers in \[1, 10,000\]"),
        (
            [
                'data.behaviors=["Click", "click"]',
                'data.behavior_mapping={"r0": "Click", "r1": "click"}',
                "data.target_behavior=Click",
                "schema_path=null",
            ],
            "differ only in letter case",
        ),
        # Paths of the wrong type or empty.
        (["schema_path=5"], "schema_path must be a non-empty path or null, got 5"),
        (['schema_path=""'], "schema_path must be a non-empty path or null"),
        (["output_root=5"], "output_root must be a non-empty path, got 5"),
        (["output_root=null"], "output_root must be a non-empty path, got None"),
        (["output_root="], "output_root must be a non-empty path"),
        (["pipeline_root=5"], "pipeline_root must be a non-empty path or null"),
        (["serving_model_dir=[]"], "serving_model_dir must be a non-empty path or null"),
        (["metadata_path=5"], "metadata_path must be a non-empty path or null"),
        (["pipeline_name=\u00e4"], "pipeline_name must be ASCII"),
        # A searched width cannot take the blessed model's weights (found after the search).
        (
            [
                "training.warm_start=true",
                "tuning.enabled=true",
                'tuning.space={"latent_dim": [8, 100]}',
            ],
            r"tuning.space searches latent_dim \[8\] while training.warm_start",
        ),
        # Checked while the job is off, so that turning it on cannot fail after a run.
        (['batch_inference.formats=["parquet"]'], "batch_inference.formats must be"),
        (["batch_inference.batch_size=0"], "batch_inference.batch_size must be an integer"),
        (
            ['training.devices=["/gpu:0"]', "training.distribution_strategy=default"],
            "training.devices names the replicas of a Mirrored strategy",
        ),
    ],
)
def test_bad_values_fail_at_load_naming_the_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        configs.load_config(overrides=overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["top_k=0"], "top_k must be an integer >= 1, got 0"),
        (["top_k=abc"], "top_k must be an integer >= 1, got 'abc'"),
        (["top_k=5.0"], "top_k must be an integer >= 1, got 5.0"),
        (["vocab_frequency_threshold=-1"], "vocab_frequency_threshold"),
        (["data.behaviors=[]"], "at least one behavior"),
        (['data.behaviors=["purchase", "purchase"]'], "distinct"),
        (['data.behaviors=["purchase", "dance"]'], "'dance' is not produced by behavior_mapping"),
        (
            ['data.behaviors=["click", "favorite"]', "schema_path=null"],
            "target_behavior 'purchase' must be one of",
        ),
        (["data.split_boundaries=[0.9, 0.8]"], "must increase"),
        (["data.split_boundaries=[0, 0.5]"], r"must lie in \(0, 1\)"),
        (["data.split_boundaries=[0.5, 1]"], r"must lie in \(0, 1\)"),
        (["data.split_boundaries=[NaN, 0.5]"], "two finite numbers"),
        (["top_k.x=5"], "'top_k' is not a section"),
        (["=1"], "section.key=value"),
    ],
)
def test_checks_that_already_held(overrides, message):
    with pytest.raises(ValueError, match=message):
        configs.load_config(overrides=overrides)


def test_cut_timestamps_and_a_bound_of_one_stay_allowed():
    config = configs.load_config(
        overrides=[
            "data.split_method=cut_timestamps",
            "data.split_boundaries=[1522454400, 1523145600]",
            # The e2e test's unreachable bound (every user's NDCG@5 perfect): valid.
            'evaluation.lower_bounds={"*": {"ndcg@5": 1.0}, "click": {"recall@10": 0}}',
        ]
    )
    assert config.example_gen_config().split_boundaries == (1522454400, 1523145600)
    assert config.gate_config().bounds_for("click") == {"ndcg@5": 1.0, "recall@10": 0.0}
    assert configs.load_config(overrides=["data.input_base=null"]).uses_synthetic_data


@pytest.mark.parametrize(
    "input_base", ["{tmp}/missing.csv.gz", "{tmp}/empty_folder", "{tmp}/nothing-*.csv"]
)
def test_runner_rejects_a_missing_input_before_anything_runs(tmp_path, input_base):
    (tmp_path / "empty_folder").mkdir()
    output_root = tmp_path / "out"
    base = input_base.format(tmp=tmp_path)
    with pytest.raises(ValueError, match=r"^data.input_base: .*input_base '.*' (does not|matches)"):
        local_runner.main(
            ["--set", f"data.input_base={base}", "--set", f"output_root={output_root}"]
        )
    assert not output_root.exists()


def test_runner_flags_fail_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.delenv(configs.CONFIG_ENV, raising=False)
    output_root = tmp_path / "out"
    with pytest.raises(ValueError, match="unknown data settings"):
        local_runner.main(["--set", "data.nope=1", "--set", f"output_root={output_root}"])
    with pytest.raises(SystemExit):
        runtime.parse("test", ["--set"])
    monkeypatch.setenv(configs.CONFIG_ENV, str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="cannot read pipeline config"):
        runtime.parse("test", [])
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        runtime.parse("test", ["--config", str(tmp_path / "list.json")])
    assert not output_root.exists()


def test_a_runners_own_default_config_is_used_and_named_in_its_help(monkeypatch, capsys):
    from pipeline import jd

    monkeypatch.setenv(configs.CONFIG_ENV, "/elsewhere.json")  # not for pipeline.jd
    parser = runtime.argument_parser("jd", default_config=jd.DEFAULT_CONFIG)
    assert parser.parse_args([]).config == jd.DEFAULT_CONFIG
    assert parser.parse_args(["--config", "x.json"]).config == "x.json"
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    assert "(default: pipeline/config/jd.json)" in " ".join(capsys.readouterr().out.split())
    assert runtime.argument_parser("demo").parse_args([]).config == "/elsewhere.json"


@pytest.mark.parametrize(
    "module", ["pipeline.demo", "pipeline.jd", "pipeline.data_check", "pipeline.schema_tool",
               "components.synthetic_logs"],
)  # fmt: skip
def test_usage_lines_name_the_command_that_runs_the_module(module, capsys):
    import importlib

    with pytest.raises(SystemExit):
        importlib.import_module(module).main(["--help"])
    assert capsys.readouterr().out.startswith(f"usage: python -m {module} [-h]")


def test_runner_command_line_prints_a_config_error_without_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.local_runner", "--set", "top_k=0"],
        cwd=pathlib.Path(__file__).resolve().parents[2],
        env={**env, "PYTHONWARNINGS": ""},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr == "error: top_k must be an integer >= 1, got 0\n"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["schema_path=/nonexistent/schema.pbtxt"], "cannot read the schema"),
        (['data.behaviors=["purchase", "click", "favorite"]'], "does not match behaviors"),
    ],
)
def test_schema_is_checked_where_the_pipeline_uses_it(overrides, message):
    from pipeline import pipeline as pipeline_lib

    config = configs.load_config(overrides=overrides)  # reads no file but the config
    with pytest.raises(ValueError, match=message):
        pipeline_lib.pipeline_arguments(config)
    with pytest.raises(ValueError, match=message):  # and by the runners, before the run
        runtime.check_input(config)


def test_config_and_schema_files_that_are_not_utf8_are_named(tmp_path):
    (tmp_path / "latin1.json").write_bytes('{"top_k": 10, "name": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.json' is not UTF-8 text"):
        configs.load_config(str(tmp_path / "latin1.json"))
    (tmp_path / "schema.pbtxt").write_bytes(b'feature { name: "caf\xe9" }')
    with pytest.raises(ValueError, match=r"cannot read the schema .*schema\.pbtxt"):
        configs.schema_features(str(tmp_path / "schema.pbtxt"))


def test_a_config_may_begin_with_a_byte_order_mark(tmp_path):
    (tmp_path / "bom.json").write_bytes(b'\xef\xbb\xbf{"top_k": 7}')
    assert configs.load_config(str(tmp_path / "bom.json")).top_k == 7


def test_loading_a_config_and_checking_its_input_import_no_tensorflow_tfx_or_beam(tmp_path):
    (tmp_path / "events.csv").write_text("user_id,item_id,behavior,timestamp\n")
    code = (
        "import sys\n"
        "from pipeline import configs, runtime\n"
        "config = configs.load_config('pipeline/config/jd.json')\n"
        "assert config.behaviors == ('purchase', 'click', 'favorite'), config.behaviors\n"
        "runtime.check_input(configs.load_config(\n"
        f"    'pipeline/config/jd.json', ['data.input_base={tmp_path}']))\n"
        "try:\n"
        f"    runtime.check_input(configs.load_config(None, ['data.input_base={tmp_path}/no']))\n"
        "except ValueError as e:\n"
        "    assert 'does not exist' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('a missing input passed')\n"
        "heavy = [m for m in ('tensorflow', 'tfx', 'apache_beam', 'tensorflow_transform')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    repo = pathlib.Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_key_given_twice_in_a_config_is_named(tmp_path):
    (tmp_path / "twice.json").write_text('{"training": {"epochs": 5, "epochs": 50}}')
    with pytest.raises(ValueError, match=r"twice\.json' is not valid JSON: key 'epochs' appears"):
        configs.load_config(str(tmp_path / "twice.json"))


@pytest.mark.parametrize("name", ["pipeline_root", "serving_model_dir"])
def test_a_root_that_is_or_is_below_a_file_fails_at_load(tmp_path, name):
    (tmp_path / "afile").write_text("x")
    for path in (tmp_path / "afile", tmp_path / "afile" / "below"):
        with pytest.raises(ValueError, match=f"{name} .* is \\(or is below\\) a file"):
            configs.load_config(overrides=[f"output_root={tmp_path}", f"{name}={path}"])


def test_a_metadata_path_that_is_a_folder_or_below_a_file_fails_at_load(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"metadata_path .* is a folder; it names the MLMD"):
        configs.load_config(overrides=[f"metadata_path={tmp_path}"])
    with pytest.raises(ValueError, match=r"metadata_path's folder .* is \(or is below\) a file"):
        configs.load_config(overrides=[f"metadata_path={tmp_path / 'afile' / 'm.db'}"])
    path = tmp_path / "new" / "metadata.db"
    assert configs.load_config(overrides=[f"metadata_path={path}"]).metadata_path == str(path)


def test_an_empty_config_path_is_an_error(monkeypatch):
    with pytest.raises(ValueError, match="the pipeline config path is empty"):
        runtime.parse("test", ["--config", ""])
    monkeypatch.setenv(configs.CONFIG_ENV, " ")
    with pytest.raises(ValueError, match=r"path is empty \(--config or \$BVAE_PIPELINE_CONFIG\)"):
        runtime.parse("test", [])


def test_an_output_root_that_cannot_be_created_is_one_error_line(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    blocked.chmod(0o500)
    try:
        # (root ignores the folder's mode: then a path below /proc)
        writable = os.access(blocked, os.W_OK)
        root = "/proc/bvae-not-creatable" if writable else str(blocked / "out")
        args = runtime.argument_parser("test").parse_args(["--set", f"output_root={root}"])
        with pytest.raises(ValueError, match=r"output_root .*: cannot create its logs folder"):
            runtime.start(args, "test")
    finally:
        blocked.chmod(0o700)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--direct_running_mode=bogus"], "argument --direct_running_mode: invalid choice"),
        (["--direct_num_workers=abc"], "argument --direct_num_workers: invalid int value"),
    ],
)
def test_bad_beam_options_fail_before_the_run(tmp_path, options, message):
    from pipeline import beam_runner

    with pytest.raises(ValueError, match=f"the Beam options after --: .*{message}"):
        beam_runner.main(["--set", f"output_root={tmp_path / 'out'}", "--", *options])
    assert not (tmp_path / "out").exists()
    args = runtime.argument_parser("test").parse_args(
        ["--set", f"output_root={tmp_path}", "--set", f"beam_pipeline_args={json.dumps(options)}"]
    )
    with pytest.raises(ValueError, match=f"^beam_pipeline_args: Beam refuses .*{message}"):
        runtime.start(args, "test")
    runtime.check_beam_options(["--direct_num_workers=2", "--not_a_beam_option=1"], "fine")


def test_pipeline_jd_refuses_report_splits_without_test(tmp_path):
    from pipeline import jd

    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"evaluation.report_splits \[\] leaves out 'test'"):
        jd.main(["--set", f"output_root={out}", "--set", "evaluation.report_splits=[]"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--image", " "], "--image must not be empty"),
        (["--schema_path", ""], "--schema_path must not be empty"),
    ],
)
def test_kubeflow_runner_refuses_empty_flags(tmp_path, arguments, message, capsys):
    from pipeline import kubeflow_v2_runner

    base = ["--pipeline_root", "gs://b/p", "--serving_model_dir", "gs://b/s", "--image", "i:1"]
    with pytest.raises(SystemExit):
        kubeflow_v2_runner.main([*base, "--set", f"output_root={tmp_path}", *arguments])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "roots", "workers", "message"),
    [
        (["pipeline_name=My_Pipe"], ("gs://b/p", "gs://b/s"), 1, "pipeline_name 'My_Pipe'"),
        ([], ("gs:/b/p", "gs://b/s"), 1, "--pipeline_root 'gs:/b/p' is neither a URI"),
        ([], ("/mnt/p", "models"), 1, "--serving_model_dir 'models' is neither a URI"),
        (
            ["training.distribution_strategy=mirrored"],
            ("gs://b/p", "gs://b/s"),
            2,
            "--workers 2 trains on several replicas, but training.distribution_strategy",
        ),
    ],
)
def test_kubeflow_runner_checks_before_tfx_loads(overrides, roots, workers, message):
    from pipeline import kubeflow_v2_runner

    config = configs.load_config(overrides=overrides)
    vertex = {"project": "p", "region": "r", "workers": workers, "machine_type": "m"}
    with pytest.raises(ValueError, match=message):
        kubeflow_v2_runner.check_for_kubeflow(config, *roots, vertex)
    kubeflow_v2_runner.check_for_kubeflow(
        configs.load_config(), "gs://b/p", "/mnt/models", dict(vertex, workers=2)
    )


def test_roots_starting_with_a_tilde_are_in_the_home_folder():
    config = configs.load_config(overrides=["output_root=~/bvae-out", "metadata_path=~/m/m.db"])
    assert config.output_root == os.path.expanduser("~/bvae-out")
    assert config.resolved_metadata_path == os.path.expanduser("~/m/m.db")
    assert config.resolved_pipeline_root.startswith(os.path.expanduser("~/bvae-out/"))


def test_pipeline_jd_checks_its_input_before_creating_the_log_folder(tmp_path):
    from pipeline import jd

    out = tmp_path / "out"
    args = ["--set", f"output_root={out}", "--set", f"data.input_base={tmp_path / 'none.csv'}"]
    with pytest.raises(ValueError, match=r"^data\.input_base: "):
        jd.main(args)
    assert not out.exists()
