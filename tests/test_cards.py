"""Character cards: V1/V2/V3 from JSON and PNG (made with Pillow here), import and export through the CLI,
round trips that keep unknown fields, Japanese text, lorebooks in archival memory, one-line errors."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image
from PIL.PngImagePlugin import PngInfo

import memagent.cli
from memagent.cards import V2, V3, Macros, parse_examples, read_png_chunks
from memagent.cli import cli, main
from memagent.paths import Paths
from memagent.personas import load_human, load_persona
from memagent.prompts import PromptLibrary, core_from

# --- cards ------------------------------------------------------------------------------------
UNKNOWN_EXTENSIONS = {"talkativeness": "0.5", "depth_prompt": {"prompt": "{{char}} hums.", "depth": 4},
                      "risuai": {"utilityBot": False, "sourceUrl": None}}


def v2_card() -> dict[str, Any]:
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": "Mira Vale",
            "description": "{{char}} is a lighthouse keeper who writes letters to {{user}}.",
            "personality": "patient, wry, curious",
            "scenario": "{{user}} arrives at <BOT>'s lighthouse during a storm.",
            "first_mes": "Come in out of the rain, {{user}}. I'm {{char}}.",
            "mes_example": "<START>\n{{user}}: Who are you?\n{{char}}: Just the keeper.\n"
                           "<START>\n<USER>: Lonely out here?\n<BOT>: Sometimes.\nThe gulls help.",
            "creator_notes": "Best with slow, quiet chats.",
            "system_prompt": "{{original}}\nWrite {{char}}'s lines only.",
            "post_history_instructions": "Keep replies under three sentences.",
            "alternate_greetings": ["Storm's up, {{user}}."],
            "tags": ["slice of life", "sea"],
            "creator": "someone",
            "character_version": "1.2",
            "extensions": copy.deepcopy(UNKNOWN_EXTENSIONS),
            "character_book": {
                "name": "Gull Point",
                "extensions": {"world_id": 7},
                "entries": [
                    {"keys": ["lamp", "lens"], "content": "The lamp of {{char}}'s lighthouse has a Fresnel lens.",
                     "extensions": {"position": 1}, "enabled": True, "insertion_order": 10},
                    {"keys": ["ghost"], "content": "Disabled lore.", "extensions": {}, "enabled": False,
                     "insertion_order": 20},
                ],
            },
            "x_unknown_data_field": {"kept": [1, 2, 3]},
        },
        "create_date": "2024-5-1 @12h",
    }


def v3_card() -> dict[str, Any]:
    card = v2_card()
    card["spec"], card["spec_version"] = "chara_card_v3", "3.0"
    card["data"].update({
        "nickname": "Mira",
        "group_only_greetings": ["Evening, all."],
        "creation_date": 1714521600,
        "modification_date": 1714608000,
        "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"}],
        "creator_notes_multilingual": {"ja": "静かな会話向け"},
    })
    for entry in card["data"]["character_book"]["entries"]:
        entry["use_regex"] = False
    return card


def japanese_card() -> dict[str, Any]:
    return {
        "spec": "chara_card_v2",
        "spec_version": "2.0",
        "data": {
            "name": "ひより",
            "description": "{{char}}は喫茶店「こもれび」の店主。{{user}}の幼なじみ。",
            "personality": "おっとり、世話好き",
            "scenario": "雨の午後、{{user}}が店にやって来る。",
            "first_mes": "いらっしゃい、{{user}}。今日は何にする？",
            "mes_example": "<START>\n{{user}}: おすすめは？\n{{char}}: 今日はほうじ茶ラテかな。",
            "creator_notes": "",
            "system_prompt": "",
            "post_history_instructions": "",
            "alternate_greetings": [],
            "tags": ["日常"],
            "creator": "",
            "character_version": "",
            "extensions": {"メモ": "未知の拡張も残る"},
            "character_book": {"entries": [{"keys": ["こもれび"], "content": "こもれびは駅前の小さな喫茶店。",
                                            "extensions": {}, "enabled": True, "insertion_order": 0}]},
        },
    }


def b64(card: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(card, ensure_ascii=False).encode("utf-8")).decode("ascii")


def write_png(path: Path, chunks: dict[str, str], color: tuple[int, int, int] = (200, 40, 40)) -> Path:
    info = PngInfo()
    for keyword, text in chunks.items():
        info.add_text(keyword, text)
    Image.new("RGB", (8, 12), color).save(path, format="PNG", pnginfo=info)
    return path


def write_json(path: Path, card: Any) -> Path:
    path.write_text(json.dumps(card, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


def png_texts(path: Path) -> dict[str, dict[str, Any]]:
    texts = {}
    for chunk in read_png_chunks(path.read_bytes(), path):
        if chunk.type == b"tEXt":
            keyword, _, text = chunk.data.partition(b"\0")
            texts[keyword.decode()] = json.loads(base64.b64decode(text))
    return texts


# --- running the CLI --------------------------------------------------------------------------
@pytest.fixture
def runner(home: Path) -> CliRunner:
    memagent.cli._register()
    return CliRunner()


def ok(runner: CliRunner, *args: str) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}{result.exception!r}"
    return result.output


def fails(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run through main() as a user would; the error must be exactly one line, exit code 1."""
    memagent.cli._register()
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    err = capsys.readouterr().err
    assert exit_info.value.code == 1, err
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("error: "), err
    return err


