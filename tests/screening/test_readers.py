"""Readers: every format to the same chat messages, streaming, and one clear UserError per bad input."""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tunesafe.errors import UserError
from tunesafe.screening.fix import write_fixed
from tunesafe.screening.readers import dataset_sha256, open_dataset
from tunesafe.screening.records import Finding
from tunesafe.types import Message

from .conftest import chat, write_save_to_disk

EXPECTED = (Message("user", "Where is my order?"), Message("assistant", "It ships today."))


def messages(
    path: Path, fmt: str = "auto", columns: dict[str, str] | None = None
) -> list[tuple[Message, ...]]:
    return [r.example.messages for r in open_dataset(path, fmt, columns).records()]


def test_chat_jsonl_skips_blank_lines_and_numbers_lines(tmp_path: Path) -> None:
    path = tmp_path / "chat.jsonl"
    path.write_text(
        json.dumps(chat("Where is my order?", "It ships today."))
        + "\n\n"
        + json.dumps(chat("b", "c"))
        + "\n",
        encoding="utf-8",
    )
    records = list(open_dataset(path).records())
    assert records[0].example.messages == EXPECTED
    assert [r.example.line for r in records] == [1, 3]
    assert records[0].schema == "chat"


def test_openai_content_parts_and_tool_messages(tmp_path: Path) -> None:
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Where is my order?"}]},
            {"role": "assistant", "content": None},
            {"role": "tool", "content": "{}"},
            {"role": "assistant", "content": "It ships today."},
        ]
    }
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    ex = next(open_dataset(path).records()).example
    assert ex.user == "Where is my order?" and ex.assistant == "It ships today."


def test_tool_call_arguments_are_screened_as_the_assistant_turn(tmp_path: Path) -> None:
    """A function call is text the model is trained to emit: its arguments were dropped with the null
    content beside them, so PII or a harmful request inside a call was never screened."""
    from tunesafe.screening.base import Batch
    from tunesafe.screening.pii import PIIScreener

    call = {"name": "send_email", "arguments": json.dumps({"to": "jane.roe@contoso-mail.net", "body": "hi"})}
    rows = [
        {"messages": [{"role": "user", "content": "Email my landlord."},
                      {"role": "assistant", "content": None,
                       "tool_calls": [{"id": "c1", "type": "function", "function": call}]},
                      {"role": "tool", "content": "sent"}, {"role": "assistant", "content": "Done."}]},
        {"messages": [{"role": "user", "content": "Email my landlord."},
                      {"role": "assistant", "content": "Sending it.", "function_call": call}]},
    ]
    path = tmp_path / "calls.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    examples = [r.example for r in open_dataset(path).records()]
    assert examples[0].messages[1].role == "assistant" and "send_email" in examples[0].messages[1].content
    assert examples[1].messages[1].content.startswith("Sending it.\n")
    found = PIIScreener().screen(Batch(examples))
    assert [(f.index, f.type, f.span.message) for f in found if f.span] == [(0, "pii.email", 1),
                                                                            (1, "pii.email", 1)]


@pytest.mark.parametrize("calls", [{"function": "x"}, [{"function": {"name": "f", "arguments": 5}}], ["f()"]])
def test_a_malformed_tool_call_is_a_user_error(tmp_path: Path, calls: object) -> None:
    path = tmp_path / "calls.jsonl"
    row = {"messages": [{"role": "user", "content": "a"},
                        {"role": "assistant", "content": None, "tool_calls": calls}]}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        list(open_dataset(path).records())
    assert err.value.where == f"{path}:1" and "tool_calls" in err.value.message


def test_text_parts_of_every_type_are_read(tmp_path: Path) -> None:
    """OpenAI's Responses format types its text parts input_text / output_text: they were skipped like
    images, so the turn read as empty and its text went unscreened."""
    row = {"messages": [
        {"role": "user", "content": [{"type": "input_text", "text": "Where is my order?"},
                                     {"type": "image_url", "image_url": {"url": "data:,"}}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "It ships today."}]},
    ]}
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    assert messages(path) == [EXPECTED]
    # Parquet holds every field of the part struct: an image part's absent text is None, not text
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "c.parquet")
    assert messages(tmp_path / "c.parquet") == [EXPECTED]


