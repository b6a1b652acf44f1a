"""The loopback test server started in vLLM's place, for tests of `vllm:...?launch=1` on machines without a
GPU: `TUNESAFE_VLLM="python -m tunesafe.testing.fake_vllm"`. It takes `vllm serve`'s flags as tunesafe
passes them, refuses any other (as vLLM would refuse a bad one), checks each LoRA module's folder, and lists
the base model and every module at /v1/models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tunesafe.testing.openai_server import OpenAICompatApp, ServerConfig, serve_forever


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vllm")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("model")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--enable-lora", action="store_true")
    serve.add_argument("--max-lora-rank", type=int, default=16)
    serve.add_argument("--lora-modules", nargs="+", default=[])
    serve.add_argument("--latency", type=float, default=0.0)  # not vLLM's: lets tests slow it down
    args = parser.parse_args(argv)
    if args.lora_modules and not args.enable_lora:
        sys.exit("error: --lora-modules needs --enable-lora")
    names = []
    for module in args.lora_modules:
        name, _, path = module.partition("=")
        if not (Path(path) / "adapter_config.json").is_file():
            sys.exit(f"error: LoRA module {name}: no adapter_config.json in {path}")
        names.append(name)
    config = ServerConfig(model=args.model, latency_s=args.latency, served=tuple(names))
    serve_forever(OpenAICompatApp(config), args.port)


if __name__ == "__main__":
    main()
