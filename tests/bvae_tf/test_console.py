"""The entry points' console: progress lines by default, every record in the file."""

import logging
import os
import pathlib
import re
import subprocess
import sys
import time
import types

import pytest
from absl import logging as absl_logging

import bvae_tf
from bvae_tf import console

pytestmark = pytest.mark.unit

REPO = pathlib.Path(__file__).resolve().parents[2]


def _record(level, msg, *args, pathname="/site-packages/tfx/x.py", **extra):
    record = logging.LogRecord("absl", level, pathname, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.unraisablehook
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    sys.unraisablehook = hook
    logging.captureWarnings(False)


def test_service_console_is_timestamped_own_info_and_every_warning(capsys, restore_logging):
    console.setup(service=True)
    own = console._OWN_CODE[0] + "server.py"
    logger = logging.getLogger()
    for record in [
        _record(logging.INFO, "Serving version %d of model %s", 3, "bvae", pathname=own),
        _record(logging.INFO, "Fingerprint not found. Saved model loading will continue."),
        _record(logging.WARNING, "Could not lower this process's CPU priority"),
    ]:
        logger.handle(record)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    pid = os.getpid()
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d I {pid}\] Serving version 3 of model bvae", lines[0]
    )
    assert lines[1].endswith(f"W {pid}] Could not lower this process's CPU priority")
    assert not any("absl" in line for line in lines)


def test_service_log_file_gets_every_record_and_follows_a_rotation(
    tmp_path, capsys, restore_logging
):
    """A server's ``--log_file``: every INFO+ record (libraries' too) with process id,
    logger and source line; after the file is moved away (logrotate), a new one."""
    path = tmp_path / "logs" / "server.log"
    assert console.setup(path, service=True) == str(path)
    assert not path.exists()  # created with the first record
    logger = logging.getLogger()
    fingerprint = "Fingerprint not found. Saved model loading will continue."
    logger.handle(_record(logging.INFO, fingerprint))
    logger.handle(_record(logging.WARNING, "Could not lower this process's CPU priority"))
    lines = path.read_text().splitlines()
    pid = os.getpid()
    assert len(lines) == 2, lines
    assert re.fullmatch(
        rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d I {pid} absl x\.py:1\] Fingerprint not found\. "
        r"Saved model loading will continue\.",
        lines[0],
    ), lines[0]
    assert lines[1].endswith("Could not lower this process's CPU priority")
    # The console shows only the warning (the service filter), as without a file.
    assert len(capsys.readouterr().err.splitlines()) == 1
    path.rename(tmp_path / "logs" / "server.log.1")
    logger.handle(_record(logging.WARNING, "after the rotation"))
    assert path.read_text().splitlines()[-1].endswith("after the rotation")
    assert "after the rotation" not in (tmp_path / "logs" / "server.log.1").read_text()


def test_a_service_log_file_that_cannot_be_reopened_does_not_raise(
    tmp_path, capsys, restore_logging
):
    """Rotated to a path that cannot be opened (here: a folder): the record is a
    "Logging error" on stderr, the caller goes on, and the file is used again once
    it can be."""
    path = tmp_path / "server.log"
    console.setup(path, service=True, open_now=True)
    assert path.read_text().endswith(f"Logging every INFO+ record to {path}\n")
    path.rename(tmp_path / "server.log.1")
    path.mkdir()
    logging.getLogger().handle(_record(logging.WARNING, "while the path is a folder"))
    assert "--- Logging error ---" in capsys.readouterr().err
    path.rmdir()
    logging.getLogger().handle(_record(logging.WARNING, "after"))
    assert path.read_text().splitlines()[-1].endswith("] after")


@pytest.mark.parametrize(
    "name, error",
    [("", IsADirectoryError), ("/dev/full", OSError), ("/dev/null/x.log", NotADirectoryError)],
)
def test_open_now_raises_before_anything_is_set_up(tmp_path, restore_logging, name, error):
    handlers = list(logging.getLogger().handlers)
    with pytest.raises(error):
        console.setup(name or tmp_path, service=True, open_now=True)
    assert logging.getLogger().handlers == handlers


def test_console_shows_progress_own_warnings_and_errors_file_gets_all(
    tmp_path, capsys, restore_logging
):
    log_file = tmp_path / "logs" / "run.log"
    assert console.setup(log_file) == str(log_file)
    own = console._OWN_CODE[0] + "trainer.py"
    logger = logging.getLogger()
    for record in [
        _record(logging.INFO, "Component %s is running.", "Transform"),
        _record(logging.INFO, "executor_specs {\n  key: 'Transform'\n}"),
        _record(logging.WARNING, "ArtifactQuery.property_predicate is not supported."),
        _record(logging.INFO, "epoch %d: loss %.3f", 1, 2.5, pathname=own, console=True),
        _record(logging.INFO, "epoch %d: loss %.3f", 2, 2.4, pathname=own, console=False),
        _record(logging.WARNING, "split %r is empty", "eval", pathname=own),
        _record(logging.ERROR, "executor failed"),
        # TFX's announcement of the failure the runner reports: the file only.
        _record(logging.ERROR, "Execution %d failed.", 12, pathname="/tfx/portable/launcher.py"),
        _record(logging.INFO, "node %s is finished.", "Transform"),
    ]:
        logger.handle(record)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 5, err
    assert err[0].endswith("] Transform ...")
    assert err[1] == "epoch 1: loss 2.500"
    assert err[2] == "WARNING: split 'eval' is empty"
    assert err[3] == "ERROR: executor failed"
    assert "] Transform done (" in err[4]
    text = log_file.read_text()
    for expected in (
        "executor_specs",
        "property_predicate",
        "epoch 2: loss 2.400",
        "Execution 12 failed.",
    ):
        assert expected in text


