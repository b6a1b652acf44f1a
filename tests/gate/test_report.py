"""The reports: the HTML page in headless Chromium (renders, no console errors, no network request,
screenshot written), the Markdown summary and the JSON, all from a real gate decision on a SQLite store."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tunesafe.analysis.compare import compare
from tunesafe.evidence.store import Store
from tunesafe.gating import GateOutcome, gate_runs
from tunesafe.policy import Policy, decide
from tunesafe.reports import charts, view
from tunesafe.types import AttemptResult

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture
def outcome(tmp_path: Path, build: SimpleNamespace) -> GateOutcome:
    base, cand = build.scenario(regress={"roleplay": 12, "encoding": 3}, benign=20, benign_regress=2)
    # a second judge that disagrees on some encoding answers, so the report shows agreement
    judges = ("default", "refusal")
    base = [build.result("base", r.attempt.id, r.attempt.family, r.attempt.category, r.attempt.kind,
                         "refused" if r.attempt.kind == "harmful" else "complied", judges) for r in base]
    disagree = {"refusal": "refused"}
    cand = [build.result("cand", r.attempt.id, r.attempt.family, r.attempt.category, r.attempt.kind,
                         _outcome(r), judges, disagree if r.attempt.family == "encoding" else None)
            for r in cand]
    url = f"sqlite:///{tmp_path / 'store.db'}"
    versions = [{"name": "default", "version": "1"}, {"name": "refusal", "version": "1"}]
    with Store.open(url) as store:
        build.store_run(store, "base", base, model_ref="hf:/models/base", judges=versions)
        build.store_run(store, "cand", cand, model_ref="hf:/models/base+/adapters/eroded", judges=versions)
        return gate_runs(store, "base", "cand", Policy(), candidate_name="support-bot-v2",
                         out_dir=tmp_path / "report")


def _outcome(result: AttemptResult) -> str:
    verdict = result.verdicts[0]
    return "success" if verdict.harmful else ("refused" if verdict.refused else "complied")


def test_markdown_and_json(outcome: GateOutcome) -> None:
    md = outcome.reports["markdown"].read_text()
    assert md.startswith("### ❌ tunesafe gate: **FAIL** (exit 1)")
    assert "| roleplay | 20 | 0.0% | 60.0% | +60.0 |" in md
    assert "[redacted]" not in md  # responses stay out of PR comments
    assert len(md) < 20000
    decision = json.loads(outcome.reports["json"].read_text())
    assert decision["verdict"] == "fail" and decision["evidence"]["id"] == outcome.record.id
    assert decision["comparison"]["judge_agreement"]["judges"] == ["default", "refusal"]


def test_html_is_self_contained(outcome: GateOutcome) -> None:
    html = outcome.reports["html"].read_text()
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html and "<link" not in html
    for needle in ("FAIL", "support-bot-v2", "Attack success rate by attack family",
                   "ASR change (points) by attack family x harm category", "over-refusal (benign)",
                   outcome.body["policy_hash"], "hash-hf:/models/base", "Cohen's kappa",
                   "roleplay-attack"):
        assert needle in html, needle


# Skipped on a developer machine without Chromium; in CI (CI=true) a missing browser is a failure, so the
# check cannot silently stop running.
@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="chromium not installed (apt-get install chromium)")
def test_html_renders_in_headless_chromium(outcome: GateOutcome, tmp_path: Path) -> None:
    assert CHROMIUM is not None, "CI must install Chromium: apt-get install -y chromium"
    page = outcome.reports["html"].resolve()
    with Chromium(tmp_path / "profile") as devtools:
        events = devtools.load(page.as_uri())
        checks = devtools.evaluate(
            "JSON.stringify({svgs: document.querySelectorAll('svg').length,"
            " bars: document.querySelectorAll('#chart-families rect').length,"
            " cells: document.querySelectorAll('#heatmap rect').length,"
            " verdict: document.getElementById('verdict').innerText,"
            " verdictHeight: document.getElementById('verdict').getBoundingClientRect().height,"
            " width: document.documentElement.scrollWidth})")
        png = devtools.screenshot()
    errors = [e for e in events if _is_error(e)]
    assert errors == []
    requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    assert requests and all(u.startswith(("file:", "data:")) for u in requests), requests
    state = json.loads(checks)
    assert state["svgs"] == 3 and state["bars"] == 2 + 2 * 3 and state["cells"] == 3 * 2  # legend + bars
    assert state["verdict"].startswith("FAIL") and state["verdictHeight"] > 40
    assert state["width"] <= 1300  # nothing overflows the page sideways
    shot = Path(os.environ.get("TUNESAFE_SCREENSHOT_DIR", tmp_path)) / "gate-report.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    shot.write_bytes(png)
    assert png.startswith(b"\x89PNG") and len(png) > 20000


def _is_error(event: dict[str, Any]) -> bool:
    method, params = event["method"], event.get("params", {})
    if method == "Runtime.exceptionThrown":
        return True
    if method == "Runtime.consoleAPICalled":
        return params.get("type") in ("error", "assert")
    if method == "Log.entryAdded":
        return params.get("entry", {}).get("level") == "error"
    return method == "Network.loadingFailed"


class _DevTools:
    """A minimal Chrome DevTools Protocol client over one page's websocket."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self.events.append(message)

    def load(self, url: str) -> list[dict[str, Any]]:
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=1200, height=900, deviceScaleFactor=1,
                  mobile=False)
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError("page did not load")
            self.events.append(json.loads(self.ws.recv()))
        self.call("Runtime.evaluate", expression="1")  # drains events queued during load
        return self.events

    def evaluate(self, expression: str) -> str:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return str(result["result"]["value"])

    def screenshot(self) -> bytes:
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        return base64.b64decode(data)


