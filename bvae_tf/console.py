"""Console output of the command-line entry points: short by default, full in a file.

TFX, Beam and TensorFlow log thousands of INFO lines (whole protobuf dumps) and
dozens of known-harmless warnings per run. :func:`setup` routes Python logging (absl,
``tensorflow``, ``apache_beam``, ``py.warnings``) so that:

* the **console** (stderr) shows one progress line per TFX component (from the
  orchestrator's "Component X is running/finished" records), the records the
  project marks for it (``extra={"console": True}``, e.g. the trainer's epoch
  lines), warnings raised by the project's own code, and errors from anywhere;
  ``verbose=True`` shows every INFO record instead;
* the **log file**, when given, receives every record at INFO and above, with time,
  logger and source line, whatever the console shows.

It also keeps TensorFlow's C++ start-up messages off (``TF_CPP_MIN_LOG_LEVEL=3``
unless the user set a level, :func:`bvae_tf.quiet_cli`) and sends the interpreter's
"Exception ignored in ... AtomicFunction.__del__" shutdown noise to the log file.
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
import os
import pathlib
import re
import sys
import time

import bvae_tf

#: Source folders whose warnings are shown on the console (the project's packages).
_OWN_CODE = tuple(
    str(pathlib.Path(__file__).resolve().parents[1] / name) + os.sep
    for name in ("bvae_tf", "components", "pipeline", "serving", "benchmarks")
)
_COMPONENT = re.compile(r"^(?:Component|node) (\S+) is (running|finished)\.$", re.IGNORECASE)
#: Attribute a record carries (``extra={"console": True}``) to be shown by default.
CONSOLE = "console"
_FILE_FORMAT = "%(asctime)s %(levelname).1s %(name)s %(filename)s:%(lineno)d] %(message)s"
_LOGGERS_WITH_OWN_HANDLERS = ("tensorflow", "absl")
#: Error records that only announce the error the entry point then reports itself in
#: one line (TFX's launcher: "Execution 12 failed." before the executor's exception
#: propagates): (source file name, message format). Kept in the log file.
_ANNOUNCEMENTS = frozenset({("launcher.py", "Execution %d failed.")})


class _ConsoleFilter(logging.Filter):
    """Decides what reaches the console; reformats the component progress records."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose
        self.started: dict[str, float] = {}
        self.t0 = time.monotonic()

    def filter(self, record: logging.LogRecord) -> bool:
        progress = self._progress(record)
        if progress is not None:
            record.console_text = progress
            return True
        record.console_text = None
        if not self.verbose and (os.path.basename(record.pathname), record.msg) in _ANNOUNCEMENTS:
            return False
        if self.verbose or record.levelno >= logging.ERROR:
            return True
        if getattr(record, CONSOLE, False):
            return True
        return record.levelno >= logging.WARNING and record.pathname.startswith(_OWN_CODE)

    def _progress(self, record: logging.LogRecord) -> str | None:
        if not isinstance(record.msg, str) or " is " not in record.msg:
            return None
        match = _COMPONENT.match(record.getMessage())
        if match is None:
            return None
        node, state = match.groups()
        now = time.monotonic()
        clock = f"[{now - self.t0:6.0f}s]"
        if state == "running":
            self.started[node] = now
            return f"{clock} {node} ..."
        seconds = now - self.started.pop(node, now)
        return f"{clock} {node} done ({seconds:.1f} s)"


class _ServiceFilter(logging.Filter):
    """A long-running service's console: the project's own INFO records and every
    warning and error (everything with ``verbose``)."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        return (
            self.verbose
            or record.levelno >= logging.WARNING
            or (record.levelno >= logging.INFO and record.pathname.startswith(_OWN_CODE))
        )


#: A service's console lines: UTC time, level letter, process id, message.
_SERVICE_FORMAT = "%(asctime)s %(levelname).1s %(process)d] %(message)s"
#: A service's log file lines: the console's, with the logger and source line (a
#: server's processes share one file).
_SERVICE_FILE_FORMAT = (
    "%(asctime)s %(levelname).1s %(process)d %(name)s %(filename)s:%(lineno)d] %(message)s"
)


class _ConsoleFormatter(logging.Formatter):
    """An error's traceback goes to the console only where no log file keeps it
    (``log_file`` ``None``) or with ``verbose``; otherwise the console names the file."""

    def __init__(self, log_file: str | None = None, verbose: bool = False):
        super().__init__()
        self.log_file = log_file
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        text = getattr(record, "console_text", None)
        if text is not None:
            return text
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            message = f"{record.levelname}: {message}"
        if record.exc_info and record.levelno >= logging.ERROR:
            if self.verbose or self.log_file is None:
                message = f"{message}\n{self.formatException(record.exc_info)}"
            else:
                message = f"{message} (traceback in {self.log_file})"
        return message


class _CreatesItsFolder:
    """Mixin of a ``logging.FileHandler``: its folder is created when the file opens."""

    def _open(self):
        folder = os.path.dirname(self.baseFilename)
        try:
            os.makedirs(folder, exist_ok=True)
        except FileExistsError:  # a part of the path is a file: say so
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), folder) from None
        return super()._open()


class _LazyFileHandler(_CreatesItsFolder, logging.FileHandler):
    """A file handler that creates its folder and file with the first record (a run
    that fails on its arguments leaves nothing behind)."""


class _ServiceFileHandler(_CreatesItsFolder, logging.handlers.WatchedFileHandler):
    """A long-running server's log file: appended to, created (with its folder) with
    the first record, and reopened when it is moved or removed, so that ``logrotate``
    (without ``copytruncate``) can rotate it (``logging.handlers.WatchedFileHandler``).

    A file that cannot be reopened (rotated to a path this process may not write) is
    reported as any handler's error (``logging.Handler.handleError``: a "Logging
    error" on stderr) and tried again with the next record; it never raises into the
    code that logged, which Python 3.11's ``WatchedFileHandler.emit`` lets it do."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.reopenIfNeeded()
        except Exception:
            self.handleError(record)
            return
        logging.FileHandler.emit(self, record)

    def write_now(self, message: str) -> None:
        """Opens the file and writes ``message`` as an INFO record now.

        Raises:
          OSError: if the file cannot be opened or written (a folder, no space left).
        """
        caller = sys._getframe(1)  # the record names the line that asked for it
        record = logging.LogRecord(
            __name__,
            logging.INFO,
            caller.f_code.co_filename,
            caller.f_lineno,
            message,
            None,
            None,
            func=caller.f_code.co_name,
        )
        self.acquire()
        try:
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(self.format(record) + self.terminator)
            self.stream.flush()
        finally:
            self.release()


