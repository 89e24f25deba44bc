"""P5: cold start to the chat prompt — the real `memagent chat` in a pseudo-terminal, timed from
process start until the `you>` prompt is on the screen."""

from __future__ import annotations

import os
import pty
import select
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

PROMPT = b"you>"


def time_to_prompt(home: str, agent: str, timeout: float = 60.0) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMAGENT_")} | {"MEMAGENT_HOME": home, "TERM": "xterm"}
    master, slave = pty.openpty()
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "memagent", "chat", "--agent", agent],
                               stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    seen = b""
    try:
        while PROMPT not in seen:
            if time.perf_counter() - started > timeout:
                raise RuntimeError(f"no prompt within {timeout:.0f}s; screen so far: {seen[-300:]!r}")
            ready, _, _ = select.select([master], [], [], 0.02)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
        elapsed = time.perf_counter() - started
        os.write(master, b"\x04")  # Ctrl-D leaves the chat
        deadline = time.perf_counter() + timeout
        while process.poll() is None and time.perf_counter() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    break
        if process.poll() is None:
            process.kill()
        return elapsed
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()


def run(repeats: int = 5) -> dict[str, Any]:
    home = tempfile.mkdtemp(prefix="memagent-startup-")
    first = time_to_prompt(home, "startup")  # creates the agent
    again = [time_to_prompt(home, "startup") for _ in range(repeats)]
    return {"new_agent_s": first, "existing_agent_median_s": statistics.median(again), "existing_agent_max_s": max(again)}


if __name__ == "__main__":
    print(run())
