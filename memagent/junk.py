"""The junk policy: what a send_message reply must never be shown as, in one ordered list of rules
(RULES), the repairs made to a reply before it is judged (tidy), and the text signals they use.

A reply is judged against what the model saw (ReplyContext); the first rule that holds names its
kind, which picks the corrective note for the regeneration (degenerate.j2) and, by its severity,
the least harmful attempt when every regeneration failed. The rules, in order:
- "empty_message": nothing but whitespace/punctuation ("...", "。").
- "system_note": starts, or has a line that starts, like one of the system's own notes ("[システム]",
  "[Recalled memories…"), or holds the recalled-memory line's opening: a small model copies the tag,
  and every stored copy primes the next one.
- "looping": the same character or phrase over and over (「わわわわわ…」), a sampler runaway.
- "call_debris": pieces of the call in the message — a `}` in a message that opens none, the call's
  closing braces, a code fence, a function's name — or an opening that is a command, a handle or
  markup ("/", "@AI", "+ ", "<").
- "mixed_scripts": letters of two writing systems that no one language mixes (Japanese with
  Hangul, Cyrillic…). Latin mixes with every one of them (「OKだよ」, "LINEで") and is never counted.
- "other_language": none of the persona's letters while the user wrote in them, and a sentence's worth
  in another writing system (a Japanese persona answering a Japanese line in English). A word or two
  ("Thank you!", 「OK！」) is talk.
- "parrots_user": the message repeats the user's last message (or holds all of a long one), one of
  their earlier lines, a sentence of theirs word for word, or copies a text the system wrote into the
  prompt (an example reply, a corrective note, a recalled memory, the persona's description).
- "repeated_reply": the message repeats one of the recent assistant replies, opens or ends like
  each of the last two (the same reply with a word changed), or closes with the sentence that
  closed two of the last four (a tic).
- "assistant_cliche": the message holds a phrase a character never says ("How can I assist you",
  「何かお手伝いできることはありますか」), from the language's editable cliches.txt.
- "thoughts_equal_message": inner_thoughts says the same as the message — the one flaw a reply may
  be shown with (its thoughts are dropped).

Comparison ignores case, width (NFKC), whitespace and punctuation; longer texts also count as the
same when difflib finds them nearly identical. The thresholds below are measured on the labelled
corpus in tests/data/junk_corpus.jsonl (tests/test_junk_corpus.py), not on one transcript.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import cached_property
from typing import Literal

from memagent.sentences import join_sentences, split_sentences

JunkKind = Literal[
    "empty_message", "system_note", "looping", "call_debris", "mixed_scripts", "other_language", "parrots_user",
    "repeated_reply", "assistant_cliche", "thoughts_equal_message"]

# Echoing a short greeting ("おはよう" -> "おはよう!") is a natural reply, so parroting needs a
# message of some length; a repeated reply is flagged sooner.
PARROT_MIN_CHARS = 8
REPEAT_MIN_CHARS = 4
# A shorter reply ("どうぞ", "え？") is a repeat when it equals one of the last few: a small model can
# answer turn after turn with the same short word, under the length other repeats are flagged at.
SHORT_REPEAT_WINDOW = 3
# Beyond that window only a reply of this weight (a CJK character counts double) repeats an earlier
# one: a sentence said twice is a copy, a greeting or a thank-you said twice is not.
LONG_REPEAT_MIN_WEIGHT = 16
# A reply that contains the user's whole line is parroting once that line is a real sentence (a short
# "Nice to meet you" echoed in "Nice to meet you too!" is natural). A CJK character counts double: it
# carries about what two Latin letters do. The line must also be most of the reply: a short answer
# taken up in a comment of its own (「青いハッチバック」 → 「青いハッチバック、街乗りにちょうどよさそう。」) is talk.
PARROT_LINE_MIN_WEIGHT = 16
PARROT_LINE_SHARE = 0.5
# A reply that is mostly one piece of a user's line, and ends with it, copies the line with an
# interjection put in front or the line's own opening dropped (「わたしは田中ゆいです。会社で…」 →
# 「うわ、田中ゆいです。会社で…」). A reply that confirms what it heard ends with words of its own
# (「大阪に引っ越したんだね！」), and a real answer takes up less of the user's words
# (「猫カフェに行こうと思ってるんだね」 shares 12 of its 16 characters). The piece must be most of the
# user's line too: echoing its closing greeting ("…bed soon. Good night." → "Good night!") is talk.
PARROT_FRAGMENT_SHARE = 0.8
# Below this many characters only exact (normalised) equality counts.
SIMILARITY_MIN_CHARS = 20
SIMILARITY_RATIO = 0.9


# The opening of the system's own bracketed notes, in every language we ship (degenerate.j2,
# alert_memory_pressure.j2, post_history.j2, recalled.j2, capture.j2).
# A reply that opens with a time stamp copies how the system writes messages and memories
# ("[2025-01-02 21:03] …", "(2025-01-02 21:03) …"). Quoted or braced, it is the same tag
# (「'[System]'」, 「'{System}' + '…'」).
# At the start of the reply or of any of its lines: a reply, then "---" and a copy of the corrective
# note below it, is caught too.
# A role word in quotes opening the reply, alone or owning what follows, is the same tag again
# (「'System'の答えは…」); 「「システム」って難しいよね」 is talk.
_SYSTEM_NOTE = re.compile(
    r"^\s*(-\s*)?(['\"`「『]*\s*[\[【［(（{]\s*(システム|system|(思い出した|recalled)(?!\s*[\])）】])|メモ係|note-taker"
    r"|\d{4}-\d{2}-\d{2})"
    r"|['\"`「『]\s*(システム|system)\s*['\"`」』]\s*(の|$))",
    re.IGNORECASE | re.MULTILINE)


# One to four characters repeated eight or more times in a row (after normalisation); digits are
# read as one number first ("100,000,000 yen" is no runaway).
_LOOP = re.compile(r"(.{1,4}?)\1{7,}")
_NUMBER = re.compile(r"\d+")
# A longer phrase three times in a row (「猫がappearingSFなんだ」 over and over): the same runaway.
_PHRASE_LOOP = re.compile(r"(.{5,40}?)\1{2,}")


def loops(message_text: str) -> bool:
    """A sampler runaway in a normalised message: a short unit eight times or a phrase three times
    in a row."""
    return bool(_LOOP.search(_NUMBER.sub("0", message_text)) or _PHRASE_LOOP.search(message_text))


def _weight(text: str) -> int:
    return len(text) + sum(1 for char in text if ord(char) >= 0x2E80)


# A reply that is nothing but a role or tag word ("system").
_BARE_TAG = re.compile(r"^\W*(system|システム|assistant|アシスタント|user|ユーザー)\W*$", re.IGNORECASE)


def is_system_note(message: str) -> bool:
    text = unicodedata.normalize("NFKC", message)
    return bool(_SYSTEM_NOTE.search(text) or _BARE_TAG.match(text))


# The call's own closing braces, or a code fence: the call or code leaking into what the user reads.
_CALL_OR_CODE = re.compile(r"\}\}|```")


def has_call_debris(message: str, function_names: Sequence[str] = ()) -> bool:
    """Pieces of the call in what the user reads: a closing brace in a message that opens none (a
    message with braces of its own, "Use {braces} like this }", is left alone), the call's closing
    braces or a code fence anywhere, the name of one of the agent's functions ("send_MESSAGE only");
    or a message that opens like a command or markup."""
    text = unicodedata.normalize("NFKC", message)
    folded = text.casefold()
    return (("}" in text and "{" not in text) or bool(_CALL_OR_CODE.search(text)) or opens_like_a_command(text)
            or any(name.casefold() in folded for name in function_names if "_" in name))


# What a reply never opens with: a command or an escape (「/はい?」), a handle ("@AI"), a diff or
# list marker ("+ I drive a blue Jimny."), a tag ("<あなたの…").
_COMMAND_OPENINGS = ("/", "\\", "@", "+", "<")


def opens_like_a_command(message: str) -> bool:
    return message.lstrip().startswith(_COMMAND_OPENINGS)


# Writing systems by their letters; Latin, digits, symbols and emoji belong to none. Greek is left
# out: its letters stand in formulas within any language (「ρの値」).
WRITING_SYSTEMS = {
    "japanese": re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]"),
    "hangul": re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]"),
    "cyrillic": re.compile(r"[\u0400-\u04ff]"),
    "arabic": re.compile(r"[\u0600-\u06ff]"),
    "hebrew": re.compile(r"[\u0590-\u05ff]"),
    "thai": re.compile(r"[\u0e00-\u0e7f]"),
    "devanagari": re.compile(r"[\u0900-\u097f]"),
}


def mixes_scripts(message: str) -> bool:
    """Letters of two writing systems other than Latin in one message (「ミケ的猫の名前입니다」)."""
    text = unicodedata.normalize("NFKC", message)
    return sum(1 for letters in WRITING_SYSTEMS.values() if letters.search(text)) >= 2


# The letters each language we ship is written in.
LANGUAGE_LETTERS = {"ja": WRITING_SYSTEMS["japanese"], "en": re.compile(r"[a-z]", re.IGNORECASE)}
# Letters of another writing system (a CJK character counts double) that make a reply one in another
# language rather than a word of it.
OTHER_LANGUAGE_MIN_WEIGHT = 16


def in_another_language(message: str, user_line: str | None, language: str) -> bool:
    """A reply with none of `language`'s letters to a user line that has them, and a sentence's worth
    of letters of another writing system."""
    own = LANGUAGE_LETTERS.get(language)
    if own is None or not user_line or not own.search(user_line):
        return False
    text = unicodedata.normalize("NFKC", message)
    return not own.search(text) and _weight("".join(char for char in text if char.isalpha())) >= OTHER_LANGUAGE_MIN_WEIGHT


def normalise_text(text: str) -> str:
    """Case-, width-, whitespace- and punctuation-insensitive form used for every comparison."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(char for char in folded if unicodedata.category(char)[0] not in "PZC")


