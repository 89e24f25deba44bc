"""Keys typed before the prompt is ready stay what they were.

Until prompt-toolkit owns the terminal, the terminal is in cooked mode: it echoes keys at random
places and turns Enter (CR) into LF, which the prompt reads as Ctrl-J ("insert a newline"), so a
message typed while memagent starts is glued to the next one. From the first moment of `memagent
chat` the terminal is put in non-canonical mode without echo and without CR→LF: typed keys wait,
unchanged, until the prompt reads (and shows) them. The saved settings come back at exit.
"""

from __future__ import annotations

import atexit
import sys
from typing import Any

_saved: list[Any] | None = None


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