#: The shutdown-noise hook (defined in ``bvae_tf``: Beam workers install it at import).
_quiet_unraisable = bvae_tf._quiet_unraisable


def _prints_to_terminal(handler: logging.Handler) -> bool:
    """A handler that others installed to print records (``logging.basicConfig``'s,
    absl's); test-framework capture handlers are left alone."""
    if type(handler).__name__ == "ABSLHandler":
        return True
    return type(handler) is logging.StreamHandler and handler.stream in (
        sys.stderr,
        sys.stdout,
        sys.__stderr__,
        sys.__stdout__,
    )


def setup(
    log_file: str | os.PathLike | None = None,
    *,
    verbose: bool = False,
    service: bool = False,
    open_now: bool = False,
) -> str | None:
    """Routes logging of a command-line run (module docstring). Call it first in
    ``main()``; calling it again replaces the previous setup.

    Args:
      log_file: file receiving every INFO+ record (it and its folders are created
        with the first record; appended to); ``None``: no file. With ``service``
        its lines also carry the process id, and it is reopened when moved
        (log rotation).
      verbose: show every INFO record on the console as well.
      service: a long-running server's console instead: one timestamped line
        (``<UTC time> <level letter> <pid>] message``) per INFO record of the
        project's own code and per warning or error from anywhere.
      open_now: with ``service`` and ``log_file``: open the file and write its first
        record (where logging to it starts) now, so that a file that cannot be
        written is an error at start, raised before anything else is set up.

    Returns:
      The log file's path as a string, or ``None``.

    Raises:
      OSError: with ``open_now``, if the log file cannot be opened or written.
    """
    file_handler = None
    if log_file is not None:
        if service:
            file_handler = _ServiceFileHandler(str(log_file), encoding="utf-8", delay=True)
            file_formatter = logging.Formatter(_SERVICE_FILE_FORMAT, "%Y-%m-%d %H:%M:%S")
            file_formatter.converter = time.gmtime
            file_handler.setFormatter(file_formatter)
            if open_now:
                try:
                    file_handler.write_now(f"Logging every INFO+ record to {log_file}")
                except OSError:
                    file_handler.close()
                    raise
        else:
            file_handler = _LazyFileHandler(str(log_file), encoding="utf-8", delay=True)
            file_handler.setFormatter(logging.Formatter(_FILE_FORMAT))
        file_handler.setLevel(logging.INFO)
        file_handler._bvae_console = True
    if not verbose:
        bvae_tf.quiet_cli()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_bvae_console", False) or _prints_to_terminal(handler):
            root.removeHandler(handler)
    for name in _LOGGERS_WITH_OWN_HANDLERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    # A level an earlier caller set on a library's logger (e.g. pipeline.data_check
    # silencing Beam) would keep its records out of the log file.
    for name in ("apache_beam", "tfx"):
        logging.getLogger(name).setLevel(logging.NOTSET)
    root.setLevel(logging.INFO)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    logging.getLogger("absl").setLevel(logging.INFO)

    console = logging.StreamHandler(sys.stderr)
    if service:
        console.addFilter(_ServiceFilter(verbose))
        formatter = logging.Formatter(_SERVICE_FORMAT, "%Y-%m-%d %H:%M:%S")
        formatter.converter = time.gmtime
        console.setFormatter(formatter)
    else:
        console.addFilter(_ConsoleFilter(verbose))
        console.setFormatter(
            _ConsoleFormatter(None if log_file is None else str(log_file), verbose)
        )
    console._bvae_console = True
    root.addHandler(console)
    if file_handler is not None:
        root.addHandler(file_handler)
    logging.captureWarnings(True)  # Python warnings: to the file, not the console
    sys.unraisablehook = _quiet_unraisable(sys.__unraisablehook__)
    return None if log_file is None else str(log_file)


def log_file_path(output_root: str | os.PathLike, entry_point: str) -> str:
    """``<output_root>/logs/<entry_point>-<UTC time>-<pid>.log``.

    The process id keeps runs started in the same second under one ``output_root``
    (e.g. two ``bvae_tf.experiment`` runs launched together) in separate files.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return os.path.join(str(output_root), "logs", f"{entry_point}-{stamp}-{os.getpid()}.log")
