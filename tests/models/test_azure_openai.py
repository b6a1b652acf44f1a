"""Azure OpenAI through the HTTP backend, on the loopback server's Azure mode (which checks what Azure
checks): the classic deployment URL (`api-key` header, `api-version` query parameter) and the v1 API
(Bearer or `api-key`), from a ref's options to a stored run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tunesafe
from tunesafe.engine.results import list_runs
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.models import load_model
from tunesafe.models.base import ChatModel
from tunesafe.models.openai_http import OpenAIChatModel
from tunesafe.models.refs import redact_ref
from tunesafe.testing.openai_server import RunningServer, serve
from tunesafe.types import ChatRequest, Generation, Message

KEY_ENV, SECRET = "TUNESAFE_AZURE_TEST_KEY", "az-key-" + "5" * 26
DEPLOYMENT, VERSION = "ft-support-bot", "2024-10-21"
AZURE_OPTS = f"key_env={KEY_ENV}&key_header=api-key&api_version={VERSION}"


@pytest.fixture
def azure(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningServer]:
    monkeypatch.setenv(KEY_ENV, SECRET)
    with serve(azure=True, api_key=SECRET, model=DEPLOYMENT) as running:
        yield running


def classic_ref(server: RunningServer, options: str = AZURE_OPTS) -> str:
    return f"openai:{DEPLOYMENT}@{server.azure_classic_url()}?{options}"


def answer(ref: str) -> Generation:
    model = load_model(ref)

    async def main() -> list[Generation]:
        try:
            return await model.generate([ChatRequest(messages=(Message("user", "hello"),))])
        finally:
            await model.aclose()

    [generation] = asyncio.run(main())
    return generation


def openai_model(ref: str) -> OpenAIChatModel:
    model: ChatModel = load_model(ref)
    assert isinstance(model, OpenAIChatModel)
    return model


def test_classic_deployment_url_sends_the_api_key_header_and_api_version(azure: RunningServer) -> None:
    generation = answer(classic_ref(azure))
    assert generation.ok and generation.text == "ECHO: hello", generation.error
    assert azure.app.targets[-1] == (f"POST /openai/deployments/{DEPLOYMENT}/chat/completions"
                                     f"?api-version={VERSION}")
    assert azure.app.auth_headers[-1] is None  # the key went as api-key, not Bearer


def test_classic_deployment_url_without_them_gets_azures_errors(azure: RunningServer) -> None:
    bearer = answer(classic_ref(azure, f"key_env={KEY_ENV}&api_version={VERSION}&max_retries=0"))
    assert not bearer.ok and "HTTP 401" in (bearer.error or "") and KEY_ENV in (bearer.error or "")
    assert "Access denied" in (bearer.error or "") and SECRET not in (bearer.error or "")
    assert "key_header=api-key" in (bearer.error or "")  # says what Azure wants
    unversioned = answer(classic_ref(azure, f"key_env={KEY_ENV}&key_header=api-key&max_retries=0"))
    assert not unversioned.ok and "HTTP 404" in (unversioned.error or "")
    assert "Resource not found" in (unversioned.error or "")


def test_classic_hash_is_stable_though_azure_lists_no_deployment(azure: RunningServer) -> None:
    first, second = openai_model(classic_ref(azure)), openai_model(classic_ref(azure))
    assert first.model_info() is None  # no /models under a deployment: a 404, not an error
    assert first.content_hash() == second.content_hash()
    assert azure.app.targets[-1] == f"GET /openai/deployments/{DEPLOYMENT}/models?api-version={VERSION}"


@pytest.mark.parametrize("key_header", ["authorization", "api-key"])
def test_v1_api_takes_the_key_as_bearer_or_api_key(azure: RunningServer, key_header: str) -> None:
    ref = f"openai:{DEPLOYMENT}@{azure.azure_v1_url}?key_env={KEY_ENV}&key_header={key_header}"
    generation = answer(ref)
    assert generation.ok and generation.text == "ECHO: hello", generation.error
    assert azure.app.targets[-1] == "POST /openai/v1/chat/completions"
    sent = azure.app.auth_headers[-1]
    assert sent == (f"Bearer {SECRET}" if key_header == "authorization" else None)
    assert azure.requests[-1]["model"] == DEPLOYMENT  # v1: the deployment is the body's model
    first, second = openai_model(ref), openai_model(ref)
    assert first.model_info() is None  # the listing names base models, not deployments
    assert first.content_hash() == second.content_hash()


def test_v1_api_refuses_an_unknown_deployment(azure: RunningServer) -> None:
    generation = answer(f"openai:not-deployed@{azure.azure_v1_url}?key_env={KEY_ENV}")
    assert not generation.ok and "DeploymentNotFound" in (generation.error or "")


def test_eval_on_a_classic_deployment_stores_the_ref_without_the_key(azure: RunningServer,
                                                                      tmp_path: Path) -> None:
    ref = classic_ref(azure)
    db = str(tmp_path / "store.db")
    report = tunesafe.evaluate(ref, suite="smoke", attacks="direct_request", judges="refusal", limit=3,
                               store=db)
    assert report.summary.overall.outcomes["error"] == 0 and report.summary.overall.n == 3
    [run] = list_runs(Store.open(db))
    # the options are no credentials: stored as given (so a resume needs nothing more); the key is not there
    assert run.model_ref == ref and redact_ref(ref) == ref and SECRET not in run.model_ref
    assert all(t.endswith(f"?api-version={VERSION}") for t in azure.app.targets)


@pytest.mark.parametrize(("option", "message"), [
    ("key_header=bearer", "unknown key_header 'bearer'"),
    ("key_header=API-KEY", "unknown key_header 'API-KEY'"),
    ("api_version=", "api_version='' is not an API version"),
    ("api_version=2024-1-1", "api_version='2024-1-1' is not an API version"),
    ("api_version=v1", "api_version='v1' is not an API version"),
])
def test_unknown_or_malformed_azure_options_are_user_errors(option: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        load_model(f"openai:m@http://127.0.0.1:9/openai/v1?{option}")
    assert info.value.fix


def test_a_bad_key_header_is_exit_2_on_the_cli(cli: Callable[..., Any],
                                                user_error: Callable[..., None]) -> None:
    result = cli("chat", "openai:m@http://127.0.0.1:9/v1?key_header=apikey", "hi")
    user_error(result, "unknown key_header 'apikey'", "key_header=authorization or key_header=api-key")


def test_the_servers_azure_mode_checks_what_azure_checks(azure: RunningServer) -> None:
    body = {"model": DEPLOYMENT, "messages": [{"role": "user", "content": "hi"}]}
    chat = f"{azure.azure_classic_url()}/chat/completions"

    def post(url: str, headers: dict[str, str], **params: str) -> httpx.Response:
        return httpx.post(url, json=body, headers=headers, params=params)

    key, bearer = {"api-key": SECRET}, {"Authorization": f"Bearer {SECRET}"}
    assert post(chat, key, **{"api-version": VERSION}).status_code == 200
    denied = post(chat, bearer, **{"api-version": VERSION})  # classic: a key goes in api-key only
    assert denied.status_code == 401 and denied.json()["error"]["code"] == "401"
    assert post(chat, key).json() == {"error": {"code": "404", "message": "Resource not found"}}
    other = post(f"{azure.azure_classic_url('other')}/chat/completions", key, **{"api-version": VERSION})
    assert other.status_code == 404 and other.json()["error"]["code"] == "DeploymentNotFound"
    for headers in (key, bearer):
        assert post(f"{azure.azure_v1_url}/chat/completions", headers).status_code == 200
    assert post(f"{azure.azure_v1_url}/chat/completions", {"api-key": "wrong"}).status_code == 401
    listed = httpx.get(f"{azure.azure_v1_url}/models", headers=key).json()["data"]
    assert [m["id"] for m in listed] == [f"{DEPLOYMENT}-2024-07-18"]
    assert httpx.post(f"{azure.url}/chat/completions", json=body, headers=bearer).status_code == 404