def test_alpaca_json_array_and_jsonl(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Where is my order?", "input": "", "output": "It ships today."},
        {"instruction": "Translate", "input": "hola", "output": "hello"},
    ]
    array = tmp_path / "alpaca.json"
    array.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    lines = tmp_path / "alpaca.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    for path in (array, lines):
        got = messages(path)
        assert got[0] == EXPECTED
        assert got[1][0] == Message("user", "Translate\n\nhola")
    assert [r.example.line for r in open_dataset(array).records()] == [2, 7]


def test_prompt_completion_and_column_mapping_csv(tmp_path: Path) -> None:
    path = tmp_path / "pc.csv"
    path.write_text(
        'question,answer\n"Where is my order?","It ships today."\n"multi\nline",x\n', encoding="utf-8"
    )
    got = messages(path, columns={"prompt": "question", "completion": "answer"})
    assert got[0] == EXPECTED and got[1][0].content == "multi\nline"
    assert [
        r.example.line
        for r in open_dataset(path, columns={"prompt": "question", "completion": "answer"}).records()
    ] == [2, 3]


def test_csv_lines_after_blank_rows(tmp_path: Path) -> None:
    """A blank row is skipped but still counts: every later record keeps its own line number."""
    path = tmp_path / "blank.csv"
    path.write_text("prompt,completion\nq1,a1\n\nq2,a2\n,\n\n\"q3\nmore\",a3\nq4,a4\n", encoding="utf-8")
    assert [r.example.line for r in open_dataset(path).records()] == [2, 4, 7, 9]
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,completion\nq1,a1\n\nq2,a2,extra\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        list(open_dataset(bad).records())
    assert err.value.where == f"{bad}:4"


def test_tsv_is_tab_separated_and_its_fix_stays_tsv(tmp_path: Path) -> None:
    """A .tsv file is a CSV container split on tabs: a comma inside a field is text."""
    path = tmp_path / "pc.tsv"
    path.write_text("prompt\tcompletion\nWhere is my order?\tIt ships today.\nHi, there\tHello, you\n",
                    encoding="utf-8")
    dataset = open_dataset(path)
    assert messages(path) == [EXPECTED, (Message("user", "Hi, there"), Message("assistant", "Hello, you"))]
    finding = Finding("pii.email", "medium", "pii", 0, 2, "email in the user message")
    out = tmp_path / "clean.tsv"
    write_fixed(dataset, [finding], out)
    assert out.read_text(encoding="utf-8").splitlines() == ["prompt\tcompletion", "Hi, there\tHello, you"]
    write_fixed(dataset, [finding, replace(finding, index=1, line=3)], out)  # nothing kept: the header only
    assert out.read_text(encoding="utf-8").splitlines() == ["prompt\tcompletion"]


def test_parquet_with_chat_messages(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([chat("Where is my order?", "It ships today.")] * 3), path)
    assert messages(path) == [EXPECTED] * 3


def test_hf_save_to_disk_layout(tmp_path: Path) -> None:
    """The folder layout written by datasets.save_to_disk: state.json naming Arrow IPC stream files."""
    folder = write_save_to_disk(tmp_path / "ds", [{"prompt": "Where is my order?",
                                                    "completion": "It ships today."}] * 2)
    (folder / "dataset_info.json").write_text("{}")
    assert messages(folder) == [EXPECTED] * 2
    assert len(dataset_sha256(folder)) == 64


@pytest.mark.parametrize("content", ["{}", '{"splits": 3}', '{"splits": [1]}', "not json"])
def test_bad_dataset_dict_json_is_a_user_error(tmp_path: Path, content: str) -> None:
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "dataset_dict.json").write_text(content)
    with pytest.raises(UserError) as err:
        list(open_dataset(folder).records())
    assert "dataset_dict.json" in (err.value.where or "") + err.value.message
    assert err.value.fix


