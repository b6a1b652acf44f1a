"""Post-hoc projection of a LoRA adapter toward the aligned model's safety (no retraining).

A LoRA pair of a linear module W (out x in) is A (r x in) and B (out x r); the update is dW = B A (PEFT
scales it by lora_alpha / r, which changes no cosine and no share below). Both methods replace B only,
so the adapter keeps its rank, its keys and its config.

**Classic SafeLoRA** (Hsu et al. 2024, IBM/SafeLoRA `model.py`), needs an unaligned twin of the base:

    V = W_aligned - W_unaligned                 per targeted module
    C = V V^T / ||V||_F                         (the paper's approximate projection, not a projector)
    cos = cos(vec(C B A), vec(B A))
    if cos <= threshold:  B <- C B              (dW <- C dW; otherwise the pair is kept)

**Refusal-direction projection** (after Arditi et al. 2024), needs only the aligned base: r_l, the unit
refusal direction in the residual stream after block l (see `refusal_direction`), and

    o_proj, down_proj (write into the stream):  B <- (I - r_l r_l^T) B        so r_l^T dW = 0
    v_proj (its write reaches the stream through the base o_proj W_o):  with u = W_o^T r_l split by
        attention head, for each key/value group g (the heads h that read kv head g):
        B_g <- (I - Q_g Q_g^T) B_g, Q_g an orthonormal basis of {u_h : h reads g}
        so r_l^T W_o (attention-weighted dV) = 0 for every attention pattern
    q_proj, k_proj, gate_proj, up_proj: left as they are. Their updates change attention weights or pass
        a nonlinearity before anything reaches the stream, so no linear projection of the weight removes
        their effect along r_l; projecting their input side would only stop them reading r_l.

With both o_proj and v_proj projected, the attention block's direct write along r_l is exactly what the
base writes (for the same attention pattern), whatever the input. What later blocks do with the rest of
the changed stream is not controlled: the projection removes direct writes, not every downstream effect.
A pair is projected when the share of its squared norm along the direction(s) exceeds the threshold
(default 0: every pair that has any).

Figures are Frobenius norms of B A before and after, and the removed share 1 - (after / before)^2 (for
an orthogonal projection, the share of the squared norm removed). `chance_share` is what an update with
no preference for the direction would lose (removed dimensions / output dimensions: 1/hidden for
o_proj and down_proj, heads-per-kv-group/head_dim for v_proj); a removed share near it means the
adapter does not write along r any more than at random.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesafe.errors import UserError

METHODS = ("refusal-direction", "safelora")
DEFAULT_THRESHOLD = {"refusal-direction": 0.0, "safelora": 0.5}  # SafeLoRA's config default
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
REPORT = "projection.json"
DIRECTIONS_FILE = "refusal_directions.safetensors"
WRITERS = ("o_proj", "down_proj")
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<side>[AB])\.weight$")
_LAYER = re.compile(r"\.layers\.(\d+)\.")


@dataclass(frozen=True)
class LoraPair:
    module: str  # the base module path, e.g. model.layers.3.self_attn.o_proj
    a_key: str
    b_key: str

    @property
    def kind(self) -> str:
        return self.module.rsplit(".", 1)[-1]

    @property
    def layer(self) -> int | None:
        match = _LAYER.search(f".{self.module}.")
        return int(match.group(1)) if match else None


@dataclass
class Adapter:
    folder: Path
    config: dict[str, Any]
    tensors: dict[str, Any]
    pairs: list[LoraPair]


def read_adapter(folder: Path) -> Adapter:
    """A PEFT LoRA adapter saved with safetensors; anything else is a UserError naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (folder / name).is_file():
            raise UserError(f"{name} not found", where=str(folder / name), fix="give a PEFT adapter folder "
                            "saved with save_pretrained(safe_serialization=True)")
    where = str(folder / ADAPTER_CONFIG)
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"not a JSON adapter config ({exc})", where=where,
                        fix="re-save the adapter") from None
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise UserError("not a LoRA adapter (peft_type is not LORA)", where=where,
                        fix="projection works on LoRA adapters only")
    if config.get("use_dora") or config.get("fan_in_fan_out") or config.get("lora_bias"):
        raise UserError("DoRA, fan_in_fan_out and LoRA biases are not supported", where=where,
                        fix="project a plain LoRA adapter")
    if config.get("modules_to_save"):  # trained copies of whole modules: no LoRA pair, nothing projects them
        raise UserError(f"the adapter also saves whole trained modules (modules_to_save: "
                        f"{', '.join(map(str, config['modules_to_save']))}), which would pass unprojected",
                        where=where, fix="project an adapter trained without modules_to_save")
    try:
        tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"unreadable safetensors ({exc})", where=str(folder / ADAPTER_WEIGHTS),
                        fix="re-save the adapter") from None
    return Adapter(folder, config, tensors, _pairs(tensors, str(folder / ADAPTER_WEIGHTS)))


