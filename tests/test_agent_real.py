"""The agent on the real embedded model (real llama.cpp, SQLite, Chroma). Slow; part of `make test`."""

from __future__ import annotations

import pytest

from bench.agent_bench import japanese_script, run_conversation

pytestmark = pytest.mark.slow


def test_twelve_japanese_turns_in_a_2048_window_summarise_and_lose_nothing(home, default_model_path, capsys):
    """A real conversation that outgrows a small window: older turns are summarised (three or four
    times by turn 12), every turn is stored, and no junk is ever shown. The 30-turn run is in `make bench`."""
    script = japanese_script()
    lines = [f"{i + 1}回目: " + script[i % len(script)] for i in range(12)]
    result = run_conversation(lines, context_length=2048, home=home)
    with capsys.disabled():
        print(f"\n12-turn ja, 2048 window: answered {result['answered']}/{result['turns']} (no usable reply "
              f"{result['no_usable_reply_turns']}, junk shown {result['junk_shown']}), summaries {result['summaries']}, "
              f"parse retries {result['parse_retries']}, parroting {result['parroting_rate']:.0%}, "
              f"{result['seconds_per_turn']:.1f} s/turn")
    # Junk is never shown: a turn where every attempt was junk ends with a notice instead (and only
    # such turns fail; the 0.5B model needs that on one to three turns of ten).
    assert result["failed_turns"] == result["no_usable_reply_turns"], result["notices"]
    assert result["junk_shown"] == 0, result["transcript"]
    assert result["answered"] >= 8 and result["turns"] == 12, result["transcript"]
    assert result["parroting_rate"] <= 0.1, result["transcript"]
    assert result["summaries"] >= 1, result["notices"]
    assert result["stored_user_messages"] == 12
