#!/usr/bin/env bash
# Before every GPU call, HERE on the CPU machine: would launch/gpu_measure.sh work on the GPU image?
#
#   launch/gpu_preflight.sh        prints PREFLIGHT OK, or each check that would fail and exits 1
#
# It builds (once, kept in .venv-gpu; about 4 GB, ~3 minutes the first time) an environment like the GPU
# image: Python 3.12, torch 2.11.0 (PyPI's CUDA 13 build, the image's; it runs on the CPU here), triton
# 3.6.0, the image's transformers/tokenizers/safetensors/sentencepiece, numpy < 2.4 (triton 3.6's
# interpreter), no deepspeed, no jieba or seqeval (the image has neither).  Then, with that environment's
# python3 first on PATH, as the GPU call would:
#   1. .whl/ filled by launch/gpu_wheels.sh when missing or older than constraints.txt
#   2. both calls of gpu_measure.sh in dry mode: the wheels installed exactly as it installs them, the C
#      extension step, every command line checked (uer-ds commands parsed with UER_DS_PARSE_ONLY=1,
#      pytest collected, scripts compiled), the results packed: the file count and names of $OUT checked
#      against what comes back (8 files, 2 folders deep, [A-Za-z0-9._-])
#   3. imports of the modules the measurement runs (uer_ds, deepspeed, the Triton ops, the benchmarks)
#   4. the GPU tests collected (-m gpu), none erroring at import
#   5. every kernel variant the launchers use compiled for sm_90 under triton 3.6 (compile_check --quick)
#   6. what travels (tracked + untracked files + .whl) under the device tool's 64 MiB
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
env_dir="$root/.venv-gpu"
py312=${PYTHON312:-$(command -v python3.12 2>/dev/null || ls /root/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | head -1)}
failures=()
fail() { failures+=("$1"); echo "PREFLIGHT FAIL: $1"; }
ok() { echo "preflight ok: $1"; }

# the GPU image's versions (KINDS.md in the device tool's folder; 2026-11)
image_packages=(torch==2.11.0 triton==3.6.0 "numpy<2.4" transformers==5.17.0 tokenizers==0.23.2 safetensors==0.8.0
  sentencepiece==0.2.2 "setuptools<82" tensorboard tqdm ninja einops msgpack psutil py-cpuinfo packaging regex
  pyyaml pytest pytest-timeout pytest-xdist hypothesis scikit-learn matplotlib onnx==1.23.1 onnxruntime==1.30.0)
want="$(printf '%s\n' "${image_packages[@]}" | sha1sum | cut -d' ' -f1)"
if [ ! -f "$env_dir/.preflight" ] || [ "$(cat "$env_dir/.preflight")" != "$want" ]; then
  [ -n "$py312" ] && [ -x "$py312" ] || { echo "PREFLIGHT FAIL: no Python 3.12 here (set PYTHON312)"; exit 1; }
  echo "preflight: building $env_dir (the GPU image's versions; first time ~3 minutes)"
  rm -rf "$env_dir" && "$py312" -m venv "$env_dir" || exit 1
  "$env_dir/bin/pip" install -q --disable-pip-version-check "${image_packages[@]}" 2> >(grep -v "^WARNING: Location" >&2) \
    || { echo "PREFLIGHT FAIL: the GPU-image environment did not install"; exit 1; }
  echo "$want" > "$env_dir/.preflight"
fi
export PATH="$env_dir/bin:$PATH"
python3 -c "import sys, torch, triton; assert sys.version_info[:2] == (3, 12); print('preflight: python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__)" \
  || fail "the GPU-image environment's python3 is not Python 3.12 with torch and triton"

# 1. the wheels
if [ ! -d .whl ] || [ -z "$(ls .whl/*.whl 2>/dev/null)" ] || [ constraints.txt -nt .whl ]; then
  PYTHON="$root/.venv/bin/python" bash launch/gpu_wheels.sh > /tmp/preflight_wheels.txt 2>&1 \
    || PYTHON=python3 bash launch/gpu_wheels.sh > /tmp/preflight_wheels.txt 2>&1 \
    || fail "launch/gpu_wheels.sh failed: $(tail -2 /tmp/preflight_wheels.txt)"
fi
[ "$(ls .whl/*.whl 2>/dev/null | wc -l)" -ge 7 ] && ok "$(ls .whl/*.whl | wc -l) wheels in .whl/" || fail ".whl/ holds fewer than 7 wheels"

