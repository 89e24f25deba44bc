import json

from hypothesis import given
from hypothesis import strategies as st

from memagent.streaming import MessageStreamer


def stream(text: str, step: int) -> str:
    shown: list[str] = []
    streamer = MessageStreamer(shown.append)
    for i in range(0, len(text), step):
        streamer.feed(text[i : i + step])
    return "".join(shown)


def call_text(message: str) -> str:
    return json.dumps({"inner_thoughts": "hmm \"quoted\"", "function": "send_message", "params": {"message": message}},
                      ensure_ascii=False)


def test_message_is_streamed_piece_by_piece():
    assert stream(call_text("こんにちは、元気？"), 3) == "こんにちは、元気？"


def test_escapes_split_across_deltas_are_decoded():
    text = json.dumps({"inner_thoughts": "", "function": "send_message", "params": {"message": 'a "b"\n\u00e9 \\ end'}})
    for step in range(1, 8):
        assert stream(text, step) == 'a "b"\n\u00e9 \\ end'


def test_other_functions_show_nothing():
    text = json.dumps({"inner_thoughts": "x", "function": "core_memory_append", "params": {"label": "human", "content": "message"}})
    assert stream(text, 2) == ""


@given(st.text(), st.integers(min_value=1, max_value=9))
def test_any_message_round_trips(message, step):
    assert stream(call_text(message), step) == message
