from __future__ import annotations

import pytest

from tunesafe.errors import UserError
from tunesafe.models import backend_for, load_model
from tunesafe.models.refs import align_backends, parse_ref


def test_openai_ref_keeps_model_url_and_options() -> None:
    ref = parse_ref("openai:meta/llama-3@http://127.0.0.1:8000/v1/?key_env=MY_KEY&timeout=5")
    assert (ref.scheme, ref.target, ref.base_url) == ("openai", "meta/llama-3", "http://127.0.0.1:8000/v1")
    assert ref.options == {"key_env": "MY_KEY", "timeout": "5"}
    assert backend_for(ref) == "openai"


def test_local_refs_split_the_adapter_at_the_last_plus() -> None:
    ref = parse_ref("hf:/models/a+b/base+/adapters/lora?dtype=float32")
    assert (ref.target, ref.adapter) == ("/models/a+b/base", "/adapters/lora")
    assert ref.options == {"dtype": "float32"}
    assert parse_ref("embedded:qwen2.5-coder-0.5b").adapter is None
    assert str(parse_ref("embedded:x+/a?backend=hf")) == "embedded:x+/a?backend=hf"


@pytest.mark.parametrize("bad", ["", "qwen", "ftp:x", "openai:model-without-url", "openai:m@ftp://h", "hf:",
                                 "hf:+adapter", "embedded:x?backend=vllm",
                                 # URLs urllib cannot take apart: a traceback later, at the first request
                                 "openai:m@http://[::1/v1", "openai:m@http://h:99999/v1", "openai:m@http://h:x/v1",
                                 "openai:m@http:///v1", "vllm:m@http://[::1/v1",
                                 "openai:m@http://h:1/v1,http://h:70000/v1"])
def test_bad_refs_are_user_errors(bad: str) -> None:
    with pytest.raises(UserError) as err:
        parse_ref(bad)
    assert err.value.fix


def test_local_refs_run_on_hf_unless_they_ask_for_llamacpp() -> None:
    assert backend_for(parse_ref("embedded:qwen2.5-coder-0.5b")) == "hf"
    assert backend_for(parse_ref("gguf:/m.gguf?backend=llamacpp")) == "llamacpp"


def test_align_backends_puts_base_on_the_adapter_backend() -> None:
    base, cand = align_backends("embedded:qwen2.5-coder-0.5b", "embedded:qwen2.5-coder-0.5b+/ad")
    assert parse_ref(base).options == {"backend": "hf"}
    assert parse_ref(cand).options == {"backend": "hf"}
    mixed = ("openai:a@http://h/v1", "embedded:x+/ad")
    assert align_backends(*mixed) == mixed
    assert align_backends("gguf:/a.gguf", "gguf:/b.gguf") == ("gguf:/a.gguf", "gguf:/b.gguf")
    fast = align_backends("gguf:/a.gguf?backend=llamacpp", "gguf:/a.gguf+/ad")  # one side asks: both go
    assert [parse_ref(r).options for r in fast] == [{"backend": "llamacpp"}] * 2
    with pytest.raises(UserError, match="different backends"):
        align_backends("gguf:/a.gguf?backend=llamacpp", "gguf:/a.gguf+/ad?backend=hf")


def test_missing_local_paths_are_user_errors(tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_model(f"gguf:{tmp_path}/missing.gguf")
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(UserError, match="pickle weights are refused"):
        load_model(f"hf:{tmp_path}")
    with pytest.raises(UserError, match="not a .gguf file"):
        load_model(f"gguf:{tmp_path}")
