"""sha256 of weight files, remembered by (path, size, mtime) so a 500 MB file is hashed once, not at
every run. The memo lives in the tunesafe cache folder; losing it only costs a re-hash."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

CHUNK = 1 << 22


def cache_dir() -> Path:
    root = os.environ.get("TUNESAFE_CACHE") or Path.home() / ".cache" / "tunesafe"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _memo_path() -> Path:
    return cache_dir() / "file-hashes.json"


def _load_memo() -> dict[str, str]:
    try:
        data = json.loads(_memo_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _memo_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def remember(path: Path, digest: str) -> None:
    memo = _load_memo()
    memo[_memo_key(path)] = digest
    atomic_write_text(_memo_path(), json.dumps(memo, sort_keys=True))


def file_sha256(path: str | Path) -> str:
    path = Path(path)
    key = _memo_key(path)
    memo = _load_memo()
    if key in memo:
        return memo[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    result = digest.hexdigest()
    remember(path, result)
    return result


def files_sha256(paths: list[Path]) -> str:
    """One file: its own sha256 (so an embedded model's hash equals its pin). Several (weights + adapter
    files): sha256 over 'name:sha256' lines in the given order."""
    if len(paths) == 1:
        return file_sha256(paths[0])
    lines = "\n".join(f"{p.name}:{file_sha256(p)}" for p in paths)
    return hashlib.sha256(lines.encode()).hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
