"""Several `memagent serve` workers on one PostgreSQL database under load, one of them killed -9 in
the middle: turns per second, latency added by memagent (the fake model answers at once), and
whether any message acknowledged to a client was lost or stored twice.

    python -m bench.serve_load [--workers 2] [--agents 20] [--clients 50] [--seconds 120] [--url …]

Each client keeps its own conversation with one agent (clients share agents), sends every message to
the next worker in turn with an Idempotency-Key, and on a refused connection (the killed worker) or a
full queue asks another worker the same request again, as a load balancer's retry would."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).with_name("serve_load_results.json")
WAITING_TURNS = 16  # per worker; more clients are told 503 + Retry-After and come back
GIVE_UP_AFTER_S = 120  # past the end, a request still not answered counts as failed


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_worker(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "memagent", "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/models", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("memagent serve did not start")


def run(url: str, workers: int, agents: int, clients: int, seconds: float) -> dict[str, Any]:
    from memagent.config import load_settings
    from memagent.creation import create_agent
    from memagent.memory import AgentStore
    from memagent.memory.kinds import MessageKind
    from memagent.paths import resolve_paths

    home = Path(tempfile.mkdtemp(prefix="memagent-load-"))
    model = subprocess.Popen([sys.executable, "-m", "tests.fake_server", "--echo", r"MSG-[\w-]+"],
                             stdout=subprocess.PIPE, text=True)
    assert model.stdout is not None
    model_url = model.stdout.readline().strip()
    (home / "config.ini").write_text(f"[llm]\nbase_url = {model_url}\n[memory]\nmode = agent\n[storage]\nurl = {url}\n"
                                     f"[serve]\nmax_waiting_turns = {WAITING_TURNS}\n", encoding="utf-8")
    env = {**os.environ, "MEMAGENT_HOME": str(home)}
    paths = resolve_paths(home)
    settings = load_settings(paths, environ={})
    names = [f"agent{n:02d}" for n in range(agents)]
    for name in names:
        create_agent(paths, settings, name, persona="sam")[0].close()
    urls: list[str] = []
    processes: list[subprocess.Popen[bytes]] = []
    for _ in range(workers):
        process, worker_url = _start_worker(env)
        processes.append(process)
        urls.append(worker_url)

    acknowledged: list[tuple[str, str, float]] = []  # (agent, message, seconds)
    retried = Counter[str]()
    failed: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        agent, history, n = names[number % agents], [], 0
        rng = random.Random(number)
        http = httpx.Client(timeout=120)
        while time.monotonic() < deadline:
            text = f"MSG-c{number}-{n}"
            history.append({"role": "user", "content": text})
            started, target = time.perf_counter(), n + number
            while True:
                if time.monotonic() > deadline + GIVE_UP_AFTER_S:
                    with lock:
                        failed.append(text)
                    return
                try:
                    answer = http.post(urls[target % len(urls)] + "/chat/completions", headers={"Idempotency-Key": text},
                                       json={"model": agent, "messages": history[-20:]})
                    if answer.status_code == 200:
                        break
                    retried[f"http {answer.status_code}"] += 1
                    time.sleep(float(answer.headers.get("Retry-After", "0.2")) * rng.random())
                except httpx.HTTPError:
                    retried["connection"] += 1
                target += 1  # as a load balancer would: the next worker
            with lock:
                acknowledged.append((agent, text, time.perf_counter() - started))
            history.append({"role": "assistant", "content": answer.json()["choices"][0]["message"]["content"]})
            n += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(seconds / 2)
    os.kill(processes[0].pid, signal.SIGKILL)  # a worker dies mid-run, turns in flight
    killed_at = time.monotonic() - began
    processes[0].wait()
    time.sleep(5)
    processes[0], urls[0] = _start_worker(env)  # and is started again, as a supervisor would
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(timeout=60)
    model.kill()

    stored: Counter[str] = Counter()
    replies: Counter[str] = Counter()
    for name in names:
        with AgentStore.open(paths, settings, name) as store:
            for message in store.recall.all():
                if message.kind == MessageKind.USER:
                    stored[message.content] += 1
                elif message.reply is not None:
                    replies[message.reply] += 1
    sent = {text for _, text, _ in acknowledged}
    latencies = sorted(seconds for _, _, seconds in acknowledged)
    return {
        "workers": workers, "agents": agents, "clients": clients, "seconds": round(elapsed, 1),
        "killed_worker_at_s": round(killed_at, 1),
        "turns": len(acknowledged), "turns_per_s": round(len(acknowledged) / elapsed, 1),
        "latency_ms_p50": round(1000 * latencies[len(latencies) // 2], 1),
        "latency_ms_p95": round(1000 * latencies[int(0.95 * len(latencies))], 1),
        "retried": dict(retried),
        "failed": len(failed),
        "lost": len(sent - set(stored)),
        "duplicated": sum(1 for count in stored.values() if count > 1),
        "stored_not_acknowledged": len(set(stored) - sent),
        "replies_twice": sum(1 for count in replies.values() if count > 1),
    }


def measure(workers: int = 2, agents: int = 20, clients: int = 50, seconds: float = 120, url: str | None = None
            ) -> dict[str, Any]:
    if url:
        return run(url, workers, agents, clients, seconds)
    from bench.storage_bench import throwaway_postgres

    with throwaway_postgres() as server_url:
        return run(server_url, workers, agents, clients, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--url", help="a PostgreSQL database (default: a throwaway server)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = measure(args.workers, args.agents, args.clients, args.seconds, args.url)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