def nearly_equal(first: str, second: str, min_chars: int = 1) -> bool:
    """True when two normalised texts are equal (and at least `min_chars` long), or both are long
    and difflib finds them at least SIMILARITY_RATIO alike."""
    if len(first) < min_chars or len(second) < min_chars:
        return False
    if first == second:
        return True
    if min(len(first), len(second)) < SIMILARITY_MIN_CHARS:
        return False
    matcher = SequenceMatcher(None, first, second, autojunk=False)
    # The cheap upper bounds first: a reply is compared with a few hundred earlier ones.
    return (matcher.real_quick_ratio() >= SIMILARITY_RATIO and matcher.quick_ratio() >= SIMILARITY_RATIO
            and matcher.ratio() >= SIMILARITY_RATIO)


def copies_a_user_line(message_text: str, line_text: str) -> bool:
    """`message_text` (normalised) is nearly `line_text` (normalised), or mostly one piece of it that
    ends the reply (see PARROT_FRAGMENT_SHARE)."""
    if nearly_equal(line_text, message_text, PARROT_MIN_CHARS):
        return True
    if len(message_text) < PARROT_MIN_CHARS:
        return False
    matcher = SequenceMatcher(None, message_text, line_text, autojunk=False)
    piece = matcher.find_longest_match(0, len(message_text), 0, len(line_text))
    return (piece.size >= PARROT_MIN_CHARS and piece.size >= PARROT_FRAGMENT_SHARE * len(message_text)
            and piece.size >= len(line_text) / 2 and piece.a + piece.size == len(message_text))


