"""`uer-ds serve`: a fine-tuned classifier (task directory or ONNX export), tagger (NER) or span reader
(CMRC-style MRC) over HTTP, FastAPI + uvicorn.

  POST /predict   classifier: {"text_a": "..." | [...], "text_b": ..., "top_k": k, "return_logits": bool}
                  -> {"predictions": [{"label", "label_id", "prob": [...], "top_k"?: [...], "logits"?: [...]}]}
                  (one entry per text; uer_ds/deploy/requests.py holds the rules of the body)
                  ner: {"text_a": ...} -> {"predictions": [{"entities": [{"type", "start", "end", "text"}], "words",
                  "tags", "truncated"}]}; cmrc: {"question": ..., "context": ...} -> {"predictions": [{"text",
                  "start", "end", "score"}]} (uer_ds/deploy/spans.py)
  GET  /health    {"status": "ok", "requests", "texts", "batches", "largest_batch"}: counters since start
  GET  /metadata  the model, its labels, the batching settings and the request limits
  GET  /docs      the OpenAPI page (/openapi.json the schema)
Every error is JSON: {"error": {"status", "code", "message"[, "field"]}}, 4xx for a bad request.

Dynamic batching (Batcher): the texts of concurrent requests wait up to --max_wait_ms for each other and
go through one forward of at most --max_batch_size texts (a single request with more is predicted in
batches of that size); forwards run one at a time on one worker thread, so the event loop keeps
accepting requests meanwhile.  SIGTERM (or Ctrl-C) is a graceful shutdown: uvicorn stops accepting,
requests in flight are answered, then the worker stops and the process exits 0.
"""
# no `from __future__ import annotations`: FastAPI reads the routes' annotations (Request) as objects, and
# they are imported inside build_app, so only the server pays for importing FastAPI
import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

from uer_ds.deploy.predictor import Predictor
from uer_ds.deploy.requests import TEXTS_SCHEMA, Limits, PredictRequest, RequestError, decode_json, parse_request

SERVED_TASKS = ("classifier", "mt_classifier", "ner", "cmrc")


@dataclass
class BatchStats:
    """Counters since the server started: requests answered, texts predicted, forwards run, largest forward."""

    requests: int = 0
    texts: int = 0
    batches: int = 0
    largest_batch: int = 0


@dataclass
class _Waiting:
    items: list
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Collects the items of concurrent `submit` calls into batches of at most `max_batch` items, waiting at
    most `max_wait_ms` after the first, and runs `predict(items) -> outputs` (one per item, in order) on
    one worker thread.  start() inside the event loop, stop() to finish what was submitted and end."""

    def __init__(self, predict: Callable[[list], list], max_batch: int, max_wait_ms: float) -> None:
        if max_batch <= 0:
            raise ValueError(f"--max_batch_size has value {max_batch}: must be positive")
        if max_wait_ms < 0:
            raise ValueError(f"--max_wait_ms has value {max_wait_ms}: must be >= 0")
        self.predict, self.max_batch, self.max_wait = predict, max_batch, max_wait_ms / 1000.0
        self.stats = BatchStats()
        self._queue: Optional[asyncio.Queue] = None
        self._worker: Optional[asyncio.Task] = None
        self._carried: Optional[_Waiting] = None  # taken from the queue, too large for the batch it was collected for
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="uer-ds-predict")

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Predict what is queued, then end the worker and its thread."""
        if self._worker is not None:
            await self._queue.put(None)
            await self._worker
        self._executor.shutdown(wait=True)

    async def submit(self, items: list) -> list:
        """The outputs of `items`, predicted in a batch with whatever else is waiting."""
        if self._queue is None:
            raise RuntimeError("the batcher has not started")
        waiting = _Waiting(items, asyncio.get_running_loop().create_future())
        await self._queue.put(waiting)
        return await waiting.future

    async def _collect(self, first: _Waiting) -> tuple[list[_Waiting], bool]:
        """(requests of one batch, whether the stop sentinel was met).  A request that would take the batch
        past max_batch waits for the next one (a request larger than max_batch alone is a batch of its own,
        predicted in forwards of max_batch)."""
        group, count = [first], len(first.items)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while count < self.max_batch:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                nxt = self._queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self._queue.get(),
                                                                                               remaining)
            except (asyncio.QueueEmpty, asyncio.TimeoutError):
                break
            if nxt is None:
                return group, True
            if count + len(nxt.items) > self.max_batch:
                self._carried = nxt
                break
            group.append(nxt)
            count += len(nxt.items)
        return group, False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping or self._carried is not None:
            first, self._carried = self._carried, None
            if first is None:
                first = await self._queue.get()
            if first is None:
                break
            group, sentinel = await self._collect(first)
            stopping = stopping or sentinel
            items = [item for waiting in group for item in waiting.items]
            try:
                outputs = await loop.run_in_executor(self._executor, self.predict, items)
            except Exception as err:  # the model failed: every request of the batch gets the error (a 500)
                for waiting in group:
                    if not waiting.future.done():
                        waiting.future.set_exception(err)
                continue
            self.stats.batches += 1
            self.stats.texts += len(items)
            self.stats.largest_batch = max(self.stats.largest_batch, len(items))
            start = 0
            for waiting in group:
                if not waiting.future.done():
                    waiting.future.set_result(outputs[start: start + len(waiting.items)])
                start += len(waiting.items)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in float64 (what `uer-ds infer --output_prob` writes)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def classification_answer(logits: np.ndarray, names: Sequence[str], top_k: int, return_logits: bool) -> dict:
    """One text's answer from its logits (labels_num,): the argmax label, every probability, the k best."""
    logits = np.asarray(logits, dtype=np.float64)
    prob = softmax(logits)
    order = np.argsort(-prob, kind="stable")
    answer: dict[str, Any] = {"label": names[int(order[0])], "label_id": int(order[0]), "prob": prob.tolist()}
    if top_k > 1:
        answer["top_k"] = [{"label": names[int(i)], "label_id": int(i), "prob": float(prob[i])} for i in order[:top_k]]
    if return_logits:
        answer["logits"] = logits.tolist()
    return answer


