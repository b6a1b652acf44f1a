"""tunesafe: the safety gate for fine-tuned LLMs."""

__version__ = "0.1.0"
