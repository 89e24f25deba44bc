"""`memagent serve` overhead: the same turn in-process (AgentPool.run_turn) and over HTTP through the
openai SDK, with an instant fake model so only memagent's own time counts; and the time to the first
streamed byte (the role chunk) and to the reply's first piece."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from memagent.config import ServeSettings, load_settings
from memagent.paths import resolve_paths


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 2)


def run(turns: int = 30, storage_url: str = "") -> dict[str, Any]:
    """`storage_url`: the agents in that PostgreSQL database (each turn then opens its agent under the
    agent's advisory lock, as several workers need)."""
    import httpx
    import openai
    import uvicorn

    from bench.agent_bench import InstantLLM
    from memagent.creation import create_agent
    from memagent.serve.app import create_app
    from memagent.serve.pool import AgentPool
    from memagent.serve.reconcile import IncomingMessage

    home = Path(tempfile.mkdtemp(prefix="memagent-serve-"))
    (home / "config.ini").write_text(  # no capture: time the loop
        "[memory]\nmode = agent\n" + (f"[storage]\nurl = {storage_url}\n" if storage_url else ""), encoding="utf-8")
    paths = resolve_paths(home)
    settings = load_settings(paths, environ={})
    suffix = uuid.uuid4().hex[:6]  # a database may already hold agents of an earlier run
    inproc, http = f"inproc-{suffix}", f"http-{suffix}"
    for name in (inproc, http):
        create_agent(paths, settings, name, persona="sakura")[0].close()
    pool = AgentPool(paths, settings, InstantLLM(), turn_wait=60)  # type: ignore[arg-type]

    in_process = []
    for i in range(turns):
        started = time.perf_counter()
        pool.run_turn(inproc, [IncomingMessage(role="user", content=f"メッセージ {i}")], lambda event: None)
        in_process.append((time.perf_counter() - started) * 1000)

    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(pool, ServeSettings()), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/v1"
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
    over_http = []
    first_byte, first_piece = [], []
    try:
        for i in range(turns):
            started = time.perf_counter()
            client.chat.completions.create(model=http, messages=[{"role": "user", "content": f"メッセージ {i}"}])
            over_http.append((time.perf_counter() - started) * 1000)
        for i in range(turns // 2):
            started = time.perf_counter()
            with httpx.stream("POST", url + "/chat/completions", timeout=60, json={
                    "model": http, "stream": True, "messages": [{"role": "user", "content": f"ストリーム {i}"}]}) as response:
                for line in response.iter_lines():
                    if line.startswith("data: ") and not first_byte[i:]:
                        first_byte.append((time.perf_counter() - started) * 1000)
                    elif '"content": "' in line and '"content": ""' not in line:
                        first_piece.append((time.perf_counter() - started) * 1000)
                        break
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    return {
        "turns": turns,
        "in_process_ms_p50": _percentile(in_process, 0.5),
        "http_ms_p50": _percentile(over_http, 0.5),
        "added_ms_p50": round(statistics.median(over_http) - statistics.median(in_process), 2),
        "added_ms_p95": round(_percentile(over_http, 0.95) - _percentile(in_process, 0.95), 2),
        "stream_first_byte_ms_p50": _percentile(first_byte, 0.5),
        "stream_first_piece_ms_p50": _percentile(first_piece, 0.5),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
