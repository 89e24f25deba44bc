"""Agent benchmarks on the real embedded model: a scripted Japanese conversation (validity,
parroting, KV-cache reuse) and the loop's own overhead with a fake instant LLM."""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

from memagent.config import load_settings
from memagent.events import AgentEvent
from memagent.junk import judge_shown
from memagent.paths import resolve_paths
from memagent.runtime import AgentSession

SCRIPT = Path(__file__).resolve().parent.parent / "tests" / "data" / "ja_script.txt"


def japanese_script() -> list[str]:
    return [line for line in SCRIPT.read_text(encoding="utf-8").splitlines() if line.strip()]


def final_parroting(messages: list[Any]) -> int:
    """Turns whose stored reply copies the user's message or repeats its own inner thoughts."""
    from memagent.junk import Reply, ReplyContext, judge

    users = {m.turn_id: m.content for m in messages if m.kind == "user_message"}
    bad_turns = set()
    for m in messages:
        if m.kind == "assistant_call" and m.function_name == "send_message" and m.turn_id in users:
            reply = Reply(str((m.function_args or {}).get("message", "")), m.inner_thoughts or "")
            if judge(reply, ReplyContext(last_user=users[m.turn_id])) in ("parrots_user", "thoughts_equal_message"):
                bad_turns.add(m.turn_id)
    return len(bad_turns)


def run_conversation(lines: list[str], *, context_length: int = 4096, home: Path | None = None,
                     agent: str = "bench", model_path: str = "", repeat_guard: str | None = None) -> dict[str, Any]:
    """Chat through `lines` with the embedded model; count what went wrong and how the cache did."""
    home = home or Path(tempfile.mkdtemp(prefix="memagent-bench-"))
    paths = resolve_paths(home)
    overrides: dict[str, dict[str, Any]] = {"llm": {"context_length": context_length, "model_path": model_path or None}}
    if repeat_guard is not None:
        overrides["agent"] = {"repeat_guard": repeat_guard}
    settings = load_settings(paths, environ={}, overrides=overrides)
    replies: list[str] = []
    notices: list[AgentEvent] = []
    turns: list[dict[str, Any]] = []

    def emit(event: AgentEvent) -> None:
        if event.type == "assistant_message":
            replies.append(event.text)
        elif event.type in ("notice", "error"):
            notices.append(event)

    with AgentSession(paths, settings, agent, progress=False) as session:
        runner = session.agent()
        runner.greet(emit)
        started = time.perf_counter()
        for line in lines:
            before = len(replies)
            turn_started = time.perf_counter()
            stats = runner.send(line, emit)
            turns.append({
                "user": line, "replies": replies[before:], "steps": stats.steps, "failed": stats.failed,
                "parse_retries": stats.parse_retries, "degenerate": stats.degenerate_kinds,
                "prompt_tokens": stats.prompt_tokens, "evaluated_tokens": stats.evaluated_tokens,
                "llm_calls": stats.llm_calls, "seconds": time.perf_counter() - turn_started, "calls": stats.calls,
            })
        elapsed = time.perf_counter() - started
        stored = session.store.recall.all()
        stored_users = [m for m in stored if m.kind == "user_message"]
        parroting = final_parroting(stored)
        summaries = [m for m in session.store.recall.all() if m.kind == "summary"]
    answered = sum(1 for t in turns if t["replies"])
    shown: list[str] = []
    junk_shown = 0
    for number, turn in enumerate(turns):
        for reply in turn["replies"]:
            junk_shown += judge_shown(reply, shown, lines[: number + 1]) is not None
            shown.append(reply)
    detected = sum(1 for t in turns if {"parrots_user", "thoughts_equal_message"} & set(t["degenerate"]))
    # Tokens evaluated per call vs how much the prompt grew since the previous call (the new
    # tokens): about 1 or less when the KV cache is reused, the whole prompt / growth when not.
    calls = [c for t in turns for c in t["calls"]]
    growth = sum(max(1, b[0] - a[0]) for a, b in zip(calls, calls[1:]))
    evaluated = sum(b[1] or 0 for b in calls[1:])
    per_turn_eval = [t["evaluated_tokens"] for t in turns[1:]]
    return {
        "turns": len(turns),
        "answered": answered,
        "failed_turns": sum(1 for t in turns if t["failed"]),
        # Turns where every attempt was junk: a notice instead of a reply (never junk shown).
        "no_usable_reply_turns": sum(1 for n in notices if n.data.get("reason") == "no_usable_reply"),
        "junk_shown": junk_shown,
        "parse_retries": sum(t["parse_retries"] for t in turns),
        "parroting_turns": parroting,
        "parroting_detected_and_regenerated": detected,
        "parroting_rate": parroting / len(turns) if turns else 0.0,
        "degenerate_detected": sum(len(t["degenerate"]) for t in turns),
        "stored_user_messages": len(stored_users),
        "summaries": len(summaries),
        "seconds": elapsed,
        "seconds_per_turn": elapsed / len(turns) if turns else 0.0,
        "evaluated_per_turn": sum(per_turn_eval) / len(per_turn_eval) if per_turn_eval else 0.0,
        "eval_to_new_ratio": evaluated / growth if growth else 0.0,
        "mean_prompt_tokens": sum(c[0] for c in calls) / len(calls) if calls else 0.0,
        "transcript": [(t["user"], t["replies"]) for t in turns],
        "notices": [n.text for n in notices],
    }


