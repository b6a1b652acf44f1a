"""The transformers (+ PEFT) backend: the white-box one (prefill, hidden states, logits, adapters).

Refs: `hf:DIR_OR_GGUF[+ADAPTER_DIR]`, `gguf:FILE[+ADAPTER_DIR]?backend=hf`,
`embedded:NAME[+ADAPTER_DIR]?backend=hf`. Options: `dtype` (auto|float32|bfloat16|float16; auto = fp32
on CPU), `device` (auto|cpu|cuda), `trust_remote_code` (0; 1 to opt in), `max_batch` (8).

Safe by default: weights load from safetensors only (pickle is refused), remote code is off, adapters
must ship adapter_model.safetensors. A GGUF file is de-quantised by transformers once and the fp32
result is kept as safetensors in the tunesafe cache (keyed by the GGUF's sha256), so later loads take
seconds instead of minutes; the numbers are the same either way.

Greedy requests (temperature 0) of one micro-batch are decoded together, left-padded; sampled requests
run one at a time so each gets its own seed. A request's `latency_s` is the wall time of its batch.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tunesafe.errors import UserError
from tunesafe.models import hf_decode
from tunesafe.models.base import apply_stop, error_generation
from tunesafe.models.batching import MicroBatcher
from tunesafe.models.chat_template import fold_system, keeps_system
from tunesafe.models.embedded import embedded_gguf_path
from tunesafe.models.greedy_decode import last_logit_only
from tunesafe.models.hashing import cache_dir, file_sha256, files_sha256, remember
from tunesafe.models.reasoning import opens_reasoning, settle_reasoning
from tunesafe.models.refs import ModelRef, check_options, parse_ref
from tunesafe.models.tool_calls import to_template_messages
from tunesafe.types import Capabilities, ChatRequest, Generation, canonical_json, sha256_hex

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
log = logging.getLogger(__name__)
_OPTIONS = ("backend", "dtype", "device", "trust_remote_code", "max_batch", "decode")


@dataclass
class LastTokenStates:
    """White-box view of the position that produces the next token: `hidden` is
    [layers + 1, batch, hidden_size] (index 0 = embeddings), `logits` is [batch, vocab]."""

    hidden: Any
    logits: Any


def resolve_weights(ref: ModelRef) -> Path:
    """The weights a local ref names: a GGUF file or a transformers model folder."""
    if ref.scheme == "embedded":
        return embedded_gguf_path(ref.target)
    path = Path(ref.target).expanduser()
    if not path.exists():
        raise UserError(f"model path '{path}' does not exist", where=str(ref),
                        fix="give an existing model folder or .gguf file")
    if ref.scheme == "gguf" and not (path.is_file() and path.suffix == ".gguf"):
        raise UserError(f"'{path}' is not a .gguf file", where=str(ref),
                        fix="use hf:FOLDER for model folders")
    if path.is_dir() and not sorted(path.glob("*.safetensors")):
        raise UserError(f"no *.safetensors weights in '{path}' (pickle weights are refused)", where=str(ref),
                        fix="convert the checkpoint to safetensors")
    return path


def weight_files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(path.glob("*.safetensors"))


BUILTIN_ADAPTERS = Path(__file__).parent / "adapters"


def adapter_folder(adapter: str) -> Path:
    """A path, or the name of an adapter shipped with tunesafe (e.g. `aoa-demo`, the safety-eroding
    demonstration LoRA of the embedded model; see models/adapters/README.md)."""
    folder = Path(adapter).expanduser()
    if not folder.exists() and "/" not in adapter and (BUILTIN_ADAPTERS / adapter).is_dir():
        return BUILTIN_ADAPTERS / adapter
    return folder


def adapter_files(adapter: str | None, ref: ModelRef) -> list[Path]:
    if adapter is None:
        return []
    folder = adapter_folder(adapter)
    missing = [name for name in ADAPTER_FILES if not (folder / name).is_file()]
    if missing:
        raise UserError(f"adapter folder '{folder}' lacks {', '.join(missing)}", where=str(ref),
                        fix="give a PEFT adapter folder saved with safetensors (save_pretrained)")
    return [folder / name for name in ADAPTER_FILES]


def _pick_dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32  # CPU: fp32 is exact and, without bf16 units, not slower
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise UserError(f"unknown dtype '{name}'", where="dtype option",
                        fix="use auto, float32, bfloat16 or float16") from None


def dtype_name(dtype: Any) -> str:
    """A torch dtype's name as the `dtype` option spells it, e.g. "bfloat16"."""
    return str(dtype).removeprefix("torch.")


