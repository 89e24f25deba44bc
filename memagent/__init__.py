"""memagent: a persistent-memory character chat agent for local LLMs."""

from memagent.plugins import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
