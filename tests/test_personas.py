"""Persona and human files: samples load, user files shadow packaged ones, and every validation error
is one line naming the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from memagent.errors import MemagentError
from memagent.paths import Paths
from memagent.personas import (
    Human,
    Persona,
    list_humans,
    list_personas,
    load_human,
    load_persona,
    new_profile_text,
)


def write(paths: Paths, kind: str, name: str, text: str) -> Path:
    path = paths.user_resource_dir(kind) / f"{name}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_of(paths: Paths, text: str, kind: str = "personas") -> str:
    path = write(paths, kind, "broken", text)
    loader = load_persona if kind == "personas" else load_human
    with pytest.raises(MemagentError) as info:
        loader(paths, "broken")
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    return message[len(f"{path}: "):]


def test_sample_personas_and_humans_load(paths: Paths) -> None:
    sakura = load_persona(paths, "sakura")
    assert isinstance(sakura, Persona)
    assert (sakura.key, sakura.name, sakura.language) == ("sakura", "さくら", "ja")
    assert sakura.first_message and sakura.rules and sakura.examples
    assert sakura.examples[0].user and sakura.examples[0].char
    assert "しおり堂" in sakura.text and "---" not in sakura.text
    assert load_persona(paths, "sam").language == "en"
    for key in list_personas(paths):
        load_persona(paths, key)
    for key in list_humans(paths):
        assert isinstance(load_human(paths, key), Human)
    assert {"default", "default-en"} <= set(list_humans(paths))
    assert "_template.ja" not in list_personas(paths)


def test_user_file_shadows_and_adds(paths: Paths) -> None:
    write(paths, "personas", "sakura", "---\nname: さくら改\n---\n別のさくら。\n")
    write(paths, "personas", "kenji", "---\nname: ケンジ\nlanguage: ja\n---\n無口な漁師。\n")
    assert load_persona(paths, "sakura").name == "さくら改"
    assert load_persona(paths, "kenji").text == "無口な漁師。"
    assert {"sakura", "sam", "kenji"} <= set(list_personas(paths))


def test_missing_name(paths: Paths) -> None:
    assert error_of(paths, "---\nlanguage: ja\n---\ntext\n") == (
        "front matter is missing `name`; add `name: ...` between the --- lines"
    )


def test_no_front_matter(paths: Paths) -> None:
    assert "no front matter" in error_of(paths, "ただの文章\n")


def test_yaml_error_has_line(paths: Paths) -> None:
    message = error_of(paths, "---\nname: x\nrules:\n  - a\n bad: [\n---\nbody\n")
    assert message.startswith("line ")
    assert "not valid YAML" in message


def test_unknown_key_lists_known_ones(paths: Paths) -> None:
    message = error_of(paths, "---\nname: x\nfirst_mesage: hi\n---\nbody\n")
    assert message.startswith("unknown front matter key `first_mesage`")
    assert "first_message" in message


def test_wrong_types(paths: Paths) -> None:
    assert "`rules` has the wrong type" in error_of(paths, "---\nname: x\nrules: be nice\n---\nbody\n")
    message = error_of(paths, "---\nname: x\nexamples:\n  - user: hi\n---\nbody\n")
    assert message.startswith("`examples[0].char` is missing")
    assert "char: ..." in message
    assert "`language` = 'fr' is not allowed" in error_of(paths, "---\nname: x\nlanguage: fr\n---\nbody\n")
    assert "`name` is empty" in error_of(paths, "---\nname: ''\n---\nbody\n")


def test_empty_persona_body(paths: Paths) -> None:
    assert "persona text is empty" in error_of(paths, "---\nname: x\n---\n\n")
    # A human may start empty: the agent fills it in.
    write(paths, "humans", "blank", "---\nname: 誰か\n---\n")
    assert load_human(paths, "blank").text == ""


def test_reserved_field(paths: Paths) -> None:
    assert "`text` cannot be set" in error_of(paths, "---\nname: x\ntext: y\n---\nbody\n")


def test_unknown_name(paths: Paths) -> None:
    with pytest.raises(MemagentError, match="no persona named 'nobody'; known: .*sakura"):
        load_persona(paths, "nobody")
    with pytest.raises(MemagentError, match="not valid"):
        load_persona(paths, "../etc/passwd")


@pytest.mark.parametrize("language", ["ja", "en"])
def test_templates_for_new_are_valid(paths: Paths, language: str) -> None:
    for kind, loader in (("personas", load_persona), ("humans", load_human)):
        write(paths, kind, "fresh", new_profile_text(paths, kind, "fresh", language))
        profile = loader(paths, "fresh")
        assert profile.name == "fresh"
        assert profile.language == language