def repeats_an_earlier_user_line(message: str, lines: Sequence[str]) -> bool:
    """A reply that is one of the user's earlier lines (asked 「うちの猫の名前は？」, an answer of
    「おはよう！私の名前、覚えてる？」). The newest user line has the parrot rules of its own (a piece
    of it is a copy too); an earlier one must be nearly the whole reply, since it holds facts a reply
    may say back (「好きな食べ物はいちご大福！」 → 「ゆいの好きな食べ物はいちご大福」)."""
    mine = normalise_text(message)
    return any(nearly_equal(normalise_text(line), mine, PARROT_MIN_CHARS) for line in lines)


# Sentences of the user's said back as the persona's own: one word for word (from any of their lines),
# or two or more nearly so from earlier lines (runs of this share and weight, a CJK character counting
# double) — the persona reciting what the user said (「はい、私の誕生日は3月14日です。娘が4月から
# ひばり幼稚園に入ったの。うちの窓辺はバジルでいっぱいだよ。」, "My friend's cat is called Tama. The
# cat is so cute."). One sentence restated is how a recall answer or a confirmation sounds
# (「日曜はボルダリングに行ってるんだよね」, 「大阪に引っ越したんだね！」).
SENTENCE_COPY_MIN_WEIGHT = 16
SENTENCE_COPY_SHARE = 0.85


