"""The workspace: a `.tunesafe/` folder holding config.yaml and the SQLite store, found by walking up
from the current folder like git finds `.git/`. `--db` / TUNESAFE_DB bypass it (e.g. PostgreSQL)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from tunesafe.errors import UserError, read_user_text
from tunesafe.evidence.store import Store
from tunesafe.yaml_input import UniqueKeyLoader, yaml_user_error

DIR = ".tunesafe"
CONFIG = "config.yaml"
DEFAULT_DB = "tunesafe.db"


@dataclass(frozen=True)
class Workspace:
    root: Path  # the folder that contains .tunesafe/

    @property
    def dir(self) -> Path:
        return self.root / DIR

    @property
    def config_path(self) -> Path:
        return self.dir / CONFIG

    def db_url(self) -> str:
        """The store named in config.yaml (`db:`): a path relative to .tunesafe/ or a SQLAlchemy URL."""
        config = _read_config(self.config_path)
        db = config.get("db") or DEFAULT_DB
        if not isinstance(db, str):  # str() of a list or mapping would become the store's file name
            raise UserError(f"`db` must be a path or a database URL, got {db!r}", where=str(self.config_path),
                            fix=f"write e.g. `db: {DEFAULT_DB}` or `db: postgresql://USER@HOST/DB`")
        return db if "://" in db else str(self.dir / db)


def _read_config(path: Path) -> dict[str, object]:
    fix = "fix the YAML or delete the file and run `tunesafe init` again"
    text = read_user_text(path, "workspace config", fix=fix)
    try:
        loaded = yaml.load(text, Loader=UniqueKeyLoader) or {}  # a SafeLoader that refuses a repeated key
    except yaml.YAMLError as exc:
        raise yaml_user_error(exc, str(path), text, fix=fix) from None
    if not isinstance(loaded, dict):
        raise UserError("workspace config must be a mapping (e.g. `db: tunesafe.db`)", where=str(path),
                        fix="fix the file or delete it and run `tunesafe init` again")
    return loaded


def find_workspace(start: Path | None = None) -> Workspace | None:
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / DIR / CONFIG).is_file():
            return Workspace(folder)
    return None


def init_workspace(path: Path | str = ".") -> tuple[Workspace, bool]:
    """Create PATH/.tunesafe/{config.yaml, tunesafe.db}. Idempotent: an existing workspace is opened (and
    migrated), never overwritten. Returns the workspace and whether it was created now."""
    root = Path(path).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise UserError("is a file, not a folder", where=str(root), fix="pass a folder to `tunesafe init`")
    workspace = Workspace(root)
    created = not workspace.config_path.is_file()
    if created:
        try:
            workspace.dir.mkdir(parents=True, exist_ok=True)
            workspace.config_path.write_text(
                "# tunesafe workspace. db: a SQLite file relative to this folder, or a SQLAlchemy URL.\n"
                f"version: 1\ndb: {DEFAULT_DB}\n", encoding="utf-8")
        except OSError as exc:  # a parent that is a file, no permission, a read-only disk
            raise UserError(f"cannot create the workspace: {exc.strerror or exc}", where=str(path),
                            fix="pass a folder you can write to") from None
    Store.open(workspace.db_url()).close()
    return workspace, created


def open_store(url: str | None = None, *, must_exist: bool = False, read_only: bool = False,
               read_only_where_unwritable: bool = False) -> Store:
    """The store at `url`, else TUNESAFE_DB, else the workspace found from the current folder.
    `must_exist`: for commands that change a record that must already be there; a missing store is a
    UserError instead of a new empty one. `read_only`: for commands that only read; the store is neither
    written nor migrated (Store.open); `read_only_where_unwritable`: the same where it may not be written."""
    url = url or os.environ.get("TUNESAFE_DB")
    if not url:
        workspace = find_workspace()
        if workspace is None:
            raise UserError(f"no tunesafe workspace found from {Path.cwd()}",
                            fix="run `tunesafe init` or pass --db")
        url = workspace.db_url()
    return Store.open(url, must_exist=must_exist, read_only=read_only,
                      read_only_where_unwritable=read_only_where_unwritable)
