"""The import rules of docs/ARCHITECTURE.md: each layer imports only the layers below.

``bvae_tf`` <- ``serving`` and ``components`` <- ``pipeline`` <- ``benchmarks``;
``tests`` may import anything, nothing imports ``tests``.
"""

import ast
import pathlib

import pytest

pytestmark = pytest.mark.unit

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("bvae_tf", "serving", "components", "pipeline", "benchmarks", "tests")
#: Project packages each package may import (besides itself).
ALLOWED = {
    "bvae_tf": set(),
    "serving": {"bvae_tf"},
    "components": {"bvae_tf"},
    "pipeline": {"bvae_tf", "components"},
    "benchmarks": {"bvae_tf", "serving", "components", "pipeline"},
}


def _imported_packages(path: pathlib.Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names)
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_the_layers_below_it(package):
    wrong = {}
    for path in sorted((REPO / package).rglob("*.py")):
        extra = _imported_packages(path) - ALLOWED[package] - {package}
        if extra:
            wrong[str(path.relative_to(REPO))] = sorted(extra)
    assert not wrong, wrong


def test_the_check_sees_imports():
    # The pipeline's runners import components and bvae_tf: the parser finds them.
    assert {"bvae_tf", "pipeline"} <= _imported_packages(REPO / "pipeline" / "local_runner.py")
