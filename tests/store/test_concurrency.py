"""Two real processes appending to one store at the same time must queue, not fork the chain."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tunesafe.evidence.store import Store

WRITER = """
import sys, time
from pathlib import Path
from tunesafe.evidence.store import Store
store = Store.open(sys.argv[1])
Path(sys.argv[4], "ready-" + sys.argv[2]).touch()
while not Path(sys.argv[4], "go").exists():  # start line: both processes begin appending together
    time.sleep(0.005)
for i in range(int(sys.argv[3])):
    store.append("concurrency", {"writer": sys.argv[2], "i": i}, actor=sys.argv[2])
store.close()
"""
PER_WRITER = 300


def test_two_processes_append_without_forking_the_chain(store_url: str, tmp_path: Path) -> None:
    Store.open(store_url).close()  # migrate first, so both writers start appending at once
    args = [str(PER_WRITER), str(tmp_path)]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, store_url, name, *args],
                                stderr=subprocess.PIPE, text=True) for name in ("w1", "w2")]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{n}").exists() for n in ("w1", "w2")) and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()
    # verify while they write: a consistent snapshot never reports a broken chain
    with Store.open(store_url) as store:
        while any(proc.poll() is None for proc in writers):
            result = store.verify()
            assert result.ok, result
    for proc in writers:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    with Store.open(store_url) as store:
        result = store.verify()
        records = list(store.records(type="concurrency"))
    assert result.ok and result.checked == 2 * PER_WRITER
    assert [r.id for r in records] == list(range(1, 2 * PER_WRITER + 1))
    for name in ("w1", "w2"):  # each writer's records all landed, in its own order
        assert [r.body["i"] for r in records if r.actor == name] == list(range(PER_WRITER))
    # they really ran at the same time: the two writers' records interleave in the chain
    switches = sum(a.actor != b.actor for a, b in zip(records, records[1:], strict=False))
    assert switches > 1
