#!/usr/bin/env bash
# Run HERE (the CPU machine with package registries) before measuring on a lent GPU machine: the GPU
# image (Python 3.12, torch 2.11, triton 3.6) has no deepspeed and cannot download.  Fills .whl/
# (git-ignored), which the device tool carries (`carry: [".whl"]`); launch/gpu_measure.sh installs it.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rm -rf .whl && mkdir .whl
pip=("$root/.venv/bin/pip")
"${pip[@]}" wheel -q --no-deps -w .whl deepspeed==0.19.8          # pure Python: builds its ops on the GPU
for package in hjson pydantic pydantic-core annotated-types typing-inspection typing-extensions; do
  "${pip[@]}" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl "$package"
done
ls -l .whl