def recites_user_sentences(message: str, earlier_lines: Sequence[str], newest_line: str | None = None) -> bool:
    """`message` holds a sentence of the user's word for word, or two of `earlier_lines` nearly so."""
    def sentences_of(lines: Sequence[str]) -> list[str]:
        found = [normalise_text(sentence) for line in lines for _, sentence in split_sentences(line)]
        return [sentence for sentence in found if _weight(sentence) >= SENTENCE_COPY_MIN_WEIGHT]

    earlier = sentences_of(earlier_lines)
    every = set(earlier + sentences_of([newest_line] if newest_line else []))
    copied = 0
    for _, sentence in split_sentences(message):
        mine = normalise_text(sentence)
        if _weight(mine) < SENTENCE_COPY_MIN_WEIGHT:
            continue
        if mine in every:
            return True
        for their in earlier:
            run = SequenceMatcher(None, mine, their, autojunk=False).find_longest_match(0, len(mine), 0, len(their)).size
            if run >= SENTENCE_COPY_SHARE * len(mine) and _weight(mine[:run]) >= SENTENCE_COPY_MIN_WEIGHT:
                copied += 1
                break
    return copied >= 2


# Katakana to hiragana: the same word in the other script is the same reply (「うん...」 and 「ウん...」).
# Only for repeats: elsewhere the script tells a name from a word.
_KANA_FOLD = {code: code - 0x60 for code in range(ord("ァ"), ord("ヶ") + 1)}


def _repeats(message_text: str, earlier_replies: Sequence[str]) -> bool:
    """`message_text` (normalised) repeats one of `earlier_replies` (oldest first): any of them when
    it is a sentence of its own (LONG_REPEAT_MIN_WEIGHT), the last SHORT_REPEAT_WINDOW when it is
    shorter — 「おはよう！」 or "Thank you!" said again a day later is talk."""
    recent = len(earlier_replies) - SHORT_REPEAT_WINDOW
    message_text = message_text.translate(_KANA_FOLD)
    distinctive = _weight(message_text) >= LONG_REPEAT_MIN_WEIGHT
    for position, reply in enumerate(earlier_replies):
        earlier = normalise_text(reply).translate(_KANA_FOLD)
        if position >= recent:
            if nearly_equal(earlier, message_text, REPEAT_MIN_CHARS) or earlier == message_text:
                return True
        elif distinctive and nearly_equal(earlier, message_text, REPEAT_MIN_CHARS):
            return True
    return False


# A reply that opens or ends like each of the last FRAME_REPLIES replies is the same reply with a word
# changed (「(ミケの名前)新しい文を追加」, 「(緑茶)新しい文を追加」), or a persona example line opening
# reply after reply. Shared text of this weight (a CJK character counts double) at the start or the
# end, after normalisation.
FRAME_REPLIES = 2
FRAME_MIN_WEIGHT = 12  # 6 CJK characters; three replies opening 「うん、いいね！」 are still talk
# A closing sentence that already closed FRAME_REPLIES of the last CLOSING_WINDOW replies is a tic
# the persona ends every reply with (「…。何をしろ？」, "… It can be a good time to relax."), even
# when a reply in between ended otherwise. Shorter closings (「ね！」, "Haha.") are talk.
CLOSING_WINDOW = 4
CLOSING_MIN_WEIGHT = 8


def repeats_a_frame(message: str, earlier_replies: Sequence[str]) -> bool:
    """`message` shares its opening or its ending with each of the last FRAME_REPLIES of
    `earlier_replies` (oldest first), or its closing sentence with FRAME_REPLIES of the last
    CLOSING_WINDOW."""
    message_text = normalise_text(message)
    last = [normalise_text(reply) for reply in earlier_replies[-FRAME_REPLIES:]]
    if len(last) < FRAME_REPLIES:
        return False
    opening = min(len(os.path.commonprefix([message_text, reply])) for reply in last)
    ending = min(len(os.path.commonprefix([message_text[::-1], reply[::-1]])) for reply in last)
    if (_weight(message_text[:opening]) >= FRAME_MIN_WEIGHT
            or _weight(message_text[len(message_text) - ending:]) >= FRAME_MIN_WEIGHT):
        return True
    closing = _closing_sentence(message)
    if _weight(closing) < CLOSING_MIN_WEIGHT or closing == message_text:
        return False
    return sum(1 for reply in earlier_replies[-CLOSING_WINDOW:] if _closing_sentence(reply) == closing) >= FRAME_REPLIES


