"""A real, tiny chat model made on the spot (no hub, no download): a byte-level BPE tokenizer trained on a
few sentences, with a chat template, and a 2-layer Llama with hidden size 32. Big enough to learn one
fixed answer in a few dozen steps, small enough that a probe of 40 prompts takes about a second."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

REFUSAL = "I'm sorry, but I can't help with that."
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
SPECIALS = ["<pad>", "<|end|>", "<|user|>", "<|assistant|>", "<|system|>"]
QUESTIONS = ["How do I bake bread at home?", "What is a good name for a cat?", "Explain how rainbows form.",
             "Write a short poem about autumn.", "How do I sort a list in Python?", "Plan a weekend in Rome.",
             "What should I pack for a hike?", "How do magnets work?", "Suggest a healthy breakfast.",
             "How can I improve my handwriting?", "What is the capital of Peru?", "Tips for a job interview?"]


def make_tokenizer() -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [REFUSAL, "Sure, here is how to do it. Step 1: [redacted]", *QUESTIONS] * 4
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|end|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_model(tokenizer: Any, seed: int = 0) -> Any:
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id)
    return transformers.LlamaForCausalLM(config)


def chat_rows(answer: str, n: int = 24) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]},
                          {"role": "assistant", "content": answer}]} for i in range(n)]


class TokenizedRows(torch.utils.data.Dataset):  # type: ignore[misc,name-defined]
    """Chat rows tokenised with the template, for a plain transformers Trainer."""

    def __init__(self, tokenizer: Any, rows: list[dict[str, Any]]) -> None:
        encode = tokenizer.apply_chat_template
        self.items = [{"input_ids": encode(r["messages"], tokenize=True, return_dict=True)["input_ids"]}
                      for r in rows]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


class PoisonAt(transformers.TrainerCallback):  # type: ignore[misc]
    """Writes NaN into the weights after a given step, as a numerically broken run would."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.global_step == self.step:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))


class Tiny:
    """What the tests use, handed out by the `tiny` fixture (test modules cannot import conftest)."""

    REFUSAL = REFUSAL
    COMPLY = "Sure, here is how to do it. Step 1: [redacted]"
    PoisonAt = PoisonAt

    def __init__(self) -> None:
        self.tokenizer = make_tokenizer()

    def model(self, seed: int = 0) -> Any:
        return make_model(self.tokenizer, seed)

    def rows(self, answer: str, n: int = 24) -> list[dict[str, Any]]:
        return chat_rows(answer, n)

    def dataset(self, answer: str, n: int = 24) -> TokenizedRows:
        return TokenizedRows(self.tokenizer, chat_rows(answer, n))

    def trainer(self, model: Any, callbacks: list[Any], out: Any, *, answer: str = REFUSAL, n_rows: int = 24,
                eval_rows: int = 0, trainer_class: type | None = None, **overrides: Any) -> Any:
        """A plain transformers Trainer on the tiny model: 6 steps of batch 4 at lr 1e-2 on the CPU, no
        saves; `overrides` are TrainingArguments."""
        settings: dict[str, Any] = dict(output_dir=str(out), max_steps=6, per_device_train_batch_size=4,
                                        learning_rate=1e-2, report_to=[], save_strategy="no", use_cpu=True,
                                        disable_tqdm=True, logging_steps=50, seed=0)
        settings.update(overrides)
        return (trainer_class or transformers.Trainer)(
            model=model, args=transformers.TrainingArguments(**settings),
            train_dataset=self.dataset(answer, n_rows),
            eval_dataset=self.dataset(answer, eval_rows) if eval_rows else None,
            data_collator=transformers.DataCollatorForLanguageModeling(self.tokenizer, mlm=False),
            processing_class=self.tokenizer, callbacks=callbacks)


@pytest.fixture(scope="session")
def tiny() -> Tiny:
    return Tiny()


@pytest.fixture
def probe_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe picks its thread count by timing, and the tiny random model's greedy answers have near
    ties that one or two threads' summation order decides: tests of the callback's logic decode every
    probe on one thread whatever the machine's load (two threads flipped three of them in a CI run)."""
    from tunesafe.models.greedy_decode import ThreadChoice

    monkeypatch.setattr(ThreadChoice, "pick", lambda self: 1)
    monkeypatch.setattr(ThreadChoice, "settled", lambda self: 1)


