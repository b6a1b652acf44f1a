"""How the hf backend decodes a batch of greedy requests (`hf:...?decode=MODE`).

- `generate`: transformers' generate() on the left-padded batch with a dynamic KV cache. On a GPU each
  decode step then costs tens of milliseconds of host work, far above the time to read the weights.
- `static`: generate() with a static KV cache, which transformers compiles (torch.compile) on a GPU.
  A compiled graph is specialised to its shapes, so shapes are bucketed: the batch is padded to the
  power of two that holds the model's max_batch (with copies of a real row, whose answers are dropped),
  the prompt width to a multiple of PROMPT_BUCKET (more left padding, masked out) and the cache to a
  multiple of CACHE_BUCKET tokens. A run of mixed prompts then reuses one decode graph per cache bucket
  instead of compiling per batch: compiling an 8B decode step takes tens of seconds, while a decode step
  below batch 64 costs about the same at any batch, since it is bound by reading the weights.
- `continuous`: transformers' continuous batching (generate_batch): a request that ends gives its slot
  to a waiting one, so a long answer does not hold the whole batch. For GPUs: on a CPU each batch pays
  seconds of set-up (BENCHMARKS.md, "Local GPU path").
- `auto` (default): `static` on CUDA, `generate` elsewhere (on a CPU the static cache is not compiled
  and only adds padding).

Every mode decodes the same greedy answers up to float rounding: positions follow the attention mask,
padding is masked, and each answer is cut at its own max_new_tokens and end token. In fp32 on a CPU the
tokens are identical (tests); in bf16 on a GPU the other batch shapes round differently, so a near-tie
can go the other way, as with any change of batch."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

MODES = ("auto", "generate", "static", "continuous")
PROMPT_BUCKET = 64
CACHE_BUCKET = 256


def _own_graph_state() -> None:
    """Import torch's CUDA-graph trees on the model thread first: before torch 2.13 they live in the state
    of the thread that imported them, and a compiled call from any other thread raised a bare
    AssertionError (pytorch/pytorch#123177; the H100 run in BENCHMARKS.md, "Local GPU path")."""
    import torch

    if torch.cuda.is_available():
        with contextlib.suppress(ImportError):
            import torch._inductor.cudagraph_trees  # noqa: F401


# Every hf model of the process generates on this one thread, so graphs are captured and replayed on the
# same thread whichever event loop or engine asks (each asyncio.run has its own default executor threads).
MODEL_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunesafe-hf",
                                  initializer=_own_graph_state)


def resolve(mode: str, device: Any) -> str:
    """The mode a batch runs in; ValueError for an unknown one."""
    if mode not in MODES:
        raise ValueError(f"unknown decode mode {mode!r} (one of {', '.join(MODES)})")
    if mode == "auto":
        return "static" if str(device).startswith("cuda") else "generate"  # a name or a torch.device
    return mode


def round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def batch_bucket(n: int) -> int:
    """The smallest power of two that holds n rows."""
    return 1 << max(n - 1, 0).bit_length()


def static_generate(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int,
                    device: Any, max_batch: int = 1) -> tuple[Any, Any]:
    """generate() on bucketed shapes with a static cache: (new tokens [rows, n], prompt mask [rows, width])
    for the real rows only. The batch is padded to batch_bucket(max_batch), so a model's smaller batches
    (the tail of a run, a warm-up) reuse the graph of its full ones."""
    rows = len(prompts)
    padded = list(prompts) + [prompts[0]] * (batch_bucket(max(rows, max_batch)) - rows)
    natural = max(len(ids) for ids in tokenizer(padded, add_special_tokens=False)["input_ids"])
    width = round_up(natural, PROMPT_BUCKET)
    enc = tokenizer(padded, return_tensors="pt", padding="max_length", max_length=width,
                    add_special_tokens=False).to(device)
    output = model.generate(**enc, do_sample=False, temperature=None, top_k=None, top_p=None,
                            max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                            cache_implementation="static",
                            max_cache_len=round_up(width + max_new_tokens, CACHE_BUCKET))
    return output[:rows, width:], enc["attention_mask"][:rows]


def continuous_generate(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int,
                        eos_ids: set[int | None], warmup: bool | None = None
                        ) -> tuple[list[list[int]], list[int]]:
    """Each prompt's new tokens through transformers' continuous batching (greedy), and its prompt
    length in tokens. `warmup` (default: on CUDA) captures CUDA graphs before the first request."""
    import torch

    # The warm-up builds the batch's buffers in this thread and the generation loop updates them in place
    # in its own thread, outside any inference mode: buffers made under the engine's inference_mode were
    # refused there (transformers 5.17 on an H100, BENCHMARKS.md). Plain no_grad tensors work in both.
    with torch.inference_mode(False), torch.no_grad():
        return _continuous(model, tokenizer, prompts, max_new_tokens, eos_ids, warmup)


def _continuous(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int,
                eos_ids: set[int | None], warmup: bool | None) -> tuple[list[list[int]], list[int]]:
    from transformers import GenerationConfig

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a LoRA stays injected
    ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    ends = sorted(i for i in eos_ids if i is not None)  # a tokenizer without an end token adds None
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=ends,
                              pad_token_id=tokenizer.pad_token_id)
    results = base.generate_batch(inputs=ids, generation_config=config, progress_bar=False,
                                  warmup=base.device.type == "cuda" if warmup is None else warmup)
    failed = [r.error for r in results.values() if r.error]
    if failed or len(results) != len(ids):
        raise RuntimeError(f"continuous batching: {failed[0] if failed else 'answers missing'}")
    by_prompt = {tuple(r.prompt_ids): list(r.generated_tokens) for r in results.values()}
    return [by_prompt[tuple(p)] for p in ids], [len(p) for p in ids]