def numerics_hash(weights_sha256: str, dtype: str, decode: str) -> str:
    """The identity of the answers of these weights run in `dtype` with `decode` (the resolved names): the
    model hash runs and response-cache entries are stored under. Half precision answers differ from fp32
    ones (and, decoded statically, by batch shape), so a store shared by a CPU and a GPU machine must
    not hand one's answers to the other. fp32 keeps the plain weights hash: the identity runs and cache
    entries were stored under before precision counted, so stored fp32 baselines stay reusable."""
    if dtype == "float32":
        return weights_sha256
    return sha256_hex(canonical_json({"weights": weights_sha256, "dtype": dtype, "decode": decode}))


CONVERSION_MANIFEST = "tunesafe-conversion.json"


def _converted_gguf(gguf: Path) -> Path:
    """Folder with the GGUF de-quantised to safetensors, created on first use (atomically). Its files'
    sha256 are recorded at conversion and checked at every load (memoised by size and mtime), so a
    converted copy cannot drift from the pinned GGUF it was made from unnoticed."""
    gguf_sha = file_sha256(gguf)
    target = cache_dir() / "hf" / gguf_sha[:32]
    if not (target / CONVERSION_MANIFEST).is_file():
        _convert(gguf, gguf_sha, target)
    manifest = json.loads((target / CONVERSION_MANIFEST).read_text())
    for name, digest in manifest["files"].items():
        path = target / name
        if not path.is_file() or file_sha256(path) != digest:
            raise UserError(f"the converted copy of {gguf.name} was modified ({name})", where=str(target),
                            fix=f"delete {target}; it is rebuilt from the verified GGUF on next use")
    return target


