#!/usr/bin/env bash
# Run HERE (the CPU machine with package registries) before measuring on a lent GPU machine: the GPU
# image (Python 3.12, torch 2.11, triton 3.6) has no deepspeed and cannot download.  Fills .whl/
# (git-ignored), which the device tool carries (`carry: [".whl"]`); launch/gpu_measure.sh installs it.
# The versions are the lock's (constraints.txt), so pydantic and pydantic-core are the pair that the suite
# ran with.  Any Python 3 with pip will do (PYTHON, default python3); no project environment is needed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python=${PYTHON:-python3}
pin() {  # the lock's exact version of a package: NAME==VERSION
  local line
  line=$(grep -i -E "^$(echo "$1" | sed 's/[-_]/[-_]/g')==" constraints.txt) \
    || { echo "gpu_wheels.sh: constraints.txt has no pin for $1" >&2; exit 2; }
  echo "$line"
}
rm -rf .whl && mkdir .whl
"$python" -m pip wheel -q --disable-pip-version-check --no-deps -w .whl "$(pin deepspeed)"  # pure Python: builds its ops on the GPU
for package in hjson pydantic pydantic-core annotated-types typing-inspection typing-extensions; do
  "$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl "$(pin "$package")"
done
ls -l .whl
