#!/usr/bin/env bash
# Build uer_ds.data._native with AddressSanitizer + UndefinedBehaviorSanitizer and run the C-facing
# tests (tests/data/test_native_tokenizer.py, the fuzz tests included) against that build.
# Usage: tests/data/asan.sh [extra pytest args]   (tests/data/test_asan.py runs it in CI)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
build="$(mktemp -d)"
trap 'rm -rf "$build"' EXIT
include="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
suffix="$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')"
gcc -shared -fPIC -std=c11 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
    -Wall -Wextra -Werror -I"$include" "$root/uer_ds/data/_native.c" -o "$build/_native$suffix"
export LD_PRELOAD="$(gcc -print-file-name=libasan.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"  # CPython's own allocations at exit are not ours
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
cd "$root"
exec "$python" - "$build/_native$suffix" "$@" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("uer_ds.data._native", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.modules["uer_ds.data._native"] = module  # every import of the extension gets the sanitized build
import pytest
import uer_ds.data.native
if uer_ds.data.native._native is not module:
    sys.exit("the sanitized build was not the one imported")
sys.exit(pytest.main(["-p", "no:cacheprovider", "tests/data/test_native_tokenizer.py",
                      "tests/data/test_preprocess.py", "-k", "not cli", *sys.argv[2:]]))
PY
