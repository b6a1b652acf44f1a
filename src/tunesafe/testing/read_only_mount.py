"""A command prefix that runs a command with a folder bind-mounted read-only over itself, in a user and
mount namespace: no root needed, and root cannot write there either (file modes do not stop root, so
tests of read-only stores need a real read-only mount)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

_SCRIPT = 'mount --bind -o ro "$0" "$0" && exec "$@"'


def read_only_mount_prefix(folder: Path) -> list[str] | None:
    """`[*prefix, *argv]` runs argv with `folder` mounted read-only; None where this system cannot
    (no `unshare`, or user namespaces off)."""
    prefix = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _SCRIPT, str(folder)]
    if shutil.which("unshare") is None:
        return None
    if subprocess.run([*prefix, "true"], capture_output=True, timeout=60).returncode != 0:
        return None
    return prefix
