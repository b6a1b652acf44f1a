"""Test helpers other areas use: a real OpenAI-compatible server on loopback (openai_server), and a
refusing base with an eroded fine-tune on two of them (smoke_pair)."""