# --- import ------------------------------------------------------------------------------------
def test_import_v2_json_makes_a_persona(runner: CliRunner, paths: Paths, tmp_path: Path) -> None:
    output = ok(runner, "persona", "import", str(write_json(tmp_path / "mira.json", v2_card())))
    assert "mira-vale" in output and "lorebook has 1 entries" in output

    persona = load_persona(paths, "mira-vale")
    assert persona.name == "Mira Vale" and persona.language == "en"
    # {{user}} stays in the persona: each agent fills it at prompt time with what it calls its user.
    assert persona.text == "Mira Vale is a lighthouse keeper who writes letters to {{user}}."
    assert persona.first_message == "Come in out of the rain, {{user}}. I'm Mira Vale."
    assert persona.scenario == "{{user}} arrives at Mira Vale's lighthouse during a storm."
    assert persona.system_prompt == "Write Mira Vale's lines only."  # {{original}}: memagent's own preamble stays
    assert persona.personality == "patient, wry, curious" and persona.description == "patient, wry, curious"
    assert persona.alternate_greetings == ["Storm's up, {{user}}."]
    assert persona.tags == ["slice of life", "sea"] and persona.creator_notes == "Best with slow, quiet chats."
    assert [(e.user, e.char) for e in persona.examples] == [
        ("Who are you?", "Just the keeper."), ("Lonely out here?", "Sometimes.\nThe gulls help.")]
    personas = paths.user_resource_dir("personas")
    assert json.loads((personas / "mira-vale.card.json").read_text(encoding="utf-8")) == v2_card()
    assert not (personas / "mira-vale.card.png").exists()


def test_imported_persona_renders_in_the_system_prompt(runner: CliRunner, paths: Paths, tmp_path: Path) -> None:
    ok(runner, "persona", "import", str(write_json(tmp_path / "mira.json", v2_card())), "--name", "mira")
    persona, human = load_persona(paths, "mira").addressing_user("Ken"), load_human(paths, "default-en")
    system = PromptLibrary(paths, "en").render_system(persona=persona, human=human, core=core_from(persona, human, 2000))
    preamble = system.parts["preamble"]
    for text in ("You are Mira Vale.", "Write Mira Vale's lines only.", "patient, wry, curious",
                 "Ken arrives at Mira Vale's lighthouse", 'User: "Who are you?" → Mira Vale: "Just the keeper."'):
        assert text in preamble, text
    assert "Keep replies under three sentences." not in system.text  # it goes after the history instead
    assert PromptLibrary(paths, "en").render("post_history.j2", persona=persona) == (
        "[System] Always: Keep replies under three sentences.")
    assert "lighthouse keeper who writes letters" in system.parts["persona"]
    assert "{{" not in system.text and "<BOT>" not in system.text


