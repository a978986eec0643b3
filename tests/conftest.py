"""Shared pytest setup for the whole suite.

- ``testdata_dir()`` / the ``testdata`` fixture: the shared test corpus in
  ``../shared/testdata`` beside the repository (RFC 4475 / RFC 5118 messages).
  A user's clone has no ``../shared``: tests that need it skip with a reason.
- Markers ``integration``, ``needs_sipp``, ``needs_baresip``, ``needs_sox``:
  tests carrying them skip with a clear reason when the tool is missing, except
  under CI (``CI=true``) or ``PBXD_REQUIRE_TOOLS=1`` where ``scripts/test`` has
  installed them, so a missing tool is an error there, not a silent skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

TOOLS = {"needs_sipp": "sipp", "needs_baresip": "baresip", "needs_sox": "sox"}
TOOL_PACKAGES = {"sipp": "sip-tester", "baresip": "baresip", "sox": "sox"}


def testdata_dir() -> Path | None:
    """``../shared/testdata`` relative to the repository root, or None when absent.

    ``PBXD_TESTDATA`` overrides the location.
    """
    override = os.environ.get("PBXD_TESTDATA")
    path = Path(override) if override else REPO_ROOT.parent / "shared" / "testdata"
    return path if path.is_dir() else None


testdata_dir.__test__ = False  # not a test, despite the name


def sip_corpus() -> list[bytes]:
    """Every message of :mod:`tests.sipmessages`, then the RFC 4475 and RFC 5118 torture
    messages when the shared corpus is there (the seeds of the parser equivalence and fuzz
    tests)."""
    from tests import sipmessages

    seeds = list(sipmessages.ALL.values())
    root = testdata_dir()
    if root is not None:
        for folder in ("rfc4475", "rfc5118"):
            seeds += [p.read_bytes() for p in sorted(Path(root, folder).glob("*.sip"))]
    return seeds


@pytest.fixture
def testdata() -> Path:
    """The shared test corpus directory; skips the test when it is absent."""
    path = testdata_dir()
    if path is None:
        pytest.skip(
            f"test corpus not found: {REPO_ROOT.parent / 'shared' / 'testdata'} "
            "(set PBXD_TESTDATA to its location)"
        )
    return path


def tools_required() -> bool:
    """True where a missing SIP tool must fail the run rather than skip (CI)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or bool(
        os.environ.get("PBXD_REQUIRE_TOOLS")
    )


def pytest_configure(config: pytest.Config) -> None:
    for marker, tool in TOOLS.items():
        config.addinivalue_line(
            "markers", f"{marker}: needs the `{tool}` program (Debian: {TOOL_PACKAGES[tool]})"
        )
    config.addinivalue_line(
        "markers", "allow_traceback: the PbxServer fixture tolerates tracebacks in the log"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, tool in TOOLS.items():
        if item.get_closest_marker(marker) is None or shutil.which(tool):
            continue
        message = (
            f"`{tool}` is not installed (Debian package {TOOL_PACKAGES[tool]}; "
            "./scripts/test installs it)"
        )
        if tools_required():
            pytest.fail(message + " and CI requires it", pytrace=False)
        pytest.skip(message)
