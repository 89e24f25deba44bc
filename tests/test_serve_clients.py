"""Real chat UIs' buttons as the UI pressed them: the request bodies each sent, recorded by
bench/sillytavern/acceptance.mjs (SillyTavern 1.12.6) and bench/open_webui/acceptance.mjs (Open
WebUI 0.12.4), both in headless Chromium, replayed against the real server. The model behind it
answers each request with the reply the real run got for it."""

from __future__ import annotations

import gc
import json
import logging
import time
from dataclasses import dataclass
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

CLIENTS_DATA = TEST_DATA / "clients"
STOP_FREES_WITHIN_SECONDS = 2.0


@dataclass(frozen=True)
class Recording:
    """A real UI's recorded run (`file`), and what its buttons must do to memory: `new_turns` send a
    user line that is stored; `retries` retry the turn of the first of them; the other steps are
    refused (Continue, Impersonate), undone (Stop) or answered and not kept (a connection test, a
    background task)."""

    file: str
    new_turns: tuple[str, ...]
    retries: tuple[str, ...]


RECORDINGS = {
    "SillyTavern": Recording(
        "sillytavern.json",
        new_turns=("send", "send again", "send after Stop", "new chat, first message",
                   "another new chat, the same first message"),
        retries=("send again", "swipe", "Regenerate")),
    # Its Regenerate menu's "Add Details" sends the reply shown and then "Add Details" as the user's
    # line: a new turn. An edited message is sent as the last one: a new turn, nothing deleted.
    "Open WebUI": Recording(
        "open_webui.json",
        new_turns=("send", "send again", "Regenerate → Add Details", "edit and send", "send after Stop",
                   "new chat, first message", "another new chat, the same first message"),
        retries=("send again", "Regenerate → Try Again")),
}


def _last_user_line(body: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


def _is_task(request: dict[str, Any]) -> bool:
    """A UI's background task (a title, tags, follow-ups), as the UI's own template words it."""
    return _last_user_line(request["body"]).startswith("### Task:")


class RecordedModel:
    """Answers as the real model did on the step being replayed: its reply, or an empty one (junk,
    every attempt) where the real turn ended without a usable reply."""

    def __init__(self) -> None:
        self.step: dict[str, Any] = {}

    def __call__(self, body: dict[str, Any]) -> str:
        reply = self.step.get("reply")
        return reply if isinstance(reply, str) and not reply.startswith("[error:") else ""


@pytest.mark.parametrize("client", list(RECORDINGS))
def test_every_button_of_a_real_ui_replayed_against_the_server(client: str, paths: Paths, home: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    expected = RECORDINGS[client]
    requests = json.loads((CLIENTS_DATA / expected.file).read_text(encoding="utf-8"))["requests"]
    model = RecordedModel()
    behaviour = Behaviour("ok", reply=model)
    headers = {"Authorization": f"Bearer {KEY}"}
    with serving(paths, home, ServeSettings(api_keys=SecretStr(KEY)), behaviour) as served:
        for request in requests:
            model.step = request
            body = {**request["body"], "model": "sam"}
            if request["step"] == "Stop" and not _is_task(request):
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
            if request["step"] == "send after Stop" and not _is_task(request):
                assert time.monotonic() - left < STOP_FREES_WITHIN_SECONDS  # the stopped turn did not run on
        gc.collect()  # a task whose failure nobody took is reported when it is collected
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a traceback was logged"
        turns = [r for r in requests if not _is_task(r)]
        said = [_last_user_line(r["body"]) for r in turns if r["step"] in expected.new_turns]
        stored = served.stored("sam")
        assert [text for kind, text in stored if kind == "user_message"] == said
        # The retried turn keeps the reply of the last retry (the one the UI shows), once.
        retried = [r for r in turns if r["step"] in expected.retries]
        line = _last_user_line(retried[0]["body"])
        after = [text for (kind, text), (_, said_before) in zip(stored[1:], stored) if kind == "assistant_call"
                 and said_before == line]
        assert after == [retried[-1]["reply"]]
