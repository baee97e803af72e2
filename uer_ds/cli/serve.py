"""`uer-ds serve --load_model_path MODEL [--host H --port P]`: a fine-tuned classifier (task directory or
ONNX export), NER tagger or CMRC span reader (task directory) over HTTP with dynamic batching (uer_ds/deploy/serve.py describes the endpoints).  Needs
the `serve` extra: pip install 'uer_ds[serve]' (FastAPI, uvicorn)."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from uer_ds.cli.common import add_tokenizer_arguments
    from uer_ds.deploy.requests import Limits

    parser.add_argument("--load_model_path", required=True,
                        help="a classifier's task directory (`uer-ds finetune`) or its .onnx (`uer-ds export onnx`), "
                             "or an ner or cmrc task directory")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--head", help="multi-task models: the head to serve (default: the first)")
    parser.add_argument("--seq_length", type=int, help="longest input (default: the fine-tuning seq_length)")
    parser.add_argument("--ner_words", choices=("char", "space"), default="char",
                        help="ner models: a text's words (one tag each) are its characters but white space (char; "
                             "default: Chinese NER data's layout) or its white-space-separated runs (space)")
    group = parser.add_argument_group("dynamic batching")
    group.add_argument("--max_batch_size", type=int, default=32,
                       help="most texts in one forward (default 32)")
    group.add_argument("--max_wait_ms", type=float, default=5.0,
                       help="how long the first text of a batch waits for others (default 5 ms; 0: no waiting)")
    group.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    limits = parser.add_argument_group("request limits (a 413 or 422 JSON error past them)")
    limits.add_argument("--max_body_bytes", type=int, default=Limits.max_body_bytes,
                        help=f"largest request body (default {Limits.max_body_bytes})")
    limits.add_argument("--max_texts", type=int, default=Limits.max_texts,
                        help=f"most texts in one request (default {Limits.max_texts})")
    limits.add_argument("--max_text_chars", type=int, default=Limits.max_text_chars,
                        help=f"longest text in characters (default {Limits.max_text_chars})")
    parser.add_argument("--shutdown_timeout", type=float, default=30.0,
                        help="on SIGTERM, seconds to finish the requests in flight (default 30)")
    parser.add_argument("--log_level", default="warning", choices=("debug", "info", "warning", "error"),
                        help="uvicorn's log level (default warning)")
    add_tokenizer_arguments(parser, subwords=True)


def require_serve() -> None:
    """ValueError naming the extra when FastAPI or uvicorn is missing."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise ValueError(f"uer-ds serve needs FastAPI and uvicorn ({err.name} is missing): "
                         "pip install 'uer_ds[serve]'") from None


def run(args: argparse.Namespace) -> int:
    from uer_ds.deploy.requests import Limits
    from uer_ds.deploy.serve import ServeSettings, serve

    require_serve()
    for name in ("max_batch_size", "max_body_bytes", "max_texts", "max_text_chars"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name} has value {getattr(args, name)}: must be positive")
    if args.max_wait_ms < 0:
        raise ValueError(f"--max_wait_ms has value {args.max_wait_ms}: must be >= 0")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port has value {args.port}: must be in [0, 65535]")
    if args.threads is not None:
        if args.threads <= 0:
            raise ValueError(f"--threads has value {args.threads}: must be positive")
        import torch

        torch.set_num_threads(args.threads)
    from uer_ds.deploy.predictor import load_predictor

    predictor = load_predictor(args.load_model_path, args, head=args.head, seq_length=args.seq_length)
    settings = ServeSettings(args.max_batch_size, args.max_wait_ms,
                             Limits(args.max_body_bytes, args.max_texts, args.max_text_chars), args.ner_words)
    return serve(predictor, settings, args.host, args.port, args.shutdown_timeout, args.log_level)
