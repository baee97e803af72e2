"""The C extension's tests again, against a build with AddressSanitizer and UBSan (tests/data/asan.sh)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def _asan_runtime() -> str:
    if shutil.which("gcc") is None:
        return ""
    out = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    return out if os.path.isabs(out) and os.path.exists(out) else ""


@pytest.mark.slow
@pytest.mark.skipif(not _asan_runtime(), reason="needs gcc with libasan (AddressSanitizer runtime)")
def test_native_extension_under_address_sanitizer():
    env = dict(os.environ, PYTHON=sys.executable)
    result = subprocess.run(["bash", str(ROOT / "tests" / "data" / "asan.sh")], capture_output=True, text=True, env=env,
                            timeout=600)
    tail = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, tail
    assert "passed" in result.stdout and "ERROR: AddressSanitizer" not in tail and "runtime error" not in tail