TOPICS = ["いい天気だね。散歩に行きたくなる。", "その本、わたしも読んだことあるよ！", "猫カフェって癒されるよね。",
          "明日は早起きしなきゃ。", "いちご大福、今度一緒に食べよう。", "仕事おつかれさま、ゆっくり休んでね。"]


class InstantLLM:
    """A fake LLM that answers at once with a fresh send_message call, to time the loop alone."""

    name = "instant"

    def __init__(self, context_length: int = 4096) -> None:
        self.context_length = context_length
        self.exact_tokens = False
        self.turn = 0

    def generate(self, request: Any) -> Any:
        import json

        from memagent.llm.base import Completion

        self.turn += 1
        topic = TOPICS[self.turn % len(TOPICS)]
        text = json.dumps({"inner_thoughts": f"note {self.turn}", "function": "send_message",
                           "params": {"message": f"{topic} ({self.turn})"}}, ensure_ascii=False)
        return Completion(text=text, prompt_tokens=0, completion_tokens=20)

    def count_tokens(self, text: str) -> int:
        from memagent.llm.base import estimate_tokens

        return estimate_tokens(text)

    def describe(self) -> str:
        return "instant"

    def close(self) -> None:
        return None


def loop_overhead(n_messages: int = 100_000, turns: int = 30) -> dict[str, Any]:
    """P1: the agent's own time per turn (prompt building, token budget, parsing, storing, stores'
    I/O) with an instant fake LLM, on an agent that already holds `n_messages` messages."""
    import statistics
    from datetime import timedelta

    from bench.memory_bench import index_synthetically, synthetic_sentence
    from memagent.agent import Agent
    from memagent.memory.models import utc_now
    from memagent.memory.recall import NewMessage
    from memagent.memory.store import AgentStore
    from memagent.personas import load_human, load_persona
    from memagent.prompts import PromptLibrary
    from memagent.wrappers import load_wrapper

    home = Path(tempfile.mkdtemp(prefix="memagent-p1-"))
    paths = resolve_paths(home)
    settings = load_settings(paths, environ={})
    persona, human = load_persona(paths, "sakura"), load_human(paths, "default")
    with AgentStore.open(paths, settings, "p1", create=True, persona=persona.text, human=human.text,
                         persona_name="sakura", human_name="default", language="ja") as store:
        start = utc_now() - timedelta(days=365)
        # 200 messages embedded for real, the rest indexed with copies of their vectors: an agent
        # whose history is embedded, not one catching up on 100k messages while it chats.
        store.recall.add_many(NewMessage("user", synthetic_sentence(random.Random(i)), turn_id=0, time=start,
                                         in_context=False) for i in range(200))
        assert store.recall.vectors is not None
        store.recall.vectors.wait()
        vectors, store.recall.vectors = store.recall.vectors, None
        first = store.recall.count() + 1
        store.recall.add_many(
            NewMessage(role="user" if i % 2 == 0 else "assistant", content=f"過去の会話 {i}: 今日は天気がいいね。",
                       kind="user_message" if i % 2 == 0 else "assistant_call", turn_id=i // 2 + 1,
                       time=start + timedelta(seconds=i * 30), in_context=False,
                       function_name=None if i % 2 == 0 else "send_message",
                       function_args=None if i % 2 == 0 else {"message": f"返事 {i}"})
            for i in range(n_messages)
        )
        store.recall.vectors = vectors
        index_synthetically(store, list(range(first, first + n_messages)))
        agent = Agent(store, InstantLLM(), load_wrapper(paths, "chatml"), PromptLibrary(paths, "ja"), settings, persona, human)
        times = []
        for i in range(turns):
            started = time.perf_counter()
            agent.send(f"新しいメッセージ {i}", lambda event: None)
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"stored_messages": n_messages, "turns": turns, "ms_per_turn_p50": round(statistics.median(times), 1),
            "ms_per_turn_p95": round(times[int(0.95 * (len(times) - 1))], 1)}
