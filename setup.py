"""Install uer_ds (with the sources in kernels/src/ as the package uer_ds.kernels).

kernels/ itself has no __init__.py: a top-level `kernels` importable from the repository root would
shadow PyPI's `kernels` (Hugging Face's kernel hub, which transformers 5 imports) whenever Python runs
from the checkout (`python -m pytest`, setuptools' egg_info).  tests/test_import_names.py keeps it so.

Set-up is locked: launch/setup installs from constraints.txt (exact versions the suite passed with),
the CPU build of torch first, so pip never pulls a CUDA build of several GB.  The ranges below are
what a plain `pip install` may choose; each lower bound is a version the suite was run with
(constraints-floor.txt holds that run's set), and there is no upper bound without a known break
(`launch/setup --upgrade` is how a new release gets tried).
"""
from pathlib import Path

from setuptools import Extension, find_packages, setup

ROOT = Path(__file__).parent

packages = find_packages(include=["uer_ds", "uer_ds.*"]) + ["uer_ds.kernels"]

setup(
    name="uer_ds",
    version="0.1.0",
    description="Pre-training and fine-tuning toolkit in the line of UER-py, rebuilt on DeepSpeed",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=packages,
    package_dir={"uer_ds.kernels": "kernels/src"},
    package_data={"uer_ds": ["model_configs/*/*.json"], "uer_ds.kernels": ["*.json"]},
    # Lower bounds: the floor lock (constraints-floor.txt, `launch/setup --floor`) ran the whole suite with
    # each of them; constraints.txt holds the newest set that passed.  No upper bounds: none is known to
    # break (a release that does gets one here, with the reason, when `launch/setup --upgrade` finds it).
    install_requires=[
        "torch>=2.13.0",  # the CPU build on these machines; the GPU kernels were also measured with 2.11
        "deepspeed>=0.19.8",  # 0.19.0 imports triton at import time (no CPU interpreter then) and its ZeRO-3/pipeline losses differ
        "triton>=3.6.0",  # 3.6: the GPU image's; its CPU interpreter needs numpy < 2.4
        "sentencepiece>=0.2.2",  # 0.2.1 and older: no immutable_proto pieces (offsets)
        "safetensors>=0.5.3",  # 0.4.3 cannot read a file of metadata only (extra.safetensors)
        "numpy>=1.26.0",
        "tensorboard>=2.14.0",
        "tqdm>=4.66.0",
        "tokenizers>=0.22.0",  # uer-ds build-vocab --kind wordpiece
        "jieba>=0.42.1",  # --tokenizer word and knowledge masking: Chinese word segmentation
    ],
    extras_require={
        "test": [
            "pytest>=8.0.0",
            "pytest-timeout>=2.3.1",  # a hung test fails by itself instead of stalling the whole run
            "pytest-xdist>=3.6.1",  # launch/test.sh runs the suite on two workers (the CI machine's two cores)
            "transformers>=4.57.1",  # the numerics references; 5.x also brings PyPI's `kernels`
            "seqeval>=1.2.2",
            "hypothesis>=6.100.0",
            "matplotlib>=3.8.0",
            "scikit-learn>=1.4.0",  # reference for the fine-tuning metrics
            "onnx>=1.16.0",  # the ONNX export test (CPU-only onnxruntime wheel; no CUDA torch)
            "onnxruntime>=1.18.0",
            "fastapi>=0.165.0",  # the `uer-ds serve` tests (a real uvicorn process, a real HTTP client)
            "uvicorn>=0.55.0",
            "mkdocs>=1.6.1",  # tests/docs/test_site.py builds the documentation site strictly (mkdocs.yml)
            "mkdocs-material>=9.8.1",
            "mkdocstrings-python>=2.0.11",  # docs/api.md: the Python API from the docstrings
            "captum>=0.9.0",  # the `uer-ds analyse` tests (integrated gradients, confident learning)
            "cleanlab>=2.9.0",
        ],
        "bench": ["matplotlib>=3.8.0"],
        "plot": ["matplotlib>=3.8.0"],  # uer-ds plot
        "onnx": ["onnx>=1.16.0", "onnxruntime>=1.18.0"],  # uer-ds export onnx
        # uer-ds serve: FastAPI (its OpenAPI page, JSON errors) on uvicorn (graceful SIGTERM shutdown); the lower
        # bounds are the versions the serve tests ran with
        "serve": ["fastapi>=0.165.0", "uvicorn>=0.55.0"],
        # the documentation site: `mkdocs build --strict` / `mkdocs serve` at the repository root
        "docs": ["mkdocs>=1.6.1", "mkdocs-material>=9.8.1", "mkdocstrings-python>=2.0.11"],
        # uer-ds analyse: integrated gradients (Captum), confident learning (cleanlab), nearest neighbours
        # (scikit-learn, which cleanlab needs anyway); the lower bounds are the versions the tests ran with
        "analysis": ["captum>=0.9.0", "cleanlab>=2.9.0", "scikit-learn>=1.4.0"],
    },
    entry_points={"console_scripts": ["uer-ds=uer_ds.cli:main"]},
    # the preprocessing hot path (issue #3): plain CPython C API, no torch at build time
    ext_modules=[Extension("uer_ds.data._native", ["uer_ds/data/_native.c"], extra_compile_args=["-O3", "-std=c11"])],
)
