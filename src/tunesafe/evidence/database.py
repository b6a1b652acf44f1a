"""Opening the database behind a store: URL handling, engine set-up (SQLite pragmas and write locking),
Alembic migrations on open, and turning driver failures into one clear UserError.

A reader's engine (`read_only`) never writes: no journal mode is set, no write lock taken, and SQLite
refuses any write (`PRAGMA query_only`). Where this process cannot write the file or its folder, SQLite
opens it with `mode=ro`, plus `immutable=1` where nothing can write it (a read-only mount, or no write
permission on the file and its folder for anyone), which reads it without the -shm/-wal files SQLite
would otherwise need beside it. Where it can, the connection stays read-write at the file level so that
SQLite removes the -shm/-wal files it made to read, as for any reader. A store whose schema is not this
version's is refused with one line, not migrated.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from tunesafe.errors import StoreUnavailable, UserError

if TYPE_CHECKING:
    from alembic.config import Config

# The newest migration in migrations/versions (a test checks they agree). Opening a store already at this
# revision skips Alembic entirely, which keeps every CLI command ~0.4 s faster to start.
SCHEMA_HEAD = "0006"
SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 60_000
# Serializes concurrent migrations of one PostgreSQL database (arbitrary constant, "tunesafe" in hex-ish).
PG_MIGRATION_LOCK = 0x7475_6E65
STORE_TABLES = frozenset({"records", "chain_head"})


def parse_url(url_or_path: str) -> URL:
    """A SQLAlchemy URL, or a bare filesystem path meaning a SQLite file. `postgresql://` without a driver
    means psycopg 3 (the driver in the [postgres] extra)."""
    if "://" not in url_or_path:
        return URL.create("sqlite", database=str(Path(url_or_path).expanduser().resolve()))
    try:
        url = make_url(url_or_path)
    except (ArgumentError, ValueError) as exc:
        raise UserError(f"not a database URL: {url_or_path!r}", where="--db / TUNESAFE_DB",
                        fix="use a path, sqlite:///PATH or postgresql://USER@HOST:PORT/DB") from exc
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise UserError(f"unsupported database {url.get_backend_name()!r}", where=describe(url),
                        fix="use a SQLite path / sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    return url


# libpq takes these as query parameters too (`...?password=...`), where hide_password does not look
_SECRET_PARAMS = ("password", "sslpassword")


def describe(url: URL) -> str:
    """How the database is named in messages: a path, or the URL with the password masked."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    hidden = {k: "***" for k in _SECRET_PARAMS if k in url.query}
    shown = url.update_query_dict(hidden).render_as_string(hide_password=True)
    return shown.replace("=%2A%2A%2A", "=***")  # the query is percent-encoded; show the mask as the user's is


def may_hold_store(url: URL) -> bool:
    """False when the database surely holds no store: a SQLite file that is missing or empty (connecting
    would create it). Other databases are asked for their schema once connected."""
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return True
    file = Path(path)
    return file.is_file() and file.stat().st_size > 0


def no_store_error(url: URL) -> UserError:
    return UserError(f"no tunesafe store at {describe(url)}",
                     fix="pass the right --db / TUNESAFE_DB, or create it first (`tunesafe init`, "
                         "`tunesafe eval ...`)")


def create(url: URL, *, read_only: bool = False) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url, read_only)
    else:
        try:
            engine = create_engine(url, pool_pre_ping=True)
        except (NoSuchModuleError, ModuleNotFoundError) as exc:
            raise UserError(f"no driver for {url.drivername}", where=describe(url),
                            fix="pip install 'tunesafe[postgres]'") from exc

    @event.listens_for(engine, "handle_error")
    def _as_user_error(context: ExceptionContext) -> None:
        # The database itself failing (SQLite: a file that may not be written, a full disk, still locked
        # after busy_timeout; PostgreSQL: the server gone) is one line naming the store wherever the
        # statement ran: writes outside Store's own methods (a run's results) were a traceback. Other
        # errors (a constraint) are bugs and keep theirs; a failed pre-ping is the pool's to handle.
        pre_ping = getattr(context, "is_pre_ping", False)  # getattr: not in every SQLAlchemy 2.0 release
        if not pre_ping and isinstance(context.sqlalchemy_exception, OperationalError):
            raise connect_error(url, context.sqlalchemy_exception) from context.original_exception

    return engine


