from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Result = subprocess.CompletedProcess[str]


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run `tunesafe ARGS...` in a subprocess (the real entry point: UserError -> one line, exit 2)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Result:
        return subprocess.run([sys.executable, "-m", "tunesafe.cli.app", *args], capture_output=True,
                              text=True, env={**os.environ, **(env or {})}, timeout=timeout)

    return run


@pytest.fixture
def user_error() -> Callable[..., None]:
    """Check a CLI result is one clean user error: exit 2, no traceback, the given fragments in stderr."""

    def check(result: Result, *fragments: str) -> None:
        assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        for fragment in fragments:
            assert fragment in result.stderr, result.stderr

    return check


@pytest.fixture(scope="session")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random LoRA on SmolLM2-135M, saved the standard PEFT way (safetensors)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunesafe.models.embedded import embedded_gguf_path
    from tunesafe.models.hf import _converted_gguf

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(_converted_gguf(embedded_gguf_path("smollm2-135m")))
    config = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    folder = tmp_path_factory.mktemp("adapter")
    get_peft_model(base, config).save_pretrained(folder)
    return folder
