"""Finding out what is behind an OpenAI-compatible base_url: which server, which models, what context."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..errors import LLMError
from .profiles import owned_by_hints

log = logging.getLogger(__name__)


@dataclass
class ServerInfo:
    kind: str | None
    models: list[str] = field(default_factory=list)
    context_length: int | None = None
    detected_by: str = ""


def server_root(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def auth_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def http_error_line(status: int, url: str, body: str = "") -> str:
    detail = body.strip().replace("\n", " ")[:160]
    if status == 401:
        return f"the server at {url} rejected the API key (401); set [llm] api_key or MEMAGENT_API_KEY (sent as a bearer token)"
    if status == 403:
        return f"the server at {url} refused access (403); check the API key's permissions"
    if status == 404:
        return f"{url} answered 404 Not Found; check [llm] base_url (it usually ends in /v1) and [llm] model"
    return f"the server at {url} answered HTTP {status}{': ' + detail if detail else ''}"


def _get_json(client: httpx.Client, url: str) -> Any | None:
    try:
        response = client.get(url)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _first_int(*values: Any) -> int | None:
    for value in values:
        if isinstance(value, int) and value > 0:
            return value
    return None


def probe_server(base_url: str, api_key: str, timeout: float) -> ServerInfo:
    """GET /v1/models (which must work), then a few server-specific endpoints to identify the kind
    and read the context length. Raises LLMError with one clear line when the server is unusable."""
    models_url = base_url.rstrip("/") + "/models"
    with httpx.Client(timeout=timeout, headers=auth_headers(api_key)) as client:
        try:
            response = client.get(models_url)
        except httpx.ConnectError:
            raise LLMError(f"cannot connect to {base_url}; is the server running and is [llm] base_url right?") from None
        except httpx.TimeoutException:
            raise LLMError(f"{base_url} did not answer within {timeout:g}s; check the server or raise [llm] timeout") from None
        except httpx.HTTPError as exc:
            raise LLMError(f"cannot reach {base_url} ({type(exc).__name__}); check [llm] base_url") from None
        if response.status_code != 200:
            raise LLMError(http_error_line(response.status_code, models_url, response.text))
        try:
            listing = response.json()
            entries = listing["data"]
            models = [str(entry["id"]) for entry in entries]
        except (ValueError, KeyError, TypeError):
            raise LLMError(
                f"{models_url} did not return an OpenAI-style model list; is [llm] base_url an OpenAI-compatible /v1 endpoint?"
            ) from None

        info = ServerInfo(kind=None, models=models)
        for entry in entries:
            owner = str(entry.get("owned_by", "")).lower()
            hints = owned_by_hints()
            if owner in hints:
                info.kind, info.detected_by = hints[owner], f"owned_by={owner}"
            meta = entry.get("meta") or {}
            info.context_length = _first_int(entry.get("max_model_len"), entry.get("context_length"), meta.get("n_ctx"))
            break

        root = server_root(base_url)
        props = _get_json(client, root + "/props")
        if isinstance(props, dict) and ("default_generation_settings" in props or "n_ctx" in props):
            info.kind, info.detected_by = "llamacpp", "/props"
            settings = props.get("default_generation_settings") or {}
            info.context_length = _first_int(props.get("n_ctx"), settings.get("n_ctx")) or info.context_length
        if info.kind in (None, "llama-cpp-python"):
            openapi = _get_json(client, root + "/openapi.json")
            title = str(((openapi or {}).get("info") or {}).get("title", "")).lower()
            if "llama.cpp python" in title or "llama-cpp-python" in title:
                info.kind, info.detected_by = "llama-cpp-python", "/openapi.json"
        if info.kind in (None, "koboldcpp"):
            kobold = _get_json(client, root + "/api/extra/version")
            if isinstance(kobold, dict) and str(kobold.get("result", "")).lower() == "koboldcpp":
                info.kind, info.detected_by = "koboldcpp", "/api/extra/version"
                ctx = _get_json(client, root + "/api/extra/true_max_context_length")
                info.context_length = _first_int((ctx or {}).get("value")) or info.context_length
        if info.kind is None and isinstance(_get_json(client, root + "/api/version"), dict):
            info.kind, info.detected_by = "ollama", "/api/version"
        if info.kind == "tabbyapi":
            model = _get_json(client, base_url.rstrip("/") + "/model")
            params = (model or {}).get("parameters") or {}
            info.context_length = _first_int(params.get("max_seq_len")) or info.context_length
    log.debug("server at %s: %s", base_url, info)
    return info
