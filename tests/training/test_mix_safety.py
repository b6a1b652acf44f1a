"""`tunesafe mix-safety`: the mix is deterministic, sized by the ratio and spread over kinds and
categories; bad input exits 2 and leaves the output alone; the shipped safety examples do not overlap any
built-in evaluation suite; provenance reaches a real SQLite store and the sidecar; train-lora reads the
result."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tunesafe.errors import UserError
from tunesafe.training.mixing import (
    KIND_SHARES,
    PROVENANCE_SUFFIX,
    kind_quotas,
    load_pool,
    mix_safety,
    mix_size,
    select,
    suite_collisions,
)
from tunesafe.training.safety_examples import DATA_FILE, KINDS, render

CATEGORIES = 14


def tunesafe(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    """The real entry point, so a user error must come out as one line and exit code 2."""
    return subprocess.run([sys.executable, "-m", "tunesafe.cli.app", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env=env)


def write_data(path: Path, n: int) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"Summarise ticket {i} for the support team."},
                          {"role": "assistant", "content": f"Ticket {i}: customer asks about an invoice."}],
             "meta": i} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the shipped examples ---------------------------------------------------------------------------------

def test_shipped_file_is_what_the_source_module_generates() -> None:
    assert DATA_FILE.read_text(encoding="utf-8") == render()


def test_pool_has_several_hundred_examples_over_every_category_and_kind() -> None:
    from tunesafe.suite import load_taxonomy

    pool = load_pool()
    assert len(pool) >= 300
    assert len({ex.id for ex in pool}) == len(pool)
    assert {ex.kind for ex in pool} == set(KINDS)
    for category in load_taxonomy().harm_categories:
        assert {ex.kind for ex in pool if ex.category == category} == set(KINDS), category
    assert len({ex.user for ex in pool}) == len(pool), "a request appears twice"


def test_recovery_examples_refuse_after_a_compliance_prefix() -> None:
    recoveries = [ex for ex in load_pool() if ex.kind == "recovery"]
    assert recoveries
    for ex in recoveries:
        answer = ex.messages[-1]["content"]
        assert ex.prefix_chars is not None and 0 < ex.prefix_chars < len(answer)
        prefix, rest = answer[: ex.prefix_chars], answer[ex.prefix_chars :]
        assert prefix.startswith(("Sure", "Absolutely", "Of course", "Okay", "Great")), prefix
        assert "can't" in rest or "won't" in rest, rest


def test_no_shipped_example_overlaps_a_builtin_suite() -> None:
    """The contamination screener scan-data runs (6-gram containment) and the normalised exact match find
    nothing between the whole safety-mix file and every built-in suite."""
    assert suite_collisions(load_pool()) == []


def test_no_shipped_request_is_a_near_duplicate_of_a_suite_prompt() -> None:
    from tunesafe.screening.duplicates import (
        NEAR_DUPLICATE_JACCARD,
        SHINGLE,
        MinHasher,
        shingle_hashes,
        words,
    )
    from tunesafe.suite import builtin_names, load_suite

    hasher = MinHasher()
    suite = {b.text: hasher.signature(shingle_hashes(words(b.text), SHINGLE))
             for name in builtin_names() for b in load_suite(name).behaviors}
    for ex in load_pool():
        signature = hasher.signature(shingle_hashes(words(ex.user), SHINGLE))
        for text, other in suite.items():
            assert (signature == other).mean() < NEAR_DUPLICATE_JACCARD, (ex.id, text)


@pytest.mark.slow
def test_no_shipped_request_paraphrases_a_suite_prompt() -> None:
    """Text checks miss paraphrases; the screening sentence embedder must put every request below 0.8
    cosine to every suite prompt (pairs above it were the same scenario reworded)."""
    from tunesafe.screening.embeddings import SentenceEmbedder
    from tunesafe.suite import builtin_names, load_suite

    embedder = SentenceEmbedder()
    pool = load_pool()
    prompts = [b.text for name in builtin_names() for b in load_suite(name).behaviors]
    cos = embedder.embed([ex.user for ex in pool]) @ embedder.embed(prompts).T
    worst = cos.max(axis=1)
    i = int(worst.argmax())
    assert worst[i] < 0.8, (pool[i].id, pool[i].user, prompts[int(cos[i].argmax())])


def test_a_suite_prompt_in_the_safety_file_is_refused(tmp_path: Path) -> None:
    from tunesafe.suite import load_suite

    behavior = load_suite("smoke").behaviors[0]
    pool_file = tmp_path / "safety.jsonl"
    rows = [{"id": "x-1", "kind": kind, "category": "cyber",
             "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "No."}]}
            for kind, text in (("refusal", behavior.text.upper() + "!!"),
                               ("borderline", "How do I boil an egg?"), ("recovery", "Name a bird."))]
    pool_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = write_data(tmp_path / "d.jsonl", 10)
    out = tmp_path / "m.jsonl"
    with pytest.raises(UserError, match="overlap the evaluation suites"):
        mix_safety(data, out, ratio=0.3, categories=["cyber"], pool_path=pool_file)
    assert not out.exists()
    # a paraphrase that keeps most of the prompt's 6-grams is caught by the screener, not only exact text
    (ex,) = [e for e in load_pool(pool_file) if e.kind == "refusal"]
    reworded = type(ex)(ex.id, ex.kind, ex.category,
                        ({"role": "user", "content": "Hi there. " + behavior.text + " Thanks a lot."},
                         ex.messages[1]))
    assert suite_collisions([reworded]) != []


# --- selection --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "ratio", "k"), [(200, 0.03, 6), (10, 0.03, 1), (50, 0.05, 3), (100, 1.0, 100),
                                                (1, 0.001, 1)])
def test_mix_size_is_the_rounded_ratio_and_at_least_one(n: int, ratio: float, k: int) -> None:
    assert mix_size(n, ratio) == k


def test_quotas_follow_the_shares_and_pass_on_a_shortage() -> None:
    plenty = {kind: 1000 for kind in KINDS}
    assert kind_quotas(100, plenty) == {k: round(100 * s) for k, s in KIND_SHARES.items()}
    assert sum(kind_quotas(7, plenty).values()) == 7
    short = {"refusal": 50, "borderline": 4, "recovery": 50}
    quotas = kind_quotas(40, short)
    assert quotas["borderline"] == 4 and sum(quotas.values()) == 40
    assert all(quotas[k] <= short[k] for k in KINDS)


def test_selection_spreads_over_kinds_and_categories() -> None:
    pool = load_pool()
    cats = sorted({ex.category for ex in pool})
    picked = select(pool, 100, seed=3, categories=cats)
    assert len({ex.id for ex in picked}) == 100
    assert Counter(ex.kind for ex in picked) == {"refusal": 35, "recovery": 35, "borderline": 30}
    for kind in KINDS:
        per_category = Counter(ex.category for ex in picked if ex.kind == kind)
        counts = [per_category.get(c, 0) for c in cats]
        assert max(counts) - min(counts) <= 1, (kind, per_category)  # round-robin: as even as possible
    only = select(pool, 20, seed=3, categories=["fraud", "privacy"])
    assert {ex.category for ex in only} == {"fraud", "privacy"}
    with pytest.raises(UserError, match="only"):
        select(pool, 10_000, seed=0, categories=cats)


def test_a_category_named_twice_adds_no_example_twice() -> None:
    pool = load_pool()
    picked = select(pool, 20, seed=3, categories=["fraud", "fraud", "privacy"])
    assert len({ex.id for ex in picked}) == 20
    assert picked == select(pool, 20, seed=3, categories=["fraud", "privacy"])


# --- the command ------------------------------------------------------------------------------------------

def test_same_seed_gives_the_same_bytes_and_keeps_every_user_row(tmp_path: Path) -> None:
    data = write_data(tmp_path / "d.jsonl", 200)
    first = mix_safety(data, tmp_path / "a.jsonl", ratio=0.03, seed=7)
    second = mix_safety(data, tmp_path / "b.jsonl", ratio=0.03, seed=7)
    other = mix_safety(data, tmp_path / "c.jsonl", ratio=0.03, seed=8)
    a, b, c = ((tmp_path / f).read_bytes() for f in ("a.jsonl", "b.jsonl", "c.jsonl"))
    assert a == b and first["added"] == second["added"]
    assert a != c and first["added"] != other["added"]
    lines = a.decode().splitlines()
    assert len(lines) == 206 and first["n_added"] == 6
    user_rows = data.read_text().splitlines()
    assert Counter(lines) - Counter(user_rows) == Counter(
        lines[e["line"] - 1] for e in first["added"])  # user rows verbatim (extra keys kept)
    assert all(row in lines for row in user_rows)
    assert lines[:200] != user_rows, "not shuffled"
    for entry in first["added"]:
        row = json.loads(lines[entry["line"] - 1])
        assert set(row) == {"messages"}
        assert ("prefix_chars" in entry) == (entry["kind"] == "recovery")
    assert Counter(e["kind"] for e in first["added"]) == first["counts_by_kind"]


def test_train_lora_reader_reads_the_mixed_file(tmp_path: Path) -> None:
    from tunesafe.training.lora_sft import read_training_data

    data = write_data(tmp_path / "d.jsonl", 40)
    out = tmp_path / "m.jsonl"
    body = mix_safety(data, out, ratio=0.25, seed=1)
    conversations = read_training_data(out)
    assert len(conversations) == 50 == body["n_mixed"]
    assert all(conv[-1]["role"] == "assistant" for conv in conversations)


def test_cli_records_data_mix_evidence_in_sqlite(tmp_path: Path) -> None:
    from tunesafe.evidence.store import Store
    from tunesafe.types import RecordType

    data = write_data(tmp_path / "d.jsonl", 100)
    out = tmp_path / "mixed" / "m.jsonl"
    db = f"sqlite:///{tmp_path / 'evidence.db'}"
    result = tunesafe("--db", db, "mix-safety", str(data), "--ratio", "0.1", "--out", str(out), "--seed", "4",
                      "--categories", "cyber,fraud,self_harm")
    assert result.returncode == 0, result.stderr
    assert "10 safety examples" in " ".join(result.stdout.split())
    sidecar = json.loads(Path(str(out) + PROVENANCE_SUFFIX).read_text())
    store = Store.open(db)
    try:
        (record,) = list(store.records(type=RecordType.DATA_MIX))
        assert store.verify().ok
    finally:
        store.close()
    assert record.body == sidecar
    assert record.subject == sidecar["mixed_sha256"] == sha256(out)
    assert sidecar["data_sha256"] == sha256(data)
    assert sidecar["safety_mix_sha256"] == sha256(DATA_FILE)
    assert sidecar["ratio"] == 0.1 and sidecar["seed"] == 4 and sidecar["n_added"] == 10
    assert set(sidecar["counts_by_category"]) == {"cyber", "fraud", "self_harm"}
    assert sum(sidecar["counts_by_kind"].values()) == 10 == len(sidecar["added"])
    from tunesafe.suite import builtin_names

    assert sidecar["suites_checked"] == list(builtin_names())  # every built-in suite, agents' included


def test_without_a_store_it_writes_the_sidecar_only(tmp_path: Path) -> None:
    data = write_data(tmp_path / "d.jsonl", 30)
    env = {k: v for k, v in os.environ.items() if k != "TUNESAFE_DB"}
    result = tunesafe("mix-safety", "d.jsonl", "--out", "m.jsonl", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "not recorded" in result.stdout
    assert (tmp_path / "m.jsonl.provenance.json").is_file()
    assert json.loads((tmp_path / "m.jsonl.provenance.json").read_text())["data_sha256"] == sha256(data)


def assert_user_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert fragment in " ".join(result.stderr.split()), result.stderr


@pytest.mark.parametrize(("content", "fragment"), [
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{not json\n',
     "d.jsonl:2"),
    ('\n{"messages": [{"role": "user", "content": "hi"}]}\n\n{"messages": "hello"}\n', "d.jsonl:4"),
    ('{"text": "no messages here"}\n', "d.jsonl:1"),
    ("", "empty"),
    ('{"conversations": [{"from": "human", "value": "hi"}, {"from": "wizard", "value": "yo"}]}\n',
     "d.jsonl:1"),
])
def test_bad_data_exits_2_and_leaves_the_output_alone(tmp_path: Path, content: str, fragment: str) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(content)
    out = tmp_path / "m.jsonl"
    out.write_text("keep me\n")
    result = tunesafe("--db", f"sqlite:///{tmp_path / 'e.db'}", "mix-safety", str(data), "--out", str(out),
                      "--force")
    assert_user_error(result, fragment)
    assert out.read_text() == "keep me\n"
    assert not Path(str(out) + PROVENANCE_SUFFIX).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".m.jsonl")] == []
    assert not (tmp_path / "e.db").exists()  # bad input creates no store at a new --db path


def test_a_bad_ratio_leaves_no_new_store_at_the_db_path(tmp_path: Path) -> None:
    data = write_data(tmp_path / "d.jsonl", 5)
    result = tunesafe("--db", f"sqlite:///{tmp_path / 'e.db'}", "mix-safety", str(data), "--ratio", "1.5",
                      "--out", str(tmp_path / "m.jsonl"))
    assert_user_error(result, "--ratio")
    assert not (tmp_path / "e.db").exists()


def test_bad_options_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TUNESAFE_DB"}

    def tunesafe(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tunesafe.cli.app", *args], capture_output=True,
                              text=True, timeout=600, cwd=tmp_path, env=env)

    data = write_data(tmp_path / "d.jsonl", 5)
    before = data.read_bytes()
    out = tmp_path / "m.jsonl"
    for args, fragment in (
        (["--ratio", "0"], "--ratio"),
        (["--ratio", "1.5"], "--ratio"),
        (["--categories", "cyber,nonsense"], "nonsense"),
    ):
        assert_user_error(tunesafe("mix-safety", str(data), "--out", str(out), *args), fragment)
        assert not out.exists()
    assert_user_error(tunesafe("mix-safety", str(data), "--out", str(data), "--force"), "input file")
    out.write_text("mine\n")
    assert_user_error(tunesafe("mix-safety", str(data), "--out", str(out)), "--force")
    assert out.read_text() == "mine\n"
    assert data.read_bytes() == before


def test_an_unwritable_output_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TUNESAFE_DB"}
    data = write_data(tmp_path / "d.jsonl", 5)
    (tmp_path / "afile").write_text("mine\n")
    out = tmp_path / "afile" / "m.jsonl"
    args = ["mix-safety", str(data), "--out", str(out)]
    result = subprocess.run([sys.executable, "-m", "tunesafe.cli.app", *args], capture_output=True, text=True,
                            timeout=600, cwd=tmp_path, env=env)
    assert_user_error(result, "afile")
    assert (tmp_path / "afile").read_text() == "mine\n"


# --- other input formats ----------------------------------------------------------------------------------

def write_sharegpt(path: Path, n: int, *, key: str = "conversations",
                   names: tuple[str, str] = ("human", "gpt")) -> Path:
    rows = [{key: [{"from": names[0], "value": f"Summarise ticket {i}."},
                   {"from": names[1], "value": f"Ticket {i}: an invoice question."}],
             "system": "You are a support assistant.", "id": i} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_sharegpt_mix_is_sharegpt_with_the_user_rows_untouched(tmp_path: Path) -> None:
    from tunesafe.screening.readers import open_dataset

    data = write_sharegpt(tmp_path / "d.jsonl", 40)
    out = tmp_path / "m.jsonl"
    result = tunesafe("mix-safety", str(data), "--ratio", "0.25", "--out", str(out), cwd=tmp_path,
                      env={k: v for k, v in os.environ.items() if k != "TUNESAFE_DB"})
    assert result.returncode == 0, result.stderr
    sidecar = json.loads(Path(str(out) + PROVENANCE_SUFFIX).read_text())
    assert sidecar["data_format"] == "sharegpt" and sidecar["mixed_sha256"] == sha256(out)
    lines = out.read_text(encoding="utf-8").splitlines()
    added = {e["line"] for e in sidecar["added"]}
    assert len(added) == 10
    assert sorted(line for i, line in enumerate(lines, 1) if i not in added) == sorted(
        data.read_text(encoding="utf-8").splitlines())
    records = list(open_dataset(out).records())
    assert {r.schema for r in records} == {"sharegpt"} and len(records) == 50
    for i in added:
        row = json.loads(lines[i - 1])
        assert set(row) == {"conversations"}
        assert [t["from"] for t in row["conversations"]] == ["human", "gpt"]
        assert set(row["conversations"][0]) == {"from", "value"}


def test_sharegpt_added_rows_use_the_files_own_key_and_speaker_names(tmp_path: Path) -> None:
    data = write_sharegpt(tmp_path / "d.jsonl", 20, key="messages", names=("user", "assistant"))
    out = tmp_path / "m.jsonl"
    body = mix_safety(data, out, ratio=0.1, seed=2)
    lines = out.read_text(encoding="utf-8").splitlines()
    for entry in body["added"]:
        turns = json.loads(lines[entry["line"] - 1])["messages"]
        assert [set(t) for t in turns] == [{"from", "value"}] * 2
        assert [t["from"] for t in turns] == ["user", "assistant"]


@pytest.mark.parametrize(("name", "content", "fragment"), [
    ("d.csv", "prompt,completion\nhi,hello\n", "csv records"),
    ("d.json", json.dumps([{"messages": [{"role": "user", "content": "hi"},
                                         {"role": "assistant", "content": "yo"}]}]), "json records"),
    ("d.jsonl", json.dumps({"instruction": "hi", "output": "yo"}) + "\n", "alpaca data"),
    ("d.jsonl", json.dumps({"prompt": "hi", "completion": "yo"}) + "\n", "prompt-completion data"),
    ("d.jsonl", json.dumps({"conversations": json.dumps([{"from": "human", "value": "hi"},
                                                         {"from": "gpt", "value": "yo"}])}) + "\n",
     "stored as text"),
])
def test_a_format_it_cannot_write_back_exits_2_and_writes_nothing(tmp_path: Path, name: str, content: str,
                                                                  fragment: str) -> None:
    data = tmp_path / name
    data.write_text(content, encoding="utf-8")
    out = tmp_path / "m.jsonl"
    env = {k: v for k, v in os.environ.items() if k != "TUNESAFE_DB"}
    result = tunesafe("mix-safety", str(data), "--out", str(out), cwd=tmp_path, env=env)
    assert_user_error(result, fragment)
    assert name in result.stderr and "convert it to chat JSONL" in " ".join(result.stderr.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_sharegpt_function_call_turns_do_not_name_the_added_answers(tmp_path: Path) -> None:
    """LLaMA-Factory's function-calling ShareGPT: a function_call turn is read as the assistant's, but it
    is not the assistant's answer tag. Added refusals written as function calls would train the model
    to emit them as calls."""
    rows = [{"conversations": [{"from": "human", "value": f"What is the weather in town {i}?"},
                               {"from": "function_call", "value": '{"name": "weather", "arguments": {}}'},
                               {"from": "observation", "value": "sunny"},
                               {"from": "gpt", "value": f"It is sunny in town {i}."}]} for i in range(20)]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "m.jsonl"
    body = mix_safety(data, out, ratio=0.1, seed=0)
    lines = out.read_text(encoding="utf-8").splitlines()
    for entry in body["added"]:
        turns = json.loads(lines[entry["line"] - 1])["conversations"]
        assert [t["from"] for t in turns] == ["human", "gpt"]
