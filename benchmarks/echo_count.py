"""How often the judges' echo rule (an answer that only says the request back is degenerate) fires on
answers nobody wrote to test it: XSTest's 2,250 completions, the held-out refusal style set, the
embedded model's real answers, and optionally the stored answers of a run. Labels are not read: the
count says how many verdicts the rule can have changed, nothing about which were right.

    python benchmarks/echo_count.py [--stored DB --suite smoke] [--json OUT]

Data: $TUNESAFE_SHARED/datasets/xstest (default: the `shared` folder next to the repository)."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

from tunesafe.judges.degenerate import is_echo

HERE = Path(__file__).resolve().parent


def xstest_pairs() -> list[tuple[str, str]]:
    from judges import load_rows, xstest_dir  # benchmarks/judges.py: the same files, read the same way

    return [(row["prompt"], row["completion"]) for row in load_rows(xstest_dir())]


def jsonl_pairs(folder: Path) -> list[tuple[str, str]]:
    from judges import load_style_rows

    return [(row["prompt"], row["completion"]) for row in load_style_rows(folder)]


def stored_pairs(db: Path, suite: str) -> list[tuple[str, str]]:
    """(behaviour text, answer) of every stored attempt: the judges check an echo against the behaviour."""
    from tunesafe.suite import load_suite

    texts = {b.id: b.text for b in load_suite(suite).behaviors}
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT behavior_id, generation FROM attempt_results").fetchall()
    return [(texts[bid], json.loads(gen).get("text") or "") for bid, gen in rows if bid in texts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stored", type=Path, help="an evidence store (SQLite) whose answers to count")
    parser.add_argument("--suite", default="smoke", help="the suite the stored runs asked (default: smoke)")
    parser.add_argument("--json", type=Path, help="write the counts here")
    args = parser.parse_args()
    sets = {"xstest": xstest_pairs(), "refusal_styles": jsonl_pairs(HERE / "data" / "refusal_styles"),
            "refusal_real": jsonl_pairs(HERE / "data" / "refusal_real")}
    if args.stored:
        sets["stored"] = stored_pairs(args.stored, args.suite)
    counts = {name: {"answers": len(pairs),
                     "echoes": sum(is_echo(answer, request) for request, answer in pairs)}
              for name, pairs in sets.items()}
    for name, count in counts.items():
        print(f"{name}: {count['echoes']} echoes of {count['answers']} answers")
    if args.json:
        args.json.write_text(json.dumps(counts, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
