"""A random-weight Llama saved as a transformers folder, with a tokenizer of one word per token ("t0",
"t1", ...): a model the hf backend loads like any other, for tests and speed measurements (decode speed
does not depend on the weights, and nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, Any]] = {  # Llama-3-8B and a toy of the same family
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256, max_position_embeddings=4096),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, max_position_embeddings=1024),
}


def save_random_llama(folder: Path, shape: str = "tiny", *, device: str = "cpu", dtype: Any = None,
                      seed: int = 0) -> int:
    """Write the model and its tokenizer to `folder`; returns the weight bytes. The last three token ids
    are end, padding and start."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = SHAPES[shape]["vocab_size"]
    config = LlamaConfig(**SHAPES[shape], eos_token_id=vocab - 1, pad_token_id=vocab - 2,
                         bos_token_id=vocab - 3)
    torch.manual_seed(seed)
    with torch.device(device):
        model: Any = LlamaForCausalLM(config)
    model = model.to(dtype or torch.float32)
    model.save_pretrained(folder, safe_serialization=True)
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", eos_token=f"t{vocab - 1}",
                                   pad_token=f"t{vocab - 2}")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    fast.save_pretrained(folder)
    return sum(p.numel() * p.element_size() for p in model.parameters())