def _sqlite_engine(url: URL, read_only: bool) -> Engine:
    path = url.database
    engine_url = url
    if path and path != ":memory:":
        file = Path(path)
        try:
            if not read_only:
                file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a parent that is a file, no permission, a read-only disk
            blocked = next((p for p in file.parents if p.exists() and not p.is_dir()), None)
            reason = f"{blocked} is a file, not a folder" if blocked else \
                f"cannot create the database's folder: {exc.strerror or exc}"
            raise UserError(reason, where=path,
                            fix="pass --db / TUNESAFE_DB with a path in a folder you can write to") from None
        if read_only:
            engine_url = _reader_url(url, file)
        if file.is_dir():
            raise UserError("is a folder, not a database file", where=path,
                            fix="pass the path of a .db file, e.g. .tunesafe/tunesafe.db")
        if file.exists() and file.stat().st_size > 0:
            with file.open("rb") as handle:
                if handle.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
                    raise UserError("not a SQLite database (corrupted or another kind of file)", where=path,
                                    fix="restore it from a backup, or pass --db with another path")
    engine = create_engine(engine_url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so that our BEGIN below is the one that runs.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if read_only:  # setting the journal mode would write the file's header
            cursor.execute("PRAGMA query_only=1")
        else:
            cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the (single) writer
            # NORMAL in WAL mode: a commit survives a process crash and the file never corrupts; only a
            # power loss can drop the last commits (whole records: the chain stays valid). FULL fsyncs
            # every append and made appends ~10x slower.
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock at BEGIN, so two processes appending never both read the same
        # chain head (a DEFERRED transaction would fail with SQLITE_BUSY on upgrade instead of waiting).
        # Pure reads opt out with execution_options(sqlite_read=True); a reader's engine always does.
        reading = read_only or conn.get_execution_options().get("sqlite_read")
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

    return engine


def _reader_url(url: URL, file: Path) -> URL:
    """How a reader opens `file`: a SQLite URI with mode=ro (and immutable=1 where nothing can write it)
    where this process may not write the file or its folder, else `url` as it is (query_only keeps it from
    writing, and SQLite then removes the -shm/-wal files it made to read, as it does for any reader)."""
    immutable = _nothing_can_write(file)
    if not immutable and os.access(file, os.W_OK) and os.access(file.parent, os.W_OK):
        return url
    query = {"mode": "ro", "uri": "true", **({"immutable": "1"} if immutable else {})}
    return URL.create("sqlite", database="file:" + quote(str(file)), query=query)


def _nothing_can_write(file: Path) -> bool:
    """A read-only mount, or neither the file nor its folder grants write permission to anyone. Only then
    may SQLite read it as immutable (no locks, no -shm): a writer appending meanwhile would make an
    immutable reader see a torn file. A non-empty -wal beside it holds commits that immutable would skip,
    so not then either."""
    wal = file.with_name(file.name + "-wal")
    try:
        if wal.exists() and wal.stat().st_size > 0:
            return False
    except OSError:
        return False
    return _unwritable_by_anyone(file) is not None


def _unwritable_by_anyone(file: Path) -> str | None:
    """Why nobody can write `file`: a read-only mount, or no write permission on it and its folder (which
    root is not stopped by, so os.access alone would not tell)."""
    try:
        if os.statvfs(file).f_flag & os.ST_RDONLY:
            return "it is on a read-only mount"
        if not (file.stat().st_mode & 0o222 or file.parent.stat().st_mode & 0o222):
            return "neither it nor its folder grants write permission"
    except OSError:  # not there (yet): connecting says so
        pass
    return None


def write_blocked(url: URL) -> str | None:
    """Why this process may not write the store at `url` (the cases in which a reader opens it with
    mode=ro), or None. Only a SQLite file is judged beforehand; another database says so on the write."""
    path = url.database
    if url.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return None
    file = Path(path)
    if not file.exists():
        return None
    if reason := _unwritable_by_anyone(file):
        return reason
    if not (os.access(file, os.W_OK) and os.access(file.parent, os.W_OK)):
        return "this user may not write it or its folder"
    return None


def connect_error(url: URL, exc: Exception) -> StoreUnavailable:
    """One line for a database that cannot be opened or used: where it is and what to do."""
    lines = str(getattr(exc, "orig", exc)).strip().splitlines()
    detail = lines[0] if lines else type(exc).__name__
    if url.get_backend_name() == "sqlite":
        return StoreUnavailable(f"cannot use the SQLite database: {detail}", where=describe(url),
                         fix="check the file's and its folder's permissions and the free disk space; if it "
                             "is locked, retry once the other writer is done; if corrupted, restore a backup")
    where = f"{url.host or 'localhost'}:{url.port or 5432} ({describe(url)})"
    return StoreUnavailable(f"cannot reach the database: {detail}", where=where,
                     fix="start the server or correct --db / TUNESAFE_DB (user, password, host, port, name)")


def _alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("tunesafe.evidence") / "migrations"))
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision recorded in the database (None for a new or unversioned one)."""
    with engine.connect() as conn:
        conn = conn.execution_options(sqlite_read=True)
        with conn.begin():
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def has_store_tables(engine: Engine) -> bool:
    """Whether an unversioned database holds tunesafe's tables (an old layout: `migrate` names it)."""
    with engine.connect() as conn:
        conn = conn.execution_options(sqlite_read=True)
        with conn.begin():
            return bool(STORE_TABLES & set(inspect(conn).get_table_names()))