def _pairs(tensors: dict[str, Any], where: str) -> list[LoraPair]:
    sides: dict[str, dict[str, str]] = {}
    for key in tensors:
        match = _KEY.match(key)
        if match:
            sides.setdefault(match.group("module"), {})[match.group("side")] = key
    others = sorted(key for key in tensors if not _KEY.match(key))
    if others:  # e.g. lora_embedding_A/B, a trained module copy: they would pass through unprojected
        raise UserError(f"tensors that are not LoRA A/B pairs of a linear module ({', '.join(others[:3])}"
                        f"{', ...' if len(others) > 3 else ''}) would pass through unprojected", where=where,
                        fix="project an adapter whose targets are linear modules only")
    broken = sorted(m for m, s in sides.items() if len(s) != 2)
    if broken or not sides:
        raise UserError(f"no complete LoRA pairs ({', '.join(broken[:3]) or 'no lora_A/lora_B weights'})",
                        where=where, fix="give the adapter_model.safetensors PEFT saved for this adapter")
    return [LoraPair(m, s["A"], s["B"]) for m, s in sorted(sides.items())]


def check_base(adapter: Adapter, model: Any, base_ref: str) -> None:
    """Every pair must sit on a linear module of the base with matching shapes (an adapter trained on
    another base fails here, before anything is written)."""
    where = str(adapter.folder / ADAPTER_WEIGHTS)
    fix = (f"project the adapter with the base it was trained on (its config names "
           f"{adapter.config.get('base_model_name_or_path') or 'none'}; --base was {base_ref})")
    for pair in adapter.pairs:
        try:
            weight = model.get_submodule(pair.module).weight
        except AttributeError:
            raise UserError(f"the base has no module {pair.module}", where=where, fix=fix) from None
        a, b = adapter.tensors[pair.a_key], adapter.tensors[pair.b_key]
        fits = a.ndim == 2 and b.ndim == 2 and a.shape[0] == b.shape[1]
        if not fits or tuple(weight.shape) != (b.shape[0], a.shape[1]):
            raise UserError(f"{pair.module}: adapter shapes B {tuple(b.shape)} x A {tuple(a.shape)} do not "
                            f"fit the base weight {tuple(weight.shape)}", where=where, fix=fix)


def parse_layers(spec: str | None, n_layers: int) -> set[int] | None:
    """'0-5,10' -> {0, ..., 5, 10}; None means every layer."""
    if not spec:
        return None
    chosen: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        try:
            lo, _, hi = part.partition("-")
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise UserError(f"bad layer range '{part}'", where="--layers", fix="write e.g. 0-5,10") from None
        if first > last:
            raise UserError(f"layer range '{part}' is reversed", where="--layers",
                            fix=f"write the lower layer first, e.g. {last}-{first}")
        if not 0 <= first <= last < n_layers:
            raise UserError(f"layers {part} outside 0-{n_layers - 1}", where="--layers",
                            fix=f"use layer numbers from 0 to {n_layers - 1}")
        chosen.update(range(first, last + 1))
    return chosen


def check_threshold(method: str, threshold: float | None) -> None:
    """The share along r is in [0, 1] and SafeLoRA's cosine in [-1, 1]: a threshold outside (or NaN)
    decides every pair the same way whatever the adapter, so its projection would prove nothing."""
    if threshold is None:
        return
    if method == "safelora" and not -1 <= threshold <= 1:
        raise UserError(f"threshold {threshold} is outside the cosine's range", where="--threshold",
                        fix="use a cosine from -1 to 1 (default 0.5): pairs at or below it are projected")
    if method == "refusal-direction" and not 0 <= threshold < 1:
        raise UserError(f"threshold {threshold} can never be exceeded by a share in [0, 1]" if threshold >= 1
                        else f"threshold {threshold} is not a share", where="--threshold",
                        fix="use a share from 0 up to, not including, 1 (default 0): pairs above it are "
                            "projected")


