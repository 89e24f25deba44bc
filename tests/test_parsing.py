"""Function schemas, the call schema / GBNF, and the model-output parser (shapes, corpus, fuzzing)."""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from memagent.functions import (
    call_gbnf,
    call_json_schema,
    example_call,
    function_names,
    function_registry,
    params_json_schema,
)
from memagent.functions.grammar import MAX_OPEN_INTEGER_DIGITS, integer_range_rule
from memagent.parsing import CallError, ParseOutcome, parse_call

REPO = Path(__file__).resolve().parent.parent
FUNCTION_NAMES = function_names()
FUNCTIONS = {function.name: function.params for function in function_registry()}
EXAMPLE_PARAMS = {function.name: dict(function.example) for function in function_registry()}
ERROR_KINDS = {"no_json", "unknown_function", "invalid_arguments", "empty"}


def _load_bench() -> Any:
    spec = importlib.util.spec_from_file_location("parser_recovery", REPO / "bench" / "parser_recovery.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _call(text: str, **kwargs: Any) -> Any:
    outcome = parse_call(text, **kwargs)
    assert outcome.call is not None, outcome.error and outcome.error.describe()
    return outcome.call


def _error(text: str, **kwargs: Any) -> CallError:
    outcome = parse_call(text, **kwargs)
    assert outcome.call is None and outcome.error is not None, outcome.call
    return outcome.error


# --- schemas ----------------------------------------------------------------------------------


def test_function_registry_order() -> None:
    assert FUNCTION_NAMES == [
        "send_message",
        "core_memory_append",
        "core_memory_replace",
        "conversation_search",
        "conversation_search_date",
        "archival_memory_insert",
        "archival_memory_search",
        "pause_heartbeats",
    ]
    assert list(FUNCTIONS) == FUNCTION_NAMES


@pytest.mark.parametrize("name", FUNCTION_NAMES)
def test_examples_are_valid_calls(name: str) -> None:
    FUNCTIONS[name].model_validate(EXAMPLE_PARAMS[name])
    jsonschema.validate(example_call(name), call_json_schema())
    assert list(example_call(name)) == ["inner_thoughts", "function", "params"]


@pytest.mark.parametrize(
    ("name", "params", "bad_field"),
    [
        ("send_message", {"message": ""}, "message"),
        ("send_message", {"message": "  \n "}, "message"),
        ("send_message", {}, "message"),
        ("send_message", {"message": "hi", "emoji": True}, "emoji"),
        ("core_memory_append", {"label": "human"}, "content"),
        ("core_memory_replace", {"label": "human", "old_content": "a"}, "new_content"),
        ("conversation_search", {"query": "x", "page": -1}, "page"),
        ("conversation_search_date", {"start_date": "2024/01/01", "end_date": "2024-01-02"}, "start_date"),
        ("conversation_search_date", {"start_date": "2024-01-01", "end_date": "2024-02-30"}, "end_date"),
        ("conversation_search_date", {"start_date": "yesterday", "end_date": "2024-01-02"}, "start_date"),
        ("archival_memory_search", {"query": "x", "page": "first"}, "page"),
        ("pause_heartbeats", {"minutes": 0}, "minutes"),
        ("pause_heartbeats", {"minutes": 361}, "minutes"),
    ],
)
def test_models_reject_bad_params(name: str, params: dict[str, Any], bad_field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FUNCTIONS[name].model_validate(params)
    assert caught.value.errors()[0]["loc"][0] == bad_field


def test_models_fill_defaults() -> None:
    search = FUNCTIONS["conversation_search"].model_validate({"query": "cats"}).model_dump()
    assert search == {"query": "cats", "page": 0, "request_heartbeat": False}
    assert FUNCTIONS["pause_heartbeats"].model_validate({"minutes": 360}).model_dump() == {"minutes": 360}


def _walk_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in _walk_keys(item)}
    if isinstance(value, list):
        return {key for item in value for key in _walk_keys(item)}
    return set()


def test_call_schema_shape() -> None:
    schema = call_json_schema()
    variants = schema["anyOf"]
    assert [variant["properties"]["function"]["const"] for variant in variants] == FUNCTION_NAMES
    for variant in variants:
        assert list(variant["properties"]) == ["inner_thoughts", "function", "params"]
        assert variant["required"] == ["inner_thoughts", "function", "params"]
        assert variant["additionalProperties"] is False
        params = variant["properties"]["params"]
        name = variant["properties"]["function"]["const"]
        assert list(params["properties"]) == list(FUNCTIONS[name].model_fields)
        assert params["required"] == list(params["properties"])
        assert params["additionalProperties"] is False
    assert not _walk_keys(schema) & {"description", "title", "default", "$ref", "$defs"}


def test_call_schema_subset_and_errors() -> None:
    single = call_json_schema(["send_message"])
    assert single["properties"]["function"] == {"type": "string", "const": "send_message"}
    assert len(call_json_schema(["send_message", "pause_heartbeats"])["anyOf"]) == 2
    with pytest.raises(ValueError):
        call_json_schema(["fly"])
    with pytest.raises(ValueError):
        call_json_schema([])


@pytest.mark.parametrize(
    "instance",
    [
        {"inner_thoughts": "x", "function": "send_message", "params": {"message": ""}},
        {"inner_thoughts": "x", "function": "send_message", "params": {"message": "hi", "extra": 1}},
        {"function": "send_message", "params": {"message": "hi"}},
        {"inner_thoughts": "x", "function": "pause_heartbeats", "params": {"minutes": 0}},
        {"inner_thoughts": "x", "function": "conversation_search", "params": {"query": "q"}},
        {"inner_thoughts": "x", "function": "conversation_search_date",
         "params": {"start_date": "2024-1-1", "end_date": "2024-01-02", "page": 0, "request_heartbeat": False}},
        {"inner_thoughts": "x", "function": "fly", "params": {}},
    ],
)
def test_call_schema_rejects_bad_calls(instance: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(instance, call_json_schema())


def test_llama_cpp_converts_the_schema() -> None:
    import llama_cpp
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    schema_text = json.dumps(call_json_schema())
    assert "root ::=" in json_schema_to_gbnf(schema_text)
    assert llama_cpp.LlamaGrammar.from_json_schema(schema_text, verbose=False) is not None
    gbnf = call_gbnf()
    assert gbnf.count("root ::=") == 1
    for name in FUNCTION_NAMES:
        assert f'"\\"{name}\\""' in gbnf
    assert llama_cpp.LlamaGrammar.from_string(call_gbnf(["send_message"]), verbose=False) is not None


def _gbnf_expression_to_regex(expression: str) -> str:
    """Enough of GBNF for integer_range_rule's output: literals, classes, groups, alternation."""
    return re.sub(r'"(\d+)"', r"\1", expression).replace("(", "(?:").replace(" | ", "|").replace(" ", "")


@pytest.mark.parametrize(("minimum", "maximum"), [(1, 360), (0, None), (0, 9), (5, 5), (10, 99), (37, 4021), (100, 1000)])
def test_integer_range_rule_matches_exactly_the_range(minimum: int, maximum: int | None) -> None:
    rule = integer_range_rule(minimum, maximum)
    assert rule is not None
    pattern = re.compile(_gbnf_expression_to_regex(rule))
    upper = maximum if maximum is not None else 10**MAX_OPEN_INTEGER_DIGITS - 1
    for number in range(0, 12_000):
        assert bool(pattern.fullmatch(str(number))) == (minimum <= number <= upper), number
    for text in ["-1", "01", "007", "", "1.5"]:
        assert not pattern.fullmatch(text)


def test_integer_bounds_reach_the_grammar() -> None:
    gbnf = call_gbnf(["pause_heartbeats", "conversation_search"])
    assert integer_range_rule(1, 360) in gbnf
    assert integer_range_rule(0, None) in gbnf
    assert "integer ::=" not in gbnf  # no unbounded integer rule is left


@pytest.mark.slow
def test_llama_cpp_parses_the_grammar(default_model_path: Path) -> None:
    """llama.cpp's own GBNF parser (not just the Python converter) accepts the grammar."""
    import llama_cpp

    model = llama_cpp.Llama(str(default_model_path), vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(model._model.model)
    for names in (None, ["send_message"], ["pause_heartbeats", "conversation_search_date"]):
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, call_gbnf(names).encode(), b"root")
        assert sampler, names
        llama_cpp.llama_sampler_free(sampler)
    assert not llama_cpp.llama_sampler_init_grammar(vocab, b"root ::= (", b"root")


# --- parser: one test per shape ------------------------------------------------------------------


def test_canonical_call_is_not_repaired() -> None:
    outcome = parse_call('{"inner_thoughts": "hi", "function": "send_message", "params": {"message": "こんにちは"}}')
    assert outcome.call is not None and outcome.error is None
    assert outcome.call.to_json_obj() == {"inner_thoughts": "hi", "function": "send_message", "params": {"message": "こんにちは"}}
    assert outcome.repaired is False and outcome.notes == []


def test_defaults_are_filled_without_counting_as_repair() -> None:
    outcome = parse_call('{"inner_thoughts": "", "function": "conversation_search", "params": {"query": "猫"}}')
    assert outcome.call is not None and outcome.call.arguments == {"query": "猫", "page": 0, "request_heartbeat": False}
    assert outcome.repaired is False


def test_markdown_fence_and_prose() -> None:
    text = 'はい!\n```json\n{"inner_thoughts": "t", "function": "send_message", "params": {"message": "m"}}\n```\n以上です。'
    outcome = parse_call(text)
    assert outcome.call is not None and outcome.call.arguments["message"] == "m"
    assert outcome.repaired is True


def test_prose_after_json() -> None:
    call = _call('{"inner_thoughts": "t", "function": "send_message", "params": {"message": "m"}} I hope this helps!')
    assert call.arguments == {"message": "m"}


def test_two_objects_take_first_and_note_rest() -> None:
    outcome = parse_call(
        '{"inner_thoughts": "a", "function": "archival_memory_insert", "params": {"content": "x"}}\n'
        '{"inner_thoughts": "b", "function": "send_message", "params": {"message": "y"}}'
    )
    assert outcome.call is not None and outcome.call.function == "archival_memory_insert"
    assert any("send_message" in note for note in outcome.notes)


def test_nested_function_object() -> None:
    call = _call('{"inner_thoughts": "t", "function": {"name": "send_message", "arguments": {"message": "m"}}}')
    assert (call.function, call.arguments, call.inner_thoughts) == ("send_message", {"message": "m"}, "t")


@pytest.mark.parametrize(
    "arguments",
    [{"minutes": 5}, json.dumps({"minutes": 5}), '{"minutes": 5'],
)
def test_openai_name_arguments(arguments: Any) -> None:
    call = _call(json.dumps({"name": "pause_heartbeats", "arguments": arguments}))
    assert call.function == "pause_heartbeats" and call.arguments == {"minutes": 5}


def test_command_r_action() -> None:
    text = 'Plan: reply.\nAction: ```json\n[\n  {"tool_name": "send_message", "parameters": {"message": "よし"}}\n]\n```'
    assert _call(text).arguments == {"message": "よし"}


def test_qwen_tool_call_tags() -> None:
    text = '<tool_call>\n{"name": "archival_memory_search", "arguments": {"query": "旅行"}}\n</tool_call>'
    assert _call(text).arguments == {"query": "旅行", "page": 0, "request_heartbeat": False}


@pytest.mark.parametrize("key", ["parameters", "arguments", "args"])
def test_params_key_variants(key: str) -> None:
    call = _call(json.dumps({"inner_thoughts": "t", "function": "send_message", key: {"message": "m"}}))
    assert call.arguments == {"message": "m"}


def test_inner_thoughts_inside_params_is_moved_out() -> None:
    call = _call('{"function": "send_message", "params": {"inner_thoughts": "思考", "message": "m"}}')
    assert call.inner_thoughts == "思考" and call.arguments == {"message": "m"}


def test_missing_inner_thoughts_becomes_empty() -> None:
    outcome = parse_call('{"function": "send_message", "params": {"message": "m"}}')
    assert outcome.call is not None and outcome.call.inner_thoughts == ""
    assert outcome.repaired is True


@pytest.mark.parametrize(
    ("given", "expected"),
    [("true", True), ("True", True), ("FALSE", False), ("1", True), ("0", False), (" false ", False)],
)
def test_boolean_strings(given: str, expected: bool) -> None:
    text = json.dumps({"inner_thoughts": "", "function": "archival_memory_insert",
                       "params": {"content": "c", "request_heartbeat": given}})
    outcome = parse_call(text)
    assert outcome.call is not None and outcome.call.arguments["request_heartbeat"] is expected
    assert outcome.repaired is True


@pytest.mark.parametrize(("given", "expected"), [("60", 60), ("６０", 60), (60.0, 60)])
def test_integer_strings(given: Any, expected: int) -> None:
    call = _call(json.dumps({"inner_thoughts": "", "function": "pause_heartbeats", "params": {"minutes": given}}))
    assert call.arguments["minutes"] == expected and isinstance(call.arguments["minutes"], int)


@pytest.mark.parametrize(
    "name",
    ["Send_Message", "SEND-MESSAGE", "functions.send_message", "sendMessage", "send message", "send_message()", "send_mesage"],
)
def test_function_name_variants(name: str) -> None:
    call = _call(json.dumps({"inner_thoughts": "", "function": name, "params": {"message": "m"}}))
    assert call.function == "send_message"


@pytest.mark.parametrize(
    "wrapped",
    [
        "<|im_start|>assistant\n{CALL}<|im_end|>",
        "{CALL}</s>",
        "<|start_header_id|>assistant<|end_header_id|>\n\n{CALL}<|eot_id|>",
        "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>{CALL}<|END_OF_TURN_TOKEN|>",
        "{CALL}<end_of_turn>\n<start_of_turn>user\nほかには?",
        "<think>ユーザーに返事をする。{\"draft\": 1}</think>\n{CALL}",
    ],
)
def test_leaked_special_tokens(wrapped: str) -> None:
    call_text = '{"inner_thoughts": "t", "function": "send_message", "params": {"message": "m"}}'
    outcome = parse_call(wrapped.replace("{CALL}", call_text))
    assert outcome.call is not None and outcome.call.arguments == {"message": "m"}
    assert outcome.repaired is True


@pytest.mark.parametrize(
    "run_on",
    [
        '\nFUNCTION RETURN: {"status": "OK", "message": "None"}',
        '\nFUNCTION_RETURN {"status": "OK"}',
        '<|im_end|>\n<|im_start|>function\n{"status": "OK", "message": null}',
        '\nUSER: thanks\nASSISTANT: {"function": "send_message", "params": {"message": "other"}}',
    ],
)
def test_run_on_text_is_cut(run_on: str) -> None:
    text = '{"inner_thoughts": "t", "function": "send_message", "params": {"message": "m"}}' + run_on
    outcome = parse_call(text)
    assert outcome.call is not None and outcome.call.arguments == {"message": "m"}
    assert "cut run-on text after the call" in outcome.notes


def test_unescaped_quotes_in_japanese() -> None:
    call = _call('{"inner_thoughts": "t", "function": "send_message", "params": {"message": "それって"本気"なの?"}}')
    assert call.arguments["message"] == 'それって"本気"なの?'


def test_raw_newlines_in_strings() -> None:
    call = _call('{"inner_thoughts": "t", "function": "send_message", "params": {"message": "一行目\n二行目"}}')
    assert call.arguments["message"] == "一行目\n二行目"


def test_truncated_final_string() -> None:
    outcome = parse_call('{"inner_thoughts": "t", "function": "send_message", "params": {"message": "また明日ね、おやす')
    assert outcome.call is not None and outcome.call.arguments["message"] == "また明日ね、おやす"
    assert outcome.repaired is True


def test_bare_message_object_is_send_message() -> None:
    outcome = parse_call('{"message": "やあ"}')
    assert outcome.call is not None and outcome.call.function == "send_message"
    assert any("bare" in note for note in outcome.notes)


def test_echoed_function_result_is_not_a_reply() -> None:
    assert _error('{"status": "OK", "message": "None", "time": "2024-01-01"}').kind == "no_json"


def test_flat_params() -> None:
    call = _call('{"inner_thoughts": "t", "function": "core_memory_append", "label": "human", "content": "犬派"}')
    assert call.arguments == {"label": "human", "content": "犬派", "request_heartbeat": False}


def test_memgpt_name_param_is_label() -> None:
    call = _call('{"function": "core_memory_append", "params": {"name": "persona", "content": "c"}}')
    assert call.arguments["label"] == "persona"


def test_unknown_params_are_dropped_with_a_note() -> None:
    outcome = parse_call('{"inner_thoughts": "", "function": "send_message", "params": {"message": "m", "mood": "happy"}}')
    assert outcome.call is not None and outcome.call.arguments == {"message": "m"}
    assert any("mood" in note for note in outcome.notes)


@pytest.mark.parametrize(
    "text",
    [
        '[archival_memory_insert(content="猫を二匹飼っている", request_heartbeat=true)]',
        'functions.archival_memory_insert({"content": "猫を二匹飼っている", "request_heartbeat": True})',
        'Let me save that.\narchival_memory_insert(content="猫を二匹飼っている", request_heartbeat=True)',
    ],
)
def test_python_style_calls(text: str) -> None:
    call = _call(text)
    assert (call.function, call.arguments) == ("archival_memory_insert", {"content": "猫を二匹飼っている", "request_heartbeat": True})


def test_python_style_calls_are_never_evaluated() -> None:
    assert _error('send_message(message=open("/etc/passwd").read())').kind == "no_json"


def test_react_action_input() -> None:
    call = _call('{"thought": "t", "action": "send_message", "action_input": {"message": "m"}}')
    assert (call.function, call.arguments, call.inner_thoughts) == ("send_message", {"message": "m"}, "t")


def test_params_imitating_a_json_schema() -> None:
    call = _call('{"function": "send_message", "params": {"type": "object", "properties": {"message": "m"}}}')
    assert call.arguments == {"message": "m"}


def test_prefill_is_prepended() -> None:
    call = _call('考え中", "function": "send_message", "params": {"message": "m"}}', prefill='{"inner_thoughts": "')
    assert (call.inner_thoughts, call.arguments) == ("考え中", {"message": "m"})


def test_output_that_repeats_the_prefill() -> None:
    outcome = parse_call(
        '{"inner_thoughts": "again", "function": "send_message", "params": {"message": "m"}}',
        prefill='{"inner_thoughts": "',
    )
    assert outcome.call is not None and outcome.call.inner_thoughts == "again"
    assert outcome.raw.startswith('{"inner_thoughts": "{')


# --- parser: errors ------------------------------------------------------------------------------


def test_prose_without_call_is_no_json() -> None:
    error = _error("こんにちは!今日は何をしようか?")
    assert error.kind == "no_json" and error.function is None
    assert error.example == example_call("send_message")
    assert error.allowed_functions == FUNCTION_NAMES


@pytest.mark.parametrize("text", ["", "   \n", "<|im_end|>", "</s>"])
def test_empty_output(text: str) -> None:
    assert _error(text).kind == "empty"


def test_unknown_function() -> None:
    error = _error('{"inner_thoughts": "", "function": "web_search", "params": {"query": "x"}}')
    assert (error.kind, error.function) == ("unknown_function", "web_search")
    assert "web_search" in error.describe()


def test_missing_function_name() -> None:
    error = _error('{"inner_thoughts": "ユーザーが挨拶した。')
    assert error.kind == "unknown_function" and error.function is None


def test_function_outside_allowed_list() -> None:
    error = _error('{"inner_thoughts": "", "function": "pause_heartbeats", "params": {"minutes": 5}}',
                   allowed=["send_message"])
    assert (error.kind, error.function, error.allowed_functions) == ("unknown_function", "pause_heartbeats", ["send_message"])
    assert error.example["function"] == "send_message"


@pytest.mark.parametrize(
    ("params", "field", "problem"),
    [
        ({"start_date": "2024/01/01", "end_date": "2024-01-31"}, "start_date", "must be YYYY-MM-DD"),
        ({"start_date": "2024-01-01"}, "end_date", "Field required"),
        ({"start_date": "2024-01-01", "end_date": "2024-01-31", "page": -2}, "page", "greater than or equal to 0"),
    ],
)
def test_invalid_arguments_name_function_field_and_problem(params: dict[str, Any], field: str, problem: str) -> None:
    error = _error(json.dumps({"inner_thoughts": "", "function": "conversation_search_date", "params": params}))
    assert (error.kind, error.function, error.field) == ("invalid_arguments", "conversation_search_date", field)
    assert problem in error.problem
    assert error.example == example_call("conversation_search_date")
    assert error.describe() == f"invalid_arguments: conversation_search_date.{field}: {error.problem}"


def test_params_that_are_not_an_object() -> None:
    error = _error('{"inner_thoughts": "", "function": "send_message", "params": "hello"}')
    assert (error.kind, error.function) == ("invalid_arguments", "send_message")


def test_deep_nesting_never_raises() -> None:
    for text in ["[" * 50_000, '{"a":' * 20_000, '{"function": ' * 5_000, "{" * 100_000 + "}" * 100_000]:
        outcome = parse_call(text)
        assert isinstance(outcome, ParseOutcome) and outcome.error is not None


def test_huge_broken_output_is_cut_before_repair() -> None:
    runaway = '{"inner_thoughts": "", "function": "send_message", "params": {"message": "' + "あ" * 150_000
    outcome = parse_call(runaway)
    assert outcome.call is not None and outcome.repaired is True
    assert len(outcome.call.arguments["message"]) < 100_000
    assert any("cut to" in note for note in outcome.notes)


# --- corpus ----------------------------------------------------------------------------------------

REQUIRED_SHAPES = {
    "markdown_fence", "prose_around", "two_objects", "nested_function", "openai_arguments_object",
    "openai_arguments_string", "command_r_action", "qwen_tool_call", "params_key_variant",
    "inner_thoughts_in_params", "inner_thoughts_missing", "string_scalars", "function_name_variant",
    "special_tokens", "function_return_runon", "unescaped_quotes_ja", "raw_newlines_ja",
    "truncated_string", "pythonic_call", "hopeless",
}


def test_corpus_covers_every_shape_in_both_languages() -> None:
    corpus = _load_bench().load_corpus()
    assert len(corpus) >= 70
    assert len({record["id"] for record in corpus}) == len(corpus)
    shapes = [record["shape"] for record in corpus]
    for shape in REQUIRED_SHAPES:
        assert shapes.count(shape) >= 2, shape
    japanese = [record for record in corpus if any("\u3040" <= char <= "\u30ff" for char in record["raw"])]
    assert 20 <= len(japanese) <= len(corpus) - 20


def test_corpus_recovery_rate() -> None:
    bench = _load_bench()
    failures = [record["id"] for record in bench.load_corpus() if not bench.is_recovered(record, bench.parse_record(record))]
    result = bench.run()
    print(f"\nparser recovery: {result['recovered']}/{result['corpus_size']} = {result['rate']:.1%}; failed: {failures}")
    assert result["corpus_size"] - result["recovered"] == len(failures)
    assert result["rate"] >= 0.95


def test_corpus_scoring_rejects_wrong_calls() -> None:
    bench = _load_bench()
    record = {"raw": "", "expected": {"function": "send_message", "params": {"message": "a"}}}
    wrong = parse_call('{"inner_thoughts": "", "function": "send_message", "params": {"message": "b"}}')
    assert bench.is_recovered(record, wrong) is False
    hopeless = {"raw": "", "expected": None}
    assert bench.is_recovered(hopeless, parse_call('{"message": "x"}')) is False
    assert bench.is_recovered(hopeless, parse_call("just prose")) is True


# --- fuzzing ---------------------------------------------------------------------------------------


def _assert_well_formed(outcome: Any) -> None:
    assert isinstance(outcome, ParseOutcome)
    assert (outcome.call is None) != (outcome.error is None)
    if outcome.call is not None:
        assert outcome.call.function in FUNCTIONS
        assert isinstance(outcome.call.inner_thoughts, str)
        FUNCTIONS[outcome.call.function].model_validate(outcome.call.arguments)
        jsonschema.validate(outcome.call.to_json_obj(), call_json_schema())
    else:
        assert outcome.error.kind in ERROR_KINDS
        assert outcome.error.example["function"] in FUNCTIONS
        assert isinstance(outcome.error.describe(), str)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(), st.text(max_size=20))
def test_fuzz_any_text_never_raises(text: str, prefill: str) -> None:
    _assert_well_formed(parse_call(text, prefill=prefill))


_TEXT = st.characters(codec="utf-8", exclude_categories=("Cs",))
_DATE_PATTERN = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


def _value(prop: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values for one property of a function's params schema (the scalar shapes the registry allows)."""
    if "enum" in prop:
        return st.sampled_from(prop["enum"])
    if "const" in prop:
        return st.just(prop["const"])
    if prop["type"] == "boolean":
        return st.booleans()
    if prop["type"] == "integer":
        return st.integers(min_value=prop.get("minimum", -(10**6)), max_value=prop.get("maximum", 10**6))
    if prop.get("pattern") == _DATE_PATTERN:  # the schema cannot say "a real calendar date"
        return st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)).map(date.isoformat)
    if "pattern" in prop:
        return st.from_regex(prop["pattern"], fullmatch=True)
    return st.text(_TEXT, min_size=max(1, prop.get("minLength", 1)), max_size=min(40, prop.get("maxLength", 40)))


