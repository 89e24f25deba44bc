"""The real terminal UI, driven in tmux (send-keys / capture-pane) with the real embedded model."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


class Tmux:
    def __init__(self, home: Path) -> None:
        self.name = f"memagent-{uuid.uuid4().hex[:8]}"
        self.home = home

    def start(self, *args: str) -> None:
        env = f"MEMAGENT_HOME={shlex.quote(str(self.home))} TERM=xterm-256color"
        command = f"{env} {shlex.quote(sys.executable)} -m memagent chat {' '.join(map(shlex.quote, args))}; sleep 600"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", "110", "-y", "45", command], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-t", self.name, "-p", "-S", "-200"], capture_output=True,
                              text=True, check=True).stdout

    def send(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def type_line(self, text: str) -> None:
        self.send("-l", text)
        self.send("Enter")

    def wait_for(self, predicate, timeout: float = 240.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"timed out; screen:\n{self.screen()}")

    def prompt_count(self, screen: str) -> int:
        return sum(1 for line in screen.splitlines() if line.startswith("you>"))

    def stop(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def tmux(home, default_model_path):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is required for the terminal UI tests (apt-get install tmux)")
    # Share the assembled model instead of assembling it again into this MEMAGENT_HOME.
    (home / "cache").mkdir()
    os.symlink(default_model_path.parent, home / "cache" / "models")
    session = Tmux(home)
    yield session
    session.stop()


def answers(screen: str) -> int:
    """Replies of the persona, and turns where every attempt was junk (a notice, never junk shown)."""
    return screen.count("さくら:") + screen.count("no usable reply")


def test_chat_in_a_real_terminal(tmux):
    started = time.monotonic()
    tmux.start("--agent", "tui")
    screen = tmux.wait_for(lambda s: "you>" in s, timeout=30)
    assert time.monotonic() - started < 10
    assert "さくら:" in screen  # the persona's first message, in its name

    tmux.type_line("こんにちは！わたしはゆい。")
    screen = tmux.wait_for(lambda s: tmux.prompt_count(s) >= 2 and answers(s) >= 2)

    tmux.type_line("/memory")
    screen = tmux.wait_for(lambda s: "[human]" in s)
    assert "[persona]" in screen and "しおり堂" in screen

    # Ctrl-C while the model is working: the message is kept and the agent stays usable.
    tmux.type_line("好きな本は何？")
    tmux.wait_for(lambda s: "thinking" in s, timeout=30)  # the spinner: the model is at work
    time.sleep(1)
    tmux.send("C-c")
    tmux.wait_for(lambda s: "cancelled" in s, timeout=60)
    prompts_before = tmux.prompt_count(tmux.screen())
    tmux.type_line("また明日ね")
    tmux.wait_for(lambda s: tmux.prompt_count(s) > prompts_before and answers(s) >= 3)

    tmux.type_line("/exit")
    time.sleep(1)
    hits = subprocess.run([sys.executable, "-m", "memagent", "memory", "search", "--agent", "tui", "--recall", "好きな本", "--json"],
                          capture_output=True, text=True, env={**os.environ, "MEMAGENT_HOME": str(tmux.home)})
    assert "好きな本は何？" in hits.stdout, hits.stderr


def test_keys_typed_while_it_starts_are_kept_as_typed(tmux):
    """A user types at once, before the prompt is drawn: each Enter still sends its own line, and a
    slash command typed ahead still runs (the terminal would otherwise turn Enter into a newline)."""
    tmux.start("--agent", "early")
    tmux.type_line("元気？")
    tmux.type_line("/memory")
    screen = tmux.wait_for(lambda s: "[human]" in s)
    assert "memagent · early" in screen and "embedded Qwen2.5-Coder-0.5B" in screen  # the header names the model
    assert "/memory" not in "".join(line for line in screen.splitlines() if line.startswith("you> 元気"))
    tmux.type_line("/exit")
    time.sleep(1)
    hits = subprocess.run([sys.executable, "-m", "memagent", "memory", "search", "--agent", "early", "--recall", "--literal", "元気",
                           "--json"], capture_output=True, text=True, env={**os.environ, "MEMAGENT_HOME": str(tmux.home)})
    import json

    assert [hit["text"] for hit in json.loads(hits.stdout)] == ["元気？"], hits.stdout + hits.stderr