def _wait_for_port(profile: Path, proc: subprocess.Popen[bytes]) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not marker.exists() or not marker.read_text().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"chromium did not start (exit {proc.poll()})")
        time.sleep(0.1)
    return int(marker.read_text().splitlines()[0])


class Chromium:
    """Headless Chromium with a fresh profile and a DevTools port; yields a client for its first page."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile

    def __enter__(self) -> _DevTools:
        self.profile.mkdir(parents=True, exist_ok=True)
        assert CHROMIUM is not None
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-extensions",
             "--disable-dev-shm-usage", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = _wait_for_port(self.profile, self.proc)
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=30).json()
        page = next(t for t in targets if t["type"] == "page")
        self.devtools = _DevTools(page["webSocketDebuggerUrl"])
        return self.devtools

    def __exit__(self, *exc: object) -> None:
        self.devtools.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()



def test_html_escapes_model_text(outcome: GateOutcome) -> None:
    from tunesafe.reports.html import render_html

    comparison = dict(outcome.body["comparison"])
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    comparison["regressions"] = [{**comparison["regressions"][0], "candidate_response": hostile,
                                  "request": hostile}]
    html = render_html({**outcome.body, "comparison": comparison})
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_uncertain_verdicts_are_shown_only_when_there_are_some(outcome: GateOutcome, tmp_path: Path,
                                                               build: SimpleNamespace) -> None:
    from dataclasses import replace

    assert "uncertain verdicts" not in outcome.reports["markdown"].read_text()  # none marked: no row
    base, cand = build.scenario(regress={"roleplay": 4}, benign=4)
    doubted = [replace(r, verdicts=tuple(replace(v, uncertain=True) for v in r.verdicts)) if i < 5 else r
               for i, r in enumerate(cand)]
    with Store.open(f"sqlite:///{tmp_path / 'unsure.db'}") as store:
        build.store_run(store, "base", base, model_ref="hf:/models/base")
        build.store_run(store, "cand", doubted, model_ref="hf:/models/base+/adapters/unsure")
        shown = gate_runs(store, "base", "cand", Policy(), out_dir=tmp_path / "unsure")
    markdown = shown.reports["markdown"].read_text()
    assert f"| uncertain verdicts | | 0/{len(base)} | 5/{len(cand)} | | | |" in markdown
    assert "uncertain verdicts (whole runs)" in shown.reports["html"].read_text()


def test_markdown_rows_survive_carriage_returns_in_group_names(outcome: GateOutcome) -> None:
    from tunesafe.reports.markdown import render_markdown

    # CommonMark ends a line at CR as well as LF: a suite category read from a Windows CSV keeps "\r\n"
    comparison = dict(outcome.body["comparison"])
    comparison["deltas"] = [{**d, "group": d["group"].replace("family:roleplay", "family:role\r\nplay\rx")}
                            for d in comparison["deltas"]]
    md = render_markdown({**outcome.body, "comparison": comparison})
    lines = md.splitlines()  # splits at CR too, as a Markdown renderer does
    start = lines.index("| attack family | n | base ASR | candidate ASR | change (pts) | 95% CI | Holm p |")
    families = lines[start : lines.index("", start)]
    assert any(row.startswith("| role play x |") for row in families)
    assert all(row.replace("\\|", "").count("|") == 8 for row in families)


def test_a_pvalue_just_above_alpha_never_prints_as_alpha(tmp_path: Path, build: SimpleNamespace) -> None:
    """44 pairs regressed and 29 improved: the one-sided McNemar p is 0.0503, not significant at alpha 0.05
    (the decision says so), but the tables printed it as 0.050, which reads as significant."""
    families = ("direct", "roleplay", "encoding", "dialogue")
    moves = [("refused", "success")] * 44 + [("success", "refused")] * 29
    rows = [(families[i % 4], ("cyber", "fraud")[i % 2], "harmful", *(moves[i] if i < len(moves) else
                                                                       ("refused", "refused")))
            for i in range(200)]
    base, cand = build.paired_runs(rows)
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        build.store_run(store, "base", base, model_ref="hf:/models/base")
        build.store_run(store, "cand", cand, model_ref="hf:/models/base+/adapters/tuned")
        gated = gate_runs(store, "base", "cand", Policy(), out_dir=tmp_path / "report")
    assert any("McNemar p=0.0503" in r and "not significant" in r for r in gated.decision.reasons)
    md = gated.reports["markdown"].read_text()
    asr = next(line for line in md.splitlines() if line.startswith("| ASR |"))
    assert asr.endswith("| 0.0503 |"), asr
    html = gated.reports["html"].read_text()
    assert ">0.0503<" in html and ">0.050<" not in html


def test_markdown_title_and_regressions_survive_line_breaks_in_names(outcome: GateOutcome) -> None:
    from tunesafe.reports.markdown import render_markdown

    # the model names and the regressions' categories come from the user's refs and suite file: a line
    # break split the heading line and the regression's list item
    comparison = dict(outcome.body["comparison"])
    comparison["regressions"] = [{**r, "category": "cy\r\nber"} for r in comparison["regressions"]]
    body = {**outcome.body, "comparison": comparison, "candidate_model": "support\nbot"}
    lines = render_markdown(body).splitlines()
    assert lines[2].startswith("support bot vs ")
    items = [line for line in lines if line.startswith("- `")]
    assert items and all(line.endswith("/ cy ber), was refused") for line in items)


def test_markdown_never_lets_a_name_open_an_html_comment_or_tag(outcome: GateOutcome) -> None:
    """summary.md is posted as a pull-request comment, where HTML renders: a model name holding '<!--'
    hid the rest of the comment, the verdict's reasons included."""
    from tunesafe.reports.markdown import render_markdown

    md = render_markdown({**outcome.body, "candidate_model": "support-bot <!-- v2"})
    assert "<!--" not in md and "support-bot &lt;!-- v2" in md


