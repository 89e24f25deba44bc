"""A tiny OpenAI-shaped HTTP server on 127.0.0.1 that misbehaves on purpose (500, garbage, slow,
empty), so faults are provoked for real over a socket rather than mocked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Behaviour:
    def __init__(self, mode: str, delay: float = 0.0, models: list[dict[str, Any]] | None = None, key: str | None = None):
        self.mode = mode
        self.delay = delay
        self.models = models if models is not None else [{"id": "fake-model", "object": "model", "owned_by": "fake"}]
        self.key = key
        self.requests: list[dict[str, Any]] = []


GOOD_CALL = json.dumps({"inner_thoughts": "greet", "function": "send_message", "params": {"message": "hello"}})


def _completion(text: str, chat: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop"}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {
        "id": "x", "object": "chat.completion" if chat else "text_completion", "created": 0, "model": "fake-model",
        "choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def make_handler(behaviour: Behaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            if behaviour.key and self.headers.get("Authorization") != f"Bearer {behaviour.key}":
                self._send(401, b'{"error": {"message": "invalid api key"}}')
                return False
            return True

        def do_GET(self) -> None:
            if not self._authorised():
                return
            if self.path.rstrip("/") == "/v1/models":
                self._send(200, json.dumps({"object": "list", "data": behaviour.models}).encode())
            else:
                self._send(404, b'{"error": "not found"}')

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            behaviour.requests.append({"path": self.path, "body": body})
            if not self._authorised():
                return
            chat = "chat" in self.path
            mode = behaviour.mode
            if behaviour.delay:
                time.sleep(behaviour.delay)
            if mode == "500":
                self._send(500, b'{"error": {"message": "model crashed"}}')
            elif mode == "garbage":
                self._send(200, b"<html>this is not json</html>", "text/html")
            elif mode == "bad_json":
                self._send(200, b"{not json at all", "application/json")
            elif mode == "empty":
                self._send(200, json.dumps(_completion("", chat)).encode())
            elif mode == "prose":
                self._send(200, json.dumps(_completion("Sure! I would love to chat.", chat)).encode())
            elif mode == "model404":
                self._send(404, b'{"error": {"message": "model not found"}}')
            elif mode == "no_sse":  # ignores stream=true and answers with plain JSON
                self._send(200, json.dumps(_completion(GOOD_CALL, chat)).encode())
            elif body.get("stream"):
                self._send_sse(GOOD_CALL, chat)
            else:
                self._send(200, json.dumps(_completion(GOOD_CALL, chat)).encode())

        def _send_sse(self, text: str, chat: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
                chunk = _completion(piece, chat)
                if chat:
                    chunk["choices"][0]["delta"] = chunk["choices"][0].pop("message")
                    chunk["object"] = "chat.completion.chunk"
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")

    return Handler


@contextmanager
def fake_openai_server(behaviour: Behaviour) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(behaviour))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
