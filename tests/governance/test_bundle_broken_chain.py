"""`tunesafe bundle` never packs and signs a chain that does not verify: the signature would vouch for
evidence edited in the database file (the auditor's verify-bundle would then report the signer's bundle
as tampered)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def tunesafe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TUNESAFE_DB"} | {"COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "tunesafe.cli.app", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_bundle_refuses_a_broken_chain_and_writes_nothing(tmp_path: Path) -> None:
    db = str(tmp_path / "e.db")
    for args in (["models", "add", "base", "--ref", "openai:m@http://127.0.0.1:1/v1"],
                 ["models", "add", "ft", "--ref", "openai:m@http://127.0.0.1:1/v1", "--base", "base"],
                 ["keys", "generate", "--out", str(tmp_path / "k")]):
        assert tunesafe("--db", db, *args, cwd=tmp_path).returncode == 0
    intact = tunesafe("--db", db, "bundle", "ft", "--out", str(tmp_path / "ok.zip"), "--sign",
                      str(tmp_path / "k.key"), cwd=tmp_path)
    assert intact.returncode == 0, intact.stderr
    with sqlite3.connect(db) as conn:
        conn.execute("""UPDATE records SET body = replace(body, '"stage":"dev"', '"stage":"production"')
                        WHERE id = 2""")
    result = tunesafe("--db", db, "bundle", "ft", "--out", str(tmp_path / "b.zip"), "--sign",
                      str(tmp_path / "k.key"), cwd=tmp_path)
    message = " ".join(result.stderr.split())
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "evidence chain is broken at record 2" in message and "tunesafe verify" in message
    assert not (tmp_path / "b.zip").exists()


def test_no_document_cites_a_broken_chain(tmp_path: Path) -> None:
    """Annex IV, the model card, the ML-BOM and the MLflow export cite records by hash; from an edited
    database file they vouched for records `tunesafe verify` reports as tampered."""
    db = str(tmp_path / "e.db")
    for args in (["models", "add", "base", "--ref", "openai:m@http://127.0.0.1:1/v1"],
                 ["models", "add", "ft", "--ref", "openai:m@http://127.0.0.1:1/v1", "--base", "base"]):
        assert tunesafe("--db", db, *args, cwd=tmp_path).returncode == 0
    assert tunesafe("--db", db, "docs", "model-card", "ft", cwd=tmp_path).returncode == 0
    with sqlite3.connect(db) as conn:
        conn.execute("""UPDATE records SET body = replace(body, '"stage":"dev"', '"stage":"production"')
                        WHERE id = 2""")
    for args in (["docs", "annex-iv", "ft", "--out", str(tmp_path / "annex")], ["docs", "model-card", "ft"],
                 ["export", "cyclonedx", "ft"]):
        result = tunesafe("--db", db, *args, cwd=tmp_path)
        message = " ".join(result.stderr.split())
        assert result.returncode == 2 and "Traceback" not in result.stderr, (args, result.stderr)
        assert "evidence chain is broken at record 2" in message and "would cite it" in message
        assert result.stdout == ""
    assert not (tmp_path / "annex").exists()

