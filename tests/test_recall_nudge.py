"""The recall nudge's rules on a small tokenizer: where it acts, what it pushes up, when it stops. The
real model's side is in test_llm_real.py."""

from __future__ import annotations

import numpy as np

from memagent.llm.base import RecallNudge
from memagent.llm.recall_nudge import NudgeStrength, RecallNudgeProcessor

# Single characters, plus a few whole words so that a value's first token can be longer than a character.
WORDS = ["Sam", " Sam", "Sa", " Sa"]
VOCABULARY = WORDS + sorted(set('{}":, \\abcdefghijklmnopqrstuvwxyzMS_ミケカレーうどんのはだよと猫名前？。'))
IDS = {text: i for i, text in enumerate(VOCABULARY)}
STRENGTH = NudgeStrength(start=1.0, follow=10.0)
CALL = '{"inner_thoughts": "ミケ", "params": {"message": "'


def tokenize(text: str) -> list[int]:
    """Greedy longest match, like a real tokenizer that knows 'Sam' as one token."""
    tokens = []
    while text:
        piece = max((word for word in VOCABULARY if text.startswith(word)), key=len)
        tokens.append(IDS[piece])
        text = text[len(piece):]
    return tokens


def detokenize(tokens: list[int]) -> bytes:
    return "".join(VOCABULARY[t] for t in tokens).encode()


def processor(*values: str) -> RecallNudgeProcessor:
    return RecallNudgeProcessor(RecallNudge(values=values), tokenize, detokenize, STRENGTH)


def pushed_after(nudge: RecallNudgeProcessor, pieces: list[str]) -> dict[str, float]:
    """Feed the prompt, then each piece as one token; the push-ups at the last step."""
    prompt = tokenize("ab")
    scores = nudge(np.array(prompt, dtype=np.intc), np.zeros(len(VOCABULARY), dtype=np.single))
    ids = list(prompt)
    for piece in pieces:
        ids += tokenize(piece)
        scores = nudge(np.array(ids, dtype=np.intc), np.zeros(len(VOCABULARY), dtype=np.single))
    return {VOCABULARY[i]: float(score) for i, score in enumerate(scores) if score > 0}


def test_nothing_is_pushed_outside_the_message_string():
    assert pushed_after(processor("ミケ"), ['{"inner_thoughts": "']) == {}
    assert pushed_after(processor("ミケ"), [CALL, "は", '"}']) == {}  # the message is closed


def test_a_value_not_said_yet_is_offered_to_start_and_followed_hard_once_begun():
    assert pushed_after(processor("ミケ"), [CALL]) == {"ミ": 1.0}
    assert pushed_after(processor("ミケ"), [CALL, "ミ"]) == {"ケ": 10.0}
    assert pushed_after(processor("カレーうどん"), [CALL, "カ", "レ", "ー"]) == {"う": 10.0}


def test_a_value_once_said_is_left_alone():
    assert pushed_after(processor("ミケ"), [CALL, "ミ", "ケ"]) == {}
    assert pushed_after(processor("ミケ"), [CALL, "ミ", "ケ", "だ", "よ"]) == {}


def test_every_asked_value_is_offered_until_said():
    assert pushed_after(processor("ミケ", "カレーうどん"), [CALL]) == {"ミ": 1.0, "カ": 1.0}
    assert pushed_after(processor("ミケ", "カレーうどん"), [CALL, "ミ", "ケ", "と"]) == {"カ": 1.0}


def test_a_latin_value_starts_as_a_word():
    # After a letter only with its space ('isSam' is not a word); after a space without one.
    assert pushed_after(processor("Sam"), [CALL, "i", "s"]) == {" Sam": 1.0}
    assert pushed_after(processor("Sam"), [CALL, "i", "s", " "]) == {"Sam": 1.0}
    # After a Japanese character either way.
    assert pushed_after(processor("Sam"), [CALL, "は"]) == {"Sam": 1.0, " Sam": 1.0}


def test_a_value_is_followed_only_after_the_model_took_the_token_that_starts_it():
    # 'Sa' (of 'Saturday') is not the offered 'Sam' token: the value is only offered afresh, as a new word.
    assert pushed_after(processor("Sammy"), [CALL, "i", "s", " Sa"]) == {" Sam": 1.0}
    assert pushed_after(processor("Sammy"), [CALL, "i", "s", " Sam"]) == {"m": 10.0}


def test_a_value_with_a_quote_is_pushed_as_it_is_written_in_json():
    nudge = processor('ミ"ケ')
    assert pushed_after(nudge, [CALL, "ミ"]) == {"\\": 10.0}


def test_insisting_pushes_the_start_of_a_value_hard_until_it_is_said():
    strength = NudgeStrength(start=1.0, follow=10.0, insist=30.0)
    insisting = RecallNudgeProcessor(RecallNudge(values=("ミケ",), insist=True), tokenize, detokenize, strength)
    assert pushed_after(insisting, [CALL]) == {"ミ": 30.0}
    assert pushed_after(insisting, [CALL, "ミ"]) == {"ケ": 10.0}
    insisting = RecallNudgeProcessor(RecallNudge(values=("ミケ",), insist=True), tokenize, detokenize, strength)
    assert pushed_after(insisting, [CALL, "ミ", "ケ", "だ"]) == {}


def scores_after(nudge: RecallNudgeProcessor, pieces: list[str]) -> dict[str, float]:
    ids = tokenize("ab")
    scores = np.zeros(len(VOCABULARY), dtype=np.single)
    for piece in ["", *pieces]:
        ids += tokenize(piece)
        scores = nudge(np.array(ids, dtype=np.intc), np.zeros(len(VOCABULARY), dtype=np.single))
    return {VOCABULARY[i]: float(score) for i, score in enumerate(scores) if score != 0}


def test_an_insisted_value_is_not_left_bare():
    insisted = RecallNudgeProcessor(RecallNudge(values=("ミケ",), insist=True), tokenize, detokenize, STRENGTH)
    # Right after the value the message may not close yet: 「ミケ」 alone is no reply.
    assert scores_after(insisted, [CALL, "ミ", "ケ"]) == {'"': -STRENGTH.go_on}
    # Once the sentence goes on, closing is the model's choice again.
    assert scores_after(insisted, [CALL, "ミ", "ケ", "だ", "よ", "と", "猫", "の", "名", "前"]) == {}
    # Without insisting (the first try) the model closes when it likes.
    assert scores_after(processor("ミケ"), [CALL, "ミ", "ケ"]) == {}
