"""Text that users typed or the store holds (refs, owners, incident titles and notes, sign-offs, file paths)
is printed as written by every command: "[/INST]" (a chat template tag) or "[bold]" in it is no Rich
markup, so it neither crashes the command with a MarkupError nor vanishes from the output."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesafe.cli.app import main

TAG = "[/INST]"
STYLE = "[bold]x[/bold]"


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys, self.monkeypatch = capsys, monkeypatch
        monkeypatch.setenv("COLUMNS", "250")
        monkeypatch.delenv("TUNESAFE_DB", raising=False)

    def __call__(self, *args: str) -> str:
        """stdout and stderr of a command that must succeed."""
        self.monkeypatch.setattr("sys.argv", ["tunesafe", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        out, err = self.capsys.readouterr()
        assert exit_info.value.code in (0, None), (args, out, err)
        return out + err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    monkeypatch.chdir(tmp_path)
    run = Cli(capsys, monkeypatch)
    run("init")
    adapter = tmp_path / f"ad{TAG}"
    adapter.mkdir(parents=True)  # "ad[" holding "INST]"
    (adapter / "adapter_model.safetensors").write_bytes(b"\x01" * 64)
    return run


def test_inventory_text_with_brackets(cli: Cli) -> None:
    ref, owner = f"hf:./ad{TAG}", f"{STYLE} {TAG}"
    cli("models", "add", "bot", "--ref", ref, "--owner", owner)
    assert owner in cli("models", "list") and ref in cli("models", "list")
    shown = cli("models", "show", "bot")
    assert f"owner={owner}" in shown and ref in shown and f"ad{TAG}" in shown
    assert f"owner {TAG}" in cli("models", "update", "bot", "--owner", TAG)
    attested = cli("controls", "attest", "bot", "PRE-00", "--by", f"{STYLE} lead", "--note", TAG)
    assert f"by {STYLE} lead" in attested
    assert ref in cli("lineage", "bot")


def test_incident_text_with_brackets(cli: Cli) -> None:
    title, note = f"{STYLE} answered after {TAG}", f"seen {TAG} twice [red]"
    assert "Opened INC-1 on bot" in cli("incidents", "open", "bot", "--title", title, "--severity", "low",
                                        "--owner", TAG)
    assert note in cli("incidents", "update", "1", "--note", note)
    shown = cli("incidents", "show", "1")
    assert title in shown and note in shown and f"owner: {TAG}" in shown
    assert title in cli("incidents", "list")
    assert f"resolution: {TAG} fixed" in cli("incidents", "close", "1", "--resolution", f"{TAG} fixed")


def test_file_paths_with_brackets(cli: Cli, tmp_path: Path) -> None:
    cli("models", "add", "bot", "--ref", f"hf:./ad{TAG}")
    card = f"card{TAG}.md"
    assert f"Wrote {card}" in cli("docs", "model-card", "bot", "--out", card)
    assert f"k{TAG}.key" in cli("keys", "generate", "--out", f"k{TAG}")
    bundle = f"b{TAG}.zip"
    assert bundle in cli("bundle", "bot", "--out", bundle)
    assert "bundle intact" in cli("verify-bundle", bundle)
    opened = cli("incidents", "open", "bot", "--title", "t", "--severity", "low")
    number = opened.split("Opened INC-")[1].split()[0]  # incident ids are record ids
    assert f"Wrote r{TAG}.md" in cli("incidents", "report", number, "--out", f"r{TAG}.md")