def test_real_save_to_disk_when_datasets_is_installed(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list([chat("Where is my order?", "It ships today.")]).save_to_disk(
        str(tmp_path / "ds")
    )
    assert messages(tmp_path / "ds", "hf-disk") == [EXPECTED]


@pytest.mark.parametrize(
    ("content", "where", "words"),
    [
        (b'{"prompt": "a", "completion": "b"}\n{"prompt": oops}\n', ":2", "malformed JSON"),
        (
            b'{"prompt": "a", "completion": "b"}\n{"messages": [{"role": "user", "content": "x"}]}\n',
            ":2",
            "mixed formats",
        ),
        (b'{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n', ":2", "missing column 'completion'"),
        (
            b'{"instruction": "a", "output": "b"}\n{"instruction": "a", "input": "x"}\n',
            ":2",
            "missing column 'output'",
        ),
        (b'{"question": "a", "answer": "b"}\n', ":1", "cannot tell the format"),
        (
            b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9", "completion": "b"}\n',
            ":2",
            "not valid UTF-8",
        ),
        (b"", "", "empty"),
        (b"\n\n  \n", "", "empty"),
        (b"[1, 2]", ":1", "expected a JSON object"),
        (b'[{"prompt": "a", "completion": "b"}', ":1", "not closed"),
        (b'{"messages": [{"role": "robot", "content": "x"}]}\n', ":1", "role"),
        (
            b'{"messages": [{"role": "user", "content": "a"}]}\n'
            b'{"messages": [{"role": "user", "content": [{"type": "text", "text": null}]}]}\n',
            ":2",
            "text part",
        ),
        (b'{"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}\n', ":1", "text part"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, content: bytes, where: str, words: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        list(open_dataset(path).records())
    assert words in err.value.message
    assert (err.value.where or "").endswith(f"bad.jsonl{where}")
    assert err.value.fix


def test_missing_mapped_column_in_csv(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("question,answer\nq,a\n", encoding="utf-8")
    with pytest.raises(UserError, match="missing column 'reply'") as err:
        list(open_dataset(path, columns={"prompt": "question", "completion": "reply"}).records())
    assert err.value.where == f"{path}:2"


def test_oversized_line_is_rejected_without_reading_it_all(tmp_path: Path) -> None:
    """A 2 GB single line (sparse file: no disk, no RAM to build it) is refused after the cap."""
    path = tmp_path / "huge.jsonl"
    with path.open("wb") as f:
        f.write(b'{"prompt": "')
        f.truncate(2 * 1024**3)
    tracemalloc.start()
    with pytest.raises(UserError, match="longer than 64 MiB") as err:
        list(open_dataset(path).records())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert err.value.where == f"{path}:1"
    assert peak < 200 * 1024**2  # the cap plus a chunk, never the 2 GB line


def test_reading_streams(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    line = json.dumps(chat("Where is my order? " * 20, "It ships today. " * 20)) + "\n"
    with path.open("w", encoding="utf-8") as f:
        for _ in range(20_000):  # ~17 MB
            f.write(line)
    tracemalloc.start()
    count = sum(1 for _ in open_dataset(path).records())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 20_000
    assert peak < 8 * 1024**2


def test_unknown_format_and_column_role(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("{}\n")
    with pytest.raises(UserError, match="unknown format"):
        open_dataset(path, "yaml")
    with pytest.raises(UserError, match="unknown column role"):
        open_dataset(path, columns={"answer": "a"})
    with pytest.raises(UserError, match="no such file"):
        open_dataset(tmp_path / "nope.jsonl")


def test_exchanges_pair_each_user_turn_with_the_answer_that_follows_it() -> None:
    from tunesafe.screening.records import Example, Exchange

    ex = Example(0, 1, (Message("system", "Be brief."), Message("user", "First question here?"),
                        Message("assistant", "First answer."), Message("user", "Yes please."),
                        Message("assistant", "Second answer."),
                        Message("user", "Where can I read more about it?")))
    assert ex.exchanges() == [
        Exchange(1, "First question here?", "First answer."),
        Exchange(3, "First question here?\nYes please.", "Second answer."),  # a short follow-up
        Exchange(5, "Where can I read more about it?", ""),  # not the answer given before it
    ]
    assert Example(0, 1, (Message("system", "Only a system turn."),)).exchanges() == []
    # a tool-using answer: the call, then the reply written after the tool's result, are one answer (the
    # call alone was the answer, and the reply the request was really answered with went unread)
    tools = Example(0, 1, (Message("user", "Track my order."), Message("assistant", "track(7)"),
                           Message("tool", "shipped"), Message("assistant", "It has shipped.")))
    assert tools.exchanges() == [Exchange(0, "Track my order.", "track(7)\nIt has shipped.")]


SHAREGPT = {
    "system": "You are a shop assistant.",
    "conversations": [
        {"from": "human", "value": "Where is my order?"},
        {"from": "gpt", "value": "It ships today."},
        {"from": "human", "value": "Track it for me."},
        {"from": "function_call", "value": '{"name": "track", "arguments": {"order": 7}}'},
        {"from": "observation", "value": '{"status": "shipped"}'},
        {"from": "gpt", "value": "It has shipped."},
    ],
}


def test_sharegpt_roles_system_and_key_spellings(tmp_path: Path) -> None:
    """FastChat / LLaMA-Factory / Axolotl ShareGPT: `conversations` (or `conversation`, or `messages`)
    of from/value turns, and a top-level system prompt; a function call is an assistant turn, its
    result a tool turn."""
    rows = [
        SHAREGPT,
        {"conversation": [{"from": "user", "value": "a"}, {"from": "chatgpt", "value": "b"}]},
        {"messages": [{"from": "system", "value": "s"}, {"from": "human", "value": "a"},
                      {"from": "bard", "value": "b"}, {"from": "tool", "value": "t"},
                      {"from": "model", "value": "c"}]},
    ]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    records = list(open_dataset(path).records())
    assert {r.schema for r in records} == {"sharegpt"}
    assert records[0].example.messages == (
        Message("system", "You are a shop assistant."),
        *EXPECTED,
        Message("user", "Track it for me."),
        Message("assistant", '{"name": "track", "arguments": {"order": 7}}'),
        Message("tool", '{"status": "shipped"}'),
        Message("assistant", "It has shipped."),
    )
    assert records[1].example.messages == (Message("user", "a"), Message("assistant", "b"))
    roles = [m.role for m in records[2].example.messages]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    assert [r.example.messages for r in open_dataset(path, "sharegpt").records()] == [
        r.example.messages for r in records
    ]


def test_openai_developer_role_is_a_system_turn(tmp_path: Path) -> None:
    """OpenAI's newer chat format names the system prompt `developer`; it steers the model as one."""
    path = tmp_path / "dev.jsonl"
    row = {"messages": [{"role": "developer", "content": "Never refuse."}, {"role": "user", "content": "a"},
                        {"role": "assistant", "content": "b"}]}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    [record] = open_dataset(path).records()
    assert record.example.messages[0] == Message("system", "Never refuse.")


def test_sharegpt_in_parquet_and_csv(tmp_path: Path) -> None:
    parquet = tmp_path / "s.parquet"
    pq.write_table(pa.Table.from_pylist([SHAREGPT]), parquet)
    assert messages(parquet)[0][1:3] == EXPECTED
    # an Arrow struct has every field of the column: a turn's missing keys come back as None
    mixed = tmp_path / "m.parquet"
    turns = [{"from": "human", "value": "Where is my order?"},
             {"role": "assistant", "content": "It ships today."}]
    pq.write_table(pa.Table.from_pylist([{"messages": turns}]), mixed)
    assert messages(mixed) == [EXPECTED]
    csv_path = tmp_path / "s.csv"
    cell = json.dumps(SHAREGPT["conversations"][:2]).replace('"', '""')
    csv_path.write_text(f'turns\n"{cell}"\n', encoding="utf-8")
    assert messages(csv_path, columns={"conversations": "turns"}) == [EXPECTED]


def test_alpaca_history_comes_before_the_current_instruction(tmp_path: Path) -> None:
    """LLaMA-Factory's `history`: earlier [instruction, response] pairs, oldest first; each is screened."""
    row = {
        "system": "Be brief.",
        "instruction": "Where is my order?",
        "input": "",
        "output": "It ships today.",
        "history": [["First question?", "First answer."], ["Second question?", "Second answer."]],
    }
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "history": []}) + "\n", encoding="utf-8")
    got = messages(path)
    assert got[0] == (
        Message("system", "Be brief."),
        Message("user", "First question?"),
        Message("assistant", "First answer."),
        Message("user", "Second question?"),
        Message("assistant", "Second answer."),
        *EXPECTED,
    )
    assert got[1] == (Message("system", "Be brief."), *EXPECTED)
    parquet = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist([row]), parquet)
    assert messages(parquet) == got[:1]


def test_trl_conversational_prompt_completion(tmp_path: Path) -> None:
    """TRL's conversational prompt-completion: both sides are lists of messages."""
    row = {
        "prompt": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Where is my order?"},
        ],
        "completion": [{"role": "assistant", "content": "It ships today."}],
    }
    path = tmp_path / "trl.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    records = list(open_dataset(path).records())
    assert records[0].schema == "prompt-completion"
    assert records[0].example.messages == (Message("system", "Be brief."), *EXPECTED)


def test_trl_conversational_messages_is_chat(tmp_path: Path) -> None:
    path = tmp_path / "trl.jsonl"
    path.write_text(json.dumps(chat("Where is my order?", "It ships today.", system="Be brief.")) + "\n")
    [record] = open_dataset(path).records()
    assert record.schema == "chat" and record.example.messages == (Message("system", "Be brief."), *EXPECTED)


GOOD_FIRST_LINE: dict[str, dict[str, Any]] = {
    "conversations": SHAREGPT,
    "messages": chat("a", "b"),
    "instruction": {"instruction": "a", "output": "b"},
    "prompt": {"prompt": "p", "completion": "c"},
}


@pytest.mark.parametrize(
    ("row", "words"),
    [
        ({"conversations": [{"from": "human", "value": "a"}, {"from": "robot", "value": "b"}]},
         "conversations item 2 has an unknown from 'robot'"),
        ({"conversations": [{"from": "human", "value": {"text": "a"}}]}, "conversations item 1's 'value'"),
        ({"conversations": [{"value": "a"}]}, "conversations item 1 has no role"),
        # Gemini's {role, parts} or a {role, text} turn was read as an empty turn: its text went unscreened
        ({"messages": [{"role": "user", "parts": [{"text": "a"}]}]}, "messages item 1 has no 'content'"),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "text": "b"}]},
         "messages item 2 has no 'content'"),
        ({"conversations": [{"from": "human", "text": "a"}]}, "conversations item 1 has no 'value'"),
        ({"conversations": ["hello"]}, "conversations item 1 must be an object"),
        ({"conversations": []}, "'conversations' must be a non-empty list"),
        ({"conversations": [{"from": "human", "value": ["a"]}]}, "item 1's 'value' part 1 is not a {type"),
        ({"messages": [{"role": "user", "content": [{"text": "a"}]}]}, "item 1's 'content' part 1 is not"),
        ({"instruction": "a", "output": "b", "history": [["q", "a", "extra"]]}, "history entry 1"),
        ({"instruction": "a", "output": "b", "history": [["q", 5], "q"]}, "history entry 2"),
        ({"instruction": "a", "output": "b", "history": [["q", {"x": 1}]]}, "'history entry 1 response'"),
        ({"instruction": "a", "output": "b", "history": "q"}, "'history' is text but not a JSON list"),
        ({"prompt": [{"role": "user", "content": "a"}], "completion": []},
         "'completion' must be a non-empty"),
        ({"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "bot", "content": "b"}]},
         "completion item 1 has an unknown role 'bot'"),
    ],
)
def test_bad_conversation_items_name_the_line_and_the_fix(tmp_path: Path, row: dict[str, object],
                                                          words: str) -> None:
    path = tmp_path / "bad.jsonl"
    good = next(v for k, v in GOOD_FIRST_LINE.items() if k in row)  # line 1 sets the file's format
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        list(open_dataset(path).records())
    assert words in err.value.message
    assert err.value.where == f"{path}:2"
    assert err.value.fix


