"""The junk policy measured both ways on a labelled corpus (tests/data/junk_corpus.jsonl).

Natural: a reply a person could send in this chat — plain or clumsy — with no sign of the machine.
Junk: broken output — the system's own text or tags, pieces of the call, a runaway, the user's words
handed back, the persona's earlier reply again, an assistant's service phrase. Replies whose fault
is their meaning (a wrong fact, a persona claiming the user's name) are in neither side: no text rule
can judge them, and the memory benchmarks measure them.

Each record carries what the agent would have judged it against: the user's line, the replies and
user lines before it, the persona. A reply goes through the policy as in the agent: repaired
(junk.tidy), then judged. A natural reply counts as a false positive when it is rejected or changed;
a junk reply as a false negative when it would be shown, unchanged or changed by a repair that is
not about what makes it junk.

Every record belongs to a split by a hash of its text: rules and thresholds are tuned looking at the
dev split's misses only; the test split's figures are the ones to report. `make test` prints the
rates per language and split; a test fails when any passes its bound.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import pytest

from memagent.functions.registry import function_registry
from memagent.generation import CLICHES_FILE
from memagent.junk import JUNK_KINDS, Reply, ReplyContext, judge, recalled_wording, tidy
from memagent.paths import Paths, resolve_paths
from memagent.personas import load_persona
from memagent.prompts import PromptLibrary

from .conftest import JUNK_CORPUS_FIGURES, TEST_DATA

CORPUS = TEST_DATA / "junk_corpus.jsonl"
LANGUAGES = ("ja", "en")
MIN_PER_SIDE = 200
# Junk that a repair removes (a closing assistant phrase trimmed off, the brackets around a reply):
# shown changed, it is caught. Any other junk that is only changed is still shown.
REPAIRED_BY_TIDY = ("an assistant's service phrase, not a character's", "wrapped whole in brackets")
# Bounds on the measured rates: a rejected good reply costs a regeneration (or, when every attempt is
# rejected, the turn's reply), a missed junk reply is shown and primes the next one.
# Set a little above the measured figures (docs/benchmarks.md#junk-policy).
MAX_FALSE_POSITIVE_RATE = 0.02
MAX_FALSE_NEGATIVE_RATE = {"ja": 0.25, "en": 0.45}


@dataclass(frozen=True)
class Record:
    lang: str
    label: str
    reply: str
    source: str
    persona: str
    user: str | None = None
    earlier: tuple[str, ...] = ()
    earlier_user: tuple[str, ...] = ()
    thoughts: str = ""
    why: str | None = None

    @property
    def split(self) -> str:
        digest = hashlib.sha1(f"{self.lang}/{self.reply}".encode()).digest()
        return "test" if digest[0] % 3 == 0 else "dev"


def records() -> Iterator[Record]:
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        raw["earlier"] = tuple(raw.get("earlier", ()))
        raw["earlier_user"] = tuple(raw.get("earlier_user", ()))
        yield Record(**raw)


@cache
def _library_texts(paths: Paths, lang: str, persona_key: str) -> tuple[tuple[str, ...], tuple[str, ...],
                                                                         tuple[str, ...], tuple[str, ...]]:
    library = PromptLibrary(paths, lang)
    persona = load_persona(paths, persona_key)
    notes = tuple(library.render("degenerate.j2", kind=kind) for kind in JUNK_KINDS)
    tag = tuple(recalled_wording(lambda memories: library.render("recalled.j2", memories=memories,
                                                                 persona_name=persona.name)))
    shown = (persona.text, *(example.char for example in persona.examples))
    return tuple(library.word_list(CLICHES_FILE)), notes, tag, shown


def context_of(record: Record, paths: Paths) -> ReplyContext:
    cliches, notes, tag, shown = _library_texts(paths, record.lang, record.persona)
    return ReplyContext(last_user=record.user, recent_replies=record.earlier, earlier_user_lines=record.earlier_user,
                        cliches=cliches, system_texts=shown, notes=notes, recalled_wording=tag, language=record.lang,
                        function_names=[f.name for f in function_registry()])


@dataclass
class Figures:
    natural: int = 0
    junk: int = 0
    false_positives: list[tuple[Record, str]] | None = None
    false_negatives: list[Record] | None = None

    def rates(self) -> tuple[float, float]:
        return (len(self.false_positives or []) / max(self.natural, 1),
                len(self.false_negatives or []) / max(self.junk, 1))


def outcome(record: Record, paths: Paths) -> str | None:
    """What the policy does with `record.reply`: None when it is shown as it is, else the junk kind
    that rejects it or "repaired" when it is shown changed."""
    context = context_of(record, paths)
    shown = tidy(record.reply, context.cliches)
    kind = judge(Reply(shown, record.thoughts), context)
    return kind or ("repaired" if shown != record.reply else None)


@cache
def measure() -> dict[tuple[str, str], Figures]:
    paths = resolve_paths(TEST_DATA.parent / "no-home")  # packaged prompts and personas only
    figures: dict[tuple[str, str], Figures] = {}
    for record in records():
        done = outcome(record, paths)
        figure = figures.setdefault((record.lang, record.split), Figures(false_positives=[], false_negatives=[]))
        if record.label == "natural":
            figure.natural += 1
            if done is not None:
                assert figure.false_positives is not None
                figure.false_positives.append((record, done))
        else:
            figure.junk += 1
            if done is None or (done == "repaired" and record.why not in REPAIRED_BY_TIDY):
                assert figure.false_negatives is not None
                figure.false_negatives.append(record)
    return figures


def report() -> str:
    lines = ["junk policy on tests/data/junk_corpus.jsonl:"]
    for (lang, split), figure in sorted(measure().items()):
        fp, fn = figure.rates()
        lines.append(f"  {lang} {split:4}: natural {figure.natural:3}, false positives "
                     f"{len(figure.false_positives or []):2} ({fp:4.1%}); junk {figure.junk:3}, "
                     f"false negatives {len(figure.false_negatives or []):2} ({fn:4.1%})")
    return "\n".join(lines)


@pytest.fixture(autouse=True)
def _report(request: pytest.FixtureRequest) -> None:
    request.config.stash[JUNK_CORPUS_FIGURES] = report()


def test_the_corpus_has_both_sides_in_both_languages() -> None:
    sides = Counter((record.lang, record.label) for record in records())
    for lang in LANGUAGES:
        assert sides[(lang, "natural")] >= MIN_PER_SIDE and sides[(lang, "junk")] >= MIN_PER_SIDE, sides


SPLITS = [(lang, split) for lang in LANGUAGES for split in ("dev", "test")]


@pytest.mark.parametrize(("lang", "split"), SPLITS)
def test_natural_replies_are_shown(lang: str, split: str) -> None:
    figure = measure()[(lang, split)]
    rejected = [f"{kind}: {record.reply!r} (to {record.user!r})" for record, kind in figure.false_positives or []]
    assert figure.rates()[0] <= MAX_FALSE_POSITIVE_RATE, "\n".join(rejected)


@pytest.mark.parametrize(("lang", "split"), SPLITS)
def test_junk_replies_are_caught(lang: str, split: str) -> None:
    figure = measure()[(lang, split)]
    missed = [f"{record.why}: {record.reply!r}" for record in figure.false_negatives or []]
    assert figure.rates()[1] <= MAX_FALSE_NEGATIVE_RATE[lang], "\n".join(missed)


@pytest.mark.parametrize("reply", ["おはよう！", "Thank you!", "Nooooo!", "100,000,000 yen", "（思い出した）ミケだよね",
                                   "お手伝いできるかな？"])
def test_the_replies_once_rejected_by_mistake_are_natural(reply: str) -> None:
    said = [record for record in records() if record.reply.startswith(reply) and record.label == "natural"]
    assert said, f"{reply!r} is not in the corpus"
    rejected = {record.reply for figure in measure().values() for record, _ in figure.false_positives or []}
    assert not rejected & {record.reply for record in said}