def test_japanese_card_in_png(runner: CliRunner, paths: Paths, tmp_path: Path) -> None:
    card_file = write_png(tmp_path / "hiyori.png", {"chara": b64(japanese_card())})
    ok(runner, "persona", "import", str(card_file), "--name", "hiyori")

    persona = load_persona(paths, "hiyori")
    assert persona.language == "ja" and persona.name == "ひより"
    assert persona.text == "ひよりは喫茶店「こもれび」の店主。{{user}}の幼なじみ。"
    assert persona.first_message == "いらっしゃい、{{user}}。今日は何にする？"
    assert [(e.user, e.char) for e in persona.examples] == [("おすすめは？", "今日はほうじ茶ラテかな。")]
    personas = paths.user_resource_dir("personas")
    assert "喫茶店「こもれび」" in (personas / "hiyori.md").read_text(encoding="utf-8")
    assert "未知の拡張も残る" in (personas / "hiyori.card.json").read_text(encoding="utf-8")  # not \\u escapes

    human = load_human(paths, "default")  # nothing known yet: the character says 「あなた」
    addressed = persona.addressing_user(human.name)
    system = PromptLibrary(paths, "ja").render_system(persona=addressed, human=human, core=core_from(addressed, human, 2000))
    assert "雨の午後、あなたが店にやって来る。" in system.parts["preamble"]
    assert "おっとり、世話好き" in system.parts["preamble"]

    exported = tmp_path / "out.json"
    ok(runner, "persona", "export", "hiyori", "--format", "json", "-o", str(exported))
    assert "ほうじ茶ラテ" in exported.read_text(encoding="utf-8")
    assert json.loads(exported.read_text(encoding="utf-8")) == japanese_card()


def test_ccv3_chunk_is_preferred_over_chara(runner: CliRunner, paths: Paths, tmp_path: Path) -> None:
    old = v2_card()
    old["data"]["name"] = "Old Name"
    card_file = write_png(tmp_path / "both.png", {"chara": b64(old), "ccv3": b64(v3_card())})
    ok(runner, "persona", "import", str(card_file), "--name", "both")
    assert load_persona(paths, "both").name == "Mira Vale"
    stored = json.loads((paths.user_resource_dir("personas") / "both.card.json").read_text(encoding="utf-8"))
    assert stored["spec"] == V3 and stored["data"]["nickname"] == "Mira"


def test_v1_card_without_spec(runner: CliRunner, paths: Paths, tmp_path: Path) -> None:
    v1 = {"name": "Rook", "description": "{{char}} plays chess with {{user}}.", "personality": "calm",
          "scenario": "", "first_mes": "Your move.", "mes_example": ""}
    ok(runner, "persona", "import", str(write_json(tmp_path / "rook.json", v1)))
    persona = load_persona(paths, "rook")
    assert persona.text == "Rook plays chess with {{user}}." and persona.first_message == "Your move."


def test_examples_parsing() -> None:
    text = ("intro line before any speaker\n<START>\n{{char}}: A monologue has no user line.\n"
            "<start>\n{{User}}: one\n{{user}}: two\nMira: reply\n  still reply\n<START>\n\n")
    examples = parse_examples(text, "Mira", Macros(char="Mira", user="User"))
    assert [(e.user, e.char) for e in examples] == [("one\ntwo", "reply\n  still reply")]


# --- export and round trips ----------------------------------------------------------------------
@pytest.mark.parametrize("make_card", [v2_card, v3_card], ids=["v2", "v3"])
def test_json_round_trip_keeps_everything(runner: CliRunner, tmp_path: Path, make_card: Any) -> None:
    original = make_card()
    ok(runner, "persona", "import", str(write_json(tmp_path / "card.json", original)), "--name", "first")
    first = tmp_path / "first.json"
    ok(runner, "persona", "export", "first", "--format", "json", "-o", str(first))
    assert json.loads(first.read_text(encoding="utf-8")) == original

    ok(runner, "persona", "import", str(first), "--name", "second")
    second = tmp_path / "second.json"
    ok(runner, "persona", "export", "second", "--format", "json", "-o", str(second))
    assert json.loads(second.read_text(encoding="utf-8")) == original


def test_png_round_trip_keeps_card_and_picture(runner: CliRunner, tmp_path: Path) -> None:
    original = v3_card()
    ok(runner, "persona", "import", str(write_png(tmp_path / "mira.png", {"ccv3": b64(original)})), "--name", "a")
    first = tmp_path / "first.png"
    ok(runner, "persona", "export", "a", "-o", str(first))
    texts = png_texts(first)
    assert texts["ccv3"] == original
    assert texts["chara"]["spec"] == V2 and texts["chara"]["spec_version"] == "2.0"
    assert texts["chara"]["data"]["extensions"] == UNKNOWN_EXTENSIONS
    assert "nickname" not in texts["chara"]["data"]
    with Image.open(first) as picture:
        assert picture.size == (8, 12) and picture.convert("RGB").getpixel((3, 3)) == (200, 40, 40)

    ok(runner, "persona", "import", str(first), "--name", "b")
    second = tmp_path / "second.png"
    ok(runner, "persona", "export", "b", "-o", str(second))
    assert png_texts(second) == texts