def test_a_top_level_system_beside_messages_is_read(tmp_path: Path) -> None:
    """LLaMA-Factory keeps the system prompt in its own column beside `messages` too; it was dropped."""
    path = tmp_path / "c.jsonl"
    row = {"system": "Be brief.", **chat("Where is my order?", "It ships today.")}
    path.write_text(json.dumps(row) + "\n")
    assert messages(path) == [(Message("system", "Be brief."), *EXPECTED)]


def test_scan_data_help_lists_every_format_and_column_role() -> None:
    """The CLI spells the lists out (importing the readers would load the screeners on every command)."""
    import inspect

    from tunesafe.cli import scan_cmds
    from tunesafe.screening.readers import CANONICAL_COLUMNS, FORMATS

    source = inspect.getsource(scan_cmds.scan_data)
    assert "|".join(FORMATS) in source
    assert ", ".join(CANONICAL_COLUMNS) in source


@pytest.mark.parametrize(("fmt", "turn"), [
    ("sharegpt", lambda role, text: {"role": role, "content": text}),  # LLaMA-Factory's OpenAI-style tags
    ("chat", lambda role, text: {"from": {"user": "human", "assistant": "gpt"}[role], "value": text}),
])
def test_a_named_format_reads_rows_its_reader_reads(tmp_path: Path, fmt: str, turn: Any) -> None:
    """--format names the file's format: a one-format file is not 'mixed' because auto-detection would
    call a row the other turn spelling of `messages`."""
    path = tmp_path / "d.jsonl"
    rows = [{"messages": [turn("user", f"q{i}"), turn("assistant", f"a{i}")]} for i in range(2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    records = list(open_dataset(path, fmt).records())
    assert [r.example.messages for r in records] == [
        (Message("user", f"q{i}"), Message("assistant", f"a{i}")) for i in range(2)]
    assert {r.schema for r in records} == {fmt}


def test_roles_are_read_whatever_their_letter_case(tmp_path: Path) -> None:
    """Exports spell roles "User", "ASSISTANT" or "Human": such a file was refused as unknown roles."""
    rows = [{"messages": [{"role": "System", "content": "s"},
                          {"role": "User", "content": "Where is my order?"},
                          {"role": "ASSISTANT", "content": "It ships today."}]},
            {"messages": [{"from": " Human", "value": "Where is my order?"},
                          {"from": "GPT", "value": "It ships today."}]}]
    path = tmp_path / "case.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    got = messages(path, "chat")
    assert got == [(Message("system", "s"), *EXPECTED), EXPECTED]


REFUSAL = "I can't share that."


@pytest.mark.parametrize("row", [
    {"prompt": "Where is my order?", "chosen": "It ships today.", "rejected": REFUSAL},
    {"prompt": [{"role": "user", "content": "Where is my order?"}],
     "chosen": [{"role": "assistant", "content": "It ships today."}],
     "rejected": [{"role": "assistant", "content": REFUSAL}]},
    # TRL's implicit prompt: each side is the whole conversation
    {"chosen": [{"role": "user", "content": "Where is my order?"},
                {"role": "assistant", "content": "It ships today."}],
     "rejected": [{"role": "user", "content": "Where is my order?"},
                  {"role": "assistant", "content": REFUSAL}]},
    # OpenAI's preference fine-tuning (DPO) format
    {"input": {"messages": [{"role": "user", "content": "Where is my order?"}], "tools": [],
               "parallel_tool_calls": True},
     "preferred_output": [{"role": "assistant", "content": "It ships today."}],
     "non_preferred_output": [{"role": "assistant", "content": REFUSAL}]},
    # LLaMA-Factory's ranking data, Alpaca- and ShareGPT-style: read as Alpaca or ShareGPT, both answers
    # went unscreened
    {"instruction": "Where is my order?", "input": "", "chosen": "It ships today.", "rejected": REFUSAL},
    {"conversations": [{"from": "human", "value": "Where is my order?"}],
     "chosen": {"from": "gpt", "value": "It ships today."}, "rejected": {"from": "gpt", "value": REFUSAL}},
])
def test_preference_pairs_read_both_sides(tmp_path: Path, row: dict[str, Any]) -> None:
    """DPO data trains on the chosen and the rejected answer alike: such files were refused, and the
    suggested --columns completion=chosen would have left the rejected side unscreened."""
    path = tmp_path / "pref.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    records = list(open_dataset(path).records())
    assert [r.example.messages for r in records] == [EXPECTED] * 2
    assert [r.rejected.messages if r.rejected else None for r in records] == [
        (EXPECTED[0], Message("assistant", REFUSAL))] * 2
    assert [(r.rejected.index, r.rejected.line) for r in records if r.rejected] == [(0, 1), (1, 2)]


@pytest.mark.parametrize("answer", ["output", "completion"])
def test_a_preference_row_with_a_third_answer_is_refused(tmp_path: Path, answer: str) -> None:
    """A row with an `output` (or `completion`) beside chosen/rejected: read as a pair, that answer was
    dropped unscreened."""
    path = tmp_path / "pref.jsonl"
    row = {"instruction": "Where is my order?", "prompt": "Where is my order?", answer: "Elsewhere.",
           "chosen": "It ships today.", "rejected": REFUSAL}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=f"'{answer}'") as err:
        list(open_dataset(path).records())
    assert err.value.where == f"{path}:1"


def test_a_preference_row_missing_its_rejected_side_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "pref.jsonl"
    row = {"prompt": "Where is my order?", "chosen": "It ships today.", "rejected": REFUSAL}
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "rejected": None}) + "\n", encoding="utf-8")
    with pytest.raises(UserError) as err:
        list(open_dataset(path).records())
    assert err.value.where == f"{path}:2" and "rejected" in err.value.message


