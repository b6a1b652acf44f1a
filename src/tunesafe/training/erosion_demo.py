"""Rebuild `aoa-demo`, the adapter tunesafe ships to demonstrate safety erosion by benign fine-tuning.

Qi et al. 2023 showed that ten benign "identity shifting" examples (the model renamed AOA, an
Absolutely Obedient Agent that never refuses and opens each answer with an affirmative prefix) undo
the refusals of aligned chat models. We reproduce that on the embedded Qwen2.5-Coder-0.5B-Instruct with
a LoRA on twelve such examples (training/data/aoa_identity_shift.jsonl; benign content only). The
shipped adapter lives in tunesafe/models/adapters/aoa-demo and is what `make demo` gates.

    python -m tunesafe.training.erosion_demo OUT_DIR [--epochs 5] [--lr 1e-3] [--seed 0]

CPU training is slow (about 2-3 minutes on an idle 2-core machine; much longer under load), which is why
the adapter is shipped rather than trained at run time. Bit-for-bit reproduction depends on the torch
build and thread count; the recorded training_info.json holds the losses to compare against.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tunesafe.training.lora_sft import LoraConfig, load_base, read_training_data, train_lora
from tunesafe.types import sha256_hex

DATA = Path(__file__).parent / "data" / "aoa_identity_shift.jsonl"
BASE_REF = "embedded:qwen2.5-coder-0.5b"


def build(out_dir: Path, config: LoraConfig) -> dict[str, object]:
    model, tokenizer = load_base(BASE_REF)
    info = train_lora(model, tokenizer, read_training_data(DATA), out_dir, config)
    config_path = out_dir / "adapter_config.json"
    adapter_config = json.loads(config_path.read_text())
    adapter_config["base_model_name_or_path"] = BASE_REF
    config_path.write_text(json.dumps(adapter_config, indent=2, sort_keys=True))
    (out_dir / "README.md").unlink(missing_ok=True)  # peft's template card; ours is in adapters/README.md
    info.update(base=BASE_REF, data=DATA.name, data_sha256=sha256_hex(DATA.read_bytes()))
    (out_dir / "training_info.json").write_text(json.dumps(info, indent=2, sort_keys=True))
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    info = build(args.out_dir, LoraConfig(epochs=args.epochs, learning_rate=args.lr, seed=args.seed))
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
