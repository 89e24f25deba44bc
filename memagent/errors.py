"""User-facing errors: each carries one line that says what is wrong and how to fix it."""


class MemagentError(Exception):
    """An expected failure. The CLI prints its message on one line, never a traceback."""

    exit_code = 1


class ConfigError(MemagentError):
    exit_code = 2


class LLMError(MemagentError):
    """The model or server could not produce a completion."""


class AgentBusyError(MemagentError):
    """Another process holds the agent."""


class NotFoundError(MemagentError):
    pass


class TurnCancelled(BaseException):  # noqa: N818 - a stop, like KeyboardInterrupt, not an error
    """A turn stopped from outside (its chat client left). A BaseException like KeyboardInterrupt, so
    that no `except Exception` on the way takes it for a failure to report."""
