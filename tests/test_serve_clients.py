"""SillyTavern's buttons as the real UI pressed them: the request bodies it sent, recorded by
bench/sillytavern/acceptance.mjs (SillyTavern 1.12.6, headless Chromium), replayed against the real
server. The model behind it answers each user line with the reply the real run got for it."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from memagent.config import ServeSettings
from memagent.paths import Paths

from .conftest import TEST_DATA
from .fake_server import Behaviour, newest_match
from .test_serve import KEY, serving

RECORDING = TEST_DATA / "clients" / "sillytavern.json"
# The buttons that send a new user message; the others (swipe, Regenerate) retry the last turn or
# (Continue, Impersonate) are refused, and Stop undoes its turn.
NEW_TURN_BUTTONS = ("Test Message", "send", "send again", "send after Stop", "new chat, first message",
                    "another new chat, the same first message")
STOP_FREES_WITHIN_SECONDS = 2.0


def _last_user_line(body: dict[str, Any]) -> str:
    return next(m["content"] for m in reversed(body["messages"]) if m["role"] == "user")


class RecordedModel:
    """Answers each user line with the replies the real run got for it, in order."""

    def __init__(self, requests: list[dict[str, Any]]) -> None:
        self.replies: dict[str, list[str]] = defaultdict(list)
        for request in requests:
            if request["status"] == 200 and isinstance(request["reply"], str) and request["reply"]:
                self.replies[_last_user_line(request["body"])].append(request["reply"])
        self.lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> str:
        newest = newest_match(r"(?s)\S.*", body) or ""
        line = max((known for known in self.replies if known in newest), key=len, default="")
        with self.lock:
            queue = self.replies.get(line) or ["(no recorded reply)"]
            return queue.pop(0) if len(queue) > 1 else queue[0]


def test_every_sillytavern_button_replayed_against_the_server(paths: Paths, home: Path) -> None:
    recording = json.loads(RECORDING.read_text(encoding="utf-8"))
    requests = recording["requests"]
    behaviour = Behaviour("ok", reply=RecordedModel(requests))
    headers = {"Authorization": f"Bearer {KEY}"}
    with serving(paths, home, ServeSettings(api_keys=SecretStr(KEY)), behaviour) as served:
        for request in requests:
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
        said = [_last_user_line(r["body"]) for r in requests if r["step"] in NEW_TURN_BUTTONS]
        stored = served.stored("sam")
        assert [text for kind, text in stored if kind == "user_message"] == said
        # The retried turn keeps the reply of the last retry (the one the UI shows), once.
        retried = [r for r in requests if r["step"] in ("send again", "swipe", "Regenerate")]
        line = _last_user_line(retried[0]["body"])
        after = [text for (kind, text), (_, said_before) in zip(stored[1:], stored) if kind == "assistant_call"
                 and said_before == line]
        assert after == [retried[-1]["reply"]]