def _valid_params(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Params for `name` drawn from its own schema (so a plugin's function is fuzzed too), kept where
    its params model accepts them (send_message's message must not be blank)."""
    schema = params_json_schema(name)

    def accepted(params: dict[str, Any]) -> bool:
        try:
            FUNCTIONS[name].model_validate(params)
        except ValidationError:
            return False
        return True

    return st.fixed_dictionaries({key: _value(prop) for key, prop in schema["properties"].items()}).filter(accepted)


valid_calls = st.sampled_from(FUNCTION_NAMES).flatmap(
    lambda name: st.builds(
        lambda thoughts, params: {"inner_thoughts": thoughts, "function": name, "params": params},
        st.text(_TEXT, max_size=40),
        _valid_params(name),
    )
)


@FUZZ
@given(valid_calls, st.booleans())
def test_fuzz_valid_calls_round_trip(call: dict[str, Any], ascii_only: bool) -> None:
    outcome = parse_call(json.dumps(call, ensure_ascii=ascii_only))
    assert outcome.call is not None, outcome.error
    assert outcome.call.to_json_obj() == call
    assert outcome.repaired is False


_WRAPPERS = [
    "{}",
    "```json\n{}\n```",
    "Sure! {} Hope that helps.",
    "<|im_start|>assistant\n{}<|im_end|>",
    "<tool_call>\n{}\n</tool_call>",
    "{}\nFUNCTION RETURN: {{\"status\": \"OK\"}}",
    "{}\n{}",
]


@st.composite
def mutated_calls(draw: st.DrawFn) -> str:
    text = json.dumps(draw(valid_calls), ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 2])))
    text = draw(st.sampled_from(_WRAPPERS)).replace("{}", text, 1).replace("{}", text)
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        position = draw(st.integers(min_value=0, max_value=len(text)))
        mutation = draw(st.sampled_from(["truncate", "delete", "insert"]))
        if mutation == "truncate":
            text = text[:position]
        elif mutation == "delete":
            text = text[:position] + text[position + 1 :]
        else:
            text = text[:position] + draw(st.sampled_from(list('{}[]",:\\\n') + ["'", "true", "<|im_end|>"])) + text[position:]
    return text


@FUZZ
@given(mutated_calls())
def test_fuzz_mutated_calls_give_a_valid_call_or_an_error(text: str) -> None:
    _assert_well_formed(parse_call(text))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_calls)
def test_fuzz_truncated_calls_never_invent_another_function(call: dict[str, Any]) -> None:
    text = json.dumps(call, ensure_ascii=False)
    for cut in range(len(text), 0, -max(1, len(text) // 7)):
        outcome = parse_call(text[:cut])
        _assert_well_formed(outcome)
        if outcome.call is not None and outcome.call.function != call["function"]:
            pytest.fail(f"{text[:cut]!r} parsed as {outcome.call.function}")
