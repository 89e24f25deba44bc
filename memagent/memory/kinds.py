"""The names stored in the database that code branches on: what kind a recall message is, and the
keys of the agent's state. StrEnum members equal their string values, so rows and JSON keep the
plain strings."""

from __future__ import annotations

from enum import StrEnum


class MessageKind(StrEnum):
    USER = "user_message"  # what the user said
    ASSISTANT_CALL = "assistant_call"  # one function call by the model (send_message included)
    FUNCTION_RESULT = "function_result"  # what a call returned, as the model reads it
    HEARTBEAT = "heartbeat"  # "go on": the chain continues after a function result
    SYSTEM_ALERT = "system_alert"  # a note from the system to the model (memory pressure)
    SUMMARY = "summary"  # a summary made when messages left the window (not in the prompt)


class StateKey(StrEnum):
    GREETED = "greeted"  # the first message was shown
    SUMMARY = "summary"  # the running summary of the messages that left the window
    WARNED = "warned"  # the memory-pressure alert was given since the last summary


# What conversation_search looks through by default: what was said.
CONVERSATION_KINDS: tuple[MessageKind, ...] = (MessageKind.USER, MessageKind.ASSISTANT_CALL)
