"""What a request must show before it reaches an agent. With no API key (the default, on a loopback
address) the server answers only requests addressed to this machine by a known name — the Host
header, and the Origin a browser adds — so a web page the user visits cannot drive it, even through
DNS rebinding. A chat request must be JSON: a page can send text/plain or a form to any address
without asking first, JSON only after a CORS preflight this server never grants. Bodies are capped."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ApiError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def _hostname(authority: str) -> str:
    """`example.com:8283` → `example.com`; `[::1]:8283` → `::1`."""
    return (urlsplit(f"//{authority}").hostname or "").lower()


@dataclass(frozen=True)
class Door:
    api_keys: tuple[bytes, ...]
    allowed_hosts: frozenset[str]
    max_body_bytes: int

    @classmethod
    def of(cls, api_keys: Iterable[str], allowed_hosts: Iterable[str], max_body_bytes: int) -> Door:
        return cls(tuple(key.encode() for key in api_keys), LOOPBACK_NAMES | {h.lower() for h in allowed_hosts},
                   max_body_bytes)

    def check(self, method: str, headers: Mapping[str, str]) -> None:
        """Raise the refusal for a request with these headers, if any."""
        if self.api_keys:
            header = headers.get("authorization", "")
            given = header.removeprefix("Bearer ").strip().encode("utf-8", "replace") if header.startswith("Bearer ") else b""
            if not any(hmac.compare_digest(given, key) for key in self.api_keys):
                raise ApiError(401, "missing or wrong API key; send `Authorization: Bearer KEY` with a key from "
                               "[serve] api_keys", "invalid_request_error", "invalid_api_key")
        else:
            self._check_address(headers)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            raise self.too_large()
        if method == "POST":
            kind = headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json" and not kind.endswith("+json"):
                raise ApiError(415, f"send the request body as JSON (Content-Type: application/json), not "
                               f"{kind or 'no Content-Type'}", "invalid_request_error", "unsupported_media_type")

    def _check_address(self, headers: Mapping[str, str]) -> None:
        host = _hostname(headers.get("host", ""))
        if host not in self.allowed_hosts:
            raise ApiError(403, f"requests addressed to {host or 'no host'!r} are refused; reach the server as "
                           "localhost, add the name to [serve] allowed_hosts, or set [serve] api_keys",
                           "invalid_request_error", "host_not_allowed")
        origin = headers.get("origin")
        if origin is not None and (urlsplit(origin).hostname or "").lower() not in self.allowed_hosts:
            raise ApiError(403, f"requests from the web page at {origin!r} are refused; add its host to "
                           "[serve] allowed_hosts to allow it, or set [serve] api_keys",
                           "invalid_request_error", "origin_not_allowed")

    def too_large(self) -> ApiError:
        return ApiError(413, f"the request body is larger than {self.max_body_bytes} bytes ([serve] max_body_bytes)",
                        "invalid_request_error", "body_too_large")


class DoorMiddleware:
    """Checks every HTTP request at the door (a plain ASGI middleware: the app behind it still sees
    the client leave, which a BaseHTTPMiddleware would hide)."""

    def __init__(self, app: ASGIApp, door: Door) -> None:
        self.app = app
        self.door = door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                self.door.check(scope["method"], Headers(scope=scope))
            except ApiError as refused:
                await refused.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