@dataclass(frozen=True)
class ServeSettings:
    """max_batch_size / max_wait_ms: the dynamic batching; limits: the request limits; ner_words: how a
    tagger's text splits into words (uer_ds.deploy.spans.NER_WORDS)."""

    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    limits: Limits = Limits()
    ner_words: str = "char"


def label_names(predictor: Predictor) -> list[str]:
    """The labels' names (task.json's label_names), else their ids as strings."""
    spec = predictor.spec
    names = spec.get("label_names")
    return list(names) if names else [str(i) for i in range(int(spec["labels_num"]))]


class ClassifierService:
    """A classifier's requests (uer_ds.deploy.requests) and answers (classification_answer); the tagger's and
    the span reader's are in uer_ds.deploy.spans, with the same methods."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor, self.names = predictor, label_names(predictor)

    def parse(self, payload: Any, limits: Limits) -> PredictRequest:
        return parse_request(payload, limits, self.predictor.pair, len(self.names))

    def examples(self, request: PredictRequest) -> list:
        return self.predictor.examples(request.texts)

    def answers(self, request: PredictRequest, examples: Sequence, outputs: Sequence) -> list[dict]:
        return [classification_answer(out, self.names, request.top_k, request.return_logits) for out in outputs]

    def metadata(self) -> dict:
        return {"labels": self.names, "pair": self.predictor.pair}

    def describe(self) -> str:
        return f"{len(self.names)} labels"

    @staticmethod
    def openapi_body() -> dict:
        return _openapi_body()


def service_for(predictor: Predictor, settings: ServeSettings):
    """The requests and answers of `predictor`'s task; ValueError for a task `uer-ds serve` does not serve."""
    from uer_ds.deploy.spans import MrcService, NerService

    name = predictor.task.name
    if name not in SERVED_TASKS:
        raise ValueError(f"--load_model_path '{predictor.path}' holds a '{name}' model: `uer-ds serve` "
                         f"serves {', '.join(SERVED_TASKS)} models")
    if name == "ner":
        return NerService(predictor, settings.ner_words)
    if name == "cmrc":
        return MrcService(predictor)
    return ClassifierService(predictor)


def metadata(predictor: Predictor, settings: ServeSettings, service=None) -> dict:
    """What GET /metadata answers."""
    tokenizer = predictor.info.get("tokenizer", {})
    service = service or service_for(predictor, settings)
    return {"model": predictor.path, "kind": predictor.kind, "task": predictor.task.name, "head": predictor.head_name,
            **service.metadata(), "seq_length": predictor.seq_length,
            "tokenizer": {k: tokenizer.get(k) for k in ("kind", "do_lower_case", "vocab_sha256", "vocab_size")},
            "batching": {"max_batch_size": settings.max_batch_size, "max_wait_ms": settings.max_wait_ms},
            "limits": {"max_body_bytes": settings.limits.max_body_bytes, "max_texts": settings.limits.max_texts,
                       "max_text_chars": settings.limits.max_text_chars}}


def _openapi_body() -> dict:
    """The classifier's request body schema and example (the server checks bodies itself: requests.py)."""
    schema = {"type": "object", "required": ["text_a"], "additionalProperties": False,
              "properties": {"text_a": dict(TEXTS_SCHEMA, description="a text or a list of texts"),
                             "text_b": dict(TEXTS_SCHEMA, description="pair models: the second texts, shaped as text_a"),
                             "top_k": {"type": "integer", "minimum": 1, "default": 1,
                                       "description": "also list the k best labels"},
                             "return_logits": {"type": "boolean", "default": False}}}
    return {"schema": schema, "example": {"text_a": ["这本书很好看", "不推荐"], "top_k": 2}}


