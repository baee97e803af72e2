"""Install uer_ds (with the top-level kernels/ folder as the package uer_ds.kernels).

Install the CPU build of torch first (`pip install torch==2.13.0`; launch/setup does it): the range
below is satisfied by it, so pip never pulls a CUDA build of several GB.
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
    package_dir={"uer_ds.kernels": "kernels"},
    package_data={"uer_ds": ["model_configs/*/*.json"], "uer_ds.kernels": ["*.json"]},
    install_requires=[
        "torch>=2.4,<2.15",
        "deepspeed>=0.16,<0.20",
        "triton>=3.1,<3.10",
        "sentencepiece>=0.2",
        "safetensors>=0.4",
        "numpy>=1.24",
        "tensorboard>=2.14",
        "tqdm>=4.60",
        "tokenizers>=0.15",  # uer-ds build-vocab --kind wordpiece
        "jieba>=0.42",  # --tokenizer word and knowledge masking: Chinese word segmentation
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "pytest-timeout>=2.2",  # a hung test fails by itself instead of stalling the whole run
            "pytest-xdist>=3.5",  # launch/test.sh runs the suite on two workers (the CI machine's two cores)
            "transformers>=4.40",
            "seqeval>=1.2",
            "hypothesis>=6",
            "matplotlib>=3.7",
            "scikit-learn>=1.3",  # reference for the fine-tuning metrics
            "onnx>=1.15",  # the ONNX export test (CPU-only onnxruntime wheel; no CUDA torch)
            "onnxruntime>=1.17",
        ],
        "bench": ["matplotlib>=3.7"],
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],  # uer-ds export onnx
    },
    entry_points={"console_scripts": ["uer-ds=uer_ds.cli:main"]},
    # the preprocessing hot path (issue #3): plain CPython C API, no torch at build time
    ext_modules=[Extension("uer_ds.data._native", ["uer_ds/data/_native.c"], extra_compile_args=["-O3", "-std=c11"])],
)