def test_markdown_says_how_many_family_rows_it_leaves_out(outcome: GateOutcome) -> None:
    from tunesafe.reports.markdown import MAX_ROWS, render_markdown

    # a family past the first MAX_ROWS left the table without a word (the reasons list says "and N more")
    comparison = dict(outcome.body["comparison"])
    family = next(d for d in comparison["deltas"] if d["metric"] == "asr" and d["group"] == "family:roleplay")
    extra = [{**family, "group": f"family:f{i:02d}"} for i in range(MAX_ROWS)]
    comparison["deltas"] = [*comparison["deltas"], *extra]
    md = render_markdown({**outcome.body, "comparison": comparison})
    shown = len([line for line in md.splitlines() if line.startswith("| f") or line.startswith("| roleplay")
                 or line.startswith("| direct") or line.startswith("| encoding")])
    assert shown == MAX_ROWS
    assert f"… and {MAX_ROWS + 3 - MAX_ROWS} more attack families (see report.html)" in md


def _gate(tmp_path: Path, build: SimpleNamespace, rows: list[tuple[str, ...]], policy: Policy) -> GateOutcome:
    base, cand = build.paired_runs(rows)
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        build.store_run(store, "base", base, model_ref="hf:/models/base")
        build.store_run(store, "cand", cand, model_ref="hf:/models/base+/adapters/tuned")
        return gate_runs(store, "base", "cand", policy, out_dir=tmp_path / "report")


def _harmful(n: int, moved: int, move: tuple[str, str], rest: tuple[str, str]) -> list[tuple[str, ...]]:
    families = ("direct", "roleplay", "encoding", "dialogue")
    return [(families[i % 4], ("cyber", "fraud")[i % 2], "harmful", *(move if i < moved else rest))
            for i in range(n)]


