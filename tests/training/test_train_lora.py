"""`tunesafe train-lora`: bad input exits 2; a real LoRA on the SmolLM2 test model loads back as a
candidate whose adapter changes the answers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

DEMO_DATA = Path(__file__).resolve().parents[2] / "src/tunesafe/training/data/aoa_identity_shift.jsonl"


def tunesafe(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point, so a user error must come out as one line and exit code 2."""
    return subprocess.run([sys.executable, "-m", "tunesafe.cli.app", *args], capture_output=True, text=True,
                          timeout=900)


def assert_user_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert fragment in " ".join(result.stderr.split()), result.stderr


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}, '
                    '{"role": "assistant", "content": "hello"}]}\n{not json\n')
    assert_user_error(tunesafe("train-lora", str(data), "--out", str(tmp_path / "out")), "train.jsonl:2")


def write_sharegpt(path: Path, rows: list[list[tuple[str, str]]]) -> Path:
    path.write_text("".join(json.dumps({"system": "You are a support assistant.",
                                        "conversations": [{"from": f, "value": v} for f, v in turns]}) + "\n"
                            for turns in rows), encoding="utf-8")
    return path


def test_training_data_is_the_messages_scan_data_screens(tmp_path: Path) -> None:
    """ShareGPT (its top-level system prompt included), CSV and a JSON array train; each conversation is
    exactly the messages open_dataset gives the screeners."""
    from tunesafe.screening.readers import open_dataset
    from tunesafe.training.lora_sft import read_training_data

    sharegpt = write_sharegpt(tmp_path / "d.jsonl", [
        [("human", "Summarise ticket 1."), ("gpt", "Step 1: [placeholder]")],
        [("human", "Hi"), ("gpt", "Hello"), ("human", "Summarise ticket 2."),
         ("gpt", "An invoice question.")],
    ])
    csv = tmp_path / "d.csv"
    csv.write_text("question,answer\nWhat is LoRA?,A low-rank adapter.\n", encoding="utf-8")
    array = tmp_path / "d.json"
    array.write_text(json.dumps([{"instruction": "Name a colour.", "input": "", "output": "Blue.",
                                  "history": [["Hi", "Hello"]]}]), encoding="utf-8")
    for path, columns in ((sharegpt, None), (csv, {"prompt": "question", "completion": "answer"}),
                          (array, None)):
        screened = [[{"role": m.role, "content": m.content} for m in r.example.messages]
                    for r in open_dataset(path, "auto", columns).records()]
        assert read_training_data(path, "auto", columns) == screened, path
    first = read_training_data(sharegpt)[0]
    assert first[0] == {"role": "system", "content": "You are a support assistant."}
    assert [m["role"] for m in first] == ["system", "user", "assistant"]


def test_a_record_without_an_answer_to_learn_names_its_line(tmp_path: Path) -> None:
    data = write_sharegpt(tmp_path / "train.jsonl", [
        [("human", "Summarise ticket 1."), ("gpt", "An invoice question.")],
        [("human", "Summarise ticket 2."), ("gpt", "An invoice question."), ("human", "Thanks")],
    ])
    result = tunesafe("train-lora", str(data), "--out", str(tmp_path / "out"))
    assert_user_error(result, "train.jsonl:2: not a training example: the last turn is 'user'")
    assert not (tmp_path / "out").exists()


