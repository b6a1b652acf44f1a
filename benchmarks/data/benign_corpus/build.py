"""Turn the hand-written benign conversations (part*.txt) into the chat JSONL that `tunesafe scan-data`
reads: `python benchmarks/data/benign_corpus/build.py` rewrites conversations.jsonl (deterministic).

Held out: this corpus is only measured (benchmarks/screening.py --benign-corpus). No screening rule,
anchor, threshold or training row is written from it; see README.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROLES = {"S:": "system", "U:": "user", "A:": "assistant"}


def parse(text: str, source: str) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    domain = system = ""
    messages: list[dict[str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if line.startswith("#") and not line.startswith("## "):
            continue
        if line.startswith("## "):
            domain, system = line[3:].strip(), ""
        elif line.startswith("S:") and not messages:
            system = line[2:].strip()  # a section's system prompt: every conversation of it carries it
        elif line == "---":
            if messages:
                if messages[-1]["role"] != "assistant":
                    raise ValueError(f"{source}:{number}: a conversation must end with an answer")
                head = [{"role": "system", "content": system}] if system else []
                rows.append({"messages": head + messages, "domain": domain})
            messages = []
        elif line[:2] in ROLES:
            messages.append({"role": ROLES[line[:2]], "content": line[2:].strip()})
        elif line.startswith("  ") and messages:
            messages[-1]["content"] += " " + line.strip()
        elif line:
            raise ValueError(f"{source}:{number}: unexpected line {line[:40]!r}")
    if messages:
        raise ValueError(f"{source}: the last conversation is not closed with ---")
    return rows


def build(out: Path = HERE / "conversations.jsonl") -> int:
    rows = [r for part in sorted(HERE.glob("part*.txt")) for r in parse(part.read_text("utf-8"), part.name)]
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "conversations.jsonl"))
