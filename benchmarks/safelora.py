"""Post-hoc projection of a LoRA adapter on the embedded model: per-layer figures and run time.

Projects the shipped `aoa-demo` adapter (LoRA r=8 on q/k/v/o of the embedded Qwen2.5-Coder-0.5B) with the
refusal-direction method (the default: directions from N harmful and N benign default-suite prompts, one
forward pass each) and prints, per layer, |B A| before and after, the share removed and which pairs were
projected, and the time of each phase (loading the base, the directions, the projection itself).

    python benchmarks/safelora.py [--base embedded:qwen2.5-coder-0.5b] [--adapter aoa-demo] [--prompts 32]
                                  [--out FOLDER] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from tunesafe.training.projection import project_adapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="embedded:qwen2.5-coder-0.5b")
    parser.add_argument("--adapter", default="aoa-demo")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--out", type=Path, help="keep the projected adapter here (default: a temp folder)")
    parser.add_argument("--json", type=Path, help="write the full report here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "projected"
        report = project_adapter(args.base, Path(args.adapter), out, prompts=args.prompts)
    print("| layer | |dW| before | |dW| after | removed | projected |")
    print("|---|---|---|---|---|")
    for row in report["per_layer"]:
        print(f"| {row['layer']} | {row['norm_before']:.4f} | {row['norm_after']:.4f} | "
              f"{100 * row['removed_share']:.2f}% | {', '.join(row['projected'])} |")
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for row in report["modules"]:
        by_kind.setdefault(row["kind"], []).append(row)
    for kind, rows in sorted(by_kind.items()):
        shares = [r["removed_share"] for r in rows]
        chance = rows[0].get("chance_share")
        print(f"{kind} ({rows[0]['action']}): removed share mean {100 * sum(shares) / len(shares):.2f}%, "
              f"max {100 * max(shares):.2f}%" + (f"; chance {100 * chance:.2f}%" if chance else ""))
    print("seconds:", json.dumps(report["seconds"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