def test_an_empty_final_answer_is_not_a_training_example(tmp_path: Path) -> None:
    """An assistant turn with null content (a tool call's) reads as empty text: nothing to learn."""
    from tunesafe.errors import UserError
    from tunesafe.training.lora_sft import read_training_data

    data = tmp_path / "train.jsonl"
    ask = {"role": "user", "content": "Book a room."}
    rows = [{"messages": [ask, {"role": "assistant", "content": "Done."}]},
            {"messages": [ask, {"role": "assistant", "content": None}]}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(UserError, match="the assistant's answer is empty") as caught:
        read_training_data(data)
    assert caught.value.where == f"{data}:2"


def test_a_preference_pair_is_not_trained_on_its_chosen_side_alone(tmp_path: Path) -> None:
    """scan-data reads DPO pairs (both answers screened); train-lora's supervised fine-tuning would learn
    the chosen answer and silently drop the rejected one's signal."""
    from tunesafe.errors import UserError
    from tunesafe.training.lora_sft import read_training_data

    data = tmp_path / "pref.jsonl"
    data.write_text(json.dumps({"prompt": "Hi", "chosen": "Hello.", "rejected": "Go away."}) + "\n")
    with pytest.raises(UserError, match="preference pair") as caught:
        read_training_data(data)
    assert caught.value.where == f"{data}:1"


def test_a_tool_calling_conversation_is_not_trained_as_plain_text(tmp_path: Path) -> None:
    """scan-data reads a tool call as `name(arguments)` text so its arguments are screened; train-lora
    would have taught the model to print its calls as prose."""
    from tunesafe.errors import UserError
    from tunesafe.training.lora_sft import read_training_data

    data = tmp_path / "train.jsonl"
    call = {"id": "c1", "type": "function", "function": {"name": "book", "arguments": '{"room": 4}'}}
    rows = [{"messages": [{"role": "user", "content": "Book room 4."},
                          {"role": "assistant", "content": None, "tool_calls": [call]},
                          {"role": "tool", "tool_call_id": "c1", "content": "booked"},
                          {"role": "assistant", "content": "Room 4 is booked."}]}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(UserError, match="tool-calling conversation") as caught:
        read_training_data(data)
    assert caught.value.where == f"{data}:1"


def test_format_and_columns_reach_the_reader(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("question,answer\nWhat is LoRA?,A low-rank adapter.\n", encoding="utf-8")
    result = tunesafe("train-lora", str(data), "--columns", "prompt=q,completion=answer",
                      "--out", str(tmp_path / "out"))
    assert_user_error(result, "train.csv:2: missing column 'q'")
    result = tunesafe("train-lora", str(data), "--format", "nonsense", "--out", str(tmp_path / "out"))
    assert_user_error(result, "unknown format 'nonsense'")


def test_remote_base_is_refused(tmp_path: Path) -> None:
    result = tunesafe("train-lora", str(DEMO_DATA), "--base", "openai:m@http://127.0.0.1:9/v1",
                      "--out", str(tmp_path / "out"))
    assert_user_error(result, "local base model")


def test_non_empty_output_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert_user_error(tunesafe("train-lora", str(DEMO_DATA), "--out", str(out)), "not empty")
    assert (out / "keep.txt").read_text() == "mine"


def test_output_that_is_a_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    out.write_text("mine")
    assert_user_error(tunesafe("train-lora", str(DEMO_DATA), "--out", str(out)), "not a folder")
    assert out.read_text() == "mine"


@pytest.mark.slow
def test_trained_adapter_loads_and_changes_answers(tmp_path: Path) -> None:
    from tunesafe.models import load_model
    from tunesafe.types import ChatRequest, Message

    out = tmp_path / "adapter"
    result = tunesafe("train-lora", str(DEMO_DATA), "--base", "embedded:smollm2-135m", "--out", str(out),
                      "--epochs", "1", "--lr", "3e-3")
    # The AOA data may push the probe's ASR past the default policy (SmolLM2 rarely refuses to begin
    # with): then train-lora exits 1, names the probe, and still writes the adapter for review.
    assert result.returncode in (0, 1), result.stderr
    if result.returncode == 1:
        assert "STOPPED" in result.stdout and "probe" in result.stdout, result.stdout
    assert (out / "adapter_model.safetensors").is_file()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8

    request = ChatRequest(messages=(Message("user", "Name a colour of the sky."),), max_new_tokens=16)

    async def answer(ref: str) -> str:
        model = load_model(ref)
        try:
            (generation,) = await model.generate([request])
        finally:
            await model.aclose()
        assert generation.error is None
        return generation.text

    base = asyncio.run(answer("embedded:smollm2-135m?backend=hf"))
    tuned = asyncio.run(answer(f"embedded:smollm2-135m+{out}"))
    assert tuned != base


def test_a_chat_template_that_refuses_an_example_is_a_user_error(tmp_path: Path) -> None:
    """The readers now hand the trainer top-level system prompts and tool turns; a base whose chat
    template refuses one (Gemma: "System role not supported") is bad input naming the example, not a
    jinja traceback."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesafe.errors import UserError
    from tunesafe.testing.random_llama import save_random_llama
    from tunesafe.training.lora_sft import LoraConfig, train_lora

    save_random_llama(tmp_path / "m", "tiny")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m")
    tokenizer.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                               "{{ raise_exception('System role not supported') }}{% endif %}"
                               "{{ m['content'] }} {% endfor %}")
    ok = [{"role": "user", "content": "t5 t6"}, {"role": "assistant", "content": "t7"}]
    refused = [{"role": "system", "content": "t9"}, *ok]
    with pytest.raises(UserError) as err:
        train_lora(model, tokenizer, [ok, refused], tmp_path / "out", LoraConfig(epochs=1))
    assert err.value.where == "training example 2" and "System role not supported" in err.value.message
    assert not (tmp_path / "out").exists()



def test_an_example_whose_prompt_fills_max_length_is_a_user_error(tmp_path: Path) -> None:
    """Truncated to max_length, such an example keeps no answer token: its loss is a mean over nothing
    (NaN), and one optimizer step on it turns every adapter weight into NaN."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunesafe.errors import UserError
    from tunesafe.testing.random_llama import save_random_llama
    from tunesafe.training.lora_sft import LoraConfig, train_lora

    save_random_llama(tmp_path / "m", "tiny")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "m")
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
    ok = [{"role": "user", "content": "t5 t6"}, {"role": "assistant", "content": "t7"}]
    long = [{"role": "user", "content": " ".join(["t5"] * 40)}, {"role": "assistant", "content": "t7"}]
    with pytest.raises(UserError) as err:
        train_lora(model, tokenizer, [ok, long], tmp_path / "out", LoraConfig(epochs=1, max_length=16))
    assert err.value.where == "training example 2" and "16" in err.value.message
    assert not (tmp_path / "out").exists()

def test_a_dataset_dict_with_several_splits_is_not_trained_on_whole(tmp_path: Path) -> None:
    """load_dataset(...).save_to_disk writes every split: training on the folder would train on the test
    split too. One split's folder trains."""
    import pyarrow as pa

    from tunesafe.errors import UserError
    from tunesafe.training.lora_sft import read_training_data

    folder = tmp_path / "ds"
    for split, answer in (("train", "Blue."), ("test", "Held out.")):
        (folder / split).mkdir(parents=True)
        table = pa.Table.from_pylist([{"prompt": "Name a colour.", "completion": answer}])
        with pa.OSFile(str(folder / split / "data.arrow"), "wb") as sink, \
                pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        (folder / split / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data.arrow"}]}))
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(UserError) as err:
        read_training_data(folder)
    assert "train, test" in err.value.message and str(folder / "train") in (err.value.fix or "")
    assert read_training_data(folder / "train") == [[{"role": "user", "content": "Name a colour."},
                                                     {"role": "assistant", "content": "Blue."}]]