# 2. both calls, dry
site=$(mktemp -d /tmp/preflight_site.XXXX)
for call in first second; do
  out_dir=$(mktemp -d /tmp/preflight_out.XXXX)
  OUT="$out_dir" GPU_SITE="$site" bash launch/gpu_measure.sh dry "$call" > "/tmp/preflight_$call.txt" 2>&1
  rc=$?
  bad=$(grep "dry FAILED" "/tmp/preflight_$call.txt" | sort -u | wc -l)
  steps=$(grep "^== .*: dry" "/tmp/preflight_$call.txt" | sort -u | wc -l)
  if [ $rc != 0 ] || [ "$bad" != 0 ] || [ "$steps" = 0 ]; then
    fail "gpu_measure.sh $call (dry): exit $rc, $bad of $steps command lines fail: $(grep -A3 "dry FAILED" "/tmp/preflight_$call.txt" | head -8 | tr '\n' ' ')"
  else
    ok "gpu_measure.sh $call: all $steps command lines parse"
  fi
  files=$(find "$out_dir" -type f | wc -l)
  deep=$(find "$out_dir" -mindepth 3 -type f | wc -l)
  odd=$(find "$out_dir" -type f -printf '%f\n' | grep -c -v -E '^[A-Za-z0-9._-]+$')
  big=$(find "$out_dir" -type f -size +16M | wc -l)
  if [ "$files" -le 8 ] && [ "$deep" = 0 ] && [ "$odd" = 0 ] && [ "$big" = 0 ] && [ -f "$out_dir/gpu_$call.tar.gz" ]; then
    ok "\$OUT of $call: $files files ($(cd "$out_dir" && ls | tr '\n' ' '))"
  else
    fail "\$OUT of $call: $files files (at most 8 come back), $deep too deep, $odd oddly named, $big over 16 MiB"
  fi
  rm -rf "$out_dir"
done

# 3. imports, as the GPU call has them (the wheels in $site, the tree on PYTHONPATH)
PYTHONPATH="$root:$site" DS_ACCELERATOR=cpu python3 -c "
import deepspeed, uer_ds, uer_ds.cli, uer_ds.engine, uer_ds.engine.bench, uer_ds.recipes.bench_finetune, uer_ds.kernels.bench
import uer_ds.kernels, uer_ds.kernels.compile_check; uer_ds.kernels.load()  # the one door: every Triton op
from transformers import BertModel
print('deepspeed', deepspeed.__version__)" > /tmp/preflight_imports.txt 2>&1 \
  && ok "imports ($(tail -1 /tmp/preflight_imports.txt))" || fail "imports: $(tail -3 /tmp/preflight_imports.txt | tr '\n' ' ')"

# 4. the GPU tests collect (selected with -m gpu; an import error anywhere in the files is an error)
PYTHONPATH="$root:$site" DS_ACCELERATOR=cpu python3 -m pytest tests/kernels tests/engine/test_gpu_step.py -m gpu \
  --collect-only -q -p no:cacheprovider -o addopts= > /tmp/preflight_collect.txt 2>&1
collected=$(grep -c "::" /tmp/preflight_collect.txt)
if grep -q -E "^(ERROR|E  )|errors? during collection" /tmp/preflight_collect.txt || [ "$collected" -lt 10 ]; then
  fail "GPU tests: $collected collected; $(grep -E "ERROR|Error" /tmp/preflight_collect.txt | head -3 | tr '\n' ' ')"
else
  ok "$collected GPU tests collect"
fi

# 5. the kernels compile for sm_90 under this triton (no interpreter)
PYTHONPATH="$root:$site" env -u TRITON_INTERPRET timeout 900 python3 -m uer_ds.kernels.compile_check --quick \
  > /tmp/preflight_compile.txt 2>&1 \
  && ok "kernels compile for sm_90: $(tail -1 /tmp/preflight_compile.txt)" \
  || fail "compile_check --quick: $(tail -3 /tmp/preflight_compile.txt | tr '\n' ' ')"

# 6. what travels with the call
bytes=$( { git ls-files -z --cached --others --exclude-standard; find .whl -type f -print0; } \
  | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
if [ "$bytes" -lt $((60 * 1024 * 1024)) ]; then
  ok "the working tree and .whl travel: $((bytes / 1024 / 1024)) MiB of 64"
else
  fail "the working tree and .whl are $((bytes / 1024 / 1024)) MiB: over the device tool's 64 MiB (less a margin)"
fi
rm -rf "$site"

if [ ${#failures[@]} = 0 ]; then
  echo "PREFLIGHT OK"
else
  echo "PREFLIGHT FAILED: ${#failures[@]} check(s)"
  exit 1
fi
