"""The architecture is enforced, not just documented (docs/architecture.md).

``lint-imports`` checks the import-linter contracts in setup.cfg (the layers of
DESIGN.md section 2); ``ruff`` checks style and common bugs; ``mypy`` checks the
type hints (pyproject.toml [tool.mypy]).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> str | None:
    """The console script next to this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL
    )


def test_import_layers():
    lint_imports = _tool("lint-imports")
    if lint_imports is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    result = _run([lint_imports, "--no-cache"])
    assert result.returncode == 0, f"lint-imports failed:\n{result.stdout}\n{result.stderr}"


def test_ruff():
    ruff = _tool("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    result = _run([ruff, "check", "--no-cache", "pbxd", "tests"])
    assert result.returncode == 0, f"ruff check failed:\n{result.stdout}\n{result.stderr}"


def test_mypy():
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.skip("mypy is not installed (pip install -e '.[test]')")
    result = _run([sys.executable, "-m", "mypy", "pbxd"])
    assert result.returncode == 0, f"mypy failed:\n{result.stdout}\n{result.stderr}"
