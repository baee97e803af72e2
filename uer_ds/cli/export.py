"""`uer-ds export --checkpoint DIR[/global_step<N>] --output OUT`: gather a checkpoint (ZeRO shards,
pipeline layers) into one fp32 model: OUT.safetensors, OUT.bin (a state dict) or a model directory
(config.json + model.safetensors)."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("A fine-tuned classifier to ONNX (for onnxruntime) is `uer-ds export onnx`; other formats "
                     "(Hugging Face, UER-py) are `uer-ds convert`.")
    parser.add_argument("--checkpoint", required=True,
                        help="a uer_ds training run (its 'latest' step) or one of its global_step<N> tags (that step); "
                             "any other model path the resolver reads is written out the same way (a model or task "
                             "directory, a Hugging Face directory, a UER-py .bin with its config beside)")
    parser.add_argument("--tag", help="a tag inside the checkpoint directory (default: what 'latest' names)")
    parser.add_argument("--output", required=True,
                        help="*.safetensors or *.bin for one state dict; anything else: a model directory")


def run(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import save_file

    from uer_ds.atomic import atomic_path
    from uer_ds.convert.resolve import resolve_model
    from uer_ds.models import save_model
    from uer_ds.models.io import model_from_state, unique_state_dict

    source = resolve_model(args.checkpoint, "--checkpoint")
    if args.tag:
        if source.kind not in ("run", "tag"):
            raise ValueError(f"--tag {args.tag}: --checkpoint {args.checkpoint} is {source.description}; --tag picks a "
                             "step of a training run")
        if source.kind == "tag" and source.path.name != args.tag:
            raise ValueError(f"--checkpoint '{args.checkpoint}' is the tag {source.path.name}, but --tag is {args.tag}: "
                             "give one of them")
        source = resolve_model(source.path.parent / args.tag if source.kind == "tag" else source.path / args.tag,
                               "--tag", kinds=("tag",))
    ckpt = source.checkpoint()
    model = model_from_state(ckpt.config, ckpt.state, args.checkpoint)  # checks every key and shape
    out = Path(args.output)
    with atomic_path(out) as tmp:
        if out.suffix == ".safetensors":
            save_file(unique_state_dict(model), str(tmp), metadata={"format": "pt", "producer": "uer_ds"})
        elif out.suffix == ".bin":
            torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, tmp)
        else:
            save_model(model, tmp)
    print(f"exported {sum(p.numel() for p in model.parameters()):,} parameters (fp32) to {out}")
    return 0
