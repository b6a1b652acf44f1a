"""`tunesafe safelora`: the refusal-direction projection and classic SafeLoRA on a tiny real Llama (built
in conftest), with adapters made by PEFT whose LoRA weights the tests set by hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
safetensors_torch = pytest.importorskip("safetensors.torch")

from tunesafe.errors import UserError  # noqa: E402
from tunesafe.training.projection import project_adapter  # noqa: E402
from tunesafe.training.refusal_direction import direction_prompts, refusal_directions  # noqa: E402

N_PROMPTS = 4
RANK = 2
PREFIX = "base_model.model.model.layers"


def save_base(tiny: Any, folder: Path, model: Any | None = None) -> str:
    (model or tiny.model()).save_pretrained(str(folder), safe_serialization=True)
    tiny.tokenizer.save_pretrained(str(folder))
    return f"hf:{folder}"


def save_adapter(model: Any, folder: Path, targets: list[str], weights: dict[str, tuple[Any, Any]]) -> None:
    """A real PEFT adapter on `model`; weights maps 'LAYER.KIND' to (A, B), other pairs stay random."""
    torch.manual_seed(1)
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=targets,
                                                         init_lora_weights=False))
    with torch.no_grad():
        for name, module in wrapped.named_modules():
            if hasattr(module, "lora_A") and "default" in module.lora_A:
                layer, kind = name.split(".layers.")[1].split(".")[0], name.rsplit(".", 1)[1]
                if f"{layer}.{kind}" in weights:
                    a, b = weights[f"{layer}.{kind}"]
                    module.lora_A["default"].weight.copy_(a)
                    module.lora_B["default"].weight.copy_(b)
    wrapped.save_pretrained(str(folder), safe_serialization=True)


def lora(folder: Path) -> dict[str, Any]:
    return safetensors_torch.load_file(str(folder / "adapter_model.safetensors"))


def delta(tensors: dict[str, Any], layer: int, module: str) -> Any:
    a = tensors[f"{PREFIX}.{layer}.{module}.lora_A.weight"].double()
    b = tensors[f"{PREFIX}.{layer}.{module}.lora_B.weight"].double()
    return b @ a


@pytest.fixture(scope="module")
def directions(tiny: Any) -> Any:
    harmful, harmless = direction_prompts("default", N_PROMPTS)
    return refusal_directions(tiny.model(), tiny.tokenizer, harmful, harmless, "default").vectors


def test_directions_are_unit_per_layer_and_deterministic(tiny: Any, directions: Any) -> None:
    assert directions.shape == (2, 32)
    assert torch.allclose(directions.norm(dim=1), torch.ones(2), atol=1e-5)
    harmful, harmless = direction_prompts("default", N_PROMPTS)
    from tunesafe.suite import load_suite

    smoke = {b.id for b in load_suite("smoke").behaviors}
    assert all(b.kind == "harmful" for b in harmful) and all(b.kind == "benign" for b in harmless)
    assert not smoke & {b.id for b in (*harmful, *harmless)}
    again = refusal_directions(tiny.model(), tiny.tokenizer, harmful, harmless).vectors
    assert torch.allclose(again, directions, atol=1e-6)
    # swapping the sets flips the sign: r really is harmful minus harmless
    other = refusal_directions(tiny.model(), tiny.tokenizer, harmless, harmful).vectors
    assert torch.allclose(other, -directions, atol=1e-6)


def test_refusal_projection_removes_writes_along_r_and_keeps_the_rest(tiny: Any, directions: Any,
                                                                      tmp_path: Path) -> None:
    base = save_base(tiny, tmp_path / "base")
    gen = torch.Generator().manual_seed(3)
    r0, r1 = directions[0], directions[1]
    along = torch.randn(RANK, 32, generator=gen), torch.outer(r0, torch.randn(RANK, generator=gen))
    ortho_b = torch.randn(32, RANK, generator=gen)
    ortho_b -= torch.outer(r1, r1 @ ortho_b)  # columns orthogonal to r1
    ortho = torch.randn(RANK, 64, generator=gen), ortho_b
    save_adapter(tiny.model(), tmp_path / "in", ["q_proj", "v_proj", "o_proj", "down_proj"],
                 {"0.o_proj": along, "1.down_proj": ortho})
    report = project_adapter(base, tmp_path / "in", tmp_path / "out", prompts=N_PROMPTS)
    before, after = lora(tmp_path / "in"), lora(tmp_path / "out")

    assert float(delta(before, 0, "self_attn.o_proj").norm()) > 0.1
    assert float((r0.double() @ delta(after, 0, "self_attn.o_proj")).norm()) < 1e-6  # all of it was along r
    rows = {(m["layer"], m["kind"]): m for m in report["modules"]}
    assert rows[(0, "o_proj")]["action"] == "projected" and rows[(0, "o_proj")]["removed_share"] > 0.999
    assert torch.allclose(delta(after, 1, "mlp.down_proj"), delta(before, 1, "mlp.down_proj"), atol=1e-6)
    assert rows[(1, "down_proj")]["removed_share"] < 1e-6
    assert rows[(0, "o_proj")]["chance_share"] == pytest.approx(1 / 32)
    assert rows[(0, "v_proj")]["chance_share"] == pytest.approx(2 / 8)  # 2 heads per kv group, head_dim 8
    for layer in (0, 1):  # reading side left alone, exactly
        key = f"{PREFIX}.{layer}.self_attn.q_proj.lora_B.weight"
        assert torch.equal(before[key], after[key]) and rows[(layer, "q_proj")]["action"] == "left"
        # v_proj: what o_proj makes of the value update has no component along r, head by head
        w_o = tiny.model().model.layers[layer].self_attn.o_proj.weight.detach().double()  # same seed: base
        dv = delta(after, layer, "self_attn.v_proj")  # (2 kv heads x 8) x 32
        u = (directions[layer].double() @ w_o).reshape(4, 8)
        for head in range(4):
            group = head // 2
            assert float((u[head] @ dv[group * 8:(group + 1) * 8]).norm()) < 1e-6
        assert rows[(layer, "v_proj")]["removed_share"] > 0
    assert report["direction"]["harmful_ids"] and len(report["direction"]["prompts_hash"]) == 64
    assert report["input_adapter"]["sha256"] != report["output_adapter"]["sha256"]


def test_output_loads_with_peft_and_differs_only_where_reported(tiny: Any, tmp_path: Path) -> None:
    base = save_base(tiny, tmp_path / "base")
    save_adapter(tiny.model(), tmp_path / "in", ["q_proj", "v_proj", "o_proj"], {})
    report = project_adapter(base, tmp_path / "in", tmp_path / "out", prompts=N_PROMPTS, layers="1")
    before, after = lora(tmp_path / "in"), lora(tmp_path / "out")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    projected = {f"base_model.model.{m['module']}.lora_B.weight" for m in report["modules"]
                 if m["action"] == "projected"}
    assert changed == projected == {f"{PREFIX}.1.self_attn.o_proj.lora_B.weight",
                                    f"{PREFIX}.1.self_attn.v_proj.lora_B.weight"}
    assert set(before) == set(after)
    assert json.loads((tmp_path / "out" / "projection.json").read_text())["layers"] == [1]
    loaded = peft.PeftModel.from_pretrained(tiny.model(), str(tmp_path / "out"))
    state = loaded.state_dict()
    key = "base_model.model.model.layers.1.self_attn.o_proj.lora_B.default.weight"
    assert torch.equal(state[key], after[f"{PREFIX}.1.self_attn.o_proj.lora_B.weight"])
    ids = tiny.tokenizer("How do magnets work?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(loaded(input_ids=ids).logits).all()


def test_classic_safelora_projects_exactly_the_pairs_below_the_threshold(tiny: Any, tmp_path: Path) -> None:
    aligned = tiny.model()
    unaligned = tiny.model()
    gen = torch.Generator().manual_seed(5)
    # the twin differs from the aligned model in a rank-2 subspace of layer 0's o_proj output space
    basis = torch.linalg.qr(torch.randn(32, 2, generator=gen))[0]
    with torch.no_grad():
        unaligned.model.layers[0].self_attn.o_proj.weight -= basis @ torch.randn(2, 32, generator=gen)
        unaligned.model.layers[1].self_attn.o_proj.weight -= 0.5 * basis @ torch.randn(2, 32, generator=gen)
    base = save_base(tiny, tmp_path / "aligned", aligned)
    twin = save_base(tiny, tmp_path / "unaligned", unaligned)
    inside = torch.randn(RANK, 32, generator=gen), basis @ torch.randn(2, RANK, generator=gen)
    outside_b = torch.randn(32, RANK, generator=gen)
    outside_b += 0.1 * basis[:, :RANK] - basis @ (basis.T @ outside_b)  # mostly outside V's span
    outside = torch.randn(RANK, 32, generator=gen), outside_b
    save_adapter(tiny.model(), tmp_path / "in", ["o_proj"], {"0.o_proj": inside, "1.o_proj": outside})
    report = project_adapter(base, tmp_path / "in", tmp_path / "out", method="safelora", unaligned=twin,
                             threshold=0.35)
    before, after = lora(tmp_path / "in"), lora(tmp_path / "out")
    rows = {m["layer"]: m for m in report["modules"]}
    for layer in (0, 1):  # the formula, computed here independently in numpy
        w_a = aligned.model.layers[layer].self_attn.o_proj.weight.detach().double().numpy()
        w_u = unaligned.model.layers[layer].self_attn.o_proj.weight.detach().double().numpy()
        v = w_a - w_u
        c = v @ v.T / float(((v ** 2).sum()) ** 0.5)
        a = before[f"{PREFIX}.{layer}.self_attn.o_proj.lora_A.weight"].double().numpy()
        b = before[f"{PREFIX}.{layer}.self_attn.o_proj.lora_B.weight"].double().numpy()
        x, y = (c @ b @ a).ravel(), (b @ a).ravel()
        cos = float(x @ y / ((x @ x) ** 0.5 * (y @ y) ** 0.5))
        assert rows[layer]["cosine"] == pytest.approx(cos, abs=1e-6)
        expected = c @ b if cos <= 0.35 else b
        got = after[f"{PREFIX}.{layer}.self_attn.o_proj.lora_B.weight"].double().numpy()
        assert abs(got - expected).max() < 1e-5
    assert rows[0]["action"] == "kept" and rows[0]["cosine"] > 0.35  # the update lies in V's span
    assert rows[1]["action"] == "projected" and rows[1]["cosine"] < 0.35
    assert report["unaligned"]["ref"] == twin


def tunesafe(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tunesafe.cli.app", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=env)


def assert_user_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    assert all(f in text for f in fragments), result.stderr


def test_cli_writes_the_adapter_and_an_evidence_record(tiny: Any, tmp_path: Path) -> None:
    from tunesafe.evidence.store import Store
    from tunesafe.types import RecordType

    base = save_base(tiny, tmp_path / "base")
    save_adapter(tiny.model(), tmp_path / "in", ["o_proj"], {})
    db = f"sqlite:///{tmp_path / 'evidence.db'}"
    result = tunesafe("--db", db, "safelora", "--base", base, "--adapter", str(tmp_path / "in"), "--out",
                      str(tmp_path / "out"), "--prompts", str(N_PROMPTS))
    assert result.returncode == 0, result.stderr
    assert "2 of 2 LoRA pairs projected" in " ".join(result.stdout.split())
    gate = f"gate it: tunesafe gate --base {base} --candidate {base}+{tmp_path / 'out'}"
    assert gate in result.stdout.splitlines(), result.stdout  # one line, to copy
    store = Store.open(db)
    try:
        (record,) = list(store.records(type=RecordType.ADAPTER_PROJECTION))
        assert store.verify().ok
    finally:
        store.close()
    written = json.loads((tmp_path / "out" / "projection.json").read_text())
    assert record.body["modules"] == written["modules"]
    assert record.body["input_adapter"]["sha256"] == written["input_adapter"]["sha256"]
    assert record.subject == record.body["output_adapter"]["sha256"]


def test_cli_bad_input_exits_2_naming_the_file(tiny: Any, tmp_path: Path) -> None:
    base = save_base(tiny, tmp_path / "base")
    env = {k: v for k, v in os.environ.items() if k != "TUNESAFE_DB"}
    (tmp_path / "empty").mkdir()
    result = tunesafe("safelora", "--base", base, "--adapter", str(tmp_path / "empty"), "--out",
                      str(tmp_path / "o1"), cwd=tmp_path, env=env)
    assert_user_error(result, "adapter_config.json not found", str(tmp_path / "empty"))
    # an adapter trained on another architecture (hidden 48 instead of 32)
    import transformers

    other = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=len(tiny.tokenizer), hidden_size=48, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2))
    save_adapter(other, tmp_path / "foreign", ["o_proj"], {})
    result = tunesafe("safelora", "--base", base, "--adapter", str(tmp_path / "foreign"), "--out",
                      str(tmp_path / "o2"), cwd=tmp_path, env=env)
    assert_user_error(result, "do not fit the base weight", "adapter_model.safetensors",
                      "base it was trained on")
    assert not (tmp_path / "o2").exists()
    result = tunesafe("safelora", "--base", base, "--adapter", str(tmp_path / "foreign"), "--out",
                      str(tmp_path / "o3"), "--method", "safelora", cwd=tmp_path, env=env)
    assert_user_error(result, "--unaligned")


def test_cli_bad_input_leaves_no_new_store_at_the_db_path(tiny: Any, tmp_path: Path) -> None:
    base = save_base(tiny, tmp_path / "base")
    db = tmp_path / "evidence.db"
    (tmp_path / "empty").mkdir()
    result = tunesafe("--db", f"sqlite:///{db}", "safelora", "--base", base, "--adapter",
                      str(tmp_path / "empty"), "--out", str(tmp_path / "o1"))
    assert_user_error(result, "adapter_config.json not found")
    assert not db.exists()
    save_adapter(tiny.model(), tmp_path / "in", ["o_proj"], {})
    result = tunesafe("--db", f"sqlite:///{db}", "safelora", "--base", base, "--adapter",
                      str(tmp_path / "in"), "--out", str(tmp_path / "o2"), "--layers", "7")
    assert_user_error(result, "--layers")
    assert not db.exists() and not (tmp_path / "o2").exists()


def test_library_refuses_a_non_empty_out_and_bad_layers(tiny: Any, tmp_path: Path) -> None:
    base = save_base(tiny, tmp_path / "base")
    save_adapter(tiny.model(), tmp_path / "in", ["o_proj"], {})
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        project_adapter(base, tmp_path / "in", tmp_path / "busy")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    with pytest.raises(UserError, match="outside 0-1"):
        project_adapter(base, tmp_path / "in", tmp_path / "o", layers="0-5", prompts=N_PROMPTS)
    assert not (tmp_path / "o").exists()


def test_refuses_adapters_it_cannot_project_before_loading_the_base(tiny: Any, tmp_path: Path) -> None:
    save_adapter(tiny.model(), tmp_path / "in", ["o_proj"], {})
    config = json.loads((tmp_path / "in" / "adapter_config.json").read_text())
    (tmp_path / "in" / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(UserError, match="DoRA") as err:  # the base ref does not exist: never reached
        project_adapter("hf:/nonexistent", tmp_path / "in", tmp_path / "o1")
    assert err.value.where == str(tmp_path / "in" / "adapter_config.json")
    (tmp_path / "in" / "adapter_config.json").write_text(json.dumps(config))
    weights = lora(tmp_path / "in")
    safetensors_torch.save_file({k: v for k, v in weights.items() if "lora_B" not in k},
                                str(tmp_path / "in" / "adapter_model.safetensors"))
    with pytest.raises(UserError, match="no complete LoRA pairs"):
        project_adapter("hf:/nonexistent", tmp_path / "in", tmp_path / "o2")
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


@pytest.mark.parametrize(("method", "threshold"), [("refusal-direction", 1.0), ("refusal-direction", -0.1),
                                                   ("refusal-direction", float("nan")), ("safelora", -1.5),
                                                   ("safelora", float("nan"))])
def test_a_threshold_that_can_never_decide_is_refused(tiny: Any, tmp_path: Path, method: str,
                                                      threshold: float) -> None:
    """A share is in [0, 1] and a cosine in [-1, 1]: a threshold outside would project nothing (or
    every pair) whatever the adapter, and still write an adapter reported as projected."""
    base = save_base(tiny, tmp_path / "base")
    save_adapter(tiny.model(), tmp_path / "in", ["o_proj"], {})
    with pytest.raises(UserError, match="--threshold") as err:
        project_adapter(base, tmp_path / "in", tmp_path / "o", method=method,
                        unaligned=save_base(tiny, tmp_path / "twin", tiny.model(seed=1)), threshold=threshold,
                        prompts=N_PROMPTS)
    assert err.value.where == "--threshold"
    assert not (tmp_path / "o").exists()


def test_layers_or_modules_the_method_cannot_project_are_refused(tiny: Any, tmp_path: Path) -> None:
    """An adapter with nothing the method projects in the chosen layers would come out unchanged, yet be
    recorded as a projection (a safety-preserving step)."""
    base = save_base(tiny, tmp_path / "base")
    model = tiny.model()
    save_adapter(model, tmp_path / "layer0", ["o_proj"], {})
    config = json.loads((tmp_path / "layer0" / "adapter_config.json").read_text())
    weights = {k: v for k, v in lora(tmp_path / "layer0").items() if ".layers.0." in k}
    safetensors_torch.save_file(weights, str(tmp_path / "layer0" / "adapter_model.safetensors"))
    layer0 = {**config, "layers_to_transform": [0]}
    (tmp_path / "layer0" / "adapter_config.json").write_text(json.dumps(layer0))
    with pytest.raises(UserError, match="no LoRA pair") as err:
        project_adapter(base, tmp_path / "layer0", tmp_path / "o1", layers="1", prompts=N_PROMPTS)
    assert err.value.where == "--layers"
    save_adapter(tiny.model(), tmp_path / "q", ["q_proj"], {})
    with pytest.raises(UserError, match="no LoRA pair"):
        project_adapter(base, tmp_path / "q", tmp_path / "o2", prompts=N_PROMPTS)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_safelora_with_the_base_as_its_own_twin_is_refused(tiny: Any, tmp_path: Path) -> None:
    """W_aligned - W_unaligned is zero everywhere: every pair would be kept and the input adapter written
    out as a SafeLoRA projection."""
    base = save_base(tiny, tmp_path / "base")
    copy = save_base(tiny, tmp_path / "copy")  # the same weights under another path
    save_adapter(tiny.model(), tmp_path / "in", ["o_proj", "v_proj"], {})
    with pytest.raises(UserError, match="equal the base") as err:
        project_adapter(base, tmp_path / "in", tmp_path / "o", method="safelora", unaligned=copy)
    assert err.value.where == "--unaligned"
    assert not (tmp_path / "o").exists()


def test_a_reversed_layer_range_is_named_as_such() -> None:
    """'1-0' lies inside a 2-layer model; the error said it was outside 0-1."""
    from tunesafe.training.projection import parse_layers

    with pytest.raises(UserError, match="reversed") as err:
        parse_layers("1-0", 2)
    assert err.value.where == "--layers" and "0-1" not in err.value.message
    assert parse_layers("0-1", 2) == {0, 1}


def _refused_adapter(tiny: Any, tmp_path: Path, config: Any, tensor: str, message: str, file: str) -> None:
    """An adapter made with `config` (holding a tensor named like `tensor`) is refused at `file`, and
    nothing is written."""
    base = save_base(tiny, tmp_path / "base")
    peft.get_peft_model(tiny.model(), config).save_pretrained(str(tmp_path / "in"), safe_serialization=True)
    assert any(tensor in key for key in lora(tmp_path / "in"))
    with pytest.raises(UserError, match=message) as err:
        project_adapter(base, tmp_path / "in", tmp_path / "o", prompts=N_PROMPTS)
    assert err.value.where == str(tmp_path / "in" / file)
    assert not (tmp_path / "o").exists()


def test_an_adapter_that_also_saves_whole_modules_is_refused(tiny: Any, tmp_path: Path) -> None:
    """modules_to_save ships trained copies of whole modules (here the output layer) beside the LoRA
    pairs: they are not projected, so the output would not be what the projection claims."""
    config = peft.LoraConfig(r=RANK, target_modules=["o_proj"], modules_to_save=["lm_head"])
    _refused_adapter(tiny, tmp_path, config, "lm_head", "modules_to_save", "adapter_config.json")


def test_an_adapter_with_tensors_other_than_lora_pairs_is_refused(tiny: Any, tmp_path: Path) -> None:
    """A LoRA on the embeddings is saved as lora_embedding_A/B: not a pair of a linear module, so it was
    copied through unprojected and unlisted in the report, though it writes straight into the stream."""
    config = peft.LoraConfig(r=RANK, target_modules=["o_proj", "embed_tokens"])
    _refused_adapter(tiny, tmp_path, config, "lora_embedding_A", "lora_embedding_A",
                     "adapter_model.safetensors")