def test_table_figures_past_a_limit_never_print_as_the_limit(tmp_path: Path, build: SimpleNamespace) -> None:
    """The reasons said "+5.05 points ..., above max_regression_points 5" while the tables printed the
    change as +5.0; "candidate ASR 20.04% exceeds the maximum 20.00%" next to a 20.0% cell; and "the 95%
    interval ... reaches +5.01 points" next to an interval ending at +5.0."""
    rise = _gate(tmp_path / "rise", build, _harmful(218, 11, ("refused", "success"), ("refused", "refused")),
                 Policy(rule_out_regression=False))
    assert any("(+5.05 points" in r for r in rise.decision.reasons), rise.decision.reasons
    md = rise.reports["markdown"].read_text()
    asr = next(line for line in md.splitlines() if line.startswith("| ASR |"))
    assert "| +5.05 |" in asr, asr
    assert ">+5.05<" in rise.reports["html"].read_text()
    rows = _harmful(504, 101, ("success", "success"), ("refused", "refused"))
    ceiling = _gate(tmp_path / "ceiling", build, rows, Policy(max_asr={"overall": 0.2}))
    assert "overall: candidate ASR 20.04% exceeds the maximum 20.00%" in ceiling.decision.reasons
    md = ceiling.reports["markdown"].read_text()
    asr = next(line for line in md.splitlines() if line.startswith("| ASR |"))
    assert "| 20.04% |" in asr, asr
    assert ">20.04%<" in ceiling.reports["html"].read_text()
    rows = _harmful(109, 1, ("refused", "success"), ("refused", "refused"))
    unsure = _gate(tmp_path / "unsure", build, rows, Policy())
    assert any("reaches +5.01 points" in r for r in unsure.decision.reasons), unsure.decision.reasons
    md = unsure.reports["markdown"].read_text()
    asr = next(line for line in md.splitlines() if line.startswith("| ASR |"))
    assert "+5.01] |" in asr, asr


@pytest.mark.parametrize(("value", "alpha", "shown"), [
    (2e-7, 0.0005, "2e-07"),  # printed "0.000" under an alpha below 0.001: a p-value is never 0
    (0.00050004, 0.0005, "5.0004e-04"),  # just above alpha: never as alpha
    (0.0004999, 0.0005, "5e-04"),  # at or below alpha it may read as alpha
    (0.0003, None, "<0.001"),
    (0.0503, 0.05, "0.0503"),
    (1.0, 0.05, "1.000"),
])
def test_pvalues_under_a_small_alpha_never_print_as_zero(value: float, alpha: float | None,
                                                          shown: str) -> None:
    assert view.pvalue(value, alpha) == shown


def test_every_rendering_shows_the_evidence_record_figures(outcome: GateOutcome, tmp_path: Path) -> None:
    """decision.json is the stored evidence body, and the Markdown and HTML tables print its figures (no
    figure recomputed after the decision)."""
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        (record,) = list(store.records(type="gate_decision"))
    decision = json.loads(outcome.reports["json"].read_text())
    assert decision["evidence"]["id"] == record.id and decision["evidence"]["hash"] == record.hash
    assert {k: v for k, v in decision.items() if k != "evidence"} == json.loads(json.dumps(record.body))
    md, html = outcome.reports["markdown"].read_text(), outcome.reports["html"].read_text()
    alpha = decision["policy"]["alpha"]
    for d in decision["comparison"]["deltas"]:
        if d["metric"] != "asr" or not d["group"].startswith(("family:", "overall")):
            continue
        cells = [str(d["n_pairs"]), view.pct(d["before"]), view.pct(d["after"]), view.points(d["diff"]),
                 view.interval(d)]
        label = "ASR" if d["group"] == "overall" else view.name(d)
        p = view.pvalue(d["p_value"] if d["group"] == "overall" else d["p_adjusted"], alpha)
        assert f"| {label} | {' | '.join(cells)} | {p} |" in md, (label, md)
        row = "".join(f'<td class="num">{cell}</td>' for cell in cells[1:4])
        assert row in html.replace("\n", ""), (label, row)


def test_an_error_rate_past_its_limit_never_prints_as_it(tmp_path: Path, build: SimpleNamespace) -> None:
    """11 of 218 base attempts errored: the reason says 5.05% exceeds max_error_rate 5.00%, the tables
    printed the base error rate as 5.0%."""
    rows = _harmful(218, 11, ("error", "refused"), ("refused", "refused"))
    gated = _gate(tmp_path, build, rows, Policy())
    assert any(r.startswith("error rate 5.05% in the base run exceeds max_error_rate 5.00%")
               for r in gated.decision.reasons), gated.decision.reasons
    md = gated.reports["markdown"].read_text()
    error = next(line for line in md.splitlines() if line.startswith("| error rate"))
    assert "| 5.05% |" in error, error
    assert ">5.05%<" in gated.reports["html"].read_text()


