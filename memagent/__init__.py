"""memagent: a persistent-memory character chat agent for local LLMs."""

__version__ = "0.1.0"
