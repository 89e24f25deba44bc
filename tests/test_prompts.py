"""Prompt templates: both languages render every template with realistic variables (StrictUndefined),
user files shadow packaged ones, and template errors name file and line."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from memagent.errors import MemagentError
from memagent.functions import function_names
from memagent.junk import JUNK_KINDS
from memagent.paths import Paths, packaged_resource_dir
from memagent.personas import load_human, load_persona
from memagent.prompts import LANGUAGES, SYSTEM_PARTS, PromptLibrary, core_from

GOLDEN = Path(__file__).resolve().parent / "golden"


class Error:
    """Stands in for parsing.CallError: templates only read attributes."""

    def __init__(self, **fields: Any) -> None:
        self.kind = fields.get("kind", "no_json")
        self.function = fields.get("function")
        self.field = fields.get("field")
        self.problem = fields.get("problem", "")
        self.example = fields.get("example", {})
        self.allowed_functions = fields.get("allowed_functions", function_names())


EXAMPLE_CALL = {"inner_thoughts": "…", "function": "send_message", "params": {"message": "こんにちは"}}
HITS = [
    {"id": "m12", "text": "猫の名前はミケ", "time": "2025-01-02 21:04", "score": 0.91},
    {"id": "a3", "text": "Taro likes cats", "time": None, "score": 0.5},
]

# Every non-system template with each branch's variables. A new template must be added here.
EVENT_CASES: dict[str, list[dict[str, Any]]] = {
    "event_user.j2": [{"message": "こんばんは", "time": "2025-01-02 21:03"}, {"message": "hi", "time": None}],
    "event_heartbeat.j2": [{"reason": r} for r in ("function_result", "forced", "requested")],
    "event_function_result.j2": [
        {"function": "archival_memory_search", "ok": True, "result": "…"},
        {"function": "core_memory_replace", "ok": False, "result": "…"},
    ],
    "alert_memory_pressure.j2": [{"used_pct": 78}],
    "parse_error.j2": [
        {"error": Error(kind="no_json", example=EXAMPLE_CALL)},
        {"error": Error(kind="unknown_function", function="send_mesage", example=EXAMPLE_CALL)},
        {"error": Error(kind="invalid_arguments", function="core_memory_append", field="label",
                        problem="must be 'persona' or 'human'", example=EXAMPLE_CALL)},
        {"error": Error(kind="empty", example={})},
        {"error": Error(kind="truncated", example={})},
    ],
    "degenerate.j2": [{"kind": k} for k in JUNK_KINDS],
    "recalled.j2": [
        {"memories": [{"source": "fact", "text": "ペットの名前: ミケ", "time": "", "score": 1.0}], "persona_name": "さくら"},
        {"memories": [{"source": "recall", "text": "富良野に行った", "time": "2025-01-02 21:03", "score": 0.5},
                      {"source": "archival", "text": "誕生日は3月16日", "time": "2025-01-01 10:00", "score": 0.4}],
         "persona_name": "Sam"},
    ],
    "capture.j2": [{"kinds": [{"key": "name", "label": "名前"}, {"key": "job", "label": "仕事"}], "message": "看護師です"}],
    "fact_line.j2": [{"label": "仕事", "value": "看護師"}],
    "summary_user_line.j2": [{"text": "うちの猫の名前はミケだよ。"}],
    "note_passage.j2": [{"sentence": "カレーうどんが好き。", "time": "2025-01-02 21:03"}],
    "summary.j2": [
        {"messages": [{"role": "user", "content": "猫を飼いはじめた"}, {"role": "assistant", "content": "いいね！"},
                      {"role": "function", "content": "ok"}], "previous_summary": None},
        {"messages": [{"role": "user", "content": "hi"}], "previous_summary": "- 名前はタロウ"},
    ],
    "first_message.j2": [{}, {"persona": None}],  # persona is filled in by the test
    "result_search.j2": [
        {"query": "猫", "hits": HITS, "total": 12, "page": 0, "pages": 6},
        {"query": "猫", "hits": HITS, "total": 12, "page": 5, "pages": 6},
        {"query": "ねこ", "hits": [], "total": 0, "page": 0, "pages": 0},
        {"query": "猫", "hits": [], "total": 12, "page": 9, "pages": 6},  # a page past the end
        {"query": None, "hits": HITS, "total": 2, "page": 0, "pages": 1},
        {"query": "猫 AND", "hits": [], "total": 0, "page": 0, "pages": 0, "error": "unbalanced query"},
    ],
    "result_memory_edit.j2": [
        {"ok": True, "label": "human", "error": None, "closest": None, "length": 40, "limit": 2000, "new_length": 60},
        {"ok": False, "label": "human", "error": "not_found", "closest": "名前はタロウ", "length": 40, "limit": 2000, "new_length": 40},
        {"ok": False, "label": "human", "error": "not_found", "closest": None, "length": 40, "limit": 2000, "new_length": 40},
        {"ok": False, "label": "human", "error": "over_limit", "closest": None, "length": 1990, "limit": 2000, "new_length": 2030},
        {"ok": False, "label": "friends", "error": "unknown_label", "closest": None, "length": 0, "limit": 2000, "new_length": 0},
        {"ok": False, "label": "friends", "error": "unknown_label", "closest": None, "length": None, "limit": 2000,
         "new_length": 0, "labels": ["persona", "human", "notes"]},
    ],
    "result_archival_insert.j2": [{}, {"total": 4}],
    "result_pause.j2": [{"minutes": 30}],
    "result_function_error.j2": [{"function": "roll_dice", "error": "ConnectionError: unreachable"}],
    "rethink.j2": [{}],
    "post_history.j2": [{"persona": SimpleNamespace(post_history_instructions="Keep it short.")}],
    "doctor_probe.j2": [{}],
}


@pytest.fixture(params=LANGUAGES)
def library(request: pytest.FixtureRequest, paths: Paths) -> PromptLibrary:
    return PromptLibrary(paths, request.param)


def sample_system(library: PromptLibrary, **changes: Any):
    paths = library.paths
    persona = load_persona(paths, "sakura" if library.language == "ja" else "sam")
    human = load_human(paths, "default" if library.language == "ja" else "default-en")
    variables: dict[str, Any] = dict(
        persona=persona, human=human, core=core_from(persona, human, 2000), recall_count=12,
        archival_count=3, summary=None, functions=function_names(), now="2025-01-02",
    )
    variables.update(changes)
    return library.render_system(**variables)


def test_every_template_has_cases() -> None:
    for language in LANGUAGES:
        names = {p.name for p in (packaged_resource_dir("prompts") / language).glob("*.j2")}
        system_files = {"system.j2"} | {f"{part}.j2" for part in SYSTEM_PARTS}
        missing = names - system_files - set(EVENT_CASES)
        assert not missing, f"add render cases for {sorted(missing)} to EVENT_CASES"
        assert names >= system_files | set(EVENT_CASES), language


def test_every_builtin_function_has_its_line_in_each_language() -> None:
    from memagent.functions.builtin import BUILTIN_FUNCTIONS

    for language in LANGUAGES:
        folder = packaged_resource_dir("prompts") / language / "functions"
        assert {p.stem for p in folder.glob("*.j2")} == {f.name for f in BUILTIN_FUNCTIONS} | {"_default"}


def test_event_templates_render_every_branch(library: PromptLibrary) -> None:
    persona = load_persona(library.paths, "sakura")
    for name, cases in EVENT_CASES.items():
        seen: set[str] = set()
        for variables in cases:
            if "persona" in variables and variables["persona"] is None:
                variables = {**variables, "persona": persona}
            text = library.render(name, **variables)
            assert text.strip(), (name, variables)
            assert not text.endswith("\n"), name
            assert "{{" not in text and "{%" not in text, name
            seen.add(text)
        assert len(seen) == len(cases), f"{name}: two cases rendered the same text"


def test_japanese_text_is_not_escaped(paths: Paths) -> None:
    library = PromptLibrary(paths, "ja")
    example = {"inner_thoughts": "…", "function": "archival_memory_insert", "params": {"content": "こんにちは"}}
    text = library.render("parse_error.j2", error=Error(kind="invalid_arguments", function="archival_memory_insert",
                                                         example=example))
    assert '"content": "こんにちは"' in text


def test_send_message_examples_never_offer_placeholder_values(paths: Paths) -> None:
    """Small models copy example values: a "..." message became a reply of "..." and a mute turn."""
    for language in ("ja", "en"):
        library = PromptLibrary(paths, language)
        for kind in ("no_json", "truncated", "empty", "invalid_arguments"):
            text = library.render("parse_error.j2", error=Error(kind=kind, function=None if kind != "invalid_arguments"
                                                                  else "send_message", example=EXAMPLE_CALL))
            assert '"message": "..."' not in text and '"message": "こんにちは"' not in text
            assert '"function": "send_message"' in text


def test_search_result_header_and_paging(paths: Paths) -> None:
    en = PromptLibrary(paths, "en")
    first = en.render("result_search.j2", query="cat", hits=HITS, total=12, page=0, pages=6)
    assert first.splitlines()[0] == 'Results for "cat": 12 (page 1 of 6)'
    assert "page=1" in first
    last = en.render("result_search.j2", query="cat", hits=HITS, total=12, page=5, pages=6)
    assert "page=" not in last
    assert "No results" in en.render("result_search.j2", query="cat", hits=[], total=0, page=0, pages=0)
    past = en.render("result_search.j2", query="cat", hits=[], total=12, page=9, pages=6)
    assert past.startswith('No more results for "cat": all 12 are on pages 0 to 5')
    ja = PromptLibrary(paths, "ja").render("result_search.j2", query="猫", hits=HITS, total=12, page=0, pages=6)
    assert ja.splitlines()[0] == "「猫」の検索結果: 12件（1/6ページ）"


def test_system_prompt_parts_and_order(library: PromptLibrary) -> None:
    system = sample_system(library)
    assert set(system.parts) == set(SYSTEM_PARTS)
    positions = [system.text.index(system.parts[part]) for part in SYSTEM_PARTS]
    assert positions == sorted(positions)
    persona = load_persona(library.paths, "sakura" if library.language == "ja" else "sam")
    # Character rules and example lines are in the preamble (the template decides; see preamble.j2).
    assert persona.rules[0] in system.parts["preamble"]
    assert persona.examples[0].char in system.parts["preamble"]
    assert persona.text in system.parts["persona"]
    assert "2025-01-02" not in system.parts["preamble"]  # nothing that changes early in the prompt
    for name in function_names():
        assert f"- {name}(" in system.parts["functions"]


def test_japanese_prompt_asks_for_japanese(paths: Paths) -> None:
    system = sample_system(PromptLibrary(paths, "ja"))
    assert "日本語" in system.parts["preamble"]
    send = next(line for line in system.parts["functions"].splitlines() if "send_message(" in line)
    assert "日本語" in send  # small models drift into English unless the message itself asks for Japanese


def test_only_enabled_functions_are_documented(library: PromptLibrary) -> None:
    system = sample_system(library, functions=["send_message", "core_memory_append"])
    assert "core_memory_append(" in system.parts["functions"]
    for name in ("archival_memory_search", "conversation_search", "pause_heartbeats"):
        assert name not in system.parts["functions"]


def test_summary_and_output_styles(library: PromptLibrary) -> None:
    system = sample_system(library, summary="- 名前はタロウ")
    assert "- 名前はタロウ" in system.parts["memory_status"]
    assert "Action: ```json" in sample_system(library, output="action").parts["preamble"]
    assert "<tool_call>" in sample_system(library, output="tool_call").parts["preamble"]
    assert '"params"' in sample_system(library).parts["preamble"]


def test_system_prompt_golden(library: PromptLibrary) -> None:
    text = sample_system(library).text + "\n"
    golden = GOLDEN / "prompts" / f"system_{library.language}.txt"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8"), f"{golden} differs; rerun with UPDATE_GOLDEN=1 after checking"


def test_user_file_shadows_one_packaged_template(paths: Paths) -> None:
    override = paths.user_resource_dir("prompts") / "ja" / "result_pause.j2"
    override.parent.mkdir(parents=True)
    override.write_text("{{ minutes }}分おやすみ。\n", encoding="utf-8")
    library = PromptLibrary(paths, "ja")
    assert library.render("result_pause.j2", minutes=5) == "5分おやすみ。"
    assert library.source_of("result_pause.j2") == override
    # The other templates still come from the package.
    assert library.source_of("degenerate.j2") == packaged_resource_dir("prompts") / "ja" / "degenerate.j2"
    assert "[システム]" in library.render("degenerate.j2", kind="parrots_user")


def test_syntax_error_reports_file_and_line(paths: Paths) -> None:
    bad = paths.user_resource_dir("prompts") / "en" / "result_pause.j2"
    bad.parent.mkdir(parents=True)
    bad.write_text("line one\nline two {% if minutes %}\nno endif\n", encoding="utf-8")
    with pytest.raises(MemagentError) as info:
        PromptLibrary(paths, "en").render("result_pause.j2", minutes=5)
    message = str(info.value)
    assert message.startswith(f"{bad}:")
    assert "\n" not in message
    assert "endif" in message


def test_undefined_variable_reports_file_and_line(paths: Paths) -> None:
    bad = paths.user_resource_dir("prompts") / "en" / "result_pause.j2"
    bad.parent.mkdir(parents=True)
    bad.write_text("Paused.\n{{ minutes }} minutes, {{ secnds }} seconds\n", encoding="utf-8")
    with pytest.raises(MemagentError) as info:
        PromptLibrary(paths, "en").render("result_pause.j2", minutes=5)
    assert str(info.value).startswith(f"{bad}:2: 'secnds' is undefined")


def test_undefined_variable_in_packaged_template(paths: Paths) -> None:
    with pytest.raises(MemagentError) as info:
        PromptLibrary(paths, "ja").render("result_pause.j2")
    packaged = packaged_resource_dir("prompts") / "ja" / "result_pause.j2"
    assert str(info.value).startswith(f"{packaged}:1: 'minutes' is undefined")


def test_missing_template_and_language(paths: Paths) -> None:
    with pytest.raises(MemagentError, match="not found"):
        PromptLibrary(paths, "en").render("nope.j2")
    with pytest.raises(MemagentError, match="language 'fr'"):
        PromptLibrary(paths, "fr")