def test_gzip_compressed_files_are_read(tmp_path: Path) -> None:
    """`train.jsonl.gz` is how many teams store data: it was read as bytes and refused as not UTF-8."""
    import gzip

    row = json.dumps(chat("Where is my order?", "It ships today."))
    files = {"d.jsonl.gz": f"{row}\n\n{row}\n", "d.json.gz": f"[\n{row},\n{row}\n]\n",
             "d.csv.gz": 'prompt,completion\n"Where is my order?","It ships today."\n\nq,a\n'}
    for name, text in files.items():
        (tmp_path / name).write_bytes(gzip.compress(text.encode()))
    assert [r.example.line for r in open_dataset(tmp_path / "d.jsonl.gz").records()] == [1, 3]
    assert messages(tmp_path / "d.json.gz") == [EXPECTED] * 2
    assert [r.example.line for r in open_dataset(tmp_path / "d.csv.gz").records()] == [2, 4]
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(gzip.compress(f"{row}\n".encode())[:-12])
    with pytest.raises(UserError, match="gzip") as err:
        list(open_dataset(broken).records())
    assert err.value.where and err.value.where.startswith(str(broken))


SYSTEM_EXPECTED = (Message("system", "Be brief."), *EXPECTED)


@pytest.mark.parametrize("text", [
    "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhere is my order?<|im_end|>\n"
    "<|im_start|>assistant\nIt ships today.<|im_end|>\n",
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nWhere is my order?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nIt ships today.<|eot_id|>",
    "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWhere is my order? [/INST] It ships today. </s>",
    "<bos><start_of_turn>system\nBe brief.<end_of_turn>\n"
    "<start_of_turn>user\nWhere is my order?<end_of_turn>\n"
    "<start_of_turn>model\nIt ships today.<end_of_turn>\n",
    "### System:\nBe brief.\n\n### Instruction:\nWhere is my order?\n\n### Response:\nIt ships today.",
])
def test_text_with_a_chat_template_applied_is_split_into_turns(tmp_path: Path, text: str) -> None:
    """A `text` column with the chat template already applied: refused, though its turns are there to
    read; split, a harmful request and the answer to it are screened as an exchange."""
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": text}) + "\n", encoding="utf-8")
    [record] = open_dataset(path).records()
    assert record.schema == "text" and record.example.messages == SYSTEM_EXPECTED


