"""vLLM: a base model and its LoRA adapters on one server, so a gate's two sides share weights and kernels.

    vllm:MODEL@URL                attach to a running `vllm serve MODEL` (the base model)
    vllm:MODEL+NAME@URL           its LoRA module NAME (`--lora-modules NAME=PATH`)
    vllm:MODEL[+ADAPTER]?launch=1 start `vllm serve` on a free loopback port (models/vllm_launch.py);
                                  ADAPTER is a PEFT folder, served under its folder name
Options: `launch=1`, `args=` (extra `vllm serve` flags, shell-quoted), `startup_timeout=` (s, default
900), and every option of the OpenAI-compatible backend (concurrency, timeout, ...).

The equivalent manual setup, then attach both sides to it:

    vllm serve MODEL --seed 0 --enable-lora --max-lora-rank 16 --lora-modules my-ft=/path/to/adapter
    tunesafe gate --base vllm:MODEL@http://HOST:8000/v1 --candidate vllm:MODEL+my-ft@http://HOST:8000/v1

The model hash covers the base name, the served name, the adapter files' sha256 (when launched from a
folder) and the server's /v1/models entry, not the URL: a launched server's port changes every time.
"""

from __future__ import annotations

from typing import Any

from tunesafe.errors import UserError
from tunesafe.models.credentials import KeySource
from tunesafe.models.hashing import files_sha256
from tunesafe.models.openai_http import OpenAIChatModel
from tunesafe.models.refs import ModelRef
from tunesafe.models.vllm_launch import ensure, launch_spec
from tunesafe.types import canonical_json, sha256_hex

LAUNCH_OPTIONS = ("launch", "args", "startup_timeout")


def check_server(ref: ModelRef) -> bool:
    """Whether a vllm: ref launches its server (True) or attaches to one at @URL (False); UserError when
    it does both or neither."""
    launch = ref.options.get("launch") == "1"
    if launch and ref.base_url:
        raise UserError(f"'{ref}' both names a server and asks to launch one", where="model ref",
                        fix="drop @URL to launch, or drop ?launch=1 to attach")
    if not launch and not ref.base_url:
        raise UserError(f"'{ref}' names no vLLM server", where="model ref",
                        fix="attach with vllm:MODEL[+LORA_NAME]@http://HOST:PORT/v1, or add ?launch=1")
    return launch


class VLLMChatModel(OpenAIChatModel):
    _identity: dict[str, Any]

    @classmethod
    def from_ref(cls, ref: ModelRef, token_provider: KeySource | None = None) -> VLLMChatModel:
        options = {k: v for k, v in ref.options.items() if k not in LAUNCH_OPTIONS}
        identity: dict[str, Any] = {"vllm": ref.target, "adapter": ref.adapter}
        if check_server(ref):
            model, adapters, args, timeout_s = launch_spec(ref)
            served = next(iter(adapters), model)
            identity["adapter_sha256"] = files_sha256(
                sorted(p for folder in adapters.values() for p in folder.iterdir() if p.is_file()))
            url = ensure(model, adapters, args, timeout_s).url
        else:
            served, url = ref.adapter or ref.target, str(ref.base_url)
        model_ = super().from_ref(ModelRef("openai", served, base_url=url, options=options), token_provider)
        assert isinstance(model_, VLLMChatModel)
        model_._identity = {**identity, "served": served}
        # base_url, not url: the parent took the URL's userinfo out into a header, and the ref is stored
        model_.ref = f"vllm:{ref.target}" + (f"+{served}" if ref.adapter else "") + f"@{model_.base_url}"
        return model_

    def content_hash(self) -> str:
        if self._hash is None:
            self._hash = sha256_hex(canonical_json({**self._identity, "model_info": self.model_info()}))
        return self._hash
