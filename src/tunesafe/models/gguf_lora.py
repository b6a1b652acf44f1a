"""PEFT LoRA adapter -> GGUF LoRA adapter, so llama.cpp can serve a fine-tune on top of its GGUF base.

The layout is llama.cpp's own (convert_lora_to_gguf.py): `general.type = adapter`, `adapter.type =
lora`, `adapter.lora.alpha`, and per adapted weight `<gguf name>.lora_a` (PEFT's lora_A, [r, in]) and
`.lora_b` (lora_B, [out, r]) in fp32; llama.cpp scales by alpha / r as PEFT does. Only plain LoRA on
linear layers converts; anything else (DoRA, rsLoRA, per-module ranks, saved modules, embeddings) is
refused with the way out rather than approximated. The result is cached by the adapter's and the
base's hashes.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tunesafe.errors import UserError
from tunesafe.models.gguf_header import gguf_metadata
from tunesafe.models.hashing import cache_dir, files_sha256

_PEFT_PREFIX = "base_model.model."
_UNSUPPORTED = {"use_dora": "DoRA", "use_rslora": "rsLoRA", "rank_pattern": "per-module ranks",
                "alpha_pattern": "per-module alphas", "modules_to_save": "fully saved modules",
                "fan_in_fan_out": "fan-in/fan-out weights"}
_FIX = "run this adapter on the hf backend (?backend=hf)"


def gguf_lora(adapter_dir: Path, base_gguf: Path) -> Path:
    """The GGUF version of the PEFT adapter in `adapter_dir` for `base_gguf` (converted on first use)."""
    files = [adapter_dir / "adapter_config.json", adapter_dir / "adapter_model.safetensors"]
    key = files_sha256([*files, base_gguf])
    target = cache_dir() / "lora" / f"{key[:32]}.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".gguf.part")
        os.close(fd)
        try:
            _convert(adapter_dir, base_gguf, Path(tmp))
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
    return target


def _convert(adapter_dir: Path, base_gguf: Path, out: Path) -> None:
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    _check_config(config, adapter_dir)
    arch, blocks = _base_arch(base_gguf)
    names = gguf.get_tensor_name_map(arch, blocks)
    pairs: dict[str, dict[str, Any]] = {}
    for name, tensor in load_file(adapter_dir / "adapter_model.safetensors").items():
        module, _, kind = name.removeprefix(_PEFT_PREFIX).rpartition(".lora_")
        gguf_name = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if kind not in ("A.weight", "B.weight") or gguf_name is None:
            raise UserError(f"adapter tensor '{name}' has no llama.cpp counterpart", where=str(adapter_dir),
                            fix=_FIX)
        pairs.setdefault(gguf_name, {})[kind[0]] = tensor
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    for gguf_name, pair in sorted(pairs.items()):
        if set(pair) != {"A", "B"}:
            raise UserError(f"adapter has only half of the LoRA pair for {gguf_name}", where=str(adapter_dir),
                            fix="re-save the adapter with PEFT's save_pretrained")
        writer.add_tensor(gguf_name + ".lora_a", pair["A"].astype("float32"))
        writer.add_tensor(gguf_name + ".lora_b", pair["B"].astype("float32"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _check_config(config: dict[str, Any], adapter_dir: Path) -> None:
    if config.get("peft_type") != "LORA":
        raise UserError(f"llama.cpp runs LoRA adapters, not {config.get('peft_type')}",
                        where=str(adapter_dir), fix=_FIX)
    used = [label for key, label in _UNSUPPORTED.items() if config.get(key)]
    if used:
        raise UserError(f"the adapter uses {', '.join(used)}, which the llama.cpp conversion does not carry",
                        where=str(adapter_dir), fix=_FIX)


def _base_arch(base_gguf: Path) -> tuple[Any, int]:
    import gguf

    arch_name = _header_value(base_gguf, "general.architecture")
    arch = next((a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == arch_name), None)
    if arch is None:
        raise UserError(f"unknown architecture '{arch_name}'", where=str(base_gguf), fix=_FIX)
    return arch, int(_header_value(base_gguf, f"{arch_name}.block_count"))


def _header_value(base_gguf: Path, key: str) -> Any:
    value = gguf_metadata(base_gguf, [key]).get(key)
    if value is None:
        raise UserError(f"'{base_gguf.name}' lacks {key}", where=str(base_gguf), fix="use a complete GGUF")
    return value