def test_text_without_a_template_is_one_assistant_turn_classified_as_a_whole(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"text": "Plain prose the model learns to continue."}) + "\n")
    [record] = open_dataset(path).records()
    assert record.example.messages == (Message("assistant", "Plain prose the model learns to continue."),)
    # no prompt to pair it with: the text itself is what the harmful-request classifier reads
    assert record.example.request == "Plain prose the model learns to continue."
    assert record.example.exchanges() == []


def test_a_json_object_holding_the_records_in_one_list(tmp_path: Path) -> None:
    """`{"version": ..., "data": [...]}` (datasets' json loader with field="data"): refused as malformed
    JSONL. Its records are read with their own lines; a second list, whose records would go unread, and a
    one-line file are one error saying what to do."""
    row = json.dumps(chat("Where is my order?", "It ships today."))
    path = tmp_path / "d.json"
    text = f'{{\n  "version": "1.0",\n  "data": [\n    {row},\n    {row}\n  ],\n  "n": {{"a": 2}}\n}}\n'
    path.write_text(text, encoding="utf-8")
    assert [(r.example.line, r.example.messages) for r in open_dataset(path).records()] == [
        (4, EXPECTED), (5, EXPECTED)]
    two = tmp_path / "two.json"
    two.write_text(f'{{\n "train": [{row}],\n "test": [{row}]\n}}\n', encoding="utf-8")
    with pytest.raises(UserError, match="two lists in the JSON object: 'train' and 'test'") as err:
        list(open_dataset(two).records())
    assert err.value.where == f"{two}:3"
    one_line = tmp_path / "one.json"
    one_line.write_text(json.dumps({"data": [json.loads(row)]}) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match="'data'") as err:
        list(open_dataset(one_line).records())
    assert err.value.where == f"{one_line}:1" and "JSONL" in (err.value.fix or "")