def check_projectable(adapter: Adapter, method: str, layers: set[int] | None) -> None:
    """At least one pair the method can project in the chosen layers; otherwise the output would be the
    input adapter, recorded as projected."""
    def projectable(pair: LoraPair) -> bool:
        writes = method == "safelora" or (pair.layer is not None and pair.kind in (*WRITERS, "v_proj"))
        return writes and _selected(pair, layers)

    if any(projectable(p) for p in adapter.pairs):
        return
    touched = sorted({p.layer for p in adapter.pairs if p.layer is not None})
    kinds = sorted({p.kind for p in adapter.pairs})
    if layers is not None and not any(_selected(p, layers) for p in adapter.pairs):
        raise UserError(f"the chosen layers hold no LoRA pair of the adapter (it has pairs in layers "
                        f"{', '.join(map(str, touched)) or 'none'})", where="--layers",
                        fix="choose layers the adapter was trained on, or leave out --layers")
    raise UserError(f"no LoRA pair the {method} method projects in the chosen layers (the adapter targets "
                    f"{', '.join(kinds)}; it projects o_proj, down_proj and v_proj)",
                    where="--layers" if layers is not None else str(adapter.folder / ADAPTER_CONFIG),
                    fix="use --method safelora, which projects every pair, or an adapter that targets "
                        "o_proj, down_proj or v_proj")


def _row(pair: LoraPair, before: float, after: float, action: str, **extra: Any) -> dict[str, Any]:
    removed = 1.0 - (after / before) ** 2 if before > 0 else 0.0
    return {"module": pair.module, "layer": pair.layer, "kind": pair.kind, "action": action,
            "norm_before": round(before, 8), "norm_after": round(after, 8),
            "removed_share": round(removed, 8), **extra}


def _selected(pair: LoraPair, layers: set[int] | None) -> bool:
    return layers is None or (pair.layer is not None and pair.layer in layers)


def _orthonormal(vectors: Any) -> Any:
    """Columns spanning the rows of `vectors` (rank-deficient rows dropped)."""
    import torch

    u, s, _ = torch.linalg.svd(vectors.T.to(torch.float64), full_matrices=False)
    keep = s > s.max() * 1e-10 if s.numel() and float(s.max()) > 0 else torch.zeros_like(s, dtype=torch.bool)
    return u[:, keep]


def _value_basis(model: Any, layer: int, r: Any) -> list[Any]:
    """Per key/value head group: an orthonormal basis of the value-space directions that o_proj maps onto
    r (u = W_o^T r, split by head, grouped as repeat_kv groups heads)."""
    cfg = model.config
    n_heads = cfg.num_attention_heads
    n_kv = getattr(cfg, "num_key_value_heads", None) or n_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    w_o = model.get_submodule(f"model.layers.{layer}.self_attn.o_proj").weight.detach().double()
    u = (w_o.T @ r.double()).reshape(n_heads, head_dim)
    per_group = n_heads // n_kv
    return [_orthonormal(u[g * per_group:(g + 1) * per_group]) for g in range(n_kv)]


