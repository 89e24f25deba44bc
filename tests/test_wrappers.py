"""Wrappers: golden prompts for each packaged format, chat-mode layout, user wrappers, one-line errors,
and the `memagent wrapper` commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import memagent.cli
from memagent.cli import cli
from memagent.conversation import ChatMessage, FunctionCall
from memagent.errors import MemagentError
from memagent.paths import Paths, packaged_resource_dir
from memagent.prompts import SystemPrompt
from memagent.wrappers import list_wrappers, load_wrapper

GOLDEN = Path(__file__).resolve().parent / "golden" / "wrappers"
REQUIRED = {"chatml", "command-r", "llama3", "gemma", "mistral"}
PACKAGED = sorted(p.stem for p in packaged_resource_dir("wrappers").glob("*.toml"))

# A fixed system prompt and conversation, independent of the prompt templates' wording, so these
# goldens change only when a wrapper's layout changes.
SYSTEM = SystemPrompt(
    text="PREAMBLE\n\nPERSONA\n\nHUMAN\n\nSTATUS\n\nFUNCTIONS",
    parts={"preamble": "PREAMBLE", "persona": "PERSONA", "human": "HUMAN", "memory_status": "STATUS",
           "functions": "FUNCTIONS"},
)
CONVERSATION = [
    ChatMessage("user", "[2025-01-02 21:03] こんばんは。タロウです。"),
    ChatMessage("assistant", call=FunctionCall(
        "core_memory_append", {"label": "human", "content": "名前はタロウ", "request_heartbeat": True}, "名前を覚えよう。",
    )),
    ChatMessage("function", "[システム] core_memory_append の結果（成功）: 更新した", name="core_memory_append"),
    ChatMessage("user", "[システム] 続きの番が来た。"),
    ChatMessage("assistant", call=FunctionCall("send_message", {"message": "よろしくね、タロウさん！"}, "うれしい。")),
    ChatMessage("user", "[2025-01-02 21:04] \"猫\" は好き？"),
]


def check_golden(path: Path, text: str) -> None:
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} is missing; create it with UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(encoding="utf-8"), f"{path} differs; rerun with UPDATE_GOLDEN=1 after checking"


def write_wrapper(paths: Paths, name: str, text: str) -> Path:
    path = paths.user_resource_dir("wrappers") / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_required_wrappers_are_packaged() -> None:
    assert REQUIRED <= set(PACKAGED)


@pytest.mark.parametrize("name", PACKAGED)
def test_golden_raw_prompt(name: str, paths: Paths) -> None:
    wrapper = load_wrapper(paths, name)
    prompt = wrapper.render(SYSTEM, CONVERSATION)
    assert prompt.startswith(wrapper.bos)
    assert prompt.endswith(wrapper.prefill)
    check_golden(GOLDEN / f"{name}.txt", prompt)


@pytest.mark.parametrize("name", PACKAGED)
def test_golden_chat_messages(name: str, paths: Paths) -> None:
    messages = load_wrapper(paths, name).chat_messages(SYSTEM, CONVERSATION)
    check_golden(GOLDEN / f"{name}.chat.json", json.dumps(messages, ensure_ascii=False, indent=2) + "\n")


@pytest.mark.parametrize("name", PACKAGED)
def test_history_calls_parse_back(name: str, paths: Paths) -> None:
    """What a wrapper writes into history is what its parser reads: the model imitates the history."""
    from memagent.parsing import parse_call

    wrapper = load_wrapper(paths, name)
    for message in CONVERSATION:
        if message.call is None:
            continue
        text = wrapper.format_call(message.call)
        assert text.startswith(wrapper.prefill)
        outcome = parse_call(text[len(wrapper.prefill):], prefill=wrapper.prefill)
        assert outcome.call is not None, outcome.error
        assert (outcome.call.function, outcome.call.arguments, outcome.call.inner_thoughts) == (
            message.call.function, message.call.arguments, message.call.inner_thoughts)


@pytest.mark.parametrize("name", ["gemma", "mistral"])
def test_system_text_kept_when_assistant_speaks_first(name: str, paths: Paths) -> None:
    wrapper = load_wrapper(paths, name)
    greeting = [ChatMessage("assistant", call=FunctionCall("send_message", {"message": "やあ"}, "")),
                ChatMessage("user", "hi")]
    for messages in ([], greeting):
        assert wrapper.render(SYSTEM, messages).count("PREAMBLE") == 1
    chat = wrapper.chat_messages(SYSTEM, greeting)
    assert chat[0] == {"role": "user", "content": SYSTEM.text}
    assert [m["role"] for m in chat] == ["user", "assistant", "user"]


def test_command_r_lays_out_parts(paths: Paths) -> None:
    prompt = load_wrapper(paths, "command-r").render(SYSTEM, CONVERSATION)
    assert prompt.index("# System Preamble\n## Basic Rules\nPREAMBLE") < prompt.index("# User Preamble\nPERSONA")
    # Only the text given (no parts): the wrapper still renders, with the text as the preamble.
    assert "## Basic Rules\nplain system" in load_wrapper(paths, "command-r").render("plain system", [])


def test_user_wrapper_is_listed_and_used(paths: Paths) -> None:
    write_wrapper(paths, "alpaca", '''
description = "Alpaca-style instruction format"
stop = ["### Instruction:"]
prompt = """
{{ system }}
{% for m in messages %}
{% if m.role == "assistant" %}
### Response:
{{ m.call_text }}
{% else %}
### Instruction:
{{ m.content }}
{% endif %}
{% endfor %}
### Response:
"""
''')
    assert "alpaca" in list_wrappers(paths)
    wrapper = load_wrapper(paths, "alpaca")
    assert (wrapper.output, wrapper.constrained, wrapper.prefill, wrapper.bos) == ("json", True, "", "")
    prompt = wrapper.render(SYSTEM, CONVERSATION)
    assert prompt.endswith("### Response:\n")
    assert '### Response:\n{"inner_thoughts": "うれしい。", "function": "send_message"' in prompt


def test_user_wrapper_shadows_packaged(paths: Paths) -> None:
    packaged = (packaged_resource_dir("wrappers") / "chatml.toml").read_text(encoding="utf-8")
    path = write_wrapper(paths, "chatml", packaged.replace('prefill = ""', 'prefill = "{"'))
    wrapper = load_wrapper(paths, "chatml")
    assert wrapper.source == path and wrapper.prefill == "{"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('prompt = "x"\nstop = [\n', "not valid TOML"),
        ('stop = []\n', "missing `prompt`"),
        ('prompt = "x"\nstops = []\n', "unknown key `stops`; known keys:"),
        ('name = "other"\nprompt = "x"\n', "does not match the file name"),
        ('prompt = "x"\noutput = "xml"\n', "output = 'xml' is not allowed"),
        ('prompt = "x"\nstop = "</s>"\n', "`stop` must be a list"),
        ('prompt = "x"\nconstrained = "yes"\n', "`constrained` must be true or false"),
        ('prompt = "x"\n[chat]\nsystem_role = "assistant"\n', "chat.system_role"),
        ('prompt = "x"\n[chat]\nfunction_rol = "user"\n', "unknown key `chat.function_rol`"),
    ],
)
def test_bad_wrapper_files(paths: Paths, text: str, expected: str) -> None:
    path = write_wrapper(paths, "bad", text)
    with pytest.raises(MemagentError) as info:
        load_wrapper(paths, "bad")
    message = str(info.value)
    assert message.startswith(f"{path}:") and expected in message and "\n" not in message, message


def test_template_syntax_error_names_the_file_line(paths: Paths) -> None:
    text = 'description = "x"\nstop = []\nprompt = \'\'\'\n{{ system }}\n{% for m in messages %}\n{{ m.content | }}\n{% endfor %}\'\'\'\n'
    path = write_wrapper(paths, "bad", text)
    with pytest.raises(MemagentError) as info:
        load_wrapper(paths, "bad")
    # The template's text starts on file line 4; the broken filter is on file line 6.
    assert str(info.value).startswith(f"{path}:6: `prompt` template:"), str(info.value)


def test_undefined_variable_names_the_file_line(paths: Paths) -> None:
    path = write_wrapper(paths, "bad", 'stop = []\nprompt = \'\'\'\n{{ system }}\n{{ sistem }}\'\'\'\ncall = "{{ call | tojson }}"\n')
    with pytest.raises(MemagentError) as info:
        load_wrapper(paths, "bad").render(SYSTEM, [])
    assert str(info.value).startswith(f"{path}:4: `prompt` template: 'sistem' is undefined")


def test_unknown_wrapper(paths: Paths) -> None:
    with pytest.raises(MemagentError, match="no wrapper named 'nope'; known: .*chatml"):
        load_wrapper(paths, "nope")


# --- the CLI ---------------------------------------------------------------------------------------

@pytest.fixture
def runner(home: Path) -> CliRunner:
    memagent.cli._register()
    return CliRunner()


def test_cli_list_shows_user_wrapper(runner: CliRunner, paths: Paths) -> None:
    write_wrapper(paths, "mymodel", 'description = "My model"\nprompt = "{{ system }}"\n')
    result = runner.invoke(cli, ["wrapper", "list"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines()}
    assert REQUIRED <= set(rows)
    assert "user" in rows["mymodel"] and "My model" in rows["mymodel"]
    assert "packaged" in rows["chatml"] and "action" in rows["command-r"]


def test_cli_show(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["wrapper", "show", "llama3"])
    assert result.exit_code == 0 and 'name = "llama3"' in result.output


@pytest.mark.parametrize("language", ["ja", "en"])
def test_cli_render_prints_exact_prompt(runner: CliRunner, language: str) -> None:
    persona = "sakura" if language == "ja" else "sam"
    result = runner.invoke(cli, ["wrapper", "render", "--wrapper", "chatml", "--language", language, "--persona", persona])
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    assert text.count("<|im_start|>assistant\n{") == 2  # the memory edit and the reply
    assert ("[システム] core_memory_append の結果（成功）" if language == "ja" else "[System] Result of core_memory_append (ok)") in text


def test_cli_render_command_r_and_chat(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["wrapper", "render", "--wrapper", "command-r"])
    assert result.exit_code == 0, result.output
    assert "Action: ```json" in result.output.split("# User Preamble")[0]  # the preamble shows the Action style
    chat = runner.invoke(cli, ["wrapper", "render", "--wrapper", "gemma", "--chat"])
    messages = json.loads(chat.output)
    assert messages[0]["role"] == "user" and "さくら" in messages[0]["content"]


def test_cli_parse(runner: CliRunner) -> None:
    reply = '{"inner_thoughts": "…", "function": "send_message", "params": {"message": "やあ"}}'
    result = runner.invoke(cli, ["wrapper", "parse", "--wrapper", "chatml"], input=reply)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"function": "send_message", "arguments": {"message": "やあ"}}
    assert "やあ" in result.stdout  # not \\u escapes

    action = '[{"tool_name": "send_message", "parameters": {"inner_thoughts": "…", "message": "やあ"}}]\n```'
    result = runner.invoke(cli, ["wrapper", "parse", "--wrapper", "command-r"], input=action)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["function"] == "send_message"

    bad = runner.invoke(cli, ["wrapper", "parse", "--wrapper", "chatml"], input="hello there")
    assert bad.exit_code == 1 and bad.stdout == ""
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