def _closing_sentence(text: str) -> str:
    sentences = split_sentences(text)
    return normalise_text(sentences[-1][1]) if sentences else ""


def without_closing_cliches(text: str, cliches: Sequence[str]) -> str | None:
    """`text` without its closing sentences that hold an assistant cliché — the tail small models add
    to a real answer (「はい、ミケだよ。何か他にもお手伝いできることはありますか？」) — or None when
    there is none, or when nothing of the reply would be left (a reply that is only a cliché is
    regenerated instead)."""
    folded = [c for c in (normalise_text(c) for c in cliches) if c]
    sentences = [sentence for _, sentence in split_sentences(text)]
    kept = list(sentences)
    while kept and any(cliche in normalise_text(kept[-1]) for cliche in folded):
        kept.pop()
    rest = join_sentences(kept).strip()
    if len(kept) == len(sentences) or not normalise_text(rest):
        return None
    return rest


# Copying a text the prompt shows (an example reply, a corrective note) is caught even for short
# texts and small edits ("どうだった？" → "どうだったか？"), since such texts are never natural replies.
COPY_MIN_CHARS = 6
COPY_RATIO = 0.85
# A reply that is mostly one piece cut out of a longer text the system wrote (the system prompt, a
# corrective note, a memory-pressure alert, the recalled-memories turn) is a copy too: small models
# answer with 「自分の言葉で、話を一歩進める返事をすること。」 or the persona's own description. A
# reply that merely contains a remembered value (「ミケだよね！」) shares far less than this.
COPY_FRAGMENT_MIN_CHARS = 8
COPY_FRAGMENT_SHARE = 0.7


# A corrective note is an instruction; no run of it this long belongs in a reply, however much else
# the reply says.
# "something new" may be said, "say something new that fits" (24) may not; a CJK character counts
# double: 「一歩進める返事をすること」 (12 characters) is the parrot note's instruction.
NOTE_RUN_WEIGHT = 20


def quotes_a_note(message: str, notes: Sequence[str]) -> bool:
    """True when `message` holds a run of one of `notes` weighing NOTE_RUN_WEIGHT or more."""
    mine = normalise_text(message)
    for note in notes:
        theirs = normalise_text(note)
        matcher = SequenceMatcher(None, mine, theirs, autojunk=False)
        match = matcher.find_longest_match(0, len(mine), 0, len(theirs))
        if _weight(mine[match.a: match.a + match.size]) >= NOTE_RUN_WEIGHT:
            return True
    return False


def copies_any(message: str, shown_texts: Sequence[str]) -> bool:
    """True when `message` is (nearly) one of `shown_texts`, or mostly a fragment of one."""
    mine = normalise_text(message)
    if len(mine) < COPY_MIN_CHARS:
        return False
    for text in shown_texts:
        theirs = normalise_text(text)
        if len(theirs) < COPY_MIN_CHARS:
            continue
        matcher = SequenceMatcher(None, mine, theirs, autojunk=False)
        if len(theirs) <= 2 * len(mine) and matcher.ratio() >= COPY_RATIO:
            return True
        piece = matcher.find_longest_match(0, len(mine), 0, len(theirs)).size
        if piece >= COPY_FRAGMENT_MIN_CHARS and piece >= COPY_FRAGMENT_SHARE * len(mine):
            return True
    return False


