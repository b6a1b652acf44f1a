"""Test helpers other areas use: a real OpenAI-compatible server on loopback (openai_server)."""
