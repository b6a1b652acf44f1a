"""Backend throughput.

(a) HTTP: requests/s of the OpenAI-compatible backend against the loopback server (own process) with
    a fixed latency per request, at several concurrency levels, vs the ideal concurrency / latency;
    and the CPU milliseconds per request of the client (this process) and of the server process.
(b) local: generated tokens/s of local models at several batch sizes (greedy, one batch per
    measurement), by default the embedded model on transformers and on llama.cpp, and peak resident
    memory (this process; llama.cpp's server process separately).

    python benchmarks/backends.py [--part http,local] [--latency 0.1] [--concurrency 1,8,64]
                                  [--model REF ...] [--batches 1,8,16]
                                  [--max-new-tokens 32] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import httpx

from tunesafe.models import DEFAULT_MODEL, load_model
from tunesafe.testing.openai_server import serve_subprocess
from tunesafe.types import ChatRequest, Message

PROMPTS = [
    "Explain what a hash function is.", "Write a haiku about autumn.", "How do vaccines work?",
    "Summarise the plot of Hamlet.", "What is the difference between TCP and UDP?",
    "Give three tips for learning a language.", "Why is the sky blue?", "Describe a binary search.",
    "What causes inflation?", "How do I make a good cup of tea?", "What is photosynthesis?",
    "Explain recursion to a child.", "List the planets of the solar system.", "What is a prime number?",
    "How does a bicycle stay upright?", "What is machine learning?",
]


def request(i: int, max_new_tokens: int) -> ChatRequest:
    return ChatRequest(messages=(Message("user", PROMPTS[i % len(PROMPTS)]),), max_new_tokens=max_new_tokens)


def server_cpu_s(url: str) -> float:
    return float(httpx.get(f"{url.removesuffix('/v1')}/control/stats").json()["cpu_s"])


async def timed_http(model: Any, n: int, concurrency: int) -> tuple[float, float, int]:
    """Wall seconds and client CPU seconds of n requests, and how many failed."""
    # Open every slot's connection first: the figure is steady-state throughput.
    await model.generate([request(0, 16) for _ in range(concurrency)])
    started, cpu = time.perf_counter(), time.process_time()
    gens = await model.generate([request(i, 16) for i in range(n)])
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    await model.aclose()
    return wall, cpu, sum(not g.ok for g in gens)


def http_throughput(latency: float, levels: list[int]) -> list[dict[str, Any]]:
    rows = []
    with serve_subprocess(latency_s=latency) as url:
        for concurrency in levels:
            n = max(50, concurrency * 10)
            model = load_model(f"openai:bench@{url}", concurrency=concurrency)
            server_cpu = server_cpu_s(url)
            wall, client_cpu, errors = asyncio.run(timed_http(model, n, concurrency))
            server_cpu = server_cpu_s(url) - server_cpu  # includes the warm-up round: an upper bound
            ideal = concurrency / latency
            rows.append({"concurrency": concurrency, "requests": n, "errors": errors,
                         "wall_s": round(wall, 2), "req_per_s": round(n / wall, 1),
                         "ideal_req_per_s": round(ideal, 1),
                         "pct_of_ideal": round(100 * n / wall / ideal, 1),
                         "client_cpu_ms_per_req": round(1000 * client_cpu / n, 3),
                         "server_cpu_ms_per_req": round(1000 * server_cpu / n, 3)})
            print(rows[-1], flush=True)
    return rows


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def server_peak_rss_mib(model: Any) -> float | None:
    """Peak resident memory of a model's server process (llama.cpp runs outside this process)."""
    server = getattr(model, "server", None)
    if server is None:
        return None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
    return round(int(kib) / 1024, 1)


def local_throughput(ref: str, batches: list[int], max_new_tokens: int) -> dict[str, Any]:
    started = time.perf_counter()
    # so a batch of N really runs as one batch: hf micro-batches up to max_batch, llama.cpp has slots
    width = {"parallel" if "backend=llamacpp" in ref else "max_batch": max(batches)}
    model = load_model(ref, **width)
    model.content_hash()
    load_s = round(time.perf_counter() - started, 1)
    out: dict[str, Any] = {"model": ref, "backend": model.backend, "load_s": load_s,
                           "rss_after_load_mib": peak_rss_mib(), "rows": []}
    for batch in batches:
        requests = [request(i, max_new_tokens) for i in range(batch)]

        async def go(requests: list[ChatRequest] = requests) -> tuple[float, int]:
            began = time.perf_counter()
            gens = await model.generate(requests)
            return time.perf_counter() - began, sum(g.completion_tokens for g in gens)

        wall, tokens = asyncio.run(go())
        out["rows"].append({"batch": batch, "tokens": tokens, "wall_s": round(wall, 2),
                            "tokens_per_s": round(tokens / wall, 1), "peak_rss_mib": peak_rss_mib(),
                            "server_peak_rss_mib": server_peak_rss_mib(model)})
        print(out["rows"][-1], flush=True)
    if hasattr(model, "close"):
        model.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="http,local")
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--model", action="append",
                        help="local ref, repeatable (default: the embedded model on hf and on llama.cpp)")
    parser.add_argument("--batches", default="1,8,16")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    parts = set(args.part.split(","))
    result: dict[str, Any] = {"load_avg_at_start": os.getloadavg()}
    if "http" in parts:
        result["http"] = http_throughput(args.latency, [int(c) for c in args.concurrency.split(",")])
    if "local" in parts:
        refs = args.model or [DEFAULT_MODEL, f"{DEFAULT_MODEL}?backend=llamacpp"]
        batches = [int(b) for b in args.batches.split(",")]
        result["local"] = [local_throughput(ref, batches, args.max_new_tokens) for ref in refs]
    result["load_avg_at_end"] = os.getloadavg()
    if args.json_out:
        with open(args.json_out, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