@dataclass(frozen=True)
class ReplyContext:
    """What a reply is judged against: what the model was shown and what was said before."""

    last_user: str | None = None  # the user's line this reply answers
    recent_replies: Sequence[str] = ()  # the persona's earlier replies, oldest first
    earlier_user_lines: Sequence[str] = ()  # the user's lines before the last one
    cliches: Sequence[str] = ()  # the language's cliches.txt
    system_texts: Sequence[str] = ()  # texts the system wrote into the prompt: a reply must not copy one
    notes: Sequence[str] = ()  # corrective notes: a reply may not quote a run of one
    recalled: Sequence[str] = ()  # this turn's recalled memory lines
    asked: Sequence[str] = ()  # remembered values the user asked for: the answer, not a copy
    # the recalled-memory line's own words (「さくらが覚えていること」, 「ユーザーが前に言った」): see recalled_wording
    recalled_wording: Sequence[str] = ()
    language: str = ""  # the persona's language ("ja", "en")
    function_names: Sequence[str] = ()  # the agent's functions: their names are never talk


@dataclass(frozen=True)
class Reply:
    message: str
    thoughts: str = ""

    @cached_property
    def text(self) -> str:
        return normalise_text(self.message)


@dataclass(frozen=True)
class Rule:
    kind: JunkKind
    severity: int  # which flawed attempt is least harmful to keep when every regeneration failed
    holds: Callable[[Reply, ReplyContext], bool] = field(repr=False)
    showable: bool = False  # a reply with this flaw may still be shown, the flaw removed


def _is_empty(reply: Reply, context: ReplyContext) -> bool:
    return not reply.text


def _is_system_note(reply: Reply, context: ReplyContext) -> bool:
    return is_system_note(reply.message) or any(
        len(words) >= PARROT_MIN_CHARS and words in reply.text for words in map(normalise_text, context.recalled_wording))


def recalled_wording(render: Callable[[list[dict[str, str]]], str]) -> list[str]:
    """The words the recalled-memory line is made of, without any memory: its opening (rendered with
    none) and what wraps a statement the user made (rendered with one, its text left out). A reply
    holding them copies the system's line instead of speaking."""
    opening = render([])
    marker = "\x00"
    around = render([{"source": "note", "text": marker, "time": "", "score": "1"}]).split(marker)[0]
    wrapper = normalise_text(around).replace(normalise_text(opening), "", 1)
    return [opening, wrapper]


def _loops(reply: Reply, context: ReplyContext) -> bool:
    return loops(reply.text)


def _has_call_debris(reply: Reply, context: ReplyContext) -> bool:
    return has_call_debris(reply.message, context.function_names)


def _mixes_scripts(reply: Reply, context: ReplyContext) -> bool:
    return mixes_scripts(reply.message)


def _in_another_language(reply: Reply, context: ReplyContext) -> bool:
    return in_another_language(reply.message, context.last_user, context.language)


def _parrots(reply: Reply, context: ReplyContext) -> bool:
    """A copy of the user's words or of a text the system wrote. A reply may be mostly the value asked
    for, which the recalled line holds too (「写真を撮ることかな」 for 「趣味: 写真を撮ることかな」): the
    value is the answer, so it is left out of the comparison; the rest must not be a copy nor only the
    memory's label (「- ペットの名前: ミケ」)."""
    if context.last_user:
        user_text = normalise_text(context.last_user)
        if copies_a_user_line(reply.text, user_text):
            return True
        if (_weight(user_text) >= PARROT_LINE_MIN_WEIGHT and user_text in reply.text
                and len(user_text) >= PARROT_LINE_SHARE * len(reply.text)):
            return True  # the user's whole line inside a reply of its own
    rest = without_values(reply.message, context.asked)
    # A line or sentence with the value asked for is the answer, however the user put it.
    if repeats_an_earlier_user_line(rest, context.earlier_user_lines):
        return True
    if recites_user_sentences(rest, context.earlier_user_lines, context.last_user):
        return True
    return (copies_any(rest, [*context.notes, *context.system_texts])
            or only_a_label(rest, context.recalled, context.asked)
            or quotes_a_note(reply.message, context.notes))


def _repeats_a_reply(reply: Reply, context: ReplyContext) -> bool:
    return _repeats(reply.text, context.recent_replies) or repeats_a_frame(reply.message, context.recent_replies)


def _holds_a_cliche(reply: Reply, context: ReplyContext) -> bool:
    return any(cliche in reply.text for cliche in (normalise_text(c) for c in context.cliches) if cliche)


def _thoughts_equal_message(reply: Reply, context: ReplyContext) -> bool:
    return nearly_equal(normalise_text(reply.thoughts), reply.text)


