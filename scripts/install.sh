#!/usr/bin/env bash
# Creates .venv and installs the pinned TFX 1.16 stack, the dev tools and the
# project itself. Idempotent: does nothing when .venv already matches the locks.
#
# Why --no-deps (and --ignore-requires-python for pip): the `tfx` 1.16 wheel declares
# Requires-Python <3.11 although the whole stack runs on CPython 3.11 (every
# native wheel exists for cp311). requirements/lock.txt was resolved once for
# py3.10 markers (see its header) and is installed exactly, without resolving.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
STAMP="$VENV/.bvae-install-stamp"
# One install at a time: two targets started together (`make demo` and `make test` in
# two terminals) would otherwise install into the same .venv at once; the second waits
# for the first, then finds the stamp written.
if command -v flock > /dev/null; then
  exec 9> "$VENV.install-lock"
  if ! flock -n 9; then
    echo "install: another install into $VENV is running; waiting for it"
    flock 9
  fi
fi
want=$(cat requirements/lock.txt requirements/dev.lock.txt pyproject.toml "$0" | sha256sum | cut -d' ' -f1)

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" && -x "$VENV/bin/python" ]]; then
  echo "install: $VENV matches the locks, nothing to do"
  exit 0
fi

ver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ "$ver" != "3.11" ]]; then
  echo "install: need Python 3.11 (found $ver at $PYTHON); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "install: creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# pip's own output (index warnings and the like) goes to a log; shown when pip fails.
LOG="$VENV/install.log"
: > "$LOG"
pip_quietly() {
  if ! "${PIP[@]}" "$@" >> "$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    echo "install: pip install $* failed (full output: $LOG)" >&2
    exit 1
  fi
}

# uv installs the exact locks in parallel: ~30 s from nothing against ~2.5 min with pip.
# Where uv cannot be had (a mirror without it), pip installs the same files.
# Both write the .pyc files (uv: --compile-bytecode; pip does by default): where
# PYTHONDONTWRITEBYTECODE is set, Python would otherwise compile TensorFlow's ~3,500
# modules again in every process (import user time 15 s -> 5.6 s on 2 busy cores).
UV_VERSION=0.13.9
if "${PIP[@]}" install "uv==$UV_VERSION" >> "$LOG" 2>&1; then
  echo "install: installing requirements/lock.txt with uv $UV_VERSION (TFX 1.16 stack, under a minute from nothing)"
  if ! "$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --no-deps --compile-bytecode \
      -r requirements/lock.txt -r requirements/dev.lock.txt >> "$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    echo "install: uv pip install of the locks failed (full output: $LOG)" >&2
    exit 1
  fi
else
  echo "install: uv unavailable; installing requirements/lock.txt with pip (about 2.5 minutes from nothing)"
  pip_quietly install --ignore-requires-python --no-deps -r requirements/lock.txt
  pip_quietly install --no-deps -r requirements/dev.lock.txt
fi
echo "install: installing the project (editable, --no-deps)"
pip_quietly install --no-deps --no-build-isolation -e .

echo "install: checking declared requirements (pip check)"
if ! "$VENV/bin/python" -m pip check >> "$LOG" 2>&1; then
  tail -n 20 "$LOG" >&2
  echo "install: installed packages break each other's declared requirements (full output: $LOG)" >&2
  exit 1
fi
echo "install: checking imports"
TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" -W ignore - <<'PY'
import bvae_tf  # sets TF_USE_LEGACY_KERAS=1 before TensorFlow is imported
import apache_beam, ml_metadata, tensorflow as tf, tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
import tensorflow_serving.apis.prediction_service_pb2_grpc
import tensorflow_transform as tft, tfx
import components, pipeline, serving
assert tf.keras.__name__.startswith("tf_keras"), f"Keras 2 expected, got {tf.keras.__name__}"
from google.protobuf.internal import api_implementation
# The pure-Python protobuf runtime makes every request, tf.Example and metadata call slow.
assert api_implementation.Type() != "python", "protobuf runs as pure Python; install protobuf>=4.25"
print(f"install: ok -- tfx {tfx.__version__}, tensorflow {tf.__version__}, tfdv {tfdv.__version__}, "
      f"tfma {tfma.__version__}, tft {tft.__version__}, "
      f"beam {apache_beam.__version__}, protobuf {api_implementation.Type()}")
PY
echo "$want" > "$STAMP"
