"""A --version that is not a plain number (a superscript digit passes str.isdigit) is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.governance.lineage import collect_lineage
from tunesafe.production.inventory import ModelSpec, add_model


@pytest.mark.parametrize("version", ["²", "v²", "1²"])
def test_a_non_ascii_digit_version_is_a_user_error(tmp_path: Path, version: str) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        add_model(store, ModelSpec(name="m", ref="openai:m@http://127.0.0.1:9/v1"))
        with pytest.raises(UserError, match="no version") as raised:
            collect_lineage(store, "m", version)
        assert raised.value.where == "--version"
        assert collect_lineage(store, "m", "v1").version == "1"
