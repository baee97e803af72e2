#!/usr/bin/env bash
# README command 2 (and what .ci/run calls): set up .venv from constraints.txt (launch/setup), then run the
# test suite.  UER_DS_VENV / UER_DS_CONSTRAINTS choose another environment and lock (launch/setup).
# Extra arguments go to pytest, e.g. `./launch/test.sh tests/test_config.py -x`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/launch/setup"
cd "$root"
venv="${UER_DS_VENV:-$root/.venv}"
export DS_ACCELERATOR=cpu PATH="$venv/bin:$PATH"  # the venv's tools (ninja for DeepSpeed's JIT ops) first
# two workers (pytest-xdist), a test file each at a time; one torch thread per worker (tests/conftest.py).
# UER_DS_TEST_WORKERS=0 runs in this process only.
exec "$venv/bin/python" -m pytest -n "${UER_DS_TEST_WORKERS:-2}" --dist loadfile "$@"
