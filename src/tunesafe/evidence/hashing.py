"""Content hashes of the files behind evidence (weights, adapters, datasets, configs). Streamed in 1 MiB
chunks so multi-GB weights never sit in memory. A folder hashes as the sha256 of its sorted manifest
(relative path, size, sha256 of each file), so renaming, adding or editing any file inside changes it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tunesafe.errors import UserError
from tunesafe.types import canonical_json, sha256_hex

CHUNK = 1 << 20


@dataclass(frozen=True)
class ContentHash:
    path: str  # absolute
    sha256: str
    size: int  # bytes (a folder: all its files together)
    files: int  # 1 for a file

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "files": self.files}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def existing(path: str | Path, *, what: str = "file") -> Path:
    """The file or folder at `path`; UserError naming `what` and the path when it does not exist."""
    target = Path(path).expanduser()
    if not target.exists():
        raise UserError(f"{what} not found", where=str(path),
                        fix="check the path (relative to the current folder)")
    return target


def content_hash(path: str | Path, *, what: str = "file") -> ContentHash:
    """Hash a file or a folder; UserError naming `what` and the path when it does not exist."""
    target = existing(path, what=what).resolve()
    try:
        if target.is_file():
            return ContentHash(str(target), file_sha256(target), target.stat().st_size, 1)
        files = [item for item in sorted(target.rglob("*")) if item.is_file()]
        # [relative path, size, sha256] per file, in path order
        manifest = [(f.relative_to(target).as_posix(), f.stat().st_size, file_sha256(f)) for f in files]
    except OSError as exc:
        raise UserError(f"cannot read {what}: {exc.strerror or exc}", where=str(path),
                        fix="check the file permissions") from exc
    total = sum(size for _, size, _ in manifest)
    return ContentHash(str(target), sha256_hex(canonical_json(manifest)), total, len(manifest))
