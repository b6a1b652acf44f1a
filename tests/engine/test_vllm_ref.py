"""`vllm:` refs: attach to a running server, or launch `vllm serve` with the base's and the candidate's
adapters on one server. vLLM needs a GPU, so the loopback server is started in its place with the same
command line (tunesafe.testing.fake_vllm); a wrapper records each launch's argv."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tunesafe.errors import UserError
from tunesafe.models import load_model, parse_ref
from tunesafe.models.vllm import VLLMChatModel
from tunesafe.testing.openai_server import serve
from tunesafe.types import ChatRequest, Message

from .conftest import Cli, write_suite

ADAPTER = Path(__file__).parents[2] / "src/tunesafe/models/adapters/aoa-demo"


@pytest.fixture
def launches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TUNESAFE_VLLM points at a wrapper that logs its argv (one JSON line per launch), then serves."""
    log = tmp_path / "launches.jsonl"
    wrapper = tmp_path / "vllm_wrapper.py"
    wrapper.write_text(
        "import json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "from tunesafe.testing.fake_vllm import main\nmain(sys.argv[1:])\n")
    monkeypatch.setenv("TUNESAFE_VLLM", f"{sys.executable} {wrapper}")
    return log


def test_refs_parse_and_print_back() -> None:
    ref = parse_ref("vllm:Qwen/Qwen2.5-7B-Instruct+my-ft@http://gpu:8000/v1")
    assert (ref.target, ref.adapter, ref.base_url) == ("Qwen/Qwen2.5-7B-Instruct", "my-ft", "http://gpu:8000/v1")
    assert str(ref) == "vllm:Qwen/Qwen2.5-7B-Instruct+my-ft@http://gpu:8000/v1" and not ref.local
    assert parse_ref(str(parse_ref("vllm:m+/a/b?launch=1"))).options == {"launch": "1"}


@pytest.mark.parametrize("ref, message", [
    ("vllm:m", "names no vLLM server"),
    ("vllm:m@http://127.0.0.1:1/v1?launch=1", "both names a server and asks to launch"),
    ("vllm:m+/no/such/adapter?launch=1", "lacks adapter_config.json"),
    ("vllm:m?launch=1&args=--max-model-len%20'4096", "args"),  # shlex cannot split it: was a ValueError
    ("vllm:m?launch=1&startup_timeout=nan", "startup_timeout=nan"),  # was a launch, then 'within nan s'
    ("vllm:m?launch=1&startup_timeout=-5", "startup_timeout=-5"),
    # replicas are an openai: ref's; here the list became one URL whose path held the second
    ("vllm:m@http://127.0.0.1:1/v1,http://127.0.0.1:2/v1", "one vLLM server"),
])
def test_bad_vllm_refs_are_one_error(ref: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_model(ref)


def test_attach_sends_the_lora_name_and_hashes_without_the_port() -> None:
    async def ask(model: VLLMChatModel) -> str:
        try:
            (gen,) = await model.generate([ChatRequest(messages=(Message("user", "hi"),))])
            return gen.text
        finally:
            await model.aclose()

    hashes = []
    for _ in range(2):
        with serve(model="base-model", served=("my-ft",)) as running:
            model = load_model(f"vllm:base-model+my-ft@{running.url}")
            assert isinstance(model, VLLMChatModel)
            hashes.append(model.content_hash())
            assert asyncio.run(ask(model)) == "ECHO: hi"
            assert running.requests[-1]["model"] == "my-ft"
    assert hashes[0] == hashes[1]  # a launched server's port changes every time: not in the hash


def test_a_gate_launches_one_server_with_both_sides(cli: Cli, tmp_path: Path, launches: Path) -> None:
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=3, n_benign=1)
    code, out, err = cli("gate", "--base", "vllm:tunesafe-test?launch=1",
                         "--candidate", f"vllm:tunesafe-test+{ADAPTER}?launch=1", "--suite", str(suite),
                         "--attacks", "direct_request", "--judge", "refusal", "--out", str(tmp_path / "r"),
                         "--json")
    assert code == 3, err  # the echo server answers both sides alike; 3 harmful items: inconclusive
    decision = json.loads(out)
    assert decision["verdict"] == "inconclusive"
    (argv,) = [json.loads(line) for line in launches.read_text().splitlines()]
    assert argv[:2] == ["serve", "tunesafe-test"] and "--enable-lora" in argv
    assert argv[argv.index("--lora-modules") + 1] == f"aoa-demo={ADAPTER.resolve()}"
    assert argv[argv.index("--max-lora-rank") + 1] == "8"
    from tunesafe.models import vllm_launch

    assert vllm_launch._servers == {}  # stopped when the gate ended


def test_a_vllm_that_fails_to_start_is_one_error_and_stores_nothing(
        cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "broken_vllm.py"
    script.write_text("import sys\nprint('RuntimeError: no CUDA GPUs are available')\nsys.exit(1)\n")
    monkeypatch.setenv("TUNESAFE_VLLM", f"{sys.executable} {script}")
    code, _, err = cli("eval", "vllm:some/model?launch=1", "--suite", "smoke", "--attacks", "direct_request")
    assert code == 2 and "no CUDA GPUs are available" in err and "Traceback" not in err
    assert cli.runs() == []


def test_credentials_in_an_attached_url_reach_the_server_and_not_the_ref() -> None:
    secret = "pw-s3cr3t-7731"

    async def ask(model: VLLMChatModel) -> list[str | None]:
        try:
            gens = await model.generate([ChatRequest(messages=(Message("user", "hi"),)),
                                         ChatRequest(messages=(Message("user", "hi"),), prefill="Sure")])
            return [g.text for g in gens[:1]] + [g.error for g in gens[1:]]
        finally:
            await model.aclose()

    with serve(model="base-model", served=("my-ft",)) as running:
        url = running.url.replace("http://", f"http://alice:{secret}@")
        model = load_model(f"vllm:base-model+my-ft@{url}")
        assert isinstance(model, VLLMChatModel)
        assert model.ref == f"vllm:base-model+my-ft@{running.url}"  # what runs, hashes and errors quote
        text, error = asyncio.run(ask(model))
        assert text == "ECHO: hi" and (running.app.auth_headers[-1] or "").startswith("Basic ")
        assert "prefill" in (error or "") and secret not in (error or "")


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie that its new parent has not reaped yet has stopped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_until(done: Callable[[], bool]) -> bool:
    for _ in range(600):
        if done():
            return True
        time.sleep(0.1)
    return False


def test_an_interrupted_launch_leaves_no_server_behind(tmp_path: Path) -> None:
    # Ctrl-C while vLLM loads: the half-started server must go with the process (it holds a GPU)
    pid_file = tmp_path / "vllm.pid"
    loading = tmp_path / "vllm_loading.py"
    loading.write_text(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                       "time.sleep(300)\n")
    # a test runner's worker (pytest-xdist) ignores SIGINT, and a child inherits that: restore Ctrl-C
    code = ("import signal\nsignal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from tunesafe.models.vllm_launch import ensure\nensure('m', {}, '', 300.0)\n")
    env = {**os.environ, "TUNESAFE_VLLM": f"{sys.executable} {loading}"}
    parent = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    child = 0
    try:
        assert _wait_until(lambda: pid_file.exists() and pid_file.read_text() != "")
        child = int(pid_file.read_text())
        parent.send_signal(signal.SIGINT)
        parent.wait(timeout=60)
        assert _wait_until(lambda: not _alive(child)), "the vLLM process outlived tunesafe"
    finally:
        parent.kill()
        if child and _alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_gate_of_launched_vllm_sides_is_checked_against_the_inventory_files(
        cli: Cli, tmp_path: Path, launches: Path) -> None:
    # vLLM launched by tunesafe from the registered folders serves those files: the gate's inventory check
    # hashes them as `models add` did (no --attest-weights needed), and still refuses other files.
    import shutil

    from tunesafe.evidence.store import Store
    from tunesafe.production.inventory import check_evaluated

    weights, adapter = tmp_path / "base-weights", tmp_path / "aoa-demo"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"placeholder weights")
    shutil.copytree(ADAPTER, adapter)
    assert cli("models", "add", "base-model", "--ref", f"hf:{weights}")[0] == 0
    assert cli("models", "add", "ft", "--ref", f"hf:{weights}+{adapter}", "--base", "base-model")[0] == 0
    suite = write_suite(tmp_path / "s.jsonl", n_harmful=3, n_benign=1)
    gate = ("gate", "--base", f"vllm:{weights}?launch=1", "--candidate", f"vllm:{weights}+{adapter}?launch=1",
            "--base-name", "base-model", "--candidate-name", "ft", "--suite", str(suite), "--attacks",
            "direct_request", "--judge", "refusal", "--out", str(tmp_path / "r"), "--json")
    code, out, err = cli(*gate)
    assert code == 3, err
    decision = json.loads(out)
    for side, name in (("candidate_version", "ft"), ("base_version", "base-model")):
        assert (decision[side]["name"], decision[side]["identity"]) == (name, "files")
    # the stored runs keep the launch refs: a later compare of them checks the same files
    runs = (decision["base"]["run_id"], decision["candidate"]["run_id"])
    code, out, err = cli("compare", *runs, "--base-name", "base-model", "--candidate-name", "ft", "--json")
    assert code == 3, err
    assert json.loads(out)["candidate_version"]["identity"] == "files"
    # an attached server is an endpoint: what it loaded is its own, whatever its model's name
    with Store.open(str(cli.db)) as store, pytest.raises(UserError, match="names an endpoint"):
        check_evaluated(store, "base-model", f"vllm:{weights}@http://127.0.0.1:9/v1", source="run x is")

    (adapter / "adapter_model.safetensors").write_bytes(b"placeholder adapter, retrained")
    code, _, err = cli(*gate)
    assert code == 2 and "--candidate-name" in err and "its adapter" in err and "Traceback" not in err
    (weights / "model.safetensors").write_bytes(b"placeholder weights, retrained")
    code, _, err = cli(*gate)
    assert code == 2 and "--base-name" in err and "its weights" in err and "Traceback" not in err
    assert len(launches.read_text().splitlines()) == 1  # refused before anything was launched


def test_models_add_hashes_only_the_local_files_a_vllm_ref_names(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # An attached server's +NAME is a LoRA module name on that server, not a folder here (a folder of the
    # same name is not what it serves); a launched server loads local folders, which `models add` hashes
    # as the gate's inventory check does.
    from tunesafe.evidence.store import Store
    from tunesafe.production.inventory import ModelSpec, add_model, check_evaluated

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my-ft").mkdir()
    (tmp_path / "my-ft" / "notes.txt").write_text("not the served adapter", encoding="utf-8")
    weights = tmp_path / "base-weights"
    weights.mkdir()
    (weights / "model.safetensors").write_bytes(b"placeholder weights")
    attached = ("vllm:base+my-ft@http://127.0.0.1:9/v1", "vllm:base+elsewhere@http://127.0.0.1:9/v1")
    launched = f"vllm:{weights}+{ADAPTER}?launch=1"
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        for i, ref in enumerate(attached):
            assert add_model(store, ModelSpec(name=f"lora-{i}", ref=ref)).files == ()
            tie = check_evaluated(store, f"lora-{i}", ref, source="the candidate run evaluated")
            assert tie is not None and tie["identity"] == "ref"
        model = add_model(store, ModelSpec(name="ft", ref=launched))
        assert sorted(f["role"] for f in model.files) == ["adapter", "weights"]
        tie = check_evaluated(store, "ft", launched, source="the candidate run evaluated")
        assert tie is not None and tie["identity"] == "files"


@pytest.mark.parametrize("ref", ["vllm:base", "vllm:base+lora@http://127.0.0.1:9/v1?launch=1"])
def test_models_add_refuses_a_vllm_ref_eval_would_refuse(tmp_path: Path, ref: str) -> None:
    """A vllm: ref with neither @URL nor ?launch=1 (or both) names no server `tunesafe eval` can use; the
    inventory registered it with no files, so later gates compared against a ref nothing runs."""
    from tunesafe.evidence.store import Store
    from tunesafe.production.inventory import ModelSpec, add_model

    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        with pytest.raises(UserError, match="vLLM server|launch one") as caught:
            add_model(store, ModelSpec(name="m", ref=ref))
        assert caught.value.where == "--ref"
        assert list(store.records()) == []
