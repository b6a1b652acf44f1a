"""The llama.cpp backend: fast CPU inference of GGUF files through llama.cpp's own server.

Refs: `gguf:FILE?backend=llamacpp`, `embedded:NAME?backend=llamacpp`. Options: `parallel` (server
slots decoded together, 8), `ctx` (context tokens per slot, prompt + answer, 4096), `threads` (CPU
threads, all cores), `timeout` (seconds per request, 300), `startup_timeout` (seconds to load, 120),
`share_prefix` (1: a prompt prefix several requests share is computed once and restored into the other
slots, models/llamacpp_slots.py; 0: each slot computes its own prompt).

tunesafe starts one llama.cpp server per model on a free loopback port and talks to it with the
OpenAI-compatible HTTP backend, so retries, timeouts and per-request errors behave exactly as for any
served model. The server is a `llama-server` binary when there is one ($TUNESAFE_LLAMA_SERVER, on PATH,
or next to the Python running tunesafe: `make llama-server` builds one for this CPU), else the same
server code from the prebuilt `xllamacpp` wheel (tunesafe[llamacpp], models/llamacpp_serve.py;
TUNESAFE_LLAMA_SERVER=xllamacpp picks it where a binary exists). It is stopped when the model object
goes away or the process exits.

A PEFT LoRA adapter (`embedded:NAME+ADAPTER?backend=llamacpp`) is converted to llama.cpp's GGUF LoRA
format once (models/gguf_lora.py) and applied by the server. Black-box: no hidden states or logits;
white-box features need the hf backend.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import httpx

from tunesafe.errors import UserError
from tunesafe.models.gguf_lora import gguf_lora
from tunesafe.models.hashing import files_sha256
from tunesafe.models.llamacpp_slots import SharedPrefixSlots
from tunesafe.models.openai_http import OpenAIChatModel
from tunesafe.models.refs import ModelRef, parse_options, redact_ref
from tunesafe.types import Capabilities, ChatRequest, Generation

BINARY_ENV = "TUNESAFE_LLAMA_SERVER"
WHEEL = "xllamacpp"  # BINARY_ENV's value that picks the wheel even where a binary is found
_WHEEL_COMMAND = [sys.executable, "-m", "tunesafe.models.llamacpp_serve"]
_OPTIONS = {"parallel": int, "ctx": int, "threads": int, "timeout": float,
            "startup_timeout": float, "share_prefix": int}
_BIND_TRIES = 3
_PORT_TAKEN = "couldn't bind"  # llama-server's log line when its port is in use
_FIX_SERVER = (f"pip install 'tunesafe[llamacpp]' (llama.cpp's server, prebuilt), or `make llama-server` "
               f"(built for this CPU, ~6 min), or point {BINARY_ENV} at a llama-server binary, or drop "
               f"?backend=llamacpp")


# The server continues an assistant turn the request prefills and calls tools (OpenAIChatModel's).
CAPABILITIES = Capabilities(prefill=True, tools=True)


def find_server() -> list[str]:
    """The command that starts llama.cpp's server (llama-server's flags follow); UserError with the ways
    to get one when there is none."""
    configured = os.environ.get(BINARY_ENV)
    if configured == WHEEL:
        if importlib.util.find_spec("xllamacpp") is None:
            raise UserError("xllamacpp is not installed", where=f"{BINARY_ENV}={WHEEL}",
                            fix="pip install 'tunesafe[llamacpp]', or unset it")
        return _WHEEL_COMMAND
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise UserError(f"{BINARY_ENV}={configured} is not an executable file", where=BINARY_ENV,
                            fix="point it at llama.cpp's llama-server binary")
        return [str(path)]
    # `.venv/bin/python -m tunesafe` runs without the venv's bin on PATH, so look next to Python too.
    beside_python = str(Path(sys.executable).parent)
    found = shutil.which("llama-server") or shutil.which("llama-server", path=beside_python)
    if found is not None:  # built for this CPU: preferred over the generic prebuilt wheel
        return [found]
    if importlib.util.find_spec("xllamacpp") is not None:
        return _WHEEL_COMMAND
    raise UserError("llama.cpp's server is not installed", where="backend=llamacpp", fix=_FIX_SERVER)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server:
    """One llama.cpp server child process serving one GGUF on loopback."""

    def __init__(self, command: list[str], gguf: Path, lora: Path | None, *, parallel: int, ctx: int,
                 threads: int, startup_timeout: float, save_dir: Path | None = None) -> None:
        flags = ["--model", str(gguf), "--host", "127.0.0.1",
                 "--parallel", str(parallel), "--ctx-size", str(ctx * parallel), "--threads", str(threads),
                 # Per-slot KV, not --kv-unified: with one shared pool, identical greedy requests decoded
                 # together came back different (batch layout changed the numerics); reproducible
                 # answers matter more here than packing long prompts.
                 "--no-kv-unified",
                 "--jinja",  # the GGUF's own chat template, as transformers renders it
                 "--no-webui", "--alias", "tunesafe-local"]
        if lora is not None:
            flags += ["--lora", str(lora)]
        if save_dir is not None:
            flags += ["--slot-save-path", str(save_dir)]
        # The free port is probed, then bound by the child: another process may take it in between.
        for attempt in range(_BIND_TRIES):
            self._start([*command, *flags], _free_port())
            if self._wait_ready(startup_timeout, gguf, retry_port=attempt + 1 < _BIND_TRIES):
                return

    def _start(self, cmd: list[str], port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        # The log goes to a file, not a pipe: a pipe nobody reads fills up and blocks the server.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the finalizer with the process)
        try:
            self.proc = subprocess.Popen([*cmd, "--port", str(port)], stdin=subprocess.DEVNULL,
                                         stdout=self._log, stderr=subprocess.STDOUT)
        except OSError as exc:  # an executable file the OS cannot run: a missing interpreter, a wrong format
            self._log.close()
            raise UserError(f"cannot start {cmd[0]}: {exc.strerror or exc}", where=BINARY_ENV,
                            fix=_FIX_SERVER) from None
        self._finalizer = weakref.finalize(self, _stop, self.proc, self._log)

    def _wait_ready(self, timeout: float, gguf: Path, retry_port: bool) -> bool:
        """True once the server answers; False when it could not bind its port and `retry_port`."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:  # one client: each httpx.get loads the CA bundle again
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    tail = self.log_tail()  # before stop(), which closes the log
                    self.stop()
                    if retry_port and _PORT_TAKEN in tail:
                        return False
                    raise UserError(f"llama.cpp's server exited with code {self.proc.returncode} while "
                                    f"loading {gguf.name}: {tail}", where=str(gguf),
                                    fix="check that the file is a GGUF this llama.cpp build supports")
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass  # not listening yet
                time.sleep(0.1)
        self.stop()
        raise UserError(f"llama.cpp's server did not become ready within {timeout:.0f} s", where=str(gguf),
                        fix="raise ?startup_timeout= or check the machine's load")

    def log_text(self) -> str:
        """Everything the server has logged (empty once it is stopped)."""
        if self._log.closed:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def log_tail(self, lines: int = 5) -> str:
        return " | ".join(self.log_text().strip().splitlines()[-lines:])

    def stop(self) -> None:
        self._finalizer()


