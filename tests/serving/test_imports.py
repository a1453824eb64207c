"""``serving`` runs without the pipeline's stack: importing it loads neither TFX nor Beam.

The client and the local server are deployed where only TensorFlow and the TF Serving
APIs are installed, so no module of ``serving`` may pull in ``tfx`` or
``apache_beam``, directly or through ``bvae_tf``. Checked in a fresh interpreter:
the test process itself has imported both long before.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
_HEAVY = ("tfx", "apache_beam")
_CHECK = f"""
import importlib, pkgutil, sys

import serving.client
import serving.server
import serving.supervisor

for module in pkgutil.iter_modules(serving.__path__):
    importlib.import_module("serving." + module.name)
loaded = sorted(name for name in sys.modules if name.split(".")[0] in {_HEAVY!r})
print("loaded:", loaded)
sys.exit(1 if loaded else 0)
"""


def test_serving_imports_neither_tfx_nor_apache_beam():
    result = subprocess.run(
        [sys.executable, "-c", _CHECK],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (
        f"importing serving loaded {_HEAVY} (find the chain with python -X importtime):\n"
        f"{result.stdout}{result.stderr[-4000:]}"
    )
