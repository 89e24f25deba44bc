"""A tiny OpenAI-shaped HTTP server on 127.0.0.1 that misbehaves on purpose (500, garbage, slow,
empty, dying mid-stream), so faults are provoked for real over a socket rather than mocked.

Run it as its own process (to kill it for real) with `python -m tests.fake_server --port N`; it
prints its base URL on the first line of stdout once it listens."""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Behaviour:
    """`mode` picks the (mis)behaviour; `reply`, when given, makes the send_message text a function of
    the request body (e.g. `echo_reply(...)`), so a test can tell which message a reply answers."""

    def __init__(self, mode: str, delay: float = 0.0, models: list[dict[str, Any]] | None = None, key: str | None = None,
                 reply: Callable[[dict[str, Any]], str] | None = None, facts: str | None = None):
        self.mode = mode
        self.facts = facts  # the answer to a fact-capture request (memory mode assisted), as JSON text
        self.delay = delay
        self.piece_delay = 0.0  # > 0: a streamed reply comes a few characters at a time, as a slow model's
        self.models = models if models is not None else [{"id": "fake-model", "object": "model", "owned_by": "fake"}]
        self.key = key
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self.replies = 0

    def call_text(self, body: dict[str, Any]) -> str:
        if is_summary_request(body):
            return SUMMARY_TEXT
        if self.facts is not None and ("メモ係への指示" in json.dumps(body, ensure_ascii=False)
                                       or "Note-taker instructions" in json.dumps(body)):
            return self.facts
        if self.reply is None:
            # Each reply differs from the ones before: a model saying "hello" to everything repeats
            # itself, and a repeated reply is junk that is never shown.
            self.replies += 1
            return GOOD_CALL if self.replies == 1 else GOOD_CALL.replace('"hello"', f'"hello ({self.replies})"')
        return json.dumps({"inner_thoughts": "answering", "function": "send_message",
                           "params": {"message": self.reply(body)}}, ensure_ascii=False)


SUMMARY_TEXT = "- the user sent a few messages"  # a summary request gets plain text, as a model writes it


def is_summary_request(body: dict[str, Any]) -> bool:
    newest = _newest_user_turn(body)
    return "あとで思い出せるように日本語で要約" in newest or "Summarise the conversation below" in newest


GOOD_CALL = json.dumps({"inner_thoughts": "greet", "function": "send_message", "params": {"message": "hello"}})


def echo_reply(pattern: str, prefix: str = "echo ") -> Callable[[dict[str, Any]], str]:
    """A reply naming the last match of `pattern` in the newest user turn (so a test can tell which
    message a reply answers; recalled memories the agent added are not looked at), or a numbered
    "(none)" — numbered because a model that repeats itself is junk. Asked again about the same
    match (a swipe, a retry), it words the reply differently, as a sampling model would: "echo X
    (take 2)"."""
    unmatched = itertools.count(1)
    answered: Counter[str] = Counter()

    def reply(body: dict[str, Any]) -> str:
        found = newest_match(pattern, body)
        if found is None:
            return prefix + f"(none {next(unmatched)})"
        answered[found] += 1
        return prefix + found + (f" (take {answered[found]})" if answered[found] > 1 else "")

    return reply


def newest_match(pattern: str, body: dict[str, Any]) -> str | None:
    """The last match of `pattern` in the newest user turn of a request, if any."""
    found = re.findall(pattern, _newest_user_turn(body))
    return str(found[-1]) if found else None


CORRECTIVE_NOTE = ("[システム]", "[System]")
# The line of surfaced memories the agent adds to the user's newest turn (recalled.j2).
RECALLED_NOTE = re.compile(r"\n\n[（(](\S+が覚えていること|What .+ remembers):.*\Z", re.S)


def _newest_user_turn(body: dict[str, Any]) -> str:
    """The last user turn that is not a corrective note about a rejected reply."""
    if body.get("messages"):
        turns = [str(m.get("content") or "") for m in body["messages"] if m.get("role") == "user"]
    else:
        turns = [part.split("<|im_end|>")[0] for part in str(body.get("prompt") or "").split("<|im_start|>user\n")[1:]]
    turns = [turn for turn in turns if not turn.lstrip().startswith(CORRECTIVE_NOTE)]
    return RECALLED_NOTE.sub("", turns[-1]) if turns else ""


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
                self._send(200, json.dumps(_completion(behaviour.call_text(body), chat)).encode())
            elif mode == "die_mid_stream":  # a chunked SSE stream that breaks off, as when the server dies
                self._die_mid_stream(behaviour.call_text(body), chat)
            elif body.get("stream"):
                self._send_sse(behaviour.call_text(body), chat)
            else:
                self._send(200, json.dumps(_completion(behaviour.call_text(body), chat)).encode())

        @staticmethod
        def _sse_event(piece: str, chat: bool) -> bytes:
            chunk = _completion(piece, chat)
            if chat:
                chunk["choices"][0]["delta"] = chunk["choices"][0].pop("message")
                chunk["object"] = "chat.completion.chunk"
            return f"data: {json.dumps(chunk)}\n\n".encode()

        def _send_sse(self, text: str, chat: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            pieces = ([text[i:i + 4] for i in range(0, len(text), 4)] if behaviour.piece_delay
                      else [text[: len(text) // 2], text[len(text) // 2 :]])
            try:
                for piece in pieces:
                    self.wfile.write(self._sse_event(piece, chat))
                    self.wfile.flush()
                    time.sleep(behaviour.piece_delay)
                self.wfile.write(b"data: [DONE]\n\n")
            except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: a cancelled turn
                pass

        def _die_mid_stream(self, text: str, chat: bool) -> None:
            # HTTP/1.1 chunked, like llama-server: a close before the final empty chunk is detectable.
            self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (text[:5], text[5:12]):
                event = self._sse_event(piece, chat)
                self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                self.wfile.flush()
                time.sleep(0.05)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

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


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--mode", default="ok")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--key")
    parser.add_argument("--echo", metavar="REGEX", help="reply with the last match of REGEX in the prompt")
    args = parser.parse_args(argv)
    behaviour = Behaviour(args.mode, delay=args.delay, key=args.key, reply=echo_reply(args.echo) if args.echo else None)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(behaviour))
    server.daemon_threads = True
    print(f"http://127.0.0.1:{server.server_address[1]}/v1", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