def project_refusal(adapter: Adapter, model: Any, directions: Any, layers: set[int] | None,
                    threshold: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The refusal-direction projection (module docstring); returns the new tensors and one row per pair."""
    import torch

    tensors = dict(adapter.tensors)
    rows = []
    for pair in adapter.pairs:
        a = adapter.tensors[pair.a_key].double()
        b = adapter.tensors[pair.b_key].double()
        before = float((b @ a).norm())
        if pair.layer is None or pair.kind not in (*WRITERS, "v_proj"):
            rows.append(_row(pair, before, before, "left", reason="does not write into the residual stream "
                             "linearly"))
            continue
        r = directions[pair.layer].double()
        if pair.kind in WRITERS:
            new_b = b - r[:, None] @ (r[None, :] @ b)
            removed_dims = 1
        else:
            bases = _value_basis(model, pair.layer, r)
            head_dim = b.shape[0] // len(bases)
            blocks = [b[g * head_dim:(g + 1) * head_dim] for g in range(len(bases))]
            new_b = torch.cat([blk - q @ (q.T @ blk) for q, blk in zip(bases, blocks, strict=True)])
            removed_dims = sum(q.shape[1] for q in bases)
        # the share an update with no preference for r would lose: dims removed / output dims
        chance = round(removed_dims / b.shape[0], 8)
        after = float((new_b @ a).norm())
        share = 1.0 - (after / before) ** 2 if before > 0 else 0.0
        if not _selected(pair, layers) or share <= threshold:
            reason = "layer not selected" if not _selected(pair, layers) else "share at or below threshold"
            rows.append(_row(pair, before, before, "kept", share_along=round(share, 8), chance_share=chance,
                             reason=reason))
            continue
        tensors[pair.b_key] = new_b.to(adapter.tensors[pair.b_key].dtype).contiguous()
        rows.append(_row(pair, before, after, "projected", chance_share=chance))
    return tensors, rows


def project_safelora(adapter: Adapter, aligned: Any, unaligned: Any, layers: set[int] | None,
                     threshold: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Classic SafeLoRA, exactly the module docstring's formula; one row per pair with its cosine."""
    import torch

    tensors = dict(adapter.tensors)
    rows = []
    for pair in adapter.pairs:
        w_aligned = aligned.get_submodule(pair.module).weight.detach().double()
        try:
            w_unaligned = unaligned.get_submodule(pair.module).weight.detach().double()
        except AttributeError:
            raise UserError(f"the unaligned model has no module {pair.module}", where="--unaligned",
                            fix="give the unaligned twin of the base (same architecture)") from None
        if w_unaligned.shape != w_aligned.shape:
            raise UserError(f"{pair.module}: unaligned {tuple(w_unaligned.shape)} vs aligned "
                            f"{tuple(w_aligned.shape)}", where="--unaligned",
                            fix="give the unaligned twin of the base (same architecture)")
        v = w_aligned - w_unaligned
        a = adapter.tensors[pair.a_key].double()
        b = adapter.tensors[pair.b_key].double()
        delta = b @ a
        v_norm = float(v.norm())
        if v_norm == 0:  # aligned == unaligned here: C is undefined, nothing to project onto
            rows.append(_row(pair, float(delta.norm()), float(delta.norm()), "kept", cosine=None,
                             reason="aligned and unaligned weights are equal"))
            continue
        c = (v @ v.T) / v_norm
        new_b = c @ b
        projected = new_b @ a
        cos = float(torch.nn.functional.cosine_similarity(projected.reshape(1, -1), delta.reshape(1, -1)))
        if _selected(pair, layers) and cos <= threshold:
            tensors[pair.b_key] = new_b.to(adapter.tensors[pair.b_key].dtype).contiguous()
            rows.append(_row(pair, float(delta.norm()), float(projected.norm()), "projected",
                             cosine=round(cos, 8)))
        else:
            reason = "layer not selected" if not _selected(pair, layers) else "cosine above threshold"
            rows.append(_row(pair, float(delta.norm()), float(delta.norm()), "kept", cosine=round(cos, 8),
                             reason=reason))
    if all(row.get("cosine", 0) is None for row in rows):  # V = 0 at every pair: no alignment to project on
        raise UserError("the unaligned model's weights equal the base's at every module the adapter targets",
                        where="--unaligned", fix="give the unaligned twin of the base (e.g. its pre-chat "
                                                 "checkpoint), not the base itself")
    return tensors, rows


def by_layer(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per layer: pairs projected, and the norm of all its updates together before and after."""
    layers: dict[Any, dict[str, Any]] = {}
    for row in rows:
        entry = layers.setdefault(row["layer"], {"layer": row["layer"], "projected": [], "sq_before": 0.0,
                                                 "sq_after": 0.0})
        entry["sq_before"] += row["norm_before"] ** 2
        entry["sq_after"] += row["norm_after"] ** 2
        if row["action"] == "projected":
            entry["projected"].append(row["kind"])
    out = []
    for key in sorted(layers, key=lambda k: (k is None, k if k is not None else 0)):
        e = layers[key]
        before, after = e["sq_before"] ** 0.5, e["sq_after"] ** 0.5
        out.append({"layer": e["layer"], "projected": e["projected"], "norm_before": round(before, 6),
                    "norm_after": round(after, 6),
                    "removed_share": round(1 - (after / before) ** 2, 6) if before > 0 else 0.0})
    return out


def write_adapter(adapter: Adapter, tensors: dict[str, Any], out: Path, report: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> None:
    """The projected adapter in PEFT format (config copied, safetensors weights) plus projection.json,
    written to a temporary folder and renamed, so a failure leaves no half adapter behind."""
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        shutil.copyfile(adapter.folder / ADAPTER_CONFIG, tmp / ADAPTER_CONFIG)
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        for name, payload in (extra or {}).items():
            save_file(payload, str(tmp / name))
        (tmp / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()  # the caller checked that it is empty
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclass(frozen=True)
class PlannedProjection:
    """A projection checked and computed, not yet written: the CLI opens the evidence store between the
    two, so bad input never creates a store and a store that cannot be opened leaves no adapter behind."""

    adapter: Adapter
    tensors: dict[str, Any]
    out: Path
    report: dict[str, Any]
    extra: dict[str, Any]


def project_adapter(base: str, adapter_path: Path, out: Path, *, method: str = "refusal-direction",
                    unaligned: str | None = None, threshold: float | None = None, layers: str | None = None,
                    prompts: int = 32, suite: str = "default") -> dict[str, Any]:
    """Read, check, project and write; returns the report (also written as OUT/projection.json), with
    the input and output adapter hashes for the evidence record."""
    return write_projection(plan_projection(base, adapter_path, out, method=method, unaligned=unaligned,
                                            threshold=threshold, layers=layers, prompts=prompts, suite=suite))


def write_projection(planned: PlannedProjection) -> dict[str, Any]:
    """Write a planned projection; its report gains the output adapter's hash."""
    from tunesafe.training.run_record import weights_hash

    write_adapter(planned.adapter, planned.tensors, planned.out, planned.report, planned.extra)
    return {**planned.report, "output_adapter": weights_hash(planned.out)}


def plan_projection(base: str, adapter_path: Path, out: Path, *, method: str = "refusal-direction",
                    unaligned: str | None = None, threshold: float | None = None, layers: str | None = None,
                    prompts: int = 32, suite: str = "default") -> PlannedProjection:
    """Every check of project_adapter and the projected weights, with nothing written."""
    import time

    from tunesafe.models.hf import adapter_folder
    from tunesafe.models.refs import redact_ref
    from tunesafe.training.lora_sft import load_base
    from tunesafe.training.run_record import base_lineage, weights_hash

    started = time.perf_counter()
    if method not in METHODS:
        raise UserError(f"unknown method '{method}'", where="--method",
                        fix=f"use one of {', '.join(METHODS)}")
    if method == "safelora" and not unaligned:
        raise UserError("classic SafeLoRA needs the unaligned twin of the base", where="--unaligned",
                        fix="give --unaligned REF, or use --method refusal-direction (needs only the base)")
    check_threshold(method, threshold)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError("output folder is not empty", where=str(out), fix="choose a new --out folder")
    folder = adapter_folder(str(adapter_path))
    adapter = read_adapter(folder)
    model, tokenizer = load_base(base)
    check_base(adapter, model, base)
    seconds = {"load": time.perf_counter() - started}
    from tunesafe.training.refusal_direction import decoder_layers, direction_prompts, refusal_directions

    n_layers = len(decoder_layers(model))
    chosen = parse_layers(layers, n_layers)
    check_projectable(adapter, method, chosen)
    tau = DEFAULT_THRESHOLD[method] if threshold is None else threshold
    extra: dict[str, Any] = {}
    report: dict[str, Any] = {"method": method, "threshold": tau,
                              "layers": sorted(chosen) if chosen else "all",
                              "base": base_lineage(base, model), "formula": FORMULA[method]}
    if method == "safelora":
        assert unaligned is not None
        twin, _ = load_base(unaligned)
        report["unaligned"] = base_lineage(unaligned, twin)
        seconds["load"] = time.perf_counter() - started
        tensors, rows = project_safelora(adapter, model, twin, chosen, tau)
    else:
        harmful, harmless = direction_prompts(suite, prompts)
        directions = refusal_directions(model, tokenizer, harmful, harmless, suite)
        seconds["directions"] = time.perf_counter() - started - seconds["load"]
        report["direction"] = directions.provenance()
        extra[DIRECTIONS_FILE] = {"directions": directions.vectors.contiguous()}
        tensors, rows = project_refusal(adapter, model, directions.vectors, chosen, tau)
    report["modules"] = rows
    report["per_layer"] = by_layer(rows)
    report["n_projected"] = sum(r["action"] == "projected" for r in rows)
    report["input_adapter"] = {"ref": redact_ref(str(adapter_path)), **(weights_hash(folder) or {})}
    seconds["total"] = time.perf_counter() - started  # before writing and hashing the output
    report["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    return PlannedProjection(adapter=adapter, tensors=tensors, out=out, report=report, extra=extra)


FORMULA = {
    "safelora": "V = W_aligned - W_unaligned; C = V V^T / ||V||_F; cos = cos(vec(C B A), vec(B A)); "
                "if cos <= threshold: B <- C B",
    "refusal-direction": "r_l = normalised mean(harmful) - mean(harmless) after block l, last prompt token; "
                         "o_proj/down_proj: B <- (I - r r^T) B; v_proj: B_g <- (I - Q_g Q_g^T) B_g, "
                         "Q_g spanning W_o^T r per kv group; q/k/gate/up left",
}
