"""Every server fault becomes one clear line — provoked for real over loopback sockets."""

from __future__ import annotations

import socket

import pytest

from memagent.config import LLMSettings, SamplerPreset
from memagent.errors import LLMError
from memagent.llm.base import GenerationRequest
from memagent.llm.openai_backend import OpenAIBackend
from memagent.llm.profiles import server_profiles

from .fake_server import Behaviour, fake_openai_server

CALL_SCHEMA = {"type": "object", "properties": {"function": {"type": "string"}}, "required": ["function"]}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend(base_url: str, **changes) -> OpenAIBackend:
    settings = LLMSettings(base_url=base_url, timeout=changes.pop("timeout", 5), retries=changes.pop("retries", 0), **changes)
    return OpenAIBackend(settings)


def ask(b: OpenAIBackend, chat: bool = False) -> str:
    request = GenerationRequest(
        messages=[{"role": "user", "content": "hi"}] if chat else None,
        prompt=None if chat else "hi",
        schema=CALL_SCHEMA,
        sampling=SamplerPreset(temperature=0.0, top_k=1),
    )
    return b.generate(request).text


def assert_one_line(error: pytest.ExceptionInfo[LLMError], *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert "Traceback" not in message
    for fragment in fragments:
        assert fragment in message


def test_server_down_names_the_url_and_the_fix():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    with pytest.raises(LLMError) as error:
        backend(url)
    assert_one_line(error, "cannot connect", url, "base_url")


@pytest.mark.parametrize("stream", [True, False])
def test_http_500_is_reported_with_the_servers_message(stream):
    with fake_openai_server(Behaviour("500")) as url:
        with pytest.raises(LLMError) as error:
            ask(backend(url, stream=stream))
    assert_one_line(error, "HTTP 500", "model crashed")


def test_500_is_retried_before_giving_up():
    behaviour = Behaviour("500")
    with fake_openai_server(behaviour) as url:
        with pytest.raises(LLMError):
            ask(backend(url, retries=2, stream=False))
    assert len(behaviour.requests) == 3


def test_wrong_key_gives_401_hint():
    with fake_openai_server(Behaviour("ok", key="right")) as url:
        with pytest.raises(LLMError) as error:
            backend(url, api_key="wrong")
    assert_one_line(error, "401", "api_key", "bearer")


def test_bearer_key_is_sent():
    behaviour = Behaviour("ok", key="s3cret")
    with fake_openai_server(behaviour) as url:
        assert "send_message" in ask(backend(url, api_key="s3cret"))


def test_unknown_model_404():
    with fake_openai_server(Behaviour("model404")) as url:
        with pytest.raises(LLMError) as error:
            ask(backend(url, model="nope", stream=False))
    assert_one_line(error, "404", "model")


def test_wrong_path_404_on_models():
    with fake_openai_server(Behaviour("ok")) as url:
        with pytest.raises(LLMError) as error:
            backend(url.removesuffix("/v1") + "/api")
    assert_one_line(error, "404", "base_url")


def test_timeout_is_one_line():
    with fake_openai_server(Behaviour("ok", delay=3)) as url:
        with pytest.raises(LLMError) as error:
            ask(backend(url, timeout=1, stream=False))
    assert_one_line(error, "did not answer within 1s", "timeout")


@pytest.mark.parametrize("mode", ["garbage", "bad_json"])
@pytest.mark.parametrize("stream", [True, False])
def test_non_json_body(mode, stream):
    with fake_openai_server(Behaviour(mode)) as url:
        with pytest.raises(LLMError) as error:
            ask(backend(url, stream=stream))
    assert_one_line(error, url)


def test_empty_completion_comes_back_empty_not_crashing():
    with fake_openai_server(Behaviour("empty")) as url:
        assert ask(backend(url, stream=False)) == ""


def test_empty_model_list_is_explained():
    with fake_openai_server(Behaviour("ok", models=[])) as url:
        with pytest.raises(LLMError) as error:
            backend(url)
    assert_one_line(error, "lists no models")


def test_first_model_is_used_when_none_configured():
    with fake_openai_server(Behaviour("ok")) as url:
        assert backend(url).model == "fake-model"


def test_profile_sends_constraint_and_only_known_sampler_fields():
    behaviour = Behaviour("ok")
    with fake_openai_server(behaviour) as url:
        b = backend(url, server="tabbyapi", stream=False)
        b.generate(GenerationRequest(prompt="x", schema=CALL_SCHEMA,
                                     sampling=SamplerPreset(temperature=0.1, top_k=3, repeat_penalty=1.2, mirostat=2, repeat_last_n=64)))
    body = behaviour.requests[-1]["body"]
    assert body["json_schema"] == CALL_SCHEMA
    assert body["top_k"] == 3 and body["repetition_penalty"] == 1.2 and body["mirostat_mode"] == 2
    assert "repeat_penalty" not in body and "repeat_last_n" not in body


# What each server documents for a JSON-schema constraint and our sampler settings, written down
# from its own docs (not from our profile table): llama.cpp tools/server/README.md, llama-cpp-python's
# server request models (llama_cpp.server.types; checked below against the installed package),
# LM Studio "OpenAI compatibility" (supported payload parameters), TabbyAPI's sampler docs, vLLM's
# structured outputs and extra sampling parameters, Ollama's OpenAI compatibility page (OpenAI fields
# only) and KoboldCpp's /api/v1/generate schema. GBNF = a grammar string llama.cpp can parse.
SAMPLING = SamplerPreset(temperature=0.0, top_k=1, min_p=0.05, typical_p=0.9, repeat_penalty=1.1, repeat_last_n=64,
                         mirostat=2, mirostat_tau=5.0, mirostat_eta=0.1, seed=7)
GBNF = object()
_STANDARD = {"temperature": 0.0, "seed": 7}
_JSON_SCHEMA_FORMAT = {"response_format": {"type": "json_schema", "json_schema": {
    "name": "function_call", "strict": True, "schema": CALL_SCHEMA}}}
DOCUMENTED: dict[str, dict[str, dict | None]] = {
    "llamacpp": {
        "samplers": {"top_k": 1, "min_p": 0.05, "typical_p": 0.9, "repeat_penalty": 1.1, "repeat_last_n": 64,
                     "mirostat": 2, "mirostat_tau": 5.0, "mirostat_eta": 0.1},
        "raw": {"json_schema": CALL_SCHEMA},
        "chat": {"response_format": {"type": "json_object", "schema": CALL_SCHEMA}},
    },
    "llama-cpp-python": {
        "samplers": {"top_k": 1, "min_p": 0.05, "repeat_penalty": 1.1, "mirostat_mode": 2, "mirostat_tau": 5.0,
                     "mirostat_eta": 0.1},
        "raw": {"grammar": GBNF},
        "chat": {"response_format": {"type": "json_object", "schema": CALL_SCHEMA}},
    },
    "lmstudio": {"samplers": {"top_k": 1, "repeat_penalty": 1.1}, "raw": None, "chat": _JSON_SCHEMA_FORMAT},
    "tabbyapi": {
        "samplers": {"top_k": 1, "min_p": 0.05, "typical": 0.9, "repetition_penalty": 1.1, "mirostat_mode": 2,
                     "mirostat_tau": 5.0, "mirostat_eta": 0.1},
        "raw": {"json_schema": CALL_SCHEMA},
        "chat": {"json_schema": CALL_SCHEMA},
    },
    "vllm": {
        "samplers": {"top_k": 1, "min_p": 0.05, "repetition_penalty": 1.1},
        "raw": {"structured_outputs": {"json": CALL_SCHEMA}},
        "chat": {"structured_outputs": {"json": CALL_SCHEMA}},
    },
    "ollama": {"samplers": {}, "raw": None, "chat": _JSON_SCHEMA_FORMAT},
    "koboldcpp": {
        "samplers": {"top_k": 1, "min_p": 0.05, "typical": 0.9, "rep_pen": 1.1, "mirostat": 2, "mirostat_tau": 5.0,
                     "mirostat_eta": 0.1},
        "raw": {"grammar": GBNF},
        "chat": {"grammar": GBNF},
    },
    "generic": {"samplers": {}, "raw": None, "chat": _JSON_SCHEMA_FORMAT},
}
# Sent on every request, whatever the server: not part of what a profile decides.
_TRANSPORT_KEYS = {"model", "prompt", "messages", "stream", "max_tokens", "stop", "stream_options"}


def test_every_built_in_profile_is_documented():
    assert set(server_profiles()) == set(DOCUMENTED)


@pytest.mark.parametrize("kind", sorted(DOCUMENTED))
def test_every_profile_sends_what_its_server_documents(kind):
    import llama_cpp

    behaviour = Behaviour("ok")
    with fake_openai_server(behaviour) as url:
        b = backend(url, server=kind, stream=False)
        for chat in (False, True):
            b.generate(GenerationRequest(messages=[{"role": "user", "content": "hi"}] if chat else None,
                                         prompt=None if chat else "hi", schema=CALL_SCHEMA, sampling=SAMPLING))
    for request, mode in zip(behaviour.requests, ("raw", "chat")):
        body = {k: v for k, v in request["body"].items() if k not in _TRANSPORT_KEYS}
        expected = {**_STANDARD, **DOCUMENTED[kind]["samplers"], **(DOCUMENTED[kind][mode] or {})}
        if "grammar" in expected:
            assert llama_cpp.LlamaGrammar.from_string(body["grammar"], verbose=False) is not None
            expected["grammar"] = body["grammar"]
        assert body == expected, (kind, mode)


def test_llama_cpp_python_profile_sends_only_fields_its_server_accepts():
    from llama_cpp.server.types import CreateChatCompletionRequest, CreateCompletionRequest

    profile = server_profiles()["llama-cpp-python"]
    standard, extra = profile.sampler_body(SAMPLING)
    assert set(standard) | set(extra) <= set(CreateCompletionRequest.model_fields)
    assert set(profile.constraint(CALL_SCHEMA, "raw")) <= set(CreateCompletionRequest.model_fields)
    assert set(profile.constraint(CALL_SCHEMA, "chat")) <= set(CreateChatCompletionRequest.model_fields)


def test_owned_by_detects_server_kind():
    with fake_openai_server(Behaviour("ok", models=[{"id": "m", "owned_by": "vllm", "max_model_len": 8192}])) as url:
        b = backend(url)
    assert b.profile.kind == "vllm" and b.context_length == 8192


def test_server_ignoring_stream_flag_falls_back_to_a_whole_reply():
    with fake_openai_server(Behaviour("no_sse")) as url:
        b = backend(url, stream=True)
        assert "send_message" in ask(b)
        assert "send_message" in ask(b, chat=True)


@pytest.mark.parametrize("chat", [False, True])
def test_streaming_delivers_deltas(chat):
    pieces: list[str] = []
    with fake_openai_server(Behaviour("ok")) as url:
        b = backend(url, stream=True)
        request = GenerationRequest(prompt=None if chat else "x", messages=[{"role": "user", "content": "x"}] if chat else None,
                                    on_text=pieces.append)
        text = b.generate(request).text
    assert len(pieces) == 2 and "".join(pieces) == text and "send_message" in text
