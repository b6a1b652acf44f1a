"""What the `training_run` evidence record says about where a run came from and what it made: the
trainer arguments that matter, the base model, the dataset and the saved weights, each with a sha256 so
the lineage base -> dataset -> run -> adapter can be checked against the files later."""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from tunesafe.evidence.hashing import file_sha256
from tunesafe.types import canonical_json, sha256_hex

# TrainingArguments / SFTConfig fields that change what the run learns (or how it can be reproduced)
CONFIG_KEYS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
               "gradient_accumulation_steps", "lr_scheduler_type", "warmup_steps", "warmup_ratio",
               "weight_decay", "max_grad_norm", "optim", "seed", "bf16", "fp16", "gradient_checkpointing",
               "logging_steps", "save_strategy", "save_steps", "output_dir", "max_length", "packing",
               "completion_only_loss", "assistant_only_loss", "objective")
# files that make up saved weights; optimizer and RNG state do not change the model
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja")
NOT_WEIGHTS = ("trainer_state.json", "training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth")


def jsonable(value: Any) -> Any:
    if isinstance(value, Enum):  # lr_scheduler_type, save_strategy, optim
        value = value.value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in items]
    if hasattr(value, "tolist"):  # tensors and arrays
        return jsonable(value.tolist())
    return str(value)


def trainer_config(args: Any) -> dict[str, Any]:
    config = {key: jsonable(getattr(args, key)) for key in CONFIG_KEYS if hasattr(args, key)}
    return {"arguments": type(args).__name__, **config}


def adapter_config(model: Any) -> dict[str, Any] | None:
    """The PEFT configuration of a model being trained with adapters, None for full fine-tuning."""
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, Mapping):
        return None
    keys = ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "task_type")
    return {name: {k: jsonable(getattr(c, k)) for k in keys if hasattr(c, k)} for name, c in configs.items()}


def base_lineage(base_ref: str | None, model: Any) -> dict[str, Any]:
    """The base model: the ref the team names (hashed as `tunesafe eval` hashes that ref, so a
    BASE+ADAPTER that training continues is hashed with the adapter's files) or, without one, the name
    transformers loaded it from (not hashed: it may be a hub id)."""
    if base_ref is None:
        config = getattr(model, "config", None)
        return {"ref": str(getattr(config, "name_or_path", "") or "") or None, "sha256": None}
    from tunesafe.models.hashing import files_sha256
    from tunesafe.models.hf import adapter_files, resolve_weights, weight_files
    from tunesafe.models.refs import parse_ref, redact_ref

    parsed = parse_ref(base_ref)
    files = weight_files(resolve_weights(parsed)) + adapter_files(parsed.adapter, parsed)
    return {"ref": redact_ref(base_ref), "sha256": files_sha256(files)}


def data_lineage(data: str | Path | None, data_sha256: str | None, dataset: Any, *,
                 packing: str | None = None) -> dict[str, Any]:
    """The dataset by the sha256 `tunesafe scan-data` records (file bytes), when the file is named; else
    by a hash of the training rows as the Trainer sees them (so at least the run is pinned). `packing`:
    the packing strategy of a trainer that packs examples into rows (TRL's `packing=True`)."""
    n_examples = example_count(dataset, packing)
    if data_sha256 is not None:
        return {"sha256": data_sha256, "hash_of": "given", "path": str(data) if data else None,
                "n_examples": n_examples}
    if data is not None:
        from tunesafe.screening.readers import dataset_sha256

        return {"sha256": dataset_sha256(data), "hash_of": "file", "path": str(Path(data).resolve()),
                "n_examples": n_examples}
    digest = rows_sha256(dataset)
    return {"sha256": digest, "hash_of": "rows" if digest else None, "path": None, "n_examples": n_examples}


def rows_sha256(dataset: Any) -> str | None:
    n = _length(dataset)
    if n is None:
        return None
    lines = (canonical_json(jsonable(dataset[i])) for i in range(n))
    return sha256_hex("\n".join(lines))


def example_count(dataset: Any, packing: str | None = None) -> int | None:
    """The examples in the rows the Trainer trains on. A packed row holds several: TRL's "bfd" keeps each
    example whole and its length in `seq_lengths`, one entry an example; "bfd_split" and "wrapped" cut
    examples across rows, so the rows do not say how many there were (None)."""
    n = _length(dataset)
    if packing is None or n is None:
        return n
    if packing == "bfd" and "seq_lengths" in (getattr(dataset, "column_names", None) or ()):
        return sum(len(lengths) for lengths in dataset["seq_lengths"])
    return None


def _length(dataset: Any) -> int | None:
    try:
        return len(dataset)
    except TypeError:  # an iterable dataset has no length
        return None


def weights_hash(folder: str | Path) -> dict[str, Any] | None:
    """sha256 over the manifest (name, size, sha256) of the weight and config files in a saved model or
    checkpoint folder, leaving out optimizer and trainer state; None when the folder does not exist."""
    path = Path(folder)
    if not path.is_dir():
        return None
    files = sorted(f for f in path.rglob("*") if f.is_file() and f.name not in NOT_WEIGHTS
                   and f.name.endswith(WEIGHT_SUFFIXES))
    manifest = [(f.relative_to(path).as_posix(), f.stat().st_size, file_sha256(f)) for f in files]
    return {"path": str(path.resolve()), "sha256": sha256_hex(canonical_json(manifest)),
            "files": len(manifest)}
