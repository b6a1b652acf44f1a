"""Would int8 weights make the transformers path fast enough for `make demo`? Greedy generation of one
batch of the demo's prompts (smoke suite, direct requests, chat template) on the embedded model in
float32 and with torch's dynamic int8 quantisation of every Linear layer: tokens/s and how many answers
come out identical, for two quantisation variants. A measurement, not a backend option.

    python benchmarks/int8_generation.py [--model-dir DIR] [--batch 16] [--max-new-tokens 64] [--json OUT]

DIR: the converted embedded model (default: the first folder in ~/.cache/tunesafe/hf with a config)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path
from typing import Any

from tunesafe.suite import load_suite


def _generate(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> tuple[list[str], float]:
    import torch

    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                             top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id)
    seconds = time.perf_counter() - started
    width = enc["input_ids"].shape[1]
    return [tokenizer.decode(row[width:], skip_special_tokens=True) for row in out], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = Path.home() / ".cache/tunesafe/hf"
    folder = args.model_dir or sorted(p.parent for p in cache.glob("*/config.json"))[0]
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    behaviors = [b for b in load_suite("smoke").behaviors if b.language == "en"][: args.batch]
    prompts = [str(tokenizer.apply_chat_template([{"role": "user", "content": b.text}], tokenize=False,
                                                 add_generation_prompt=True)) for b in behaviors]
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    _generate(model, tokenizer, prompts[:2], 4)  # first-call setup outside the clock
    fp32, fp32_s = _generate(model, tokenizer, prompts, args.max_new_tokens)
    tokens = len(prompts) * args.max_new_tokens  # upper bound: greedy rows may stop early
    result: dict[str, Any] = {"model_dir": str(folder), "batch": len(prompts),
                              "max_new_tokens": args.max_new_tokens, "fp32_s": round(fp32_s, 2),
                              "fp32_tokens_per_s": round(tokens / fp32_s, 1), "variants": {}}
    linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    variants = {
        # every Linear layer, one scale per weight tensor (torch's default dynamic qconfig)
        "per_tensor_all": dict.fromkeys(linear, torch.ao.quantization.default_dynamic_qconfig),
        # one scale per output channel, the output head (a row per vocabulary entry) kept in float32
        "per_channel_no_head": {n: torch.ao.quantization.per_channel_dynamic_qconfig for n in linear
                                if not n.endswith("lm_head")},
    }
    for name, spec in variants.items():
        quantized = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), spec, dtype=torch.qint8)
        _generate(quantized, tokenizer, prompts[:2], 4)
        int8, int8_s = _generate(quantized, tokenizer, prompts, args.max_new_tokens)
        result["variants"][name] = {
            "seconds": round(int8_s, 2), "speedup": round(fp32_s / int8_s, 2),
            "tokens_per_s": round(tokens / int8_s, 1),
            "identical_answers": sum(a == b for a, b in zip(fp32, int8, strict=True)),
            "same_first_20_chars": sum(a[:20] == b[:20] for a, b in zip(fp32, int8, strict=True))}
    result.update(load_avg_1m=round(os.getloadavg()[0], 1), cpus=os.cpu_count())
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
