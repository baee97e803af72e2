"""int8 quantization of an exported ONNX classifier: ONNX Runtime's dynamic quantization (weights of the
MatMul/Gemm/Gather ops stored as int8 with a scale per tensor; activations quantized at run time, per
batch), so no calibration data is needed and the graph keeps its inputs, outputs and metadata (the
task.json `uer-ds infer` reads back).  Chosen over torch.ao's dynamic quantization because the exported
graph is what `infer` and `serve` run without PyTorch's training stack; measured in the README."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Union

PathLike = Union[str, Path]


def quantize_int8(fp32_path: PathLike, int8_path: PathLike, per_channel: bool = False) -> None:
    """Write the dynamic int8 quantization of the ONNX model `fp32_path` to `int8_path` (another file),
    with `fp32_path`'s metadata_props; per_channel: a scale per output channel of each weight instead of
    one per tensor.  Raises ValueError when onnx/onnxruntime are missing or the input is no ONNX model."""
    from uer_ds.tasks.onnx import onnx_metadata, require_onnx

    require_onnx()
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    metadata = onnx_metadata(str(fp32_path))
    if Path(fp32_path).resolve() == Path(int8_path).resolve():
        raise ValueError(f"int8 quantization reads {fp32_path} and writes another file: give another output")
    # quantize_dynamic suggests its pre-processing (shape inference, graph optimisation) through a root-logger
    # warning; not run here (not measured): onnxruntime optimises the graph when a session opens it
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=per_channel)
    finally:
        root.setLevel(level)
    graph = onnx.load(str(int8_path))
    kept = {entry.key: entry.value for entry in graph.metadata_props}
    if kept != metadata:
        onnx.helper.set_model_props(graph, {**kept, **metadata})
        onnx.save(graph, str(int8_path))
    onnx.checker.check_model(str(int8_path))


__all__ = ["quantize_int8"]