def migrate(engine: Engine, url: URL, revision: str = "head") -> None:
    """Bring the schema to `revision` inside one transaction, so a second process opening the same new
    database waits and then finds it migrated (SQLite: BEGIN IMMEDIATE; PostgreSQL: advisory lock)."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    config = _alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK})
        current = MigrationContext.configure(conn).get_current_revision()
        _check_revision(current, set(inspect(conn).get_table_names()), url)
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def refuse_to_read(engine: Engine, url: URL, current: str | None) -> NoReturn:
    """For a reader of a store whose schema is not this version's: the same refusals as `migrate` (no
    version, another application's, a newer one), else one line naming the command that migrates it.
    Reading it as it is would fail on the first column a later migration added."""
    with engine.connect() as conn:
        conn = conn.execution_options(sqlite_read=True)
        with conn.begin():
            tables = set(inspect(conn).get_table_names())
    _check_revision(current, tables, url)
    raise UserError(f"the store's schema revision {current} is older than this tunesafe's ({SCHEMA_HEAD}); "
                    "commands that only read leave it as it is", where=describe(url),
                    fix="run `tunesafe migrate` (same --db) where the store can be written, then run this "
                        "again; or read it with the tunesafe version that wrote it")


def _check_revision(current: str | None, tables: set[str], url: URL) -> None:
    """UserError for a schema no migration of this version may touch."""
    from alembic.script import ScriptDirectory

    if current is None and tables & STORE_TABLES:
        raise UserError(
            "database has tunesafe tables but no schema version (made by a pre-release tunesafe or "
            "edited by hand); refusing to migrate it blindly",
            where=describe(url), fix="export what you need and start a new store with `tunesafe init`")
    known = {rev.revision for rev in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}
    if current is not None and current not in known and not tables & STORE_TABLES:
        # Alembic's default version table is shared by every application that uses it
        raise UserError(f"not a tunesafe store: it holds another application's schema (Alembic revision "
                        f"{current}) and no tunesafe tables", where=describe(url),
                        fix="pass --db / TUNESAFE_DB with the tunesafe store's path (or a new one)")
    if current is not None and current not in known:
        raise UserError(f"database schema revision {current} is newer than this tunesafe knows",
                        where=describe(url), fix="upgrade tunesafe (pip install -U tunesafe)")
