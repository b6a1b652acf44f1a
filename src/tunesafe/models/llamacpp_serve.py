"""llama.cpp's server from the prebuilt `xllamacpp` wheel, run with llama-server's own flags.

`python -m tunesafe.models.llamacpp_serve --model M.gguf --port P ...` serves the same OpenAI-compatible
HTTP API as `llama-server` (xllamacpp embeds llama.cpp's server code), so models/llamacpp.py starts it
as a child process in exactly the way it starts the binary. Only the flags that backend passes are
accepted; the process serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tunesafe.models.llamacpp_serve")
    parser.add_argument("--model", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--ctx-size", type=int, default=4096, help="all slots together, as llama-server")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-kv-unified", action="store_true")
    parser.add_argument("--jinja", action="store_true")
    parser.add_argument("--no-webui", action="store_true")
    parser.add_argument("--alias", default="tunesafe-local")
    parser.add_argument("--lora", action="append", default=[])
    parser.add_argument("--slot-save-path", default="")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    import xllamacpp as xlc  # type: ignore[import-not-found,unused-ignore]

    params = xlc.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port
    params.n_parallel = args.parallel
    params.n_ctx = args.ctx_size
    params.kv_unified = not args.no_kv_unified
    params.use_jinja = args.jinja
    params.ui = not args.no_webui
    params.model_alias = args.alias
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    if args.slot_save_path:  # llama-server's flag parser adds the separator; the field is joined as is
        params.slot_save_path = os.path.join(args.slot_save_path, "")
    params.lora_adapters = [xlc.CommonAdapterLoraInfo(path, 1.0) for path in args.lora]
    try:
        server = xlc.Server(params)  # loads the model and starts listening in its own threads
    except RuntimeError:
        # llama.cpp has already logged why (e.g. "failed to load model"); a traceback would push that
        # reason out of the log tail the backend shows the user.
        raise SystemExit(1) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    del server


if __name__ == "__main__":
    main()