def _stop(proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()


def _files(ref: ModelRef) -> tuple[Path, list[Path]]:
    """The GGUF a ref names and its PEFT adapter's files (UserError when either is missing or wrong)."""
    from tunesafe.models.hf import adapter_files, resolve_weights  # embedded names, path checks

    gguf = resolve_weights(ref)
    if not gguf.is_file() or gguf.suffix != ".gguf":
        raise UserError(f"llama.cpp serves .gguf files, not '{gguf}'", where=str(ref),
                        fix="use a gguf: or embedded: ref, or ?backend=hf for model folders")
    return gguf, adapter_files(ref.adapter, ref)


def identity(ref: ModelRef) -> tuple[str, Capabilities]:
    """A ref's content hash and capabilities, as LlamaCppChatModel would report them, without starting a
    server (checking for a stored run needs only these; a server takes seconds to load)."""
    _options(ref)
    gguf, adapter = _files(ref)
    return files_sha256([gguf, *adapter]), CAPABILITIES


def _options(ref: ModelRef) -> dict[str, Any]:
    """The ref's options, each value checked here under its own name: past this point a bad one surfaces
    only after the server has loaded, as an option of the HTTP client the user never wrote."""
    opts = parse_options(ref, _OPTIONS, "llamacpp")
    for name, value in opts.items():
        if name in ("timeout", "startup_timeout"):
            # NaN too; a request's timeout must end (a startup's may wait for ever)
            bad = not value > 0 or (name == "timeout" and value == math.inf)
            wanted = "a number of seconds above 0"
        elif name == "share_prefix":
            bad, wanted = value not in (0, 1), "0 or 1"
        else:  # threads 0 means all cores
            least = 0 if name == "threads" else 1
            bad, wanted = value < least, f"{least} or more"
        if bad:
            raise UserError(f"{name}={ref.options[name]} is not {wanted}", where=redact_ref(str(ref)),
                            fix=f"make {name} {wanted}, or leave it out for the default")
    return opts


class LlamaCppChatModel:
    backend = "llamacpp"

    def __init__(self, ref: str, files: list[Path], server: list[str], *, lora: Path | None = None,
                 parallel: int = 8, ctx: int = 4096, threads: int | None = None, timeout: float = 300.0,
                 startup_timeout: float = 120.0, share_prefix: int = 1) -> None:
        """`files`: the GGUF first, then the PEFT adapter's files (hashed); `lora`: that adapter as GGUF."""
        self.ref = ref
        self._hash_files = files
        self._ctx = ctx
        # the saved prefixes live as long as the server (removed with this object)
        self._save_dir = tempfile.TemporaryDirectory(prefix="tunesafe-llamacpp-") if share_prefix else None
        self.server = _Server(server, files[0], lora, parallel=parallel, ctx=ctx,
                              threads=threads or os.cpu_count() or 1, startup_timeout=startup_timeout,
                              save_dir=Path(self._save_dir.name) if self._save_dir else None)
        # A local server answers every request it accepts, so retrying only hides a crash: few retries,
        # the breaker opens fast if the server dies, and a dead one stops the run (resumable) after 30 s.
        self._http = OpenAIChatModel("tunesafe-local", f"{self.server.url}/v1", concurrency=parallel,
                                     timeout=timeout, max_retries=1, breaker=4, cooldown=5.0,
                                     prefill=CAPABILITIES.prefill, max_pause=30.0)
        self.capabilities = self._http.capabilities
        self.prefixes = (SharedPrefixSlots(self.server.url, parallel, Path(self._save_dir.name),
                                           timeout=timeout) if self._save_dir else None)

    @classmethod
    def from_ref(cls, ref: ModelRef) -> LlamaCppChatModel:
        opts = _options(ref)
        gguf, adapter = _files(ref)
        server = find_server()
        lora = gguf_lora(adapter[0].parent, gguf) if adapter else None
        return cls(str(ref), [gguf, *adapter], server, lora=lora, **opts)  # type: ignore[arg-type]

    def content_hash(self) -> str:
        # Same files, same hash as on the hf backend; the answer cache keys by backend as well.
        return files_sha256(self._hash_files)

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        gens = await self._http.generate(requests) if self.prefixes is None else list(await asyncio.gather(
            *(self._shared(r, self.prefixes) for r in requests)))
        if any(g.error for g in gens) and self.server.proc.poll() is not None:
            code, tail = self.server.proc.returncode, self.server.log_tail()
            died = f" (llama.cpp's server exited with code {code}: {tail})"
            gens = [replace(g, error=g.error + died) if g.error else g for g in gens]
        return [replace(g, error=f"{g.error} (raise ?ctx=, now {self._ctx})")
                if g.error and "exceed_context_size" in g.error else g for g in gens]

    async def _shared(self, request: ChatRequest, prefixes: SharedPrefixSlots) -> Generation:
        return await prefixes.generate(request, self._http.payload(request),
                                       lambda extra: self._http.generate_one(request, extra))

    async def aclose(self) -> None:
        if self.prefixes is not None:
            await self.prefixes.aclose()
        await self._http.aclose()

    def close(self) -> None:
        """Stop the server now (it is also stopped when this object is collected or at exit)."""
        self.server.stop()