def test_v2_card_gets_both_chunks_and_v2_survives(runner: CliRunner, tmp_path: Path) -> None:
    original = v2_card()
    ok(runner, "persona", "import", str(write_json(tmp_path / "mira.json", original)), "--name", "mira")
    exported = tmp_path / "mira.png"
    ok(runner, "persona", "export", "mira", "-o", str(exported))
    texts = png_texts(exported)
    assert texts["chara"] == original
    assert texts["ccv3"]["spec"] == V3 and texts["ccv3"]["data"]["group_only_greetings"] == []
    ok(runner, "persona", "import", str(exported), "--name", "again")
    back = tmp_path / "back.json"
    ok(runner, "persona", "export", "again", "--format", "json", "--spec", "v2", "-o", str(back))
    assert json.loads(back.read_text(encoding="utf-8")) == original


def test_edits_to_the_persona_are_exported(runner: CliRunner, paths: Paths, tmp_path: Path) -> None:
    ok(runner, "persona", "import", str(write_json(tmp_path / "mira.json", v2_card())), "--name", "mira")
    path = paths.user_resource_dir("personas") / "mira.md"
    text = path.read_text(encoding="utf-8").replace(
        "first_message: Come in out of the rain, {{user}}. I'm Mira Vale.", "first_message: Hello, stranger.")
    path.write_text(text.replace("tags:", "rules:\n- Never leave the lamp\ntags:"), encoding="utf-8")
    exported = tmp_path / "edited.json"
    ok(runner, "persona", "export", "mira", "--format", "json", "-o", str(exported))
    card = json.loads(exported.read_text(encoding="utf-8"))
    expected = v2_card()
    expected["data"]["first_mes"] = "Hello, stranger."
    expected["data"]["extensions"]["memagent"] = {"rules": ["Never leave the lamp"]}
    assert card == expected  # the rest, {{char}} placeholders included, is the card as it came


def test_persona_that_never_was_a_card(runner: CliRunner, paths: Paths, tmp_path: Path) -> None:
    exported = tmp_path / "sakura.png"
    ok(runner, "persona", "export", "sakura", "-o", str(exported))
    with Image.open(exported) as picture:
        picture.verify()
    texts = png_texts(exported)
    assert texts["chara"]["data"]["name"] == "さくら" and texts["ccv3"]["spec"] == V3
    ok(runner, "persona", "import", str(exported), "--name", "sakura2")
    again, sakura = load_persona(paths, "sakura2"), load_persona(paths, "sakura")
    fields = ("name", "language", "text", "first_message", "examples", "rules", "color", "description")
    assert {f: getattr(again, f) for f in fields} == {f: getattr(sakura, f) for f in fields}


