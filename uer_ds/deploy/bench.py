"""`uer-ds bench serve`: throughput and latency of `uer-ds serve` under concurrent clients over loopback.

For each mode a fresh `uer-ds serve` process is started on a free port (`dynamic`: --max_batch_size and
--max_wait_ms as given; `batch1`: --max_batch_size 1, --max_wait_ms 0, every request its own forward),
then --clients asyncio clients, each on its own keep-alive connection, send one text per request
(drawn in turn from --test_path's text_a column) for --duration seconds.  Reported per mode: requests,
failures (a status other than 200, or a connection error), requests/s, latency p50/p90/p99/max (ms, from
sending the request to the last byte of the answer), and the server's own counters (forwards, largest
batch).  Client and server share the machine's cores: the figures are the whole system's.  Prints a
table and writes JSON (--json_path).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

MODES = ("dynamic", "batch1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load_model_path", required=True, help="a classifier's task directory or .onnx")
    parser.add_argument("--test_path", required=True, help="a TSV with a text_a column: the texts sent")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per mode (default 60)")
    parser.add_argument("--warmup", type=float, default=3.0, help="untimed seconds first, per mode (default 3)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="default: both")
    parser.add_argument("--max_batch_size", type=int, default=32, help="the dynamic mode's (default 32)")
    parser.add_argument("--max_wait_ms", type=float, default=5.0, help="the dynamic mode's (default 5)")
    parser.add_argument("--threads", type=int, help="the server's torch threads (default: torch's)")
    parser.add_argument("--json_path", help="write the results as JSON")


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation (numpy's default); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_texts(path: str) -> list[str]:
    from uer_ds.tasks.data import read_tsv

    _, rows = read_tsv(path, ["text_a"])
    texts = [row.values["text_a"] for row in rows if row.values["text_a"].strip()]
    if not texts:
        raise ValueError(f"--test_path {path}: no texts in its text_a column")
    return texts


async def _client(port: int, bodies: list[bytes], offset: int, stop_at: float, record_from: float,
                  latencies: list[float], failures: list[str]) -> None:
    """One keep-alive connection sending requests until stop_at; latencies of those sent after record_from."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    try:
        while time.perf_counter() < stop_at:
            body = bodies[i % len(bodies)]
            i += 1
            head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            sent = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            done = time.perf_counter()
            if sent >= record_from:
                if b" 200 " not in status_line:
                    failures.append(status_line.decode("latin-1").strip())
                latencies.append(done - sent)
    except (OSError, asyncio.IncompleteReadError, ValueError) as err:
        failures.append(f"{type(err).__name__}: {err}")
    finally:
        writer.close()


async def _drive(port: int, bodies: list[bytes], clients: int, warmup: float, duration: float) -> dict:
    start = time.perf_counter()
    record_from, stop_at = start + warmup, start + warmup + duration
    latencies: list[float] = []
    failures: list[str] = []
    await asyncio.gather(*(_client(port, bodies, c * 7, stop_at, record_from, latencies, failures)
                           for c in range(clients)))
    elapsed = time.perf_counter() - record_from
    return {"requests": len(latencies), "failures": len(failures), "failure_examples": sorted(set(failures))[:5],
            "seconds": round(elapsed, 2), "requests_per_s": round(len(latencies) / elapsed, 2),
            **{f"p{q}_ms": round(percentile(latencies, q) * 1000, 2) for q in (50, 90, 99)},
            "max_ms": round(max(latencies, default=0.0) * 1000, 2)}


def _get_json(port: int, path: str) -> dict:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def _start_server(args: argparse.Namespace, mode: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    batch, wait = (args.max_batch_size, args.max_wait_ms) if mode == "dynamic" else (1, 0.0)
    command = [sys.executable, "-m", "uer_ds", "serve", "--load_model_path", args.load_model_path, "--port", str(port),
               "--max_batch_size", str(batch), "--max_wait_ms", str(wait), "--max_texts", "1"]
    if args.threads:
        command += ["--threads", str(args.threads)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ValueError(f"uer-ds serve exited {process.returncode}: {process.stdout.read()[-2000:]}")
        try:
            _get_json(port, "/health")
            return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise ValueError("uer-ds serve did not answer /health within 120 s")


def _run_mode(args: argparse.Namespace, mode: str, bodies: list[bytes]) -> dict:
    process, port = _start_server(args, mode)
    try:
        before = _get_json(port, "/health")
        result = asyncio.run(_drive(port, bodies, args.clients, args.warmup, args.duration))
        after = _get_json(port, "/health")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    forwards = after["batches"] - before["batches"]
    texts = after["texts"] - before["texts"]
    return {"mode": mode, **result, "forwards": forwards, "texts_per_forward": round(texts / max(forwards, 1), 2),
            "largest_batch": after["largest_batch"], "server_exit": process.returncode}


def run(args: argparse.Namespace) -> int:
    """Run the modes one after the other; print the table; write JSON."""
    for name, value in (("clients", args.clients), ("max_batch_size", args.max_batch_size)):
        if value <= 0:
            raise ValueError(f"--{name} has value {value}: must be positive")
    if args.duration <= 0 or args.warmup < 0:
        raise ValueError(f"--duration {args.duration} must be positive and --warmup {args.warmup} >= 0")
    bodies = [json.dumps({"text_a": t}, ensure_ascii=False).encode("utf-8") for t in _read_texts(args.test_path)]
    rows = [_run_mode(args, mode, bodies) for mode in args.modes]
    header = ["mode", "clients", "requests", "failures", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
              "texts/forward"]
    print("  ".join(f"{h:>13}" for h in header))
    for row in rows:
        cells = [row["mode"], args.clients, row["requests"], row["failures"], row["requests_per_s"], row["p50_ms"],
                 row["p90_ms"], row["p99_ms"], row["max_ms"], row["texts_per_forward"]]
        print("  ".join(f"{c:>13}" for c in cells))
    gain: Optional[float] = None
    by_mode = {row["mode"]: row for row in rows}
    if {"dynamic", "batch1"} <= set(by_mode) and by_mode["batch1"]["requests_per_s"]:
        gain = round(by_mode["dynamic"]["requests_per_s"] / by_mode["batch1"]["requests_per_s"], 2)
        print(f"dynamic batching: {gain}x the requests/s of batch 1")
    if args.json_path:
        flags = vars(args)  # every one of these is a flag of this benchmark
        settings = {k: flags[k] for k in ("load_model_path", "test_path", "clients", "duration", "warmup",
                                          "max_batch_size", "max_wait_ms", "threads")}
        record = {"benchmark": "serve", "settings": settings, "results": rows, "dynamic_gain": gain,
                  "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                              "python": platform.python_version()}}
        Path(args.json_path).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"wrote {args.json_path}")
    return 0


__all__ = ["add_arguments", "percentile", "run"]
