"""`uer-ds export onnx --load_model_path DIR --output model.onnx [--check_path dev.tsv]`: a fine-tuned
classifier (src, seg -> logits, prob), NER tagger (src, seg -> token logits; a CRF decodes on the host) or CMRC
reader (src, seg -> start_logits, end_logits) as an ONNX graph, checked with onnxruntime against PyTorch.
(`uer-ds export --checkpoint ...` is the other export: DeepSpeed checkpoint -> fp32 model.)"""
from __future__ import annotations

import argparse

ONNX_TASKS = ("classifier", "mt_classifier", "ner", "cmrc")  # heads OnnxWrapper exports (uer_ds.tasks.onnx)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.cli.common import add_tokenizer_arguments

    parser.add_argument("--load_model_path", required=True,
                        help="a fine-tuned task directory written by `uer-ds finetune` (the exported graph carries its "
                             "task.json: `uer-ds infer classifier --load_model_path OUT.onnx` predicts with it)")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--head", help="multi-task models: the head to export (default: the first)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--check_path", help="the task's input file (classifier, ner: a TSV with text_a [text_b], "
                                             "other columns ignored; cmrc: SQuAD-style JSON): compare onnxruntime's "
                                             "outputs and predictions with PyTorch's on it; above --tolerance nothing "
                                             "is written")
    parser.add_argument("--tolerance", type=float,
                        help="largest allowed |difference| of a classifier's probabilities, or of NER/CMRC logits "
                             "(default 1e-4; with --int8 0.1 for probabilities, 1.0 for logits)")
    parser.add_argument("--int8", action="store_true",
                        help="write the graph quantized to int8 (ONNX Runtime's dynamic quantization: int8 weights, "
                             "activations quantized per batch; no calibration data); --check_path then also reports "
                             "how often its label agrees with PyTorch's")
    parser.add_argument("--per_channel", action="store_true", help="with --int8: a scale per output channel")
    parser.add_argument("--seq_length", type=int, help="for --check_path (default: the fine-tuning seq_length)")
    parser.add_argument("--batch_size", type=int, default=64, help="for --check_path (default 64)")
    add_tokenizer_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from uer_ds.atomic import atomic_path
    from uer_ds.convert.resolve import ONNX_HOST_KEY, ONNX_TASK_KEY, resolve_model
    from uer_ds.tasks import TASKS
    from uer_ds.tasks.data import pad
    from uer_ds.tasks.onnx import OnnxWrapper, export_onnx, onnx_session, padded_example, parity, require_onnx
    from uer_ds.recipes.infer import infer_tokenizer

    require_onnx()
    source = resolve_model(args.load_model_path, "--load_model_path", kinds=("task",))
    info = source.task_info()
    task = TASKS.get(info.get("task"))
    if task is None or info["task"] not in ONNX_TASKS:
        raise ValueError(f"{args.load_model_path} holds a '{info.get('task')}' model: ONNX export covers "
                         f"{', '.join(ONNX_TASKS)}")
    names = list(info["heads"])
    head_name = args.head or names[0]
    if head_name not in names:
        raise ValueError(f"--head '{head_name}': the model's heads are {names}")
    head, spec = names.index(head_name), info["heads"][head_name]
    model, _ = source.task_model(lambda c, i: task.build_heads(c, i["heads"]))
    tokenizer = infer_tokenizer(args, info)
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0

    def collate(examples, index):
        return task.collate(examples, index, pad_id)

    seq_length = args.seq_length or info["seq_length"]
    if args.check_path:
        examples = task.read(args.check_path, tokenizer, seq_length, spec, labelled=False)
    else:  # trace on two made-up inputs
        from uer_ds.tasks.data import Example, encode_texts

        texts = [["uer_ds onnx export, a longer input for tracing"], ["short"]]
        if spec.get("pair"):
            texts = [t + ["second text"] for t in texts]
        examples = [Example("<trace>", {}, *encode_texts(tokenizer, t, seq_length)) for t in texts]

    def trace_batch(pair, index):  # the graph takes src and seg only
        return {"src": pad([e.src for e in pair], pad_id), "seg": pad([e.seg for e in pair], 0)}

    out = Path(args.output)
    int8_default = 0.1 if info["task"] in ("classifier", "mt_classifier") else 1.0  # probabilities / logits
    tolerance = args.tolerance if args.tolerance is not None else (int8_default if args.int8 else 1e-4)
    if args.per_channel and not args.int8:
        raise ValueError("--per_channel is a setting of --int8: give both")
    with atomic_path(out) as tmp:
        # the exported head's task.json travels inside the graph: `uer-ds infer --load_model_path X.onnx` reads it
        exported = dict(info, heads={head_name: spec}, config=source.own_config().to_dict())
        metadata = {ONNX_TASK_KEY: json.dumps(exported, ensure_ascii=False)}
        host = OnnxWrapper(model, head).host_state()  # an NER CRF's parameters: Viterbi runs on the host
        if host:
            metadata[ONNX_HOST_KEY] = json.dumps(host)
        fp32 = tmp.with_name(tmp.name + ".fp32.onnx") if args.int8 else tmp
        export_onnx(model, head, str(fp32), padded_example(examples, trace_batch, head), args.opset, metadata=metadata)
        result = {"output": str(out), "head": head_name, "opset": args.opset}
        if args.int8:
            from uer_ds.deploy.quantize import quantize_int8

            try:
                quantize_int8(fp32, tmp, per_channel=args.per_channel)
            finally:
                fp32.unlink(missing_ok=True)
            result.update(int8=True, per_channel=args.per_channel)
        if args.check_path:
            check = parity(model, head, onnx_session(str(tmp)), examples, collate, args.batch_size, task, spec, host)
            result.update(check, check_path=args.check_path)
            measured = "prob" if "max_abs_prob_diff" in check else "logits"  # a classifier's probabilities
            if not check[f"max_abs_{measured}_diff"] <= tolerance:
                raise ValueError(f"onnxruntime and PyTorch differ by {check[f'max_abs_{measured}_diff']:.3g} in "
                                 f"{measured} on {args.check_path} (tolerance {tolerance}): nothing written")
    print(json.dumps(result))
    return 0