def test_an_errors_traceback_goes_to_the_log_file_not_the_console(
    tmp_path, capsys, restore_logging
):
    log_file = tmp_path / "run.log"
    console.setup(log_file)
    try:
        raise ValueError("a bad record")
    except ValueError:
        logging.getLogger("apache_beam.runners").exception("the step failed")
    err = capsys.readouterr().err
    assert err == f"ERROR: the step failed (traceback in {log_file})\n"
    text = log_file.read_text()
    assert "Traceback" in text and "ValueError: a bad record" in text
    # Without a log file (or with --verbose) the console keeps it.
    console.setup()
    try:
        raise ValueError("a bad record")
    except ValueError:
        logging.getLogger("apache_beam.runners").exception("the step failed")
    err = capsys.readouterr().err
    assert err.startswith("ERROR: the step failed\nTraceback") and "a bad record" in err


def test_verbose_console_shows_info_and_absl_records_reach_the_file(
    tmp_path, capsys, restore_logging
):
    log_file = tmp_path / "run.log"
    console.setup(log_file, verbose=True)
    absl_logging.info("Using deployment config: %s", "abc")
    assert "Using deployment config: abc" in capsys.readouterr().err
    assert "Using deployment config: abc" in log_file.read_text()


def test_tensorflow_shutdown_noise_goes_to_the_file_other_errors_stay(tmp_path, restore_logging):
    log_file = tmp_path / "run.log"
    console.setup(log_file)
    passed_on = []
    hook = console._quiet_unraisable(passed_on.append)

    class AtomicFunction:
        pass

    def unraisable(obj):
        return types.SimpleNamespace(object=obj, exc_value=RuntimeError("gone"))

    hook(unraisable(AtomicFunction()))
    assert passed_on == []
    assert "ignored at shutdown: gone" in log_file.read_text()
    other = unraisable(object())
    hook(other)
    assert passed_on == [other]
    assert sys.unraisablehook is not sys.__unraisablehook__


def test_shutdown_hook_stays_silent_when_logging_is_torn_down(monkeypatch, capsys):
    """At interpreter shutdown module globals are None; the hook must not fail."""
    passed_on = []
    hook = console._quiet_unraisable(passed_on.append)

    class AtomicFunction:
        pass

    monkeypatch.setattr(bvae_tf, "logging", None)
    hook(types.SimpleNamespace(object=AtomicFunction(), exc_value=RuntimeError("gone")))
    assert passed_on == []
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("quieted", [True, False])
def test_processes_a_quieted_command_starts_drop_only_the_shutdown_noise(quieted):
    """Beam's multi-process workers print to the console's stderr: importing bvae_tf
    there (their DoFns import it) installs the hook when the command was quieted."""
    code = (
        "import bvae_tf\n"
        "class AtomicFunction:\n    def __del__(self): raise TypeError('tf noise')\n"
        "class Other:\n    def __del__(self): raise TypeError('a real one')\n"
        "a = AtomicFunction(); del a\nb = Other(); del b\n"
    )
    env = {k: v for k, v in os.environ.items() if k != bvae_tf.QUIET_SHUTDOWN_ENV}
    if quieted:
        env[bvae_tf.QUIET_SHUTDOWN_ENV] = "1"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "a real one" in done.stderr
    assert ("tf noise" in done.stderr) is not quieted


def test_quiet_cli_passes_the_quieting_to_the_processes_it_starts(monkeypatch):
    monkeypatch.delenv(bvae_tf.QUIET_SHUTDOWN_ENV, raising=False)
    monkeypatch.setenv("PYTHONWARNINGS", "")
    bvae_tf.quiet_cli()
    assert os.environ[bvae_tf.QUIET_SHUTDOWN_ENV] == "1"


# The data check is the hardest case: its package imports TensorFlow before the module
# itself runs (bvae_tf quiets any `python -m` of the project while packages load).
@pytest.mark.parametrize("module", ["pipeline.data_check"])
def test_entry_points_start_quietly_without_the_makefiles_environment(module):
    env = {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")
    }
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage:")
    assert done.stderr == ""


def test_log_files_of_runs_started_in_the_same_second_differ(monkeypatch, tmp_path):
    epoch = time.gmtime(0)
    monkeypatch.setattr(console.time, "gmtime", lambda *_: epoch)
    monkeypatch.setattr(console.os, "getpid", lambda: 101)
    first = console.log_file_path(tmp_path, "experiment")
    monkeypatch.setattr(console.os, "getpid", lambda: 102)
    second = console.log_file_path(tmp_path, "experiment")
    assert first != second
    assert first == str(tmp_path / "logs" / "experiment-19700101-000000-101.log")