def _openapi_request(body: dict) -> dict:
    """The OpenAPI requestBody of a service's schema and example."""
    return {"requestBody": {"required": True, "content": {"application/json": body}}}


def build_app(predictor: Predictor, settings: ServeSettings, on_ready: Optional[Callable[[], None]] = None):
    """The FastAPI application serving `predictor` (a classifier's, tagger's or span reader's head) with
    `settings`; raises ValueError for a model of another task."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    service = service_for(predictor, settings)
    limits = settings.limits

    def predict(examples: list) -> list:
        return predictor.predict(examples, settings.max_batch_size)

    batcher = Batcher(predict, settings.max_batch_size, settings.max_wait_ms)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        if on_ready is not None:
            on_ready()
        yield
        await batcher.stop()

    app = FastAPI(title="uer-ds serve", version="1", lifespan=lifespan,
                  description=f"{predictor.task.name} '{predictor.head_name}' from {predictor.path} ({predictor.kind})")
    app.state.batcher = batcher

    def error_response(err: RequestError) -> JSONResponse:
        return JSONResponse(err.body(), status_code=err.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:  # 404, 405, ...
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return error_response(RequestError(exc.status_code, code, message))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(RequestError(422, "invalid_request", str(exc.errors())))

    async def read_body(request: Request) -> bytes:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != "application/json":
            raise RequestError(415, "unsupported_media_type", f"Content-Type is '{content_type or '(none)'}': send "
                                                              "application/json")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise RequestError(413, "body_too_large", f"the body has {int(declared)} bytes: at most "
                                                      f"{limits.max_body_bytes}")
        chunks, size = [], 0
        async for chunk in request.stream():  # a chunked body has no Content-Length: count as it arrives
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise RequestError(413, "body_too_large", f"the body has more than {limits.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @app.post("/predict", openapi_extra=_openapi_request(service.openapi_body()),
              responses={400: {"description": "not a JSON object"}, 413: {"description": "too large"},
                         415: {"description": "not application/json"}, 422: {"description": "a field breaks a rule"}})
    async def predict_route(request: Request) -> JSONResponse:
        """Classify text_a (or the pairs text_a, text_b), tag text_a's entities, or find the answer to
        question in context: one answer per text (see GET /metadata for the model's task)."""
        try:
            body = await read_body(request)
            parsed = service.parse(decode_json(body), limits)
            examples = service.examples(parsed)
        except RequestError as err:
            return error_response(err)
        try:
            outputs = await batcher.submit(examples)
        except Exception as err:  # noqa: BLE001 (the model failed: a JSON 500, and the server goes on)
            return JSONResponse(RequestError(500, "prediction_failed", f"{type(err).__name__}: {err}").body(),
                                status_code=500)
        batcher.stats.requests += 1
        return JSONResponse({"predictions": service.answers(parsed, examples, outputs)})

    @app.get("/health")
    async def health() -> dict:
        """Liveness, with the batching counters since start."""
        stats = batcher.stats
        return {"status": "ok", "requests": stats.requests, "texts": stats.texts, "batches": stats.batches,
                "largest_batch": stats.largest_batch}

    @app.get("/metadata")
    async def metadata_route() -> dict:
        """The model, its labels, the batching settings and the request limits."""
        return metadata(predictor, settings, service)

    return app


def serve(predictor: Predictor, settings: ServeSettings, host: str, port: int, shutdown_timeout: float,
          log_level: str = "warning") -> int:
    """Run the server until SIGTERM/SIGINT (uvicorn's graceful shutdown); 0 when it stopped cleanly."""
    import uvicorn

    started = time.perf_counter()

    def ready() -> None:
        print(f"uer-ds serve: {predictor.task.name} '{predictor.head_name}' ({predictor.kind}, "
              f"{service_for(predictor, settings).describe()}) from {predictor.path} on http://{host}:{port} (docs: /docs; "
              f"max batch {settings.max_batch_size}, max wait {settings.max_wait_ms:g} ms)", flush=True)

    app = build_app(predictor, settings, on_ready=ready)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=shutdown_timeout, lifespan="on")
    server = uvicorn.Server(config)
    # uvicorn catches SIGTERM/SIGINT for its graceful shutdown, then raises the signal again under the handler
    # it found: a handler that does nothing lets the process end normally (exit 0) once it has shut down
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: None)
    server.run()
    stats = app.state.batcher.stats
    print(f"uer-ds serve: stopped after {time.perf_counter() - started:.1f} s: {stats.requests} request(s), "
          f"{stats.texts} text(s) in {stats.batches} batch(es)", flush=True)
    return 0 if server.started else 1


__all__ = ["BatchStats", "Batcher", "ClassifierService", "SERVED_TASKS", "ServeSettings", "build_app",
           "classification_answer", "label_names", "metadata", "serve", "service_for", "softmax"]
