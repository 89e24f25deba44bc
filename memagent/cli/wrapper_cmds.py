"""`memagent wrapper list|show|render|parse`: inspect prompt formats and test how replies are read."""

from __future__ import annotations

import json
import sys

import click

from ..config import DEFAULT_HUMANS
from ..conversation import ChatMessage, FunctionCall
from ..personas import Human, Persona, load_human, load_persona
from ..prompts import PromptLibrary, SystemPrompt, core_from
from ..resources import is_user_file
from ..wrappers import WrapperError, list_wrappers, load_wrapper
from .context import AppContext, pass_app

# A short fixed exchange for `wrapper render`: a user message, a memory edit with its result and the
# heartbeat that follows, a reply, and the next user message. Events are rendered by the templates,
# so the output is exactly what the model would read.
SAMPLE_TIME = "2025-01-02 21:03"
SAMPLE: dict[str, dict[str, str]] = {
    "ja": {
        "user1": "こんばんは。タロウっていいます。最近、猫を飼いはじめたんだ。",
        "thoughts1": "タロウさん、猫を飼いはじめたんだ。覚えておこう。",
        "memory": "名前はタロウ。最近、猫を飼いはじめた。",
        "thoughts2": "猫の名前も知りたいな。",
        "reply": "タロウさん、よろしくね！猫ちゃん、なんて名前なの？",
        "user2": "ミケだよ。まだ子猫なんだ。",
    },
    "en": {
        "user1": "Hi, I'm Taro. I just adopted a cat.",
        "thoughts1": "Taro has a new cat. Worth remembering.",
        "memory": "Name: Taro. Recently adopted a cat.",
        "thoughts2": "I'd like to know the cat's name.",
        "reply": "Nice to meet you, Taro! What's the cat called?",
        "user2": "Mike. She's still a kitten.",
    },
}


def sample_conversation(
    library: PromptLibrary, persona: Persona, human: Human, core_limit: int, output: str
) -> tuple[SystemPrompt, list[ChatMessage]]:
    text = SAMPLE[library.language]
    core = core_from(persona, human, core_limit)
    system = library.render_system(
        persona=persona, human=human, core=core, recall_count=4, archival_count=0, summary=None,
        now=SAMPLE_TIME.split()[0], output=output,
    )
    old_length = len(core["human"]["value"])
    new_length = old_length + 1 + len(text["memory"])
    edit_result = library.render(
        "result_memory_edit.j2", ok=True, label="human", error=None, closest=None,
        length=old_length, limit=core_limit, new_length=new_length,
    )
    messages = [
        ChatMessage("user", library.render("event_user.j2", message=text["user1"], time=SAMPLE_TIME)),
        ChatMessage("assistant", call=FunctionCall(
            "core_memory_append", {"label": "human", "content": text["memory"], "request_heartbeat": True}, text["thoughts1"],
        )),
        ChatMessage("function", library.render(
            "event_function_result.j2", function="core_memory_append", ok=True, result=edit_result,
        ), name="core_memory_append"),
        ChatMessage("user", library.render("event_heartbeat.j2", reason="requested")),
        ChatMessage("assistant", call=FunctionCall("send_message", {"message": text["reply"]}, text["thoughts2"])),
        ChatMessage("user", library.render("event_user.j2", message=text["user2"], time="2025-01-02 21:04")),
    ]
    return system, messages


@click.group(name="wrapper")
def wrapper_group() -> None:
    """Prompt formats (wrappers/*.toml): list, show, render a sample prompt, parse a reply."""


@wrapper_group.command("list")
@pass_app
def list_cmd(app: AppContext) -> None:
    """List wrappers: name, source (packaged/user), output style, description."""
    found = list_wrappers(app.paths)
    width = max((len(name) for name in found), default=4)
    for name, path in found.items():
        source = "user" if is_user_file(app.paths, "wrappers", path) else "packaged"
        try:
            wrapper = load_wrapper(app.paths, name)
            output, about = str(wrapper.output), wrapper.description
        except WrapperError as exc:
            output, about = "-", f"INVALID: {exc}"
        click.echo(f"{name:<{width}}  {source:<8}  {output:<9}  {about}")


@wrapper_group.command("show")
@click.argument("name")
@click.option("--path", "path_only", is_flag=True, help="Print only the file's path.")
@pass_app
def show_cmd(app: AppContext, name: str, path_only: bool) -> None:
    """Print a wrapper file."""
    wrapper = load_wrapper(app.paths, name)
    if path_only:
        click.echo(str(wrapper.source))
        return
    click.echo(wrapper.source.read_text(encoding="utf-8"), nl=False)


@wrapper_group.command("render")
@click.option("--wrapper", "wrapper_name", help="Wrapper name (default: llm.wrapper; 'auto' shows chat mode).")
@click.option("--language", type=click.Choice(["ja", "en"]), help="Prompt language (default: agent.language).")
@click.option("--persona", "persona_name", help="Persona (default: agent.persona).")
@click.option("--human", "human_name", help="Human profile (default: agent.human).")
@click.option("--chat", is_flag=True, help="Print the chat-mode messages (JSON) instead of the raw prompt.")
@pass_app
def render_cmd(
    app: AppContext, wrapper_name: str | None, language: str | None, persona_name: str | None,
    human_name: str | None, chat: bool,
) -> None:
    """Print the exact prompt the model receives for a short sample conversation."""
    settings = app.settings
    wrapper = load_wrapper(app.paths, wrapper_name or settings.llm.wrapper)
    language = language or settings.agent.language
    library = PromptLibrary(app.paths, language)
    persona = load_persona(app.paths, persona_name or settings.agent.persona)
    human = load_human(app.paths, human_name or settings.agent.human or DEFAULT_HUMANS[language])
    system, messages = sample_conversation(library, persona, human, settings.memory.core_limit, wrapper.output)
    if chat:
        click.echo(json.dumps(wrapper.chat_messages(system, messages), ensure_ascii=False, indent=2))
    else:
        click.echo(wrapper.render(system, messages), nl=False)


@wrapper_group.command("parse")
@click.option("--wrapper", "wrapper_name", help="Wrapper name (default: llm.wrapper); its prefill is put before the text.")
@pass_app
def parse_cmd(app: AppContext, wrapper_name: str | None) -> None:
    """Read a raw model reply on stdin; print the call as {"function", "arguments"} JSON, or exit 1."""
    from ..parsing import parse_call  # the parser pulls in json-repair and the schemas: load on demand

    wrapper = load_wrapper(app.paths, wrapper_name or app.settings.llm.wrapper)
    outcome = parse_call(sys.stdin.read(), prefill=wrapper.prefill)
    if outcome.call is None:
        problem = outcome.error.describe() if outcome.error is not None else "no function call found"
        click.echo(f"error: {problem}", err=True)
        sys.exit(1)
    click.echo(json.dumps({"function": outcome.call.function, "arguments": outcome.call.arguments}, ensure_ascii=False))


def register(cli: click.Group) -> None:
    cli.add_command(wrapper_group)
