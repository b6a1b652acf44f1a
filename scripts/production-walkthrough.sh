#!/usr/bin/env bash
# The production walk-through (`make production-demo`), in a temporary workspace:
#   1. start the loopback test server (tunesafe.testing) as the model and as a moderation classifier
#   2. verify a guardrail in front of the model  (tunesafe guardrails verify)
#   3. ingest a shipped log with a planted jailbreak (tunesafe monitor ingest) -> an incident opens
#   4. see the incident and its Art. 73 clock       (tunesafe incidents list / due)
#   5. schedule red-teaming and run what is due     (tunesafe redteam schedule add / run-due)
# Exits non-zero if a step does not do what it should. KEEP=1 keeps the workspace.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-$repo/.venv/bin/python}"
[[ -x "$py" ]] || py=python3
work="$(mktemp -d "${TMPDIR:-/tmp}/tunesafe-walkthrough.XXXXXX")"
server_pid=""
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  if [[ -z "${KEEP:-}" ]]; then rm -rf "$work"; else echo "workspace kept: $work"; fi
}
trap cleanup EXIT
cd "$work"
ts() { "$py" -m tunesafe.cli.app "$@"; }
step() { printf '\n== %s\n' "$*"; }

step "1. loopback test server (model + moderation classifier)"
"$py" "$repo/scripts/walkthrough_server.py" > server.out 2> server.err &
server_pid=$!
for _ in $(seq 100); do grep -q "^listening on " server.out 2>/dev/null && break; sleep 0.1; done
url="$(sed -n 's/^listening on //p' server.out)"
[[ -n "$url" ]] || { cat server.err >&2; echo "the test server did not start" >&2; exit 1; }
echo "serving on $url"
ts init
ts models add support-bot --ref "openai:tunesafe-test@$url"

step "2. verify the guardrail in front of support-bot"
ts guardrails verify --guard "moderation:$url?on_error=closed" --suite smoke

step "3. ingest a production log with a planted jailbreak"
ts monitor ingest "$repo/examples/production/chat-completions.jsonl" --model support-bot

step "4. the incident and its clock"
ts incidents list
# exit 1 means "something is due" (for cron alerts): here that is the expected answer
code=0; ts incidents due --within 15d || code=$?
[[ $code == 1 ]] || { echo "expected the new incident to be due within 15 days (exit 1), got $code" >&2; exit 1; }
ts incidents list --json > incidents.json
"$py" - <<'PY'
import json
found = [i for i in json.load(open("incidents.json")) if i["source"] == "monitor"]
assert len(found) == 1, f"expected one incident opened by the monitor, found {len(found)}"
print(f"{found[0]['label']}: {found[0]['title']} -- {found[0]['clock']}")
PY

step "5. red-team on a schedule: add one, run what is due"
ts redteam schedule add support-bot --every 7d --suite smoke --attacks direct_request --judge refusal
ts redteam run-due
ts redteam schedule list

step "evidence chain"
ts verify