# --- files and agents ---------------------------------------------------------------------------------
def test_existing_persona_needs_force_and_delete_removes_the_card(
    runner: CliRunner, paths: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card_file = write_png(tmp_path / "mira.png", {"chara": b64(v2_card())})
    ok(runner, "persona", "import", str(card_file))
    assert "--force" in fails(capsys, "persona", "import", str(card_file))
    assert "sam" in fails(capsys, "persona", "import", str(card_file), "--name", "sam")  # packaged ones too
    assert "replaced" in ok(runner, "persona", "import", str(card_file), "--force")
    personas = paths.user_resource_dir("personas")
    assert (personas / "mira-vale.card.png").is_file()
    ok(runner, "persona", "delete", "mira-vale", "--yes")
    assert not list(personas.iterdir())


def test_lorebook_goes_into_archival_memory(runner: CliRunner, paths: Paths, tmp_path: Path) -> None:
    card_file = write_json(tmp_path / "mira.json", v2_card())
    output = ok(runner, "persona", "import", str(card_file), "--name", "mira", "--agent", "keeper")
    assert "created agent keeper" in output and "loaded 1 lorebook entries" in output
    ok(runner, "persona", "lorebook", "mira", "--agent", "keeper")  # reloading replaces, never duplicates

    from memagent.config import Settings
    from memagent.memory import AgentStore

    with AgentStore.open(paths, Settings(), "keeper") as store:
        assert store.info.persona == "mira"
        assert [p.text for p in store.archival.all()] == ["[lamp, lens] The lamp of Mira Vale's lighthouse has a Fresnel lens."]
        assert store.archival.search("Fresnel lens").hits[0].text.startswith("[lamp, lens]")
        assert "lighthouse keeper" in store.core.get("persona").value


# --- malformed cards: one line each, exit code 1 ---------------------------------------------------
def _bad_cards(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    no_name = v2_card()
    del no_name["data"]["name"]
    bad_tags = v2_card()
    bad_tags["data"]["tags"] = "sea"
    good_png = write_png(tmp_path / "good.png", {"chara": b64(v2_card())}).read_bytes()
    (tmp_path / "truncated.png").write_bytes(good_png[: len(good_png) - 40])
    damaged = bytearray(good_png)
    damaged[40] ^= 0xFF
    (tmp_path / "damaged.png").write_bytes(bytes(damaged))
    with (tmp_path / "huge.json").open("wb") as huge:
        huge.truncate(21 * 1024 * 1024)
    (tmp_path / "text.json").write_text("name: not json", encoding="utf-8")
    return {
        "bad base64": (write_png(tmp_path / "b64.png", {"chara": "%%%not base64%%%"}), "not valid base64"),
        "chunk not json": (write_png(tmp_path / "nj.png", {"ccv3": base64.b64encode(b"{oops").decode()}), "not valid JSON"),
        "file not json": (tmp_path / "text.json", "not valid JSON"),
        "json list": (write_json(tmp_path / "list.json", [v2_card()]), "not a character card"),
        "unknown spec": (write_json(tmp_path / "spec.json", {**v2_card(), "spec": "chara_card_v9"}), "unknown card spec"),
        "no spec, no name": (write_json(tmp_path / "none.json", {"description": "x"}), "not a character card"),
        "data without spec": (write_json(tmp_path / "nospec.json", {"data": v2_card()["data"]}), "no `spec`"),
        "missing name": (write_json(tmp_path / "noname.json", no_name), "no character name"),
        "wrong field type": (write_json(tmp_path / "tags.json", bad_tags), "`data.tags`"),
        "huge file": (tmp_path / "huge.json", "over 20 MB"),
        "png without card": (write_png(tmp_path / "plain.png", {"Comment": "just a picture"}), "no character card"),
        "truncated png": (tmp_path / "truncated.png", "truncated"),
        "damaged png": (tmp_path / "damaged.png", "damaged"),
        "missing file": (tmp_path / "nowhere.png", "no such file"),
    }


BAD_CASES = ["bad base64", "chunk not json", "file not json", "json list", "unknown spec", "no spec, no name",
             "data without spec", "missing name", "wrong field type", "huge file", "png without card",
             "truncated png", "damaged png", "missing file"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_malformed_card_is_one_clear_line(
    case: str, home: Path, paths: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, expected = _bad_cards(tmp_path)[case]
    err = fails(capsys, "persona", "import", str(path))
    assert expected in err and path.name in err, err
    assert not paths.user_resource_dir("personas").exists() or not list(paths.user_resource_dir("personas").iterdir())


def test_export_errors_are_one_line(home: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "no persona named 'nobody'" in fails(capsys, "persona", "export", "nobody")
    assert "no lorebook" in fails(capsys, "persona", "lorebook", "sakura", "--agent", "x")
    assert "cannot write" in fails(capsys, "persona", "export", "sakura", "-o", str(tmp_path / "no" / "dir" / "x.png"))


def test_a_new_chat_agent_gets_the_cards_lorebook(runner: CliRunner, paths: Paths, tmp_path: Path) -> None:
    ok(runner, "persona", "import", str(write_json(tmp_path / "mira.json", v2_card())), "--name", "mira")
    from memagent.config import load_settings
    from memagent.runtime import AgentSession

    with AgentSession(paths, load_settings(paths, environ={}), "fresh", persona="mira") as session:
        assert [p.text for p in session.store.archival.all()] == [
            "[lamp, lens] The lamp of Mira Vale's lighthouse has a Fresnel lens."]


def test_a_long_character_still_makes_an_agent(runner: CliRunner, paths: Paths, tmp_path: Path) -> None:
    card = v2_card()
    card["data"]["description"] = "A very detailed keeper. " * 200  # ~4,800 characters, over core_limit
    ok(runner, "persona", "import", str(write_json(tmp_path / "long.json", card)), "--name", "long")
    from memagent.config import load_settings
    from memagent.runtime import AgentSession

    with AgentSession(paths, load_settings(paths, environ={}), "long-agent", persona="long") as session:
        block = session.store.core.get("persona")
        assert "A very detailed keeper." in block.value and block.limit > block.length
