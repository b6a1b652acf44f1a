"""The loopback OpenAI-compatible test server for the production walk-through, as the model and as the
moderation classifier: the smoke suite's harmful requests are refused by the model and flagged by
/v1/moderations; everything else is answered (echo) and not flagged. Prints `listening on URL` once
ready and serves until terminated.

    python scripts/walkthrough_server.py
"""

from __future__ import annotations

import contextlib
import signal
import threading

from tunesafe.production.monitor_examples import REFUSAL
from tunesafe.suite import load_suite
from tunesafe.testing.openai_server import ServerConfig, serve


def main() -> None:
    harmful = [b.text for b in load_suite("smoke").behaviors if b.kind == "harmful"]
    config = ServerConfig(replies={text: REFUSAL for text in harmful},
                          moderation={text: ("illicit",) for text in harmful})
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with serve(config) as server:
        print(f"listening on {server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()


if __name__ == "__main__":
    main()
