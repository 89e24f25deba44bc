"""The repeat guard's rules on a character-level tokenizer: where it acts, what it pushes down, what it
leaves free. The real model's side is in test_llm_real.py."""

from __future__ import annotations

import numpy as np

from memagent.llm.base import RepeatGuard
from memagent.llm.repeat_guard import RepeatGuardProcessor, RepeatPenalty, closing_quote_tokens

VOCABULARY = sorted(set('{}":, \\abcdefghijklmnopqrstuvwxyz_どうぞミケはかわいいね元気？。猫の名前'))
IDS = {char: i for i, char in enumerate(VOCABULARY)}
PENALTY = RepeatPenalty(multiplier=1.0, base=2.0, allowed=3)


def tokenize(text: str) -> list[int]:
    return [IDS[char] for char in text]


def detokenize(tokens: list[int]) -> bytes:
    return "".join(VOCABULARY[t] for t in tokens).encode()


def processor(avoid: tuple[str, ...], keep: tuple[str, ...] = ()) -> RepeatGuardProcessor:
    quotes = closing_quote_tokens(len(VOCABULARY), detokenize)
    return RepeatGuardProcessor(RepeatGuard(avoid=avoid, keep=keep), tokenize, detokenize, quotes, PENALTY)


def pushed_after(guard: RepeatGuardProcessor, generated: str) -> dict[str, float]:
    """Feed the prompt, then `generated` one token at a time; the push-downs at the last step."""
    prompt = tokenize("ab")
    guard(np.array(prompt, dtype=np.intc), np.zeros(len(VOCABULARY), dtype=np.single))
    ids = list(prompt)
    scores = np.zeros(len(VOCABULARY), dtype=np.single)
    for token in tokenize(generated):
        ids.append(token)
        scores = guard(np.array(ids, dtype=np.intc), np.zeros(len(VOCABULARY), dtype=np.single))
    return {VOCABULARY[i]: -float(score) for i, score in enumerate(scores) if score < 0}


CALL = '{"inner_thoughts": "どうぞ", "params": {"message": "'


def test_nothing_is_pushed_outside_the_message_string():
    guard = processor(("どうぞ",))
    assert pushed_after(guard, '{"inner_thoughts": "どう') == {}
    assert pushed_after(processor(("どうぞ",)), CALL + 'どうぞ"}') == {}  # the message is closed


def test_starting_the_message_like_an_avoided_reply_is_pushed_down_from_the_first_character():
    assert pushed_after(processor(("どうぞ",)), CALL) == {"ど": 1.0}
    assert pushed_after(processor(("どうぞ",)), CALL + "どう") == {"ぞ": 4.0}


def test_a_whole_copy_cannot_end_there():
    pushed = pushed_after(processor(("どうぞ",)), CALL + "どうぞ")
    assert pushed == {'"': 8.0}


def test_a_run_copied_mid_reply_is_pushed_harder_the_longer_it_gets():
    avoided = ("ミケはかわいいね",)
    assert pushed_after(processor(avoided), CALL + "元気？ミケ") == {}  # two characters are allowed
    assert pushed_after(processor(avoided), CALL + "元気？ミケは") == {"か": 1.0}
    assert pushed_after(processor(avoided), CALL + "元気？ミケはかわ") == {"い": 4.0}


def test_words_found_in_the_texts_to_keep_stay_free():
    """Asked for the cat's name again, the persona must be able to say it again."""
    avoided = ("猫の名前はミケ",)
    assert pushed_after(processor(avoided), CALL + "猫の名前は") == {"ミ": 32.0}
    assert pushed_after(processor(avoided, keep=("うちの猫はミケ",)), CALL + "猫の名前は") == {}


def test_an_escaped_quote_does_not_end_the_message():
    pushed = pushed_after(processor(('a"bcd',)), CALL + 'a\\"b')
    assert pushed == {"c": 8.0}


def test_the_message_does_not_loop_on_its_own_words():
    assert pushed_after(processor(("どうぞ",)), CALL + "ミケはかわいいね。ミケは") == {"か": 1.0}
    assert pushed_after(processor(("どうぞ",)), CALL + "ミケはかわいいね。ミケはかわ") == {"い": 4.0}


def test_a_copy_that_is_the_only_sensible_continuation_is_left_alone():
    """In the middle of a word (お|手伝い) nothing else comes close; pushing the copy there made the
    0.5B write 「お_hand伝い」."""
    quotes = closing_quote_tokens(len(VOCABULARY), detokenize)
    margin = RepeatPenalty(multiplier=1.0, base=2.0, allowed=3, margin=5.0)
    for lead, expected in ((10.0, 10.0), (4.0, 3.0)):
        guard = RepeatGuardProcessor(RepeatGuard(avoid=("どうぞ",)), tokenize, detokenize, quotes, margin)
        prompt = tokenize("ab")
        guard(np.array(prompt, dtype=np.intc), np.zeros(len(VOCABULARY), dtype=np.single))
        scores = np.zeros(len(VOCABULARY), dtype=np.single)
        scores[IDS["ど"]] = lead
        after = guard(np.array(prompt + tokenize(CALL), dtype=np.intc), scores)
        assert after[IDS["ど"]] == expected
