"""Access rules: loopback without a token is read-only; with a token everything needs signing in (token
compared in constant time); writes need the token and a CSRF token and are evidence with the actor;
security headers on every response; `tunesafe serve` refuses an exposed address without a token."""

from __future__ import annotations

import hmac
import html
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from tunesafe.cli.app import main
from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.types import RecordType
from tunesafe.web import auth
from tunesafe.web.app import create_app
from tunesafe.web.schemas import Attestation, Incident

TOKEN = "dashboard-test-token-0123456789"
LOOPBACK = "http://127.0.0.1"  # the test client's Host (the open dashboard serves loopback names only)


def _head(store: Store) -> int:
    return store.verify().head_id


def test_security_headers_on_pages_api_errors_and_static(client: TestClient) -> None:
    for url in ("/", "/api/v1/models", "/no-such-page", "/static/dashboard.js", "/report.css", "/runs/nope"):
        headers = client.get(url).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"


def test_the_browsers_favicon_request_is_answered(client: TestClient, token_client: TestClient) -> None:
    """A browser showing an API answer (JSON, no icon link) asks for /favicon.ico; a 404 there was an error
    in the console of every reviewer reading the API in the browser. Empty, and open like the static files."""
    for browser in (client, token_client):
        answer = browser.get("/favicon.ico", follow_redirects=False)
        assert answer.status_code == 204 and answer.content == b""
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_open_dashboard_answers_only_to_loopback_names(client: TestClient, token_client: TestClient) -> None:
    for host in ("127.0.0.1:8080", "localhost", "[::1]:8080"):
        assert client.get("/api/v1/models", headers={"host": host}).status_code == 200
    rebound = client.get("/api/v1/models", headers={"host": "attacker.example"})
    assert rebound.status_code == 421 and rebound.headers["x-frame-options"] == "DENY"
    # with a token, any name may reach it (behind a proxy), and still needs signing in
    assert token_client.get("/api/v1/models", headers={"host": "dash.example.com"}).status_code == 401


def test_no_inline_script_in_any_page(client: TestClient, filled: Any) -> None:
    for url in ("/", f"/gates/{filled.gate_id}", f"/incidents/{filled.incident_id}", "/evidence"):
        html = client.get(url).text
        assert "<script>" not in html and " on" + "click=" not in html
        assert html.count("<script") == 1 and '<script src="/static/dashboard.js" defer></script>' in html


def test_loopback_without_token_is_read_only(client: TestClient, store: Store, filled: Any) -> None:
    before = _head(store)
    form = client.post(f"/incidents/{filled.incident_id}/update", data={"status": "investigating"})
    api = client.post(f"/api/v1/incidents/{filled.incident_id}/updates", json={"note": "x"})
    assert form.status_code == api.status_code == 403
    assert "read-only" in api.json()["detail"]
    assert _head(store) == before  # nothing recorded


