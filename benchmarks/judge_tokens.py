"""Do the judges need 64 new tokens? Re-judges two stored runs (base and candidate of a gate) with each
answer cut to its first K tokens, and compares with the verdicts on the full answers: per side the
agreement of outcomes and the ASR, and the paired figures the gate decides on (ASR change, regressed /
improved pairs). Greedy decoding is prefix-stable, so an answer cut to K tokens is what a run with
`--max-new-tokens K` generates (up to batch numerics). No model is called.

    python benchmarks/judge_tokens.py --db .tunesafe/tunesafe.db --base RUN --candidate RUN \\
        [--tokens 16 24 32 48] [--judge default] [--tokenizer DIR] [--json OUT]

The tokenizer is the model's (default: the embedded model's converted folder in ~/.cache/tunesafe/hf)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunesafe.engine import results as store_results
from tunesafe.engine.rejudge import run_behaviors
from tunesafe.evidence.store import Store
from tunesafe.judges.base import JudgeInput, get_judge
from tunesafe.types import AttemptResult, Verdict


def _tokenizer(folder: str | None) -> Any:
    from transformers import AutoTokenizer

    if folder is None:
        root = Path.home() / ".cache" / "tunesafe" / "hf"
        found = sorted(p.parent for p in root.glob("*/tokenizer.json"))
        if not found:
            raise SystemExit(f"no converted model tokenizer under {root}: pass --tokenizer DIR")
        folder = str(found[0])
    return AutoTokenizer.from_pretrained(folder)


def _cut(tokenizer: Any, text: str, tokens: int | None) -> str:
    if tokens is None:
        return text
    ids = tokenizer.encode(text, add_special_tokens=False)
    return text if len(ids) <= tokens else str(tokenizer.decode(ids[:tokens]))


def _outcomes(store: Store, run_id: str, judge_name: str, tokenizer: Any,
              tokens: int | None) -> dict[str, str]:
    """attempt id -> outcome ("success", "refused", ...) of the answered harmful attempts."""
    info = store_results.load_run(store, run_id)
    results = store_results.load_results(store, run_id)
    behaviors = run_behaviors(info, results)
    answered: list[AttemptResult] = [r for r in results if r.attempt.kind == "harmful" and r.generation.ok
                                     and r.generation.blocked is None]
    inputs = [JudgeInput(request=behaviors[r.attempt.behavior_id].text,
                         response=_cut(tokenizer, r.response, tokens), kind="harmful", id=r.attempt.id)
              for r in answered]
    verdicts: Sequence[Verdict] = asyncio.run(get_judge(judge_name).judge(inputs))
    return {r.attempt.id: str(v.outcome) for r, v in zip(answered, verdicts, strict=True)}


def _figures(outcomes: dict[str, dict[str, str]]) -> dict[str, Any]:
    """ASR per side and the paired counts the gate's McNemar test reads."""
    base, candidate = outcomes["base"], outcomes["candidate"]
    paired = base.keys() & candidate.keys()
    return {"base_asr": round(sum(o == "success" for o in base.values()) / len(base), 4),
            "candidate_asr": round(sum(o == "success" for o in candidate.values()) / len(candidate), 4),
            "pairs": len(paired),
            "regressed": sum(base[a] != "success" and candidate[a] == "success" for a in paired),
            "improved": sum(base[a] == "success" and candidate[a] != "success" for a in paired)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--base", required=True)
    parser.add_argument("--candidate", required=True)
    parser.add_argument("--tokens", type=int, nargs="+", default=[16, 24, 32, 48])
    parser.add_argument("--judge", default="default")
    parser.add_argument("--tokenizer")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    tokenizer = _tokenizer(args.tokenizer)
    runs = {"base": args.base, "candidate": args.candidate}
    with Store.open(str(args.db)) as store:
        full = {side: _outcomes(store, run, args.judge, tokenizer, None) for side, run in runs.items()}
        rows = [{"tokens": "full", **_figures(full)}]
        for tokens in args.tokens:
            cut = {side: _outcomes(store, run, args.judge, tokenizer, tokens) for side, run in runs.items()}
            agreement = {f"{side}_agreement": round(sum(cut[side][a] == o for a, o in full[side].items())
                                                    / len(full[side]), 4) for side in runs}
            rows.append({"tokens": tokens, **agreement, **_figures(cut)})
    for row in rows:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps({"judge": args.judge, "rows": rows, "cpus": os.cpu_count()}, indent=2)
                             + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
