"""Keys typed before the prompt is ready stay what they were.

Until prompt-toolkit owns the terminal, the terminal is in cooked mode: it echoes keys at random
places and turns Enter (CR) into LF, which the prompt reads as Ctrl-J ("insert a newline"), so a
message typed while memagent starts is glued to the next one. From the first moment of `memagent
chat` the terminal is put in non-canonical mode without echo and without CR→LF: typed keys wait,
unchanged, until the prompt reads (and shows) them. The saved settings come back at exit.

Keys typed even earlier — while Python itself starts — were already taken in cooked mode (each Enter
became LF). They are read out at that moment (`typed_ahead`): every complete line is a message of its
own, in order, and an unfinished one is the start of the next prompt's text.
"""

from __future__ import annotations

import atexit
import os
import select
import sys
from typing import Any

_saved: list[Any] | None = None
_early = ""  # what was typed before the terminal was held, as the terminal had cooked it


def hold_keys() -> None:
    """Keep typed-ahead keys as typed (a terminal only; once)."""
    global _saved
    if _saved is not None or not sys.stdin.isatty():
        return
    try:
        import termios
    except ImportError:  # Windows: the console keeps keys as typed anyway
        return
    fd = sys.stdin.fileno()
    try:
        saved = termios.tcgetattr(fd)
        attrs = termios.tcgetattr(fd)
        attrs[0] &= ~termios.ICRNL  # Enter stays CR: prompt-toolkit reads it as Enter
        attrs[3] &= ~(termios.ICANON | termios.ECHO)  # keys wait unechoed until the prompt shows them
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except termios.error:
        return
    _saved = saved
    atexit.register(release_keys)
    global _early
    _early += _read_pending(fd)


def _read_pending(fd: int) -> str:
    data = b""
    try:
        while select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return data.decode("utf-8", errors="replace")


def set_aside() -> None:
    """Keep what was typed so far for the chat prompt, before questions that read whole lines (a new
    agent's name): a message typed at once must not become the answer to a question not yet asked."""
    global _early
    if _saved is not None:
        _early += _read_pending(sys.stdin.fileno())


def typed_ahead() -> tuple[list[str], str]:
    """The lines typed (and ended with Enter) before the terminal was held, and the unfinished rest;
    each is given out once."""
    global _early
    text, _early = _early, ""
    *lines, rest = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [line for line in lines if line.strip()], rest


def release_keys() -> None:
    """Give the terminal its settings back."""
    global _saved
    if _saved is None:
        return
    import termios

    try:
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, _saved)
    except termios.error:
        pass
    _saved = None