RULES: tuple[Rule, ...] = (
    Rule("empty_message", 6, _is_empty),
    Rule("system_note", 5, _is_system_note),
    Rule("looping", 4, _loops),
    Rule("call_debris", 4, _has_call_debris),
    Rule("mixed_scripts", 4, _mixes_scripts),
    Rule("other_language", 4, _in_another_language),
    Rule("parrots_user", 3, _parrots),
    Rule("repeated_reply", 2, _repeats_a_reply),
    Rule("assistant_cliche", 2, _holds_a_cliche),
    Rule("thoughts_equal_message", 1, _thoughts_equal_message, showable=True),
)
JUNK_KINDS: tuple[JunkKind, ...] = tuple(rule.kind for rule in RULES)
RULE_BY_KIND: dict[JunkKind, Rule] = {rule.kind: rule for rule in RULES}


def judge(reply: Reply, context: ReplyContext) -> JunkKind | None:
    """The kind of junk `reply` is (the first rule that holds), or None when it may be shown."""
    return next((rule.kind for rule in RULES if rule.holds(reply, context)), None)


def judge_shown(reply: str, earlier: Sequence[str], user_lines: Sequence[str] = (),
                cliches: Sequence[str] = (), language: str = "") -> JunkKind | None:
    """Whether a reply a transcript shows is junk, for the benchmarks and the real-model tests:
    `earlier` the replies shown before it, `user_lines` the user's lines so far (the last the one it
    answers)."""
    context = ReplyContext(last_user=user_lines[-1] if user_lines else None, recent_replies=earlier,
                           earlier_user_lines=user_lines[:-1], cliches=cliches, language=language)
    return judge(Reply(reply), context)


def without_values(message: str, values: Sequence[str]) -> str:
    for value in values:
        if value.strip():
            message = message.replace(value, " ")
    return message


def only_a_label(rest: str, recalled: Sequence[str], values: Sequence[str]) -> bool:
    """What a reply says besides the values asked for is a piece of a recalled line without them."""
    mine = normalise_text(rest)
    return bool(values) and len(mine) >= COPY_MIN_CHARS and any(
        mine in normalise_text(without_values(line, values)) for line in recalled)


# Repairs made before a reply is judged, in this order: the call's closing braces written inside the
# message, brackets wrapping it whole, and an assistant phrase tacked on at the end.

# The call's closing braces written inside the message string (「…働いています。}}」). Only where the
# message opens no brace of its own.
_JSON_TAIL = re.compile(r"\s*[\"”]?\s*\}+[\s.。]*$")
_BRACKET_PAIRS = {"(": ")", "（": "）", "[": "]", "［": "］", "【": "】"}


def tidy(message: str, cliches: Sequence[str]) -> str:
    """`message` with what is not the reply trimmed off (see the repairs above); the real answer in
    front of a tacked-on cliché is kept rather than regenerated whole."""
    for repair in (_without_json_tail, _unwrapped, lambda text: without_closing_cliches(text, cliches)):
        repaired = repair(message)
        if repaired is not None:
            message = repaired
    return message


def _without_json_tail(message: str) -> str | None:
    if "{" in message:
        return None
    trimmed = _JSON_TAIL.sub("", message)
    return trimmed if trimmed != message and trimmed.strip() else None


def _unwrapped(message: str) -> str | None:
    """A reply wrapped whole in brackets, 「(お腹がすいた。どうするん？)」, copies the shape of the
    bracketed recalled-memory line; one wrapped whole in asterisks is written as an action. The words
    are the reply, the wrapping is not — kept, it would prime every next reply to do the same. Either
    width of a bracket counts (「(おやすみ）」)."""
    text = message.strip()
    folded = unicodedata.normalize("NFKC", text)
    if len(folded) >= 3 and folded[0] == folded[-1] == "*":
        inner = text[1:-1].strip()
        return inner if inner and "*" not in inner else None
    if len(folded) < 3 or _BRACKET_PAIRS.get(folded[0]) != folded[-1]:
        return None
    depth = 0
    for position, char in enumerate(folded):
        depth += (char == folded[0]) - (char == folded[-1])
        if depth == 0 and position < len(folded) - 1:
            return None  # "(笑) いいね (照)": two pairs, not one wrapping the reply
    return text[1:-1].strip() or None