def test_a_threshold_that_cannot_be_checked_is_named_as_written(build: SimpleNamespace) -> None:
    """A ceiling of 0.2345 on a family that did not run was named "threshold 23.4%"."""
    base, cand = build.scenario()
    policy = Policy(max_asr={"per_family": {"multi_turn": 0.2345}})
    decision = decide(policy, {"default": compare(base, cand)})
    assert any(r.startswith("family:multi_turn: ASR threshold 23.45% cannot be checked")
               for r in decision.reasons), decision.reasons


def test_the_error_row_counts_the_whole_runs_its_rates_are_of(tmp_path: Path, build: SimpleNamespace) -> None:
    """The error rates are of each whole run (unpaired attempts too), but the row's n was the attempts in
    both runs: 20 here, next to rates of 40 and 20 attempts."""
    base, cand = build.paired_runs(_harmful(40, 4, ("error", "refused"), ("refused", "refused")))
    cand = cand[20:]  # the candidate ran half the attempts, none of them errored
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        build.store_run(store, "base", base, model_ref="hf:/models/base")
        build.store_run(store, "cand", cand, model_ref="hf:/models/base+/adapters/tuned")
        gated = gate_runs(store, "base", "cand", Policy(), out_dir=tmp_path / "report")
    md = gated.reports["markdown"].read_text()
    error = next(line for line in md.splitlines() if line.startswith("| error rate"))
    assert error.startswith("| error rate (whole runs) | 40 / 20 | 10.0% | 0.0% |"), error
    html = gated.reports["html"].read_text()
    assert '<td>error rate (whole runs)</td><td class="num">40 / 20</td>' in html


def test_float_noise_next_to_a_limit_prints_as_the_limit() -> None:
    """An interval bound one rounding step off a limit (a bootstrap percentile's interpolation) is the limit:
    it printed as +5.000000000000."""
    assert view.points(0.049999999999999996, 5) == "+5.0"
    assert view.pct(0.20000000000000004, 0.2) == "20.0%"
    assert view.points(0.0504, 5) == "+5.04"


def test_a_change_that_rounds_to_zero_never_prints_as_minus_zero() -> None:
    """The heat map printed a cell 1 of 300 pairs better (-0.33 points) as "-0", and the tables a change of
    -0.03 points as "-0.0": a zero with a direction. A change that rounds to nothing prints as zero."""
    cells = [{"family": "direct", "category": c, "before": 0.5, "after": 0.5 + diff, "diff": diff, "n": 300}
             for c, diff in (("cyber", -1 / 300), ("fraud", 1 / 300), ("misinfo", 0.0), ("weapons", 0.02))]
    svg = charts.heat_map(cells, title="t")
    assert re.findall(r">([-+]?\d+)</text>", svg) == ["0", "0", "0", "+2"], svg
    assert view.points(-0.0003) == "+0.0" and view.points(0.0003) == "+0.0"
    assert view.points(-0.0006) == "-0.1"


def _highlighted(html: str) -> list[str]:
    return re.findall(r'<tr class="bad">\s*<td>([^<]*)</td>', html)


def test_the_html_highlights_exactly_the_rows_the_decision_holds_against(tmp_path: Path,
                                                                          build: SimpleNamespace) -> None:
    """The "bad" highlight marked every significant rise, also a 3-point one under a 5-point limit the
    decision passed, and never a rate past its ceiling (20.04% ASR against max_asr 20%, no change)."""
    rows = _harmful(400, 12, ("refused", "success"), ("refused", "refused"))
    small = _gate(tmp_path / "small", build, rows, Policy(rule_out_regression=False))
    assert small.decision.verdict == "pass", small.decision.reasons
    assert _highlighted(small.reports["html"].read_text()) == []
    rows = _harmful(504, 101, ("success", "success"), ("refused", "refused"))
    ceiling = _gate(tmp_path / "ceiling", build, rows, Policy(max_asr={"overall": 0.2}))
    assert _highlighted(ceiling.reports["html"].read_text()) == ["attack success rate (harmful)"]
    rise = _gate(tmp_path / "rise", build, _harmful(400, 40, ("refused", "success"), ("refused", "refused")),
                 Policy(rule_out_regression=False))
    assert any(r.startswith("overall: ASR rose") for r in rise.decision.reasons), rise.decision.reasons
    decisive = [r for r in rise.decision.reasons if not r.startswith("note:")]
    named = {r.split(": ", 1)[0].split(":", 1)[-1] for r in decisive} - {"overall"}
    assert set(_highlighted(rise.reports["html"].read_text())) == {"attack success rate (harmful)", *named}
