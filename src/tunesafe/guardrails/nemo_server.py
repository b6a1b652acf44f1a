"""Start a NeMo Guardrails server (`nemoguardrails server`, from `make nemo`'s venv) on loopback with the
config the project ships, its main model pointed at an OpenAI-compatible URL: for tests, benchmarks
and the walk-through. Nothing here is needed to verify a NeMo server someone else runs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path

import httpx
import yaml

CONFIG_DIR = Path(str(files("tunesafe.guardrails").joinpath("nemo_config")))
CONFIG_ID = "tunesafe"
VENV_BIN = Path(__file__).resolve().parents[3] / ".venv-nemo" / "bin"  # a source checkout's `make nemo`


def nemo_binary() -> str | None:
    """TUNESAFE_NEMO_BIN, else .venv-nemo/bin of a source checkout, else PATH."""
    return (os.environ.get("TUNESAFE_NEMO_BIN") or shutil.which("nemoguardrails", path=str(VENV_BIN))
            or shutil.which("nemoguardrails"))


def nemo_python(binary: str) -> str:
    """The interpreter of the venv the `nemoguardrails` script belongs to: its sibling `python`, else the
    script's shebang."""
    sibling = Path(binary).with_name("python")
    if sibling.exists():
        return str(sibling)
    first = Path(binary).read_bytes().split(b"\n", 1)[0].decode(errors="replace")
    if first.startswith("#!") and first[2:].strip():
        return first[2:].strip().split()[0]
    raise RuntimeError(f"cannot tell which python runs {binary}: no sibling python and no shebang")


def rail_prompt(task: str, text: str) -> str:
    """The self-check prompt the shipped config makes NeMo send for `text` (task self_check_input with
    the user's message, self_check_output with the answer)."""
    prompts = yaml.safe_load((CONFIG_DIR / CONFIG_ID / "prompts.yml").read_text(encoding="utf-8"))["prompts"]
    content = next(p["content"] for p in prompts if p["task"] == task)
    field = "{{ user_input }}" if task == "self_check_input" else "{{ bot_response }}"
    return str(content.replace(field, text).strip())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_nemo(model_url: str, binary: str | None = None, startup_s: float = 120.0) -> Iterator[str]:
    """Run the server until the block ends, listening on 127.0.0.1 only; yields its base URL
    (`http://127.0.0.1:PORT/v1`). The shipped config is the default one, so plain OpenAI chat clients (no
    `guardrails` field) get the rails too."""
    binary = binary or nemo_binary()
    if binary is None:
        raise RuntimeError("nemoguardrails is not installed: run `make nemo`")
    port = _free_port()
    env = {**os.environ, "MAIN_MODEL_BASE_URL": model_url, "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY",
           "unused"), "NEMO_GUARDRAILS_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1"}
    # Its log goes to a file: NeMo logs every rail call, and an unread pipe would fill and stall it.
    with tempfile.TemporaryDirectory(prefix="tunesafe-nemo-") as folder:
        log = Path(folder) / "server.log"
        with log.open("w") as sink:
            # through nemo_loopback.py: `nemoguardrails server` itself binds 0.0.0.0 and has no --host
            command = [nemo_python(binary), str(Path(__file__).with_name("nemo_loopback.py")), "server",
                       "--config", str(CONFIG_DIR), "--port", str(port), "--disable-chat-ui",
                       "--default-config-id", CONFIG_ID]
            proc = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + startup_s
            while not _up(url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nemoguardrails server did not start: {log.read_text()[-2000:]}")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/rails/configs", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
