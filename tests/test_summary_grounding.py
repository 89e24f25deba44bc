"""A summary keeps only lines that hold against what was said (memagent/summary_grounding.py).
The Japanese cases are the embedded 0.5B model's own summaries from a real 32-turn run."""

from __future__ import annotations

from memagent.summary_grounding import SummarySource, grounded_summary, user_lines_summary

JA = SummarySource(
    said=(("user", "好きな食べ物はカレーうどん！"), ("assistant", "カレーうどん！いいね。"),
          ("user", "誕生日は3月14日なんだ。"), ("user", "今日は朝から雨が降ってて、ちょっと憂うつ。")),
    labels={"ユーザー": "user", "あなた": "assistant"},
    instruction_lines=("次の会話を、あとで思い出せるように日本語で要約してください。", "", "## 要約する会話"),
)


def test_a_copied_heading_or_instruction_line_never_holds():
    summary = "## 要約する会話\n次の会話を、あとで思い出せるように日本語で要約してください。\n- 好きな食べ物はカレーうどん"
    assert grounded_summary(summary, JA) == "- ユーザー: 好きな食べ物はカレーうどん"


def test_a_transcript_line_holds_only_for_the_speaker_who_said_it():
    summary = ("ユーザー: 好きな食べ物はカレーうどん！\n"
               "あなた: 今日は朝から雨が降ってて、ちょっと憂うつ。\n"  # the user's words in the persona's mouth
               "ユーザー: 3月14日は寿司だよ。")  # changed: nobody said sushi
    assert grounded_summary(summary, JA) == "ユーザー: 好きな食べ物はカレーうどん！"


def test_a_json_transcript_holds_only_where_the_role_said_those_words():
    # The 1.5B's summary: role keys in English, one line the persona said put in the user's mouth.
    summary = ('"user": "好きな食べ物はカレーうどん！",\n  "you": "カレーうどん！いいね。",\n'
               '  "user": "カレーうどん！いいね。"\n}')
    assert grounded_summary(summary, JA) == '"user": "好きな食べ物はカレーうどん！",\n  "you": "カレーうどん！いいね。",'


def test_a_line_with_a_name_nobody_said_does_not_hold():
    assert grounded_summary("- ユーザーの誕生日は3月14日", JA) == "- ユーザーの誕生日は3月14日"
    assert grounded_summary("- ユーザーは寿司が好き", JA) == ""
    assert grounded_summary("- 誕生日は5月14日", JA) == ""  # a number nobody said


def test_a_system_note_copied_into_the_summary_does_not_hold():
    assert grounded_summary("[システム] さっきと同じ返事になっている", JA) == ""


def test_english_paraphrase_holds_when_its_names_were_said():
    source = SummarySource(said=(("user", "I work as a nurse at a city hospital."), ("user", "My cat is called Mike.")),
                           labels={"User": "user", "You": "assistant"})
    summary = ("- The user works as a nurse.\n- Their cat is named Mike.\n- The user's sister Yuka visits often.\n"
               "- The user loves sushi.")
    assert grounded_summary(summary, source) == "- The user works as a nurse.\n- User: Their cat is named Mike."


def test_the_summary_so_far_is_something_said_too():
    source = SummarySource(said=(("user", "週末は何をしようか迷ってるところ。"),), labels={"ユーザー": "user", "あなた": "assistant"},
                           previous="- ユーザー「うちの猫の名前はミケだよ。」")
    assert grounded_summary("- 猫の名前はミケ\n- 週末に何をするか迷っている", source) == (
        "- 猫の名前はミケ\n- ユーザー: 週末に何をするか迷っている")
    assert grounded_summary("- 週末の予定を迷っている", source) == ""  # strict: a word nobody said, 予定


def test_user_lines_summary_keeps_statements_and_drops_the_oldest_to_fit():
    render = "- 「{}」".format
    lines = user_lines_summary("- 「前の話」", ["猫の名前はミケ。", "私の名前、覚えてる？", "妹は由香。"], render,
                               fits=lambda text: len(text.splitlines()) <= 2)
    assert lines == "- 「猫の名前はミケ。」\n- 「妹は由香。」"


def test_a_line_is_labelled_with_whoever_said_what_it_holds():
    # The persona's own claim must not read as the user's fact once the conversation has left the window.
    source = SummarySource(said=(("user", "I play the cello every Sunday."), ("assistant", "I adore mango pudding!")),
                           labels={"User": "user", "You": "assistant"}, names=("Sam",))
    summary = "- Plays the cello every Sunday.\n- Adores mango pudding.\n- Sam adores mango pudding."
    assert grounded_summary(summary, source) == (
        "- User: Plays the cello every Sunday.\n- You: Adores mango pudding.\n- You: Sam adores mango pudding.")


def test_a_faithful_paraphrase_in_reporting_words_holds():
    source = SummarySource(said=(("user", "Hi, I'm Misaki!"), ("assistant", "Nice to meet you, Misaki.")),
                           labels={"User": "user", "You": "assistant"}, names=("Sam",))
    assert grounded_summary("- Misaki introduced herself to Sam.", source) == "- User: Misaki introduced herself to Sam."
