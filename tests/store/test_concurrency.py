"""Two real processes appending to one store at the same time must queue, not fork the chain."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tunesafe.evidence.store import Store
from tunesafe.production.inventory import ModelSpec, inventory, version_body
from tunesafe.types import RecordType

WRITER = """
import sys, time
from pathlib import Path
from tunesafe.evidence.store import Store
store = Store.open(sys.argv[1])
Path(sys.argv[4], "ready-" + sys.argv[2]).touch()
while not Path(sys.argv[4], "go").exists():  # start line: both processes begin appending together
    time.sleep(0.005)
started = time.time()
for i in range(int(sys.argv[3])):
    store.append("concurrency", {"writer": sys.argv[2], "i": i}, actor=sys.argv[2])
Path(sys.argv[4], "span-" + sys.argv[2]).write_text(f"{started} {time.time()}")
store.close()
"""
PER_WRITER = 300
REF = "openai:x@http://127.0.0.1:9/v1"


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
    # they really contended: each began appending before the other had finished. (Whether the
    # chain interleaves is up to the database's lock fairness: SQLite may let one writer starve
    # the other, which is slow but correct, so interleaving is not asserted.)
    spans = [tuple(map(float, (tmp_path / f"span-{n}").read_text().split())) for n in ("w1", "w2")]
    assert max(start for start, _ in spans) < min(end for _, end in spans)


ADD = """
import sys, time
from pathlib import Path
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.production.inventory import ModelSpec, add_model
store = Store.open(sys.argv[1])
Path(sys.argv[2], "ready-" + sys.argv[3]).touch()
while not Path(sys.argv[2], "go").exists():  # start line: every process adds at once
    time.sleep(0.001)
try:
    add_model(store, ModelSpec(name="shared", ref=sys.argv[4]), actor=sys.argv[3])
    print("added")
except UserError as exc:
    print("refused:", exc.message)
store.close()
"""


def test_processes_adding_one_model_name_at_once_record_it_once(tmp_path: Path) -> None:
    # the duplicate-name check and the append must be one step: every process passed the check before
    # any had appended, and the name got as many versions as processes, none asked for with --new-version
    db = str(tmp_path / "store.db")
    with Store.open(db) as store:  # an inventory of some size: reading it for the check takes a while
        store.append_many([(RecordType.MODEL_VERSION, version_body(ModelSpec(name=f"other-{i}", ref=REF),
                                                                   tmp_path), f"other-{i}")
                           for i in range(500)])
    names = [f"p{i}" for i in range(4)]
    procs = [subprocess.Popen([sys.executable, "-c", ADD, db, str(tmp_path), name, REF],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in names]
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{n}").exists() for n in names) and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    assert sorted(outputs)[0] == "added" and outputs.count("added") == 1, outputs
    with Store.open(db) as store:
        assert len(list(store.records(type=RecordType.MODEL_VERSION, subject="shared"))) == 1
        assert inventory(store)["shared"].version == 1
        assert store.verify().ok
