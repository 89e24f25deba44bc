"""SillyTavern's buttons as the real UI pressed them: the request bodies it sent, recorded by
bench/sillytavern/acceptance.mjs (SillyTavern 1.12.6, headless Chromium), replayed against the real
server. The model behind it answers each user line with the reply the real run got for it."""

from __future__ import annotations

import gc
import json
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from memagent.config import ServeSettings
from memagent.paths import Paths

from .conftest import TEST_DATA
from .fake_server import Behaviour
from .test_serve import KEY, serving

RECORDING = TEST_DATA / "clients" / "sillytavern.json"
# The buttons that send a new user message; the others (swipe, Regenerate) retry the last turn,
# (Continue, Impersonate) are refused, Stop undoes its turn and Test Message is answered, not kept.
NEW_TURN_BUTTONS = ("send", "send again", "send after Stop", "new chat, first message",
                    "another new chat, the same first message")
STOP_FREES_WITHIN_SECONDS = 2.0


def _last_user_line(body: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


class RecordedModel:
    """Answers as the real model did on the step being replayed: its reply, or an empty one (junk,
    every attempt) where the real turn ended without a usable reply."""

    def __init__(self) -> None:
        self.step: dict[str, Any] = {}

    def __call__(self, body: dict[str, Any]) -> str:
        reply = self.step.get("reply")
        return reply if isinstance(reply, str) and not reply.startswith("[error:") else ""


def test_every_sillytavern_button_replayed_against_the_server(paths: Paths, home: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    recording = json.loads(RECORDING.read_text(encoding="utf-8"))
    requests = recording["requests"]
    model = RecordedModel()
    behaviour = Behaviour("ok", reply=model)
    headers = {"Authorization": f"Bearer {KEY}"}
    with serving(paths, home, ServeSettings(api_keys=SecretStr(KEY)), behaviour) as served:
        for request in requests:
            model.step = request
            body = {**request["body"], "model": "sam"}
            if request["step"] == "Stop":
                behaviour.piece_delay = 0.5  # a slow model: Stop comes while it is still writing
                with httpx.stream("POST", served.url + "/chat/completions", json=body, headers=headers,
                                  timeout=60) as answer:
                    assert answer.status_code == 200
                    next(answer.iter_bytes())  # the stream has opened
                    time.sleep(1.0)  # the UI's Stop drops it here
                left = time.monotonic()
                behaviour.piece_delay = 0.0
                continue
            answer = httpx.post(served.url + "/chat/completions", json=body, headers=headers, timeout=60)
            assert answer.status_code == request["status"], (request["step"], answer.text)
            if request["status"] == 400:
                assert "use Regenerate" in answer.text
            if request["step"] == "send after Stop":
                assert time.monotonic() - left < STOP_FREES_WITHIN_SECONDS  # the stopped turn did not run on
        gc.collect()  # a task whose failure nobody took is reported when it is collected
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a traceback was logged"
        said = [_last_user_line(r["body"]) for r in requests if r["step"] in NEW_TURN_BUTTONS]
        stored = served.stored("sam")
        assert [text for kind, text in stored if kind == "user_message"] == said
        # The retried turn keeps the reply of the last retry (the one the UI shows), once.
        retried = [r for r in requests if r["step"] in ("send again", "swipe", "Regenerate")]
        line = _last_user_line(retried[0]["body"])
        after = [text for (kind, text), (_, said_before) in zip(stored[1:], stored) if kind == "assistant_call"
                 and said_before == line]
        assert after == [retried[-1]["reply"]]
