"""Start `vllm serve` for `vllm:...?launch=1` refs: one server per base model per process, holding every
LoRA adapter the process needs, so base and candidate of a gate run on the same weights and kernels.

    vllm serve MODEL --host 127.0.0.1 --port P --seed 0 [--enable-lora --max-lora-rank R
        --lora-modules NAME=PATH ...] [ARGS]

A gate starts the server with both sides' adapters before its first run and stops it at its end
(`hold`); a single eval starts it on load, and it lives until the process exits (`stop_all`). The
command is `vllm` unless the environment variable TUNESAFE_VLLM names another (tests start the loopback
server in vLLM's place, with the same flags: tunesafe.testing.fake_vllm).
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shlex
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tunesafe.errors import UserError
from tunesafe.models.refs import ModelRef, parse_ref

LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the values `vllm serve --max-lora-rank` accepts
_lock = threading.Lock()


@dataclass
class VLLMServer:
    model: str
    args: str
    adapters: dict[str, Path]  # LoRA module name -> adapter folder
    url: str = ""
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    users: int = 0  # the `hold`s keeping it
    command: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


_servers: dict[tuple[str, str], VLLMServer] = {}




def lora_name(adapter: Path) -> str:
    """The LoRA module name an adapter folder is served under: its folder name, made safe for a URL."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in adapter.resolve().name)


def lora_rank(adapters: Mapping[str, Path]) -> int:
    ranks = [int(json.loads((p / "adapter_config.json").read_text()).get("r") or 8)
             for p in adapters.values()]
    wanted = max(ranks, default=8)
    return next((r for r in LORA_RANKS if r >= wanted), wanted)


def command(server: VLLMServer, port: int) -> list[str]:
    cmd = [*shlex.split(os.environ.get("TUNESAFE_VLLM", "vllm")), "serve", server.model,
           "--host", "127.0.0.1", "--port", str(port), "--seed", "0"]
    if server.adapters:
        cmd += ["--enable-lora", "--max-lora-rank", str(lora_rank(server.adapters)), "--lora-modules",
                *(f"{name}={path}" for name, path in sorted(server.adapters.items()))]
    return cmd + shlex.split(server.args)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(server: VLLMServer, timeout_s: float) -> None:
    port = _free_port()
    server.command = command(server, port)
    server.url = f"http://127.0.0.1:{port}/v1"
    server.log = Path(tempfile.mkstemp(prefix="tunesafe-vllm-", suffix=".log")[1])
    where = f"vllm serve {server.model}"
    try:
        with server.log.open("wb") as log:
            server.process = subprocess.Popen(server.command, stdout=log, stderr=subprocess.STDOUT)
    except OSError as exc:
        raise UserError(f"cannot start {server.command[0]}: {exc.strerror}", where=where,
                        fix="install vLLM (on a GPU machine) or name its command in TUNESAFE_VLLM") from None
    wanted = {server.model, *server.adapters}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            code = server.process.returncode
            raise UserError(f"vLLM exited with code {code} before serving: {tail[0][:300]}", where=where,
                            fix=f"read {server.log}, fix the model or flags, then try again")
        try:
            listed = {m.get("id") for m in httpx.get(f"{server.url}/models", timeout=2).json()["data"]}
            if wanted <= listed:
                return
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
            pass
        time.sleep(0.2)
    server.stop()
    raise UserError(f"vLLM did not list {', '.join(sorted(wanted))} within {timeout_s:.0f} s", where=where,
                    fix=f"read {server.log}; raise ?startup_timeout= for a large model")


def ensure(model: str, adapters: Mapping[str, Path], args: str = "", timeout_s: float = 900.0) -> VLLMServer:
    """A running server for `model` (+ `args`) that serves every adapter in `adapters`, started if need
    be. A server that a `hold` keeps cannot gain an adapter (vLLM loads LoRA modules at start): UserError
    saying so; one that nothing holds is replaced by one with both sets."""
    with _lock:
        key = (model, args)
        server = _servers.get(key)
        if server is not None and not adapters.items() <= server.adapters.items():
            if server.users:
                missing = ", ".join(sorted(set(adapters) - set(server.adapters)))
                raise UserError(f"the vLLM server for {model} was started without the adapter {missing}",
                                where=f"vllm:{model}", fix="name every adapter in one command (tunesafe gate "
                                "starts one server with the base's and the candidate's)")
            server.stop()
            adapters = {**server.adapters, **adapters}
            server = None
        if server is None:
            server = VLLMServer(model, args, dict(adapters))
            _servers[key] = server
            try:
                _start(server, timeout_s)
            except BaseException:  # Ctrl-C while it loads too: atexit's stop_all no longer sees it
                _servers.pop(key, None)
                server.stop()
                raise
        return server


def stop_all() -> None:
    """Stop every server this process started (also done at exit)."""
    with _lock:
        for server in _servers.values():
            server.stop()
        _servers.clear()


def launch_spec(ref: ModelRef) -> tuple[str, dict[str, Path], str, float]:
    """(model, {name: adapter folder}, extra args, startup timeout) of a `?launch=1` ref."""
    from tunesafe.models.hf import adapter_files

    adapters: dict[str, Path] = {}
    if ref.adapter:
        folder = adapter_files(ref.adapter, ref)[0].parent
        adapters[lora_name(folder)] = folder.resolve()
    given = ref.options.get("startup_timeout", "900")
    try:
        timeout_s = float(given)
    except ValueError:
        timeout_s = math.nan
    if not timeout_s > 0:  # NaN too: the wait would end at once, after starting the server
        raise UserError(f"startup_timeout={given} is not a number of seconds above 0", where=str(ref),
                        fix="e.g. ?launch=1&startup_timeout=1800")
    args = ref.options.get("args", "")
    try:
        shlex.split(args)  # checked here: command() splits it only once the server is being started
    except ValueError as exc:
        raise UserError(f"args cannot be split into flags: {exc}", where=str(ref),
                        fix="quote the extra vllm serve flags as in a shell") from None
    return ref.target, adapters, args, timeout_s


@contextmanager
def hold(refs: Sequence[str]) -> Iterator[None]:
    """Start one server per base model for the `?launch=1` refs among `refs`, with all their adapters,
    and keep it while the block runs (a gate: base and candidate then share it)."""
    specs: dict[tuple[str, str], tuple[dict[str, Path], float]] = {}
    for text in refs:
        ref = parse_ref(text)
        if ref.scheme == "vllm" and ref.options.get("launch") == "1":
            model, adapters, args, timeout_s = launch_spec(ref)
            known, longest = specs.get((model, args), ({}, 0.0))
            specs[(model, args)] = ({**known, **adapters}, max(longest, timeout_s))
    held: list[VLLMServer] = []
    try:
        for (model, args), (adapters, timeout_s) in specs.items():
            server = ensure(model, adapters, args, timeout_s)
            with _lock:
                server.users += 1
            held.append(server)
        yield
    finally:
        with _lock:
            for server in held:
                server.users -= 1
                if server.users == 0:
                    server.stop()
                    _servers.pop((server.model, server.args), None)


atexit.register(stop_all)  # a crash or Ctrl-C must not leave a GPU server behind
