"""No import name of ours shadows a PyPI package when Python runs from the checkout.

Python puts the working directory (`python -m pytest`, `python -c`, setuptools' egg_info step) and,
under pytest's default import mode, each test file's folder first on sys.path.  A module or a regular
package there with the name of an installed distribution's top-level package wins over it: our
top-level `kernels/` (then with an `__init__.py`) shadowed Hugging Face's `kernels`, which
transformers 5 imports, and turned the suite red on a fresh clone.  Folders without `__init__.py`
(`kernels/`, `corpora/`, `launch/`, `tests/`, `ds_configs/`) are at most namespace portions, which never
win over a regular package; these tests check that, and then the three commands of the original report.
"""
from __future__ import annotations

import importlib.metadata
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

# What the checkout may offer as top-level modules from its root: the package, and setup.py (which
# pip itself runs; no PyPI package of that name is ever installed beside us).
ROOT_MODULES = {"uer_ds", "setup"}


def _installed_top_levels() -> dict[str, list[str]]:
    """Top-level import names of the installed distributions other than uer_ds -> their distributions."""
    names = importlib.metadata.packages_distributions()
    return {name: dists for name, dists in names.items() if "uer_ds" not in dists and "uer-ds" not in dists}


def _sys_path_folders() -> list[Path]:
    """The checkout folders Python may put first on sys.path: the root and every folder holding tests."""
    folders = {ROOT} | {path.parent for path in (ROOT / "tests").rglob("*.py")}
    return sorted(folders)


def test_root_offers_only_the_package_as_a_top_level_module():
    found = {module.name for module in pkgutil.iter_modules([str(ROOT)])}
    assert found <= ROOT_MODULES, (f"{ROOT} offers top-level modules {sorted(found - ROOT_MODULES)}: "
                                   "move them into uer_ds (or a folder without __init__.py)")
    assert not (ROOT / "kernels" / "__init__.py").exists(), "kernels/__init__.py makes `kernels` shadow PyPI's"
    assert (ROOT / "kernels" / "src" / "__init__.py").exists()


def test_no_module_of_ours_has_the_name_of_an_installed_package():
    installed = _installed_top_levels()
    clashes = [f"{folder / name} shadows {'/'.join(installed[name])}"
               for folder in _sys_path_folders()
               for name in {module.name for module in pkgutil.iter_modules([str(folder)])}
               if name in installed]
    assert not clashes, "; ".join(clashes)


def test_installed_packages_win_over_our_top_level_folders():
    """Each top-level folder of ours whose name an installed package also has imports as the installed one."""
    installed = _installed_top_levels()
    names = sorted(path.name for path in ROOT.iterdir() if path.is_dir() and path.name in installed)
    if not names:
        pytest.skip("no installed package shares a name with a top-level folder (kernels comes with transformers 5)")
    probe = ("import importlib, sys\n"
             "for name in sys.argv[1:]:\n"
             "    module = importlib.import_module(name)\n"
             "    print(name, getattr(module, '__file__', None) or list(module.__path__))\n")
    out = subprocess.run([sys.executable, "-c", probe, *names], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        name, where = line.split(" ", 1)
        assert str(ROOT) + os.sep + name not in where, f"`import {name}` from {ROOT} takes our folder: {where}"


def _run(command: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONPATH"))}
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{' '.join(command)} in {cwd}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_transformers_imports_from_the_repository_root():
    pytest.importorskip("transformers")
    out = _run([sys.executable, "-c", "from transformers import BertModel; import transformers; "
                "print(transformers.__version__)"], ROOT).stdout
    assert out.strip()


@pytest.mark.slow
def test_hugging_face_numerics_run_from_the_repository_root():
    """`python -m pytest tests/models/test_hf_numerics.py` from the root, as the original report ran it."""
    pytest.importorskip("transformers")
    out = _run([sys.executable, "-m", "pytest", "tests/models/test_hf_numerics.py", "-q", "-p", "no:cacheprovider",
                "-p", "no:xdist", "-o", "addopts="], ROOT).stdout
    assert " passed" in out and "failed" not in out and "error" not in out.lower(), out[-2000:]


@pytest.mark.slow
def test_editable_install_without_build_isolation(tmp_path):
    """`pip install --no-build-isolation -e .` of a copy of the checkout, into a scratch environment that sees
    this one's packages (setuptools, and kernels' egg_info.writers entry point, which once failed)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    tree = tmp_path / "checkout"
    for relative in filter(None, listed):
        source = ROOT / relative
        if source.is_file():
            (tree / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tree / relative)
    env_dir = tmp_path / "env"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], tmp_path)
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    here = [p for p in sys.path if p.endswith("site-packages")]
    (site / "outer.pth").write_text("\n".join(here) + "\n")  # this environment's packages, pip included
    python = str(env_dir / "bin" / "python")
    _run([python, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps", "--disable-pip-version-check",
          "-e", "."], tree)
    probe = ("import importlib.util, uer_ds, uer_ds.kernels as k, uer_ds.data._native\n"
             "print(uer_ds.__file__); print(k.__file__)\n"
             "if importlib.util.find_spec('transformers'): from transformers import BertModel\n"
             "spec = importlib.util.find_spec('kernels'); print(spec and spec.origin)\n")
    out = _run([python, "-c", probe], tree).stdout.splitlines()
    assert out[0] == str(tree / "uer_ds" / "__init__.py")
    assert out[1] == str(tree / "kernels" / "src" / "__init__.py")
    assert not out[2].startswith(str(tree)), f"`import kernels` took the checkout's folder: {out[2]}"