def _convert(gguf: Path, gguf_sha: str, target: Path) -> None:
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
        # save_pretrained refuses models loaded from GGUF (they carry a non-serialisable quantizer
        # marker), yet the tensors are plain fp32 by now: save them and a config without the marker.
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        model.generation_config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {"gguf_sha256": gguf_sha, "files": files}
        (tmp / CONVERSION_MANIFEST).write_text(json.dumps(manifest, indent=2))
        if target.exists():  # a folder without a manifest: unfinished or from an older version
            stale = target.with_name(f".stale-{os.getpid()}-{target.name}")
            os.replace(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: its folder is as good as ours
            shutil.rmtree(tmp, ignore_errors=True)
            return
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for name, digest in files.items():
        remember(target / name, digest)  # spare the first load a re-hash of the new paths


class HFEngine:
    """Loaded weights (+ adapter) shared by the views on it; one lock serialises the model."""

    auto_failed = False  # the mode `auto` picked failed once: generate() from then on

    def __init__(self, weights: Path, adapter: Path | None, *, dtype: str = "auto", device: str = "auto",
                 trust_remote_code: bool = False) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        folder = _converted_gguf(weights) if weights.is_file() else weights
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        picked = _pick_dtype(dtype, self.device)
        self.dtype = dtype_name(picked)  # what `auto` resolved to
        model: Any = AutoModelForCausalLM.from_pretrained(
            folder, dtype=picked, use_safetensors=True, trust_remote_code=trust_remote_code)
        self.model: Any = _attach_adapter(model, adapter) if adapter else model
        self.model.to(self.device).eval()
        self.has_adapter = adapter is not None
        self.lock = threading.Lock()
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.eos_ids.add(self.tokenizer.eos_token_id)

    @functools.cached_property
    def folds_system(self) -> bool:
        """The chat template takes no system message: it goes into the first user turn (chat_template.py)."""
        return bool(self.tokenizer.chat_template) and not keeps_system(self.tokenizer)

    def _adapter_state(self, adapter_on: bool) -> contextlib.AbstractContextManager[Any]:
        if self.has_adapter and not adapter_on:
            return self.model.disable_adapter()  # type: ignore[no-any-return,operator]
        return contextlib.nullcontext()

    def prompt(self, request: ChatRequest) -> str:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        if request.tools:  # the template's own tool format (Qwen2.5: <tool_call> blocks, <tool_response>)
            if "tools" not in (self.tokenizer.chat_template or ""):  # else the tools would silently vanish
                raise ValueError("this model's chat template has no tool format (tool calling needs one)")
            text = self.tokenizer.apply_chat_template(
                to_template_messages(request.messages), tools=[dict(t) for t in request.tools],
                add_generation_prompt=True, tokenize=False)
        elif self.tokenizer.chat_template:
            turns = fold_system(messages) if self.folds_system else messages
            text = self.tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
        else:  # base models without a template get plain role lines
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return str(text) + (request.prefill or "")

    def _encode(self, prompts: Sequence[str]) -> Any:
        return self.tokenizer(list(prompts), return_tensors="pt", padding=True,
                              add_special_tokens=False).to(self.device)

    def run(self, requests: list[ChatRequest], adapter_on: bool, decode: str = "auto",
            max_batch: int = 1) -> list[Generation]:
        out: dict[int, Generation] = {}
        prompts: dict[int, str] = {}
        for i, request in enumerate(requests):
            try:
                prompts[i] = self.prompt(request)
            except Exception as exc:  # e.g. a chat template rejecting a role order: only this one fails
                out[i] = error_generation(f"chat template failed: {type(exc).__name__}: {exc}")
        greedy = [i for i in prompts if requests[i].temperature <= 0]
        groups = [greedy] if greedy else []
        groups += [[i] for i in prompts if requests[i].temperature > 0]
        with self._adapter_state(adapter_on):
            for group in groups:
                batch = [requests[i] for i in group]
                try:
                    results = self._generate(batch, [prompts[i] for i in group], decode, max_batch)
                except Exception as exc:  # e.g. out of memory: these requests fail, the run goes on
                    failed = error_generation(f"generation failed: {type(exc).__name__}: {exc}")
                    results = [failed] * len(batch)
                out.update(zip(group, results, strict=True))
        return [out[i] for i in range(len(requests))]

    def _generate(self, batch: list[ChatRequest], prompts: list[str],
                  decode: str = "auto", max_batch: int = 1) -> list[Generation]:
        import torch

        started = time.perf_counter()
        sample = batch[0].temperature > 0
        fell_back = self.auto_failed and decode == "auto"
        mode = "generate" if sample or fell_back else hf_decode.resolve(decode, self.device)
        with torch.inference_mode():
            try:
                new, prompt_lens = self._new_tokens(mode, batch, prompts, max_batch)
            except Exception as exc:  # a mode `auto` picked must not fail a run that generate() can do
                if decode != "auto" or mode == "generate":
                    raise
                # the raising line too: compiler errors often carry no message (a bare AssertionError)
                frame = traceback.extract_tb(exc.__traceback__)[-1]
                log.warning("decode=%s failed on this model (%s: %s, raised at %s:%s); decoding with "
                            "generate() from now on", mode, type(exc).__name__, exc, frame.filename,
                            frame.lineno)
                self.auto_failed = True
                new, prompt_lens = self._new_tokens("generate", batch, prompts)
        latency = time.perf_counter() - started
        return [self._decode(new[row], request, int(prompt_lens[row]), latency, opens_reasoning(prompts[row]))
                for row, request in enumerate(batch)]

    def _new_tokens(self, mode: str, batch: list[ChatRequest], prompts: list[str], max_batch: int = 1
                    ) -> tuple[list[list[int]], list[int]]:
        """Each row's new token ids (up to the batch's largest max_new_tokens) and its prompt length."""
        import torch

        max_new = max(r.max_new_tokens for r in batch)
        if mode == "continuous":
            return hf_decode.continuous_generate(self.model, self.tokenizer, prompts, max_new, self.eos_ids)
        if mode == "static":
            tokens, mask = hf_decode.static_generate(self.model, self.tokenizer, prompts, max_new,
                                                     self.device, max_batch)
            return tokens.tolist(), mask.sum(dim=1).tolist()
        enc = self._encode(prompts)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": self.tokenizer.pad_token_id}
        if batch[0].temperature > 0:
            torch.manual_seed(batch[0].seed)
            kwargs.update(do_sample=True, temperature=batch[0].temperature, top_k=0, top_p=1.0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        output = self.model.generate(**enc, **kwargs)
        return output[:, enc["input_ids"].shape[1]:].tolist(), enc["attention_mask"].sum(dim=1).tolist()

    def _decode(self, ids: list[int], request: ChatRequest, prompt_tokens: int, latency: float,
                opened: bool = False) -> Generation:
        ids = ids[: request.max_new_tokens]
        end = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
        finish = "stop" if end is not None else "length"
        kept = ids if end is None else ids[:end]
        text, stopped = apply_stop(str(self.tokenizer.decode(kept, skip_special_tokens=True)), request.stop)
        generation = Generation(text=text, finish_reason="stop" if stopped else finish,
                                prompt_tokens=prompt_tokens, completion_tokens=len(kept) + (end is not None),
                                latency_s=latency)
        # the prompt is ours: a closing tag the template did not open is the answer's own text
        return settle_reasoning(generation, opened, prompt_known=True)

    def last_token_states(self, requests: Sequence[ChatRequest], adapter_on: bool) -> LastTokenStates:
        import torch

        with self.lock, self._adapter_state(adapter_on), torch.inference_mode():
            enc = self._encode([self.prompt(r) for r in requests])
            # Only the last position's logits are kept: the output layer over every position was a fifth
            # of SmolLM2's forward pass (the hidden states are the same to the bit).
            out = self.model(**enc, output_hidden_states=True, **last_logit_only(self.model))
        hidden = torch.stack([h[:, -1, :] for h in out.hidden_states])
        return LastTokenStates(hidden=hidden.float().cpu(), logits=out.logits[:, -1, :].float().cpu())


def _attach_adapter(model: Any, adapter: Path) -> Any:
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict
    from safetensors import safe_open

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peft_model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise UserError(f"adapter does not match the base model: {str(exc).splitlines()[0][:300]}",
                        where=str(adapter), fix="use the base model the adapter was trained on") from None
    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as fh:
        stored = set(fh.keys())
    expected = set(get_peft_model_state_dict(peft_model).keys())
    if stored != expected:
        odd = sorted(stored ^ expected)[:3]
        raise UserError(f"adapter does not match the base model ({len(stored ^ expected)} mismatched "
                        f"tensors, e.g. {', '.join(odd)})", where=str(adapter),
                        fix="use the base model the adapter was trained on")
    return peft_model


_ENGINES: dict[tuple[str, str | None, str, str, bool], tuple[tuple[object, ...], HFEngine]] = {}
_ENGINES_LOCK = threading.Lock()


def _files_signature(*paths: Path | None) -> tuple[object, ...]:
    """Name, size and mtime of each file: weights rewritten in place (a notebook training again into the
    same folder) must be loaded again, not served from the engine of the earlier files."""
    out: list[object] = []
    for path in paths:
        if path is None:
            continue
        files = sorted(f for f in path.iterdir() if f.is_file()) if path.is_dir() else [path]
        for f in files:
            st = f.stat()
            out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _engine(weights: Path, adapter: Path | None, dtype: str, device: str, trust: bool) -> HFEngine:
    # One engine per weights+adapter per process: loading twice would double memory for nothing. An
    # engine whose files changed since it loaded them is replaced, not kept beside the new one.
    key = (str(weights.resolve()), str(adapter.resolve()) if adapter else None, dtype, device, trust)
    signature = _files_signature(weights, adapter)
    with _ENGINES_LOCK:
        cached = _ENGINES.get(key)
        if cached is None or cached[0] != signature:
            _ENGINES[key] = (signature, HFEngine(weights, adapter, dtype=dtype, device=device,
                                                 trust_remote_code=trust))
        return _ENGINES[key][1]


class HFChatModel:
    """A ChatModel on an HFEngine. With an adapter, `base_view()` is the same weights with the adapter
    switched off: both run in one process on the same numerics."""

    backend = "hf"

    def __init__(self, ref: str, engine: HFEngine, hash_files: list[Path], *, adapter_on: bool,
                 max_batch: int = 8, decode: str = "auto",
                 executor: Executor | None = hf_decode.MODEL_THREAD) -> None:
        self.ref = ref
        self.decode = decode
        self.engine = engine
        self.adapter_on = adapter_on
        self._hash_files = hash_files
        self.capabilities = Capabilities(prefill=True, logprobs=True, hidden_states=True, white_box=True,
                                         lora=True, tools=True)
        self._batcher: MicroBatcher[ChatRequest, Generation] = MicroBatcher(
            lambda reqs: engine.run(reqs, adapter_on, decode, max_batch), max_batch=max_batch,
            lock=engine.lock, executor=executor)

    @property
    def folds_system(self) -> bool:
        return self.engine.folds_system

    @classmethod
    def from_ref(cls, ref: ModelRef) -> HFChatModel:
        check_options(ref, _OPTIONS, "hf")
        decode = ref.options.get("decode", "auto")
        if decode not in hf_decode.MODES:
            raise UserError(f"unknown decode mode {decode!r}", where=str(ref),
                            fix=f"use ?decode= one of {', '.join(hf_decode.MODES)}")
        weights = resolve_weights(ref)
        adapters = adapter_files(ref.adapter, ref)
        adapter = adapters[0].parent if adapters else None
        opts = ref.options
        engine = _engine(weights, adapter, opts.get("dtype", "auto"), opts.get("device", "auto"),
                         opts.get("trust_remote_code", "0").lower() in ("1", "true", "yes"))
        try:
            max_batch = int(opts.get("max_batch", "8"))
        except ValueError:
            raise UserError("max_batch must be an integer", where=str(ref), fix="e.g. ?max_batch=8") from None
        return cls(str(ref), engine, weight_files(weights) + adapters, adapter_on=adapter is not None,
                   max_batch=max_batch, decode=decode)

    def base_view(self) -> HFChatModel:
        """The base model (adapter off) on the same loaded weights."""
        base_ref = str(replace(parse_ref(self.ref), adapter=None))
        files = [p for p in self._hash_files if p.name not in ADAPTER_FILES]
        return HFChatModel(base_ref, self.engine, files, adapter_on=False, max_batch=self._batcher.max_batch,
                           decode=self.decode, executor=self._batcher.executor)

    def content_hash(self) -> str:
        return numerics_hash(files_sha256(self._hash_files), self.engine.dtype,
                             hf_decode.resolve(self.decode, self.engine.device))

    async def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        try:
            return await self._batcher.submit(list(requests))
        except Exception as exc:  # never let one failure kill the caller's batch
            return [error_generation(f"generation failed: {type(exc).__name__}: {exc}")] * len(requests)

    def last_token_states(self, requests: Sequence[ChatRequest]) -> LastTokenStates:
        """Hidden states and logits at the next-token position (blocking; for white-box features)."""
        return self.engine.last_token_states(requests, self.adapter_on)

    async def aclose(self) -> None:
        await self._batcher.aclose()
