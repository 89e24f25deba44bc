"""`memagent persona|human list|show|new|edit|delete` with a scripted $EDITOR."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

import memagent.cli
from memagent.cli import cli

SAKURA_LIKE = "---\nname: ミナ\nlanguage: ja\nrules:\n  - 語尾に「〜ね」をつける\n---\n港町の灯台守の娘。\n"


@pytest.fixture
def runner(home: Path) -> CliRunner:
    memagent.cli._register()
    return CliRunner()


@pytest.fixture
def editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An $EDITOR that replaces the file with the text given to `set_text` (or leaves it alone)."""
    content = tmp_path / "editor-content.txt"
    script = tmp_path / "fake-editor.sh"
    script.write_text(f'#!/bin/sh\nif [ -f "{content}" ]; then cp "{content}" "$1"; fi\n', encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("EDITOR", str(script))
    monkeypatch.delenv("VISUAL", raising=False)

    def set_text(text: str) -> None:
        content.write_text(text, encoding="utf-8")

    return set_text


def invoke(runner: CliRunner, *args: str, input: str | None = None):
    """Run a command; a MemagentError ends up in result.exception (main() would print it as one line)."""
    return runner.invoke(cli, list(args), input=input)


def test_list_and_show(runner: CliRunner) -> None:
    result = invoke(runner, "persona", "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    sakura = next(line for line in lines if line.startswith("sakura"))
    assert "packaged" in sakura and "ja" in sakura and "さくら" in sakura
    assert any(line.startswith("sam ") for line in lines)
    shown = invoke(runner, "persona", "show", "sakura")
    assert shown.exit_code == 0 and shown.output.startswith("---\nname: さくら")
    assert invoke(runner, "human", "show", "default", "--path").output.strip().endswith("humans/default.md")


def test_new_opens_editor_and_validates(runner: CliRunner, editor, home: Path) -> None:
    editor(SAKURA_LIKE)
    result = invoke(runner, "persona", "new", "mina")
    assert result.exit_code == 0, result.output
    target = home / "personas" / "mina.md"
    assert target.read_text(encoding="utf-8") == SAKURA_LIKE
    listed = invoke(runner, "persona", "list").output
    assert any(line.startswith("mina") and "user" in line for line in listed.splitlines())
    again = invoke(runner, "persona", "new", "mina")
    assert again.exit_code != 0 and "already exists" in str(again.exception or again.output)


def test_new_reports_invalid_file(runner: CliRunner, editor, home: Path) -> None:
    editor("---\nlanguage: ja\n---\nbody\n")
    result = invoke(runner, "persona", "new", "broken")
    assert result.exit_code != 0
    message = str(result.exception)
    assert "missing `name`" in message and "memagent persona edit broken" in message
    assert (home / "personas" / "broken.md").is_file()  # the work is kept for the next edit


def test_new_without_editor_writes_template(runner: CliRunner, home: Path) -> None:
    result = invoke(runner, "human", "new", "taro", "--no-edit", "--language", "ja")
    assert result.exit_code == 0, result.output
    assert "name: taro" in (home / "humans" / "taro.md").read_text(encoding="utf-8")


def test_edit_copies_packaged_first(runner: CliRunner, editor, home: Path) -> None:
    editor(SAKURA_LIKE.replace("ミナ", "さくら2"))
    result = invoke(runner, "persona", "edit", "sakura")
    assert result.exit_code == 0, result.output
    assert "copied the packaged persona" in result.output
    assert "さくら2" in (home / "personas" / "sakura.md").read_text(encoding="utf-8")


def test_delete(runner: CliRunner, editor, home: Path) -> None:
    packaged = invoke(runner, "persona", "delete", "sakura", "--yes")
    assert packaged.exit_code != 0 and "packaged" in str(packaged.exception)
    editor(SAKURA_LIKE)
    invoke(runner, "persona", "new", "mina")
    declined = invoke(runner, "persona", "delete", "mina", input="n\n")
    assert declined.exit_code != 0 and (home / "personas" / "mina.md").exists()
    confirmed = invoke(runner, "persona", "delete", "mina", input="y\n")
    assert confirmed.exit_code == 0 and not (home / "personas" / "mina.md").exists()
    # Deleting a user copy of a packaged persona brings the packaged one back.
    invoke(runner, "persona", "edit", "sakura")
    restored = invoke(runner, "persona", "delete", "sakura", "--yes")
    assert restored.exit_code == 0 and "used again" in restored.output


def test_bad_names(runner: CliRunner) -> None:
    for name in ("../x", "_template", "a b"):
        result = invoke(runner, "persona", "new", name, "--no-edit")
        assert result.exit_code != 0 and "not valid" in str(result.exception)
    missing = invoke(runner, "human", "show", "nobody")
    assert missing.exit_code != 0 and "no human named 'nobody'" in str(missing.exception)
