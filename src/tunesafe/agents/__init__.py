"""The agent harness: simulated environments with state (environments/), user tasks and injection
cases as data (data/, cases.py), end-state checks (checks.py), the episode loop over any ChatModel with
tool calling (runner.py), the three episode shapes (episodes.py), and the attack families that put them
in the engine and the gate (attacks.py), with agent metrics over stored results (metrics.py).

The attack families register when `tunesafe.attacks` is imported. See docs/agents.md.
"""
