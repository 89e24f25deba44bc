"""(a) Cleaning model output: leaked special tokens, reasoning blocks, run-on turns."""

from __future__ import annotations

import re

# --- (a) cleaning -------------------------------------------------------------------------------

_THINK_BLOCK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_ROLE_START = re.compile(
    r"<\|im_start\|>[ \t]*(?:assistant|user|system|function|tool)?"
    r"|<\|start_header_id\|>[^<]*<\|end_header_id\|>"
    r"|<start_of_turn>[ \t]*(?:model|user)?"
    r"|<\|START_OF_TURN_TOKEN\|>(?:<\|(?:CHATBOT|USER|SYSTEM)_TOKEN\|>)?"
    r"|<\|(?:user|assistant|system)\|>"
    r"|\[INST\]",
    re.IGNORECASE,
)
_TURN_END = re.compile(
    r"<\|im_end\|>|<\|eot_id\|>|<\|eom_id\|>|<\|END_OF_TURN_TOKEN\|>|<\|endoftext\|>|<\|end_of_text\|>"
    r"|<\|end\|>|</s>|<end_of_turn>|<eos>|\[/INST\]",
    re.IGNORECASE,
)
_RUN_ON = re.compile(
    r"FUNCTION[ _]RETURN|^[ \t]*(?:USER|ASSISTANT|FUNCTION|SYSTEM|Human|User|Assistant)[ \t]*:",
    re.MULTILINE,
)
_LEFTOVER_TOKEN = re.compile(r"<\|[A-Za-z0-9_]{1,40}\|>|</?s>|<eos>|<bos>|<end_of_turn>|<start_of_turn>")


def _clean(text: str, notes: list[str]) -> str:
    """Strip reasoning blocks and leaked chat-format tokens; cut a run-on into the next turn."""
    without_thinking = _THINK_BLOCK.sub("", text)
    if without_thinking != text:
        notes.append("removed a reasoning block")
    text = without_thinking
    text = _cut_run_on(text, notes)
    stripped = _LEFTOVER_TOKEN.sub("", _ROLE_START.sub("", text))
    if stripped != text:
        notes.append("removed leaked special tokens")
    return stripped.strip()


def _cut_run_on(text: str, notes: list[str]) -> str:
    """Cut at the first turn boundary that follows the start of the JSON; boundaries before it
    (a leaked `<|im_start|>assistant` header) are only removed later."""
    content_start = text.find("{")
    if content_start < 0:
        return text
    cut_at: int | None = None
    for pattern in (_TURN_END, _ROLE_START, _RUN_ON):
        match = pattern.search(text, content_start)
        if match and (cut_at is None or match.start() < cut_at):
            cut_at = match.start()
    if cut_at is None:
        return text
    if _TURN_END.sub("", text[cut_at:]).strip():
        notes.append("cut run-on text after the call")
    else:
        notes.append("removed leaked special tokens")
    return text[:cut_at]
