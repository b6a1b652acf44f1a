"""The precision an hf model runs in is part of its identity: answers made in bf16 (a GPU's `?dtype=auto`)
are neither replayed from the response cache nor reused as a stored run for the same weights in fp32
(a CPU's `auto`), while fp32 keeps the plain weights hash that runs and cache entries were stored under
before precision counted. On a tiny random Llama on the CPU (bf16 runs there too, slowly)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tunesafe.engine.rejudge import find_stored_run
from tunesafe.engine.results import load_results
from tunesafe.engine.runner import EvalConfig, find_reusable_run, run_evaluation
from tunesafe.evidence.store import Store
from tunesafe.models import load_model
from tunesafe.models.hashing import files_sha256
from tunesafe.models.hf import weight_files
from tunesafe.testing.random_llama import save_random_llama

from .conftest import write_suite


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    save_random_llama(folder, "tiny")
    return folder


def ref(folder: Path, options: str) -> str:
    return f"hf:{folder}?device=cpu&{options}"


def test_fp32_keeps_the_weights_hash_and_half_precision_gets_its_own(tiny: Path) -> None:
    weights = files_sha256(weight_files(tiny))  # what an hf model's hash was before precision counted
    hashes = {options: load_model(ref(tiny, options)).content_hash() for options in (
        "dtype=float32", "dtype=auto", "dtype=float32&decode=static",
        "dtype=bfloat16", "dtype=bfloat16&decode=generate", "dtype=bfloat16&decode=static")}
    assert hashes["dtype=float32"] == hashes["dtype=auto"] == hashes["dtype=float32&decode=static"] == weights
    # auto decodes with generate() on a CPU: the same numerics as naming it; static decoding is not
    assert hashes["dtype=bfloat16"] == hashes["dtype=bfloat16&decode=generate"]
    assert len({weights, hashes["dtype=bfloat16"], hashes["dtype=bfloat16&decode=static"]}) == 3


def test_a_run_in_bf16_is_neither_reused_nor_replayed_for_fp32(tmp_path: Path, tiny: Path) -> None:
    store = Store.open(str(tmp_path / "store.db"))
    config = EvalConfig(suite=str(write_suite(tmp_path / "s.jsonl", n_harmful=2, n_benign=1)),
                        attacks="direct_request", judges=("refusal",), max_new_tokens=4)
    bf16, fp32 = ref(tiny, "dtype=bfloat16"), ref(tiny, "dtype=float32")
    bf16_run = asyncio.run(run_evaluation(store, bf16, config, progress=False))
    assert find_reusable_run(store, bf16, config) == bf16_run  # reuse itself still works
    assert find_reusable_run(store, fp32, config) is None  # `tunesafe eval`
    assert find_stored_run(store, fp32, config) is None  # `tunesafe gate`'s base or candidate
    fp32_run = asyncio.run(run_evaluation(store, fp32, config, progress=False))
    results = load_results(store, fp32_run)
    assert results and not any(r.generation.cached for r in results)  # no bf16 answer served as fp32
    again = asyncio.run(run_evaluation(store, fp32, config, progress=False))
    assert all(r.generation.cached for r in load_results(store, again))  # fp32 still hits its own entries
