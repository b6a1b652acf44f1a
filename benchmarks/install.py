"""Install and wheel: the built wheel's size and the time a user waits for the core install.

Builds the sdist and the wheel as `make dist` does (`python -m build`, isolated), then times what a new
user runs in a fresh folder outside the source tree, for the core only (no extras):

    python -m venv venv && venv/bin/pip install tunesafe-X-py3-none-any.whl

once with this machine's pip cache as it is (`warm`) and once with `--no-cache-dir` (`cold`: every
dependency downloaded again), then `tunesafe --version` from the new venv.

    python benchmarks/install.py [--no-cold] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def build(out: Path) -> tuple[Path, float]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)], cwd=out, check=True,
                   capture_output=True)
    (wheel,) = out.glob("tunesafe-*.whl")
    return wheel, time.perf_counter() - started


def timed_install(wheel: Path, root: Path, *pip_args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    base_python = getattr(sys, "_base_executable", sys.executable)
    started = time.perf_counter()
    subprocess.run([base_python, "-m", "venv", str(root / "venv")], cwd=root, env=env, check=True)
    made = time.perf_counter()
    subprocess.run([str(root / "venv" / "bin" / "pip"), "install", "-q", *pip_args, str(wheel)], cwd=root,
                   env=env, check=True, capture_output=True)
    installed = time.perf_counter()
    version = subprocess.run([str(root / "venv" / "bin" / "tunesafe"), "--version"], cwd=root, env=env,
                             check=True, capture_output=True, text=True).stdout.strip()
    packages = subprocess.run([str(root / "venv" / "bin" / "pip"), "list", "--format", "json"], cwd=root,
                              env=env, check=True, capture_output=True, text=True).stdout
    return {"venv_s": round(made - started, 1), "pip_install_s": round(installed - made, 1),
            "total_s": round(installed - started, 1), "version": version,
            "distributions": len(json.loads(packages))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cold", action="store_true", help="Skip the --no-cache-dir install.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "dist").mkdir()
        wheel, build_s = build(root / "dist")
        with zipfile.ZipFile(wheel) as archive:
            files = len(archive.namelist())
        result: dict[str, Any] = {
            "wheel": wheel.name, "wheel_mib": round(wheel.stat().st_size / 2**20, 2), "wheel_files": files,
            "build_s": round(build_s, 1), "load_before": os.getloadavg()[0]}
        runs = [("warm", ())] + ([] if args.no_cold else [("cold", ("--no-cache-dir",))])
        for name, pip_args in runs:
            (root / name).mkdir()
            result[name] = timed_install(wheel, root / name, *pip_args)
        result["load_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