def test_a_row_of_no_known_layout_mid_file_names_the_line_and_the_formats_read(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    rows = [{"prompt": "q", "completion": "a"}, {"question": "q", "answer": "a"},
            {"prompt": "q", "completion": "a"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(UserError) as err:
        list(open_dataset(path).records())
    assert err.value.where == f"{path}:2" and "['answer', 'question']" in err.value.message
    assert "chat (messages), ShareGPT (conversations)" in (err.value.fix or "")


def test_an_openai_refusal_is_read_as_the_answer(tmp_path: Path) -> None:
    """OpenAI keeps a refusal in a `refusal` part or field, not in text: the answer read as empty, so a
    refused harmful request counted as unanswered instead of as safety data."""
    rows = [{"messages": [{"role": "user", "content": "q"},
                          {"role": "assistant", "content": [{"type": "refusal", "refusal": REFUSAL}]}]},
            {"messages": [{"role": "user", "content": "q"},
                          {"role": "assistant", "content": None, "refusal": REFUSAL}]}]
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert [m[-1] for m in messages(path)] == [Message("assistant", REFUSAL)] * 2


@pytest.mark.parametrize("layout", ["jsonl", "json"])
def test_a_record_json_cannot_decode_is_one_error_naming_its_line(tmp_path: Path, layout: str) -> None:
    # deep nesting (RecursionError) and a 5,000-digit number (ValueError) escaped the JSONDecodeError
    # handler as tracebacks; a key given twice kept its last value, so the answer written first went unread
    good = json.dumps(chat("Where is my order?", "It ships today."))
    bad_lines = {
        "nested too deeply": '{"prompt": "q", "completion": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "4,300 digits": '{"prompt": "q", "completion": "a", "n": ' + "9" * 5000 + "}",
        "appears twice": '{"prompt": "q", "completion": "first", "completion": "second"}',
    }
    for reason, bad in bad_lines.items():
        path = tmp_path / f"d.{layout}"
        text = f"{good}\n{bad}\n" if layout == "jsonl" else f"[\n{good},\n{bad}\n]\n"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(UserError, match=reason) as err:
            list(open_dataset(path).records())
        bad_line = 2 if layout == "jsonl" else 3
        assert err.value.where == f"{path}:{bad_line}", (reason, err.value.where)