def test_token_needed_for_every_page_and_api_call(token_client: TestClient) -> None:
    page = token_client.get("/gates", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/gates"
    assert token_client.get("/api/v1/models").status_code == 401
    wrong = token_client.get("/api/v1/models", headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
    assert wrong.status_code == 401
    right = token_client.get("/api/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200 and len(right.json()) == 3
    assert token_client.get("/static/dashboard.css").status_code == 200  # the login page needs it


def test_tokens_are_compared_in_constant_time(
    token_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    token_client.get("/api/v1/models", headers={"Authorization": "Bearer guess-guess-guess-guess"})
    assert (b"guess-guess-guess-guess", TOKEN.encode()) in compared


def test_signing_in_returns_to_the_link_with_its_query(store: Store, filled: Any) -> None:
    """A shared link to a cell (its family and category are query parameters) opens that cell after
    signing in; it used to land on the bare path, a 422."""
    browser = TestClient(create_app(store, auth.Access(TOKEN)), base_url=LOOPBACK)
    cell = filled.decision["comparison"]["info"]["asr_cells"][0]
    link = f"/gates/{filled.gate_id}/cells?family={cell['family']}&category={cell['category']}"
    link += "&discordant=true"
    login = browser.get(link)
    assert login.status_code == 200 and 'id="login"' in login.text
    shown_next = html.unescape(login.text.split('name="next" value="')[1].split('"')[0])
    assert shown_next == link
    opened = browser.post("/login", data={"token": TOKEN, "name": "alice", "next": shown_next})
    assert opened.status_code == 200 and str(opened.url).endswith(link)
    assert 'id="pairs"' in opened.text


def test_sign_in_then_write_with_csrf_records_the_actor(store: Store, filled: Any) -> None:
    browser = TestClient(create_app(store, auth.Access(TOKEN)), base_url=LOOPBACK)
    refused = browser.post("/login", data={"token": "not-the-token-at-all", "name": "mallory", "next": "/"})
    assert refused.status_code == 401 and "wrong token" in refused.text
    signed = browser.post(
        "/login", data={"token": TOKEN, "name": "alice", "next": "//evil.example/x"}, follow_redirects=False
    )
    assert signed.status_code == 303 and signed.headers["location"] == "/"  # no open redirect
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = browser.get(f"/incidents/{filled.incident_id}")
    assert page.status_code == 200 and 'name="csrf_token"' in page.text
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]

    before = _head(store)
    no_csrf = browser.post(f"/incidents/{filled.incident_id}/update", data={"note": "forged"})
    bad_csrf = browser.post(
        f"/incidents/{filled.incident_id}/update", data={"note": "forged", "csrf_token": "0" * 64}
    )
    assert no_csrf.status_code == bad_csrf.status_code == 403 and _head(store) == before

    done = browser.post(
        f"/incidents/{filled.incident_id}/update",
        data={"status": "investigating", "note": "triaged <b>now</b>", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert done.status_code == 303
    update = list(store.records(type=RecordType.INCIDENT_UPDATE))[-1]
    assert update.id == before + 1 and update.actor == "alice (dashboard)"
    assert update.body == {
        "incident": filled.incident_id,
        "status": "investigating",
        "note": "triaged <b>now</b>",
    }
    shown = browser.get(f"/incidents/{filled.incident_id}").text
    assert "triaged &lt;b&gt;now&lt;/b&gt;" in shown and "alice (dashboard)" in shown

    # a session cookie made with another token is not accepted
    other = auth.Access("another-token-0123456789abcdef").sign_in("another-token-0123456789abcdef", "eve")
    forged = TestClient(
        create_app(store, auth.Access(TOKEN)), base_url=LOOPBACK, cookies={auth.COOKIE: other}
    )
    assert forged.get("/api/v1/models").status_code == 401


def test_a_session_cookie_expires(store: Store) -> None:
    """A copied session cookie stayed good for as long as the token did: it lasts a working day now."""
    import time

    access = auth.Access(TOKEN)
    fresh = access.sign_in(TOKEN, "alice")
    stale = access.sign_in(TOKEN, "alice", now=time.time() - auth.SESSION_SECONDS - 60)
    future = access.sign_in(TOKEN, "alice", now=time.time() + 3600)
    for cookie, status in ((fresh, 200), (stale, 401), (future, 401)):
        client = TestClient(create_app(store, access), base_url=LOOPBACK, cookies={auth.COOKIE: cookie})
        assert client.get("/api/v1/models").status_code == status
    signed = TestClient(create_app(store, access), base_url=LOOPBACK).post(
        "/login", data={"token": TOKEN, "name": "alice", "next": "/"}, follow_redirects=False)
    assert f"Max-Age={auth.SESSION_SECONDS}" in signed.headers["set-cookie"]


def test_api_write_needs_bearer_and_csrf(token_client: TestClient, store: Store, filled: Any) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}", "X-Tunesafe-Actor": "ci-bot"}
    session = token_client.get("/api/v1/session", headers=bearer).json()
    assert session["signed_in"] and session["actor"] == "ci-bot"
    url = f"/api/v1/incidents/{filled.incident_id}/updates"
    before = _head(store)
    assert token_client.post(url, json={"note": "no csrf"}, headers=bearer).status_code == 403
    assert token_client.post(url, json={"note": "no token"}).status_code == 401
    assert _head(store) == before
    ok = token_client.post(
        url, json={"note": "from CI"}, headers={**bearer, "X-CSRF-Token": session["csrf_token"]}
    )
    assert ok.status_code == 200 and ok.json()["notes"][-1]["text"] == "from CI"
    assert list(store.records(type=RecordType.INCIDENT_UPDATE))[-1].actor == "ci-bot (dashboard)"
    bad = token_client.post(
        url, json={"status": "closed"}, headers={**bearer, "X-CSRF-Token": session["csrf_token"]}
    )
    assert bad.status_code == 400 and "--resolution" in bad.json()["detail"]  # closing needs a resolution
    bad = token_client.post(
        url, json={"status": "open"}, headers={**bearer, "X-CSRF-Token": session["csrf_token"]}
    )
    assert bad.status_code == 400 and "cannot set status" in bad.json()["detail"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("dash.example.com", False),
    ],
)
def test_which_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert auth.is_loopback(host) is loopback
    if loopback:
        assert auth.check_bind(host, None).token is None
    else:
        with pytest.raises(UserError, match="without a token"):
            auth.check_bind(host, None)
        assert auth.check_bind(host, TOKEN).writable


def _serve(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str]:
    """`tunesafe serve ARGS` through the real entry point (UserError -> exit 2), in process."""
    monkeypatch.setattr("sys.argv", ["tunesafe", "serve", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out + " ".join(err.split())


def test_serve_refuses_exposed_address_without_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(auth.TOKEN_ENV, raising=False)
    monkeypatch.setenv("TUNESAFE_DB", str(tmp_path / "store.db"))
    code, output = _serve(capsys, monkeypatch, "--host", "0.0.0.0")
    assert code == 2 and "refusing to serve on 0.0.0.0 without a token" in output
    monkeypatch.setenv(auth.TOKEN_ENV, "short")
    code, output = _serve(capsys, monkeypatch, "--host", "0.0.0.0")
    assert code == 2 and "at least 16" in output
    code, output = _serve(capsys, monkeypatch, "--token-file", str(tmp_path / "nope"))
    assert code == 2 and "cannot read the token file" in output
    assert not (tmp_path / "store.db").exists()  # refused before anything was opened


@contextmanager
def serving(db: str, token: str | None = None) -> Iterator[tuple[str, list[str]]]:
    """`tunesafe serve` on a free loopback port in its own process: (its URL, its output once stopped)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "TUNESAFE_DB": db}
    env.pop(auth.TOKEN_ENV, None)
    if token is not None:
        env[auth.TOKEN_ENV] = token
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunesafe.cli.app", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url, output = f"http://127.0.0.1:{port}", []
    try:
        for _ in range(100):
            try:
                httpx.get(f"{url}/login", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url, output
    finally:
        proc.terminate()
        output.append(proc.communicate(timeout=10)[0])


def test_serve_command_serves_the_store(filled: Any, tmp_path: Path) -> None:
    """The real command in its own process: it binds, serves pages with the headers, and stops on SIGTERM."""
    with serving(filled.db) as (url, output):
        response = httpx.get(f"{url}/gates", timeout=2)
        assert response.status_code == 200
        assert f"/gates/{filled.gate_id}" in response.text
        assert response.headers["x-frame-options"] == "DENY" and "server" not in response.headers
    assert f"{url} (read-only" in output[0]


def test_signing_out_revokes_the_session_cookie(filled: Any) -> None:
    """A copy of the cookie (another browser, a proxy log) must stop working when its owner signs out, on
    this server and on one started later on the same store; other sessions stay signed in."""
    def sign_in(url: str, name: str) -> httpx.Client:
        client = httpx.Client(base_url=url, timeout=5)
        client.post("/login", data={"token": TOKEN, "name": name, "next": "/"})
        assert client.get("/api/v1/models").status_code == 200
        return client

    def with_cookie(url: str, cookie: str) -> httpx.Client:
        return httpx.Client(base_url=url, timeout=5, cookies={auth.COOKIE: cookie})

    with serving(filled.db, TOKEN) as (url, _):
        alice, bob = sign_in(url, "alice"), sign_in(url, "bob")
        copied = alice.cookies[auth.COOKIE]
        assert with_cookie(url, copied).get("/api/v1/models").status_code == 200
        page = alice.get("/gates").text
        csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
        out = alice.post("/logout", data={"csrf_token": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/login"

        stolen = with_cookie(url, copied)
        assert stolen.get("/api/v1/models").status_code == 401
        page_request = stolen.get("/gates")
        assert page_request.status_code == 303 and page_request.headers["location"].startswith("/login")
        assert bob.get("/api/v1/models").status_code == 200
        bob_cookie = bob.cookies[auth.COOKIE]
    with serving(filled.db, TOKEN) as (url, _):
        assert with_cookie(url, copied).get("/api/v1/models").status_code == 401
        assert with_cookie(url, bob_cookie).get("/api/v1/models").status_code == 200


def test_attesting_a_control_is_evidence_with_the_actor(token_client: TestClient, store: Store) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}", "X-Tunesafe-Actor": "reviewer-1"}
    csrf = token_client.get("/api/v1/session", headers=bearer).json()["csrf_token"]
    url = "/api/v1/models/support-bot-v2/attestations"
    before = _head(store)
    lacking = token_client.post(
        url, json={"control": "PRE-04", "note": "ok"}, headers={**bearer, "X-CSRF-Token": csrf}
    )
    assert lacking.status_code == 400 and "approved_by" in lacking.json()["detail"] and _head(store) == before
    assert token_client.post(url, json={"control": "PRE-04", "note": "ok"}, headers=bearer).status_code == 403
    body = {"control": "PRE-04", "note": "release approved", "fields": {"approved_by": "Head of ML"}}
    done = token_client.post(url, json=body, headers={**bearer, "X-CSRF-Token": csrf})
    assert done.status_code == 200
    TypeAdapter(Attestation).validate_python(done.json())
    record = store.get(done.json()["record_id"])
    assert record.type == RecordType.CONTROL_ATTESTATION and record.actor == "reviewer-1 (dashboard)"
    assert record.body["by"] == "reviewer-1" and record.body["fields"] == {"approved_by": "Head of ML"}
    shown = token_client.get("/api/v1/models/support-bot-v2", headers=bearer).json()["controls"]["controls"]
    pre04 = next(c for c in shown if c["id"] == "PRE-04")
    assert pre04["attestation"]["record_id"] == str(record.id)


def test_closing_an_incident_needs_a_resolution(token_client: TestClient, store: Store) -> None:
    from tunesafe.production.incidents import open_incident

    opened = open_incident(store, model="support-bot-v2", title="to close", severity="low", source="test")
    bearer = {"Authorization": f"Bearer {TOKEN}", "X-Tunesafe-Actor": "lead"}
    headers = {
        **bearer,
        "X-CSRF-Token": token_client.get("/api/v1/session", headers=bearer).json()["csrf_token"],
    }
    url = f"/api/v1/incidents/{opened.id}/updates"
    before = _head(store)
    empty = token_client.post(url, json={"status": "closed", "note": " "}, headers=headers)
    assert empty.status_code == 400 and "--resolution" in empty.json()["detail"] and _head(store) == before
    closed = token_client.post(url, json={"status": "closed", "note": "prompt filter added"}, headers=headers)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    TypeAdapter(Incident).validate_python(closed.json())
    last = store.get(_head(store))
    assert last.actor == "lead (dashboard)" and last.body["resolution"] == "prompt filter added"
    again = token_client.post(url, json={"note": "late"}, headers=headers)
    assert again.status_code == 400 and "is closed" in again.json()["detail"]


@pytest.mark.parametrize("actor", [None, "", "<script>"])
def test_an_api_attestation_without_a_signer_name_is_refused(token_client: TestClient, store: Store,
                                                             actor: str | None) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"} | ({"X-Tunesafe-Actor": actor} if actor is not None else {})
    csrf = token_client.get("/api/v1/session", headers=bearer).json()["csrf_token"]
    before = _head(store)
    body = {"control": "PRE-04", "note": "release approved", "fields": {"approved_by": "Head of ML"}}
    refused = token_client.post("/api/v1/models/support-bot-v2/attestations", json=body,
                                headers={**bearer, "X-CSRF-Token": csrf})
    # a sign-off recorded as by "api client" would satisfy the control with nobody accountable
    assert refused.status_code == 400 and "X-Tunesafe-Actor" in refused.json()["detail"]
    assert _head(store) == before


def test_an_update_posted_after_the_session_expired_keeps_the_note(tmp_path: Path) -> None:
    """An incident update posted with an expired session answered "sign in first" and the typed note was
    gone. It now goes to the sign-in page and back to the incident with the note and status in the form,
    recorded only when the signed-in user submits it again with a fresh CSRF token."""
    from tunesafe.production import incidents

    note = "Checked the logs <b>twice</b> & found [placeholder]"
    with Store.open(str(tmp_path / "store.db")) as store:
        found = incidents.open_incident(store, model="bot", title="t", severity="high", source="user_report")
        access = auth.Access(TOKEN)
        stale = access.sign_in(TOKEN, "alice", now=time.time() - auth.SESSION_SECONDS - 60)
        browser = TestClient(create_app(store, access), base_url=LOOPBACK, cookies={auth.COOKIE: stale})
        before = _head(store)
        posted = browser.post(
            f"/incidents/{found.id}/update",
            data={"status": "investigating", "note": note, "csrf_token": access.csrf_token("old")},
            follow_redirects=False,
        )
        assert posted.status_code == 303 and posted.headers["location"].startswith("/login?next=")
        login = browser.get(posted.headers["location"])
        assert login.status_code == 200 and _head(store) == before
        shown_next = html.unescape(login.text.split('name="next" value="')[1].split('"')[0])
        back = browser.post("/login", data={"token": TOKEN, "name": "alice", "next": shown_next})
        assert back.status_code == 200 and str(back.url).split("?")[0].endswith(f"/incidents/{found.id}")
        assert _head(store) == before  # signing in applied nothing
        form = back.text.split('id="update"')[1].split("</form>")[0]
        assert f">{html.escape(note, quote=False)}</textarea>" in form
        assert '<option value="investigating" selected>' in form
        assert "not recorded yet" in back.text.split('id="unsent"')[1]
        csrf = form.split('name="csrf_token" value="')[1].split('"')[0]
        # the old form's CSRF token (of the expired session) is refused, the note comes back again
        refused = browser.post(f"/incidents/{found.id}/update",
                               data={"note": note, "csrf_token": access.csrf_token("old")})
        assert refused.status_code == 403 and _head(store) == before
        assert f">{html.escape(note, quote=False)}</textarea>" in refused.text and "CSRF" in refused.text
        done = browser.post(f"/incidents/{found.id}/update",
                            data={"status": "investigating", "note": note, "csrf_token": csrf})
        assert done.status_code == 200
        update = list(store.records(type=RecordType.INCIDENT_UPDATE))[-1]
        assert update.actor == "alice (dashboard)" and update.body["note"] == note

        # too long for the sign-in link: the sign-in page shows it to copy
        long_note = "[placeholder] " * 400
        expired = TestClient(create_app(store, access), base_url=LOOPBACK, cookies={auth.COOKIE: stale})
        shown = expired.post(f"/incidents/{found.id}/update", data={"note": long_note, "csrf_token": csrf})
        assert shown.status_code == 401 and 'id="login"' in shown.text
        assert f">{long_note}</textarea>" in shown.text
        assert f'name="next" value="/incidents/{found.id}"' in shown.text

        # a link carrying a note only fills the form in: nothing is recorded without the signed-in POST
        head = _head(store)
        linked = browser.get(f"/incidents/{found.id}", params={"note": "planted", "status": "closed"})
        assert ">planted</textarea>" in linked.text and _head(store) == head


def test_an_attestation_posted_after_the_session_expired_keeps_what_was_typed(store: Store) -> None:
    """A control attestation posted with an expired session answered "sign in first" and the typed note and
    fields were gone. Like an incident update, it now goes to the sign-in page and back to the model page
    with that control's form filled in, recorded only when submitted again signed in with a fresh CSRF
    token; a form from an earlier sign-in comes back filled in (403)."""
    note = "Policy <b>v3</b> reviewed & approved [placeholder]"
    typed = {"control": "PRE-04", "note": note, "field_approved_by": "Head of ML & Safety"}
    access = auth.Access(TOKEN)
    stale = access.sign_in(TOKEN, "alice", now=time.time() - auth.SESSION_SECONDS - 60)
    browser = TestClient(create_app(store, access), base_url=LOOPBACK, cookies={auth.COOKIE: stale})
    before = _head(store)
    url = "/models/support-bot-v2/attest"
    posted = browser.post(url, data={**typed, "csrf_token": access.csrf_token("old")}, follow_redirects=False)
    assert posted.status_code == 303 and posted.headers["location"].startswith("/login?next=")
    login = browser.get(posted.headers["location"])
    assert login.status_code == 200 and _head(store) == before
    shown_next = html.unescape(login.text.split('name="next" value="')[1].split('"')[0])
    back = browser.post("/login", data={"token": TOKEN, "name": "alice", "next": shown_next})
    assert back.status_code == 200 and str(back.url).split("?")[0].endswith("/models/support-bot-v2")
    assert _head(store) == before  # signing in applied nothing
    row = back.text.split('data-control="PRE-04"')[1].split("</tr>")[0]
    assert "<details open>" in row and "not recorded yet" in row.split('id="unsent"')[1]
    assert f">{html.escape(note, quote=False)}</textarea>" in row
    assert f'name="field_approved_by" value="{html.escape("Head of ML & Safety")}"' in row
    other = back.text.split('data-control="PRE-00"')[1].split("</tr>")[0]
    assert note not in html.unescape(other)  # only the control that was being attested is filled in
    csrf = row.split('name="csrf_token" value="')[1].split('"')[0]

    refused = browser.post(url, data={**typed, "csrf_token": access.csrf_token("old")})
    assert refused.status_code == 403 and _head(store) == before
    assert f">{html.escape(note, quote=False)}</textarea>" in refused.text and "CSRF" in refused.text

    done = browser.post(url, data={**typed, "csrf_token": csrf})
    assert done.status_code == 200
    record = list(store.records(type=RecordType.CONTROL_ATTESTATION))[-1]
    assert record.actor == "alice (dashboard)" and record.body["note"] == note
    assert record.body["fields"] == {"approved_by": "Head of ML & Safety"}

    # too long for the sign-in link: the sign-in page shows it to copy
    long_note = "[placeholder] " * 400
    expired = TestClient(create_app(store, access), base_url=LOOPBACK, cookies={auth.COOKIE: stale})
    shown = expired.post(url, data={**typed, "note": long_note, "csrf_token": csrf})
    assert shown.status_code == 401 and 'id="login"' in shown.text and long_note in shown.text
    assert 'name="next" value="/models/support-bot-v2"' in shown.text
