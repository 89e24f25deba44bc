"""The agent on the real embedded model (real llama.cpp, SQLite, Chroma). Slow; part of `make test`."""

from __future__ import annotations

import pytest

from bench.agent_bench import japanese_script, run_conversation

pytestmark = pytest.mark.slow


def test_ten_turn_japanese_conversation(home, default_model_path, capsys):
    result = run_conversation(japanese_script(), context_length=4096, home=home)
    with capsys.disabled():
        print(f"\n10-turn ja: answered {result['answered']}/{result['turns']} (no usable reply "
              f"{result['no_usable_reply_turns']}, junk shown {result['junk_shown']}), parse retries {result['parse_retries']}, "
              f"parroting {result['parroting_rate']:.0%}, eval/new {result['eval_to_new_ratio']:.2f}, "
              f"{result['seconds_per_turn']:.1f} s/turn")
    # Junk is never shown: a turn where every attempt was junk ends with a notice instead (and only
    # such turns fail; the 0.5B model needs that on one to three turns of ten).
    assert result["failed_turns"] == result["no_usable_reply_turns"], result["notices"]
    assert result["junk_shown"] == 0, result["transcript"]
    assert result["answered"] >= 7 and result["turns"] == 10, result["transcript"]
    assert result["stored_user_messages"] == 10
    assert result["parroting_rate"] <= 0.1, result["transcript"]


def test_thirty_turns_in_a_2048_window_summarise_and_lose_nothing(home, default_model_path, capsys):
    lines = [f"{i + 1}回目: " + line for i, line in enumerate(japanese_script() * 3)]
    result = run_conversation(lines, context_length=2048, home=home)
    with capsys.disabled():
        print(f"\n30-turn 2048: answered {result['answered']}/{result['turns']}, summaries {result['summaries']}, "
              f"{result['seconds_per_turn']:.1f} s/turn")
    assert result["failed_turns"] == result["no_usable_reply_turns"], result["notices"]
    assert result["junk_shown"] == 0, result["transcript"]
    assert result["answered"] >= 18  # the script says each line three times: repeats come easily
    assert result["summaries"] >= 1
    assert result["stored_user_messages"] == 30
