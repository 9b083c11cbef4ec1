"""Hearth: run language models on your own computer, behind an OpenAI-compatible API."""

__version__ = "0.1.0"
