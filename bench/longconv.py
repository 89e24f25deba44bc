"""A long multi-session conversation evaluation set for recall search, generated (deterministically)
from the templates below: Japanese and English chats of many sessions, facts planted among everyday
chatter and near-miss distractors, and questions with the turns that answer them.

Question kinds:
- single: one turn answers it (often the user's short reply to the persona's question);
- multi-hop: two turns from different sessions are both needed;
- temporal: asks about a day ("what did I do on March 9?") or when something happened;
- open-domain: answered by inference, not by the question's words ("what music do I like?" ←
  "I keep playing Bill Evans records").

    python -m bench.longconv write      # regenerate bench/data/longconv_{ja,en}.jsonl
    python -m bench.longconv eval       # hit@5 / hit@10 per kind, each ranking side by side
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
SESSIONS = 14
TURNS_PER_SESSION = 16  # user lines per session (each with the persona's reply)
CONVERSATIONS = 3  # per language, each with other names and values
START = datetime(2024, 3, 1, 20, 0, tzinfo=UTC)

Plant = tuple[str, str]  # (role, text); the last user line of a plant is its evidence unless marked


@dataclass(frozen=True)
class Fact:
    """One planted fact: the lines said, which of them answer, the question and its kind."""

    kind: str
    lines: list[list[Plant]]  # one list of lines per session it is spread over (two for multi-hop)
    evidence: list[tuple[int, int]]  # (part, line index) of the answering lines
    question: str
    by_day: str = ""  # temporal facts: the question asked by the day instead ({date})


# --- English ---------------------------------------------------------------------------------------
EN_FILLER_USER = [
    "I'm so tired today, work was endless.", "It rained all afternoon.", "What should I cook tonight?",
    "I finally cleaned my room.", "The train was late again this morning.", "I watched a documentary about octopuses.",
    "My phone battery died in the middle of the day.", "I had ramen for lunch.", "Do you ever get bored?",
    "I went for a short walk after dinner.", "The weather is getting warmer.", "I can't decide what to read next.",
    "My neighbour's dog barked all night.", "I tried a new coffee shop near the office.", "I need a haircut.",
    "I spent the evening doing laundry.", "I'm thinking about learning to cook Thai food.", "Traffic was terrible.",
    "I stayed up too late playing games.", "I bought new running shoes but haven't used them.", "Tell me something fun.",
    "My friend sent me a funny video of a cat.", "I have a meeting early tomorrow.", "The office was freezing today.",
    "I forgot my umbrella at the station.", "I'm trying to drink more water.", "I saw a beautiful sunset.",
    "I'm planning to tidy the balcony this weekend.", "Work is busy but fine.", "I found an old photo album.",
]
EN_FILLER_REPLY = [
    "That sounds like a long day. Rest well!", "Oh no! I hope tomorrow is kinder.", "How about something warm and simple?",
    "Nice, that must feel great.", "That's so frustrating.", "Octopuses are amazing creatures!", "Ouch, that's annoying.",
    "Ramen is always a good idea.", "Never, talking with you is fun.", "A walk after dinner is lovely.",
    "Spring is coming!", "Maybe something light and fun?", "That sounds exhausting.", "Was the coffee good?",
    "A fresh haircut always feels nice.", "Chores done, well done!", "Thai food is delicious, go for it!",
    "Hope you got home safely.", "Games are hard to put down.", "Maybe this weekend you can try them?",
    "Did you know sea otters hold hands while they sleep?", "Cat videos never get old.", "Good luck tomorrow!",
    "Bring a sweater next time!", "I hope someone kept it for you.", "Good habit!", "I love sunsets too.",
    "A tidy balcony is so nice.", "Glad to hear it's fine.", "Old photos bring back memories.",
]
# Near misses: the same topics as the facts, without their answers.
EN_DISTRACTORS = [
    "I saw a cute dog at the park today.", "My coworker has three cats.", "I don't really like cold weather.",
    "My sister called me yesterday.", "I might visit a museum someday.", "I ate too much cake at the party.",
    "A friend of mine plays the guitar.", "Toronto seems like a nice city.", "I read an article about nurses.",
    "The dentist near my house closed.", "I heard a jazz band on the street.", "My cousin wants to learn piano.",
]


def en_facts(rng: random.Random) -> list[Fact]:
    pet, pet_name = rng.choice([("dog", "Biscuit"), ("dog", "Pepper"), ("cat", "Mochi"), ("cat", "Tofu")])
    city = rng.choice(["Toronto", "Lisbon", "Melbourne", "Osaka"])
    sister = rng.choice(["Emma", "Clara", "Nina"])
    job = rng.choice([("a nurse", "night shifts at the hospital"), ("a baker", "getting up at 4 to bake bread"),
                      ("a firefighter", "24-hour shifts at the station")])
    food = rng.choice(["mapo tofu", "green curry", "paella"])
    allergy = rng.choice(["peanuts", "shrimp", "kiwi"])
    instrument = rng.choice(["the cello", "the trumpet", "the ukulele"])
    car = rng.choice(["a red Honda Fit", "an old blue Volvo", "a white Toyota Prius"])
    hometown = rng.choice(["a small fishing town in Maine", "a village near Lyon", "a farm outside Adelaide"])
    artist = rng.choice([("Bill Evans records", "music"), ("Miles Davis albums", "music")])
    sport_team = rng.choice(["the Lakers", "the Celtics"])
    return [
        Fact("single", [[("assistant", "Do you have any pets?"), ("user", f"Yes! A {pet}. {pet_name}.")]], [(0, 1)],
             f"What is my {pet}'s name?"),
        Fact("single", [[("assistant", "What do you do for work?"), ("user", f"I'm {job[0]}.")]], [(0, 1)],
             "What is my job?"),
        Fact("single", [[("user", f"My favourite dish in the world is {food}.")]], [(0, 0)],
             "Which dish do I love most?"),
        Fact("single", [[("assistant", "Anything you can't eat?"), ("user", f"I'm allergic to {allergy}.")]], [(0, 1)],
             "What am I allergic to?"),
        Fact("single", [[("user", f"I've started taking lessons on {instrument}.")]], [(0, 0)],
             "Which instrument am I learning?"),
        Fact("single", [[("user", f"I drive {car}, it's ancient but reliable.")]], [(0, 0)],
             "What car do I have?"),
        Fact("single", [[("assistant", "Where did you grow up?"), ("user", f"In {hometown}.")]], [(0, 1)],
             "Where is my hometown?"),
        Fact("single", [[("user", f"I never miss a game of {sport_team}.")]], [(0, 0)],
             "Which basketball team do I support?"),
        Fact("multi-hop", [[("user", f"My sister {sister} moved to {city} last year.")],
                           [("user", f"I'm flying out to visit {sister} next month!")]], [(0, 0), (1, 0)],
             "Which city am I flying to next month?"),
        Fact("multi-hop", [[("user", f"My best friend Jake is also allergic to {allergy}, like me.")],
                           [("user", "Jake and I are going to a seafood and nut festival, oh well.")]], [(0, 0), (1, 0)],
             "What will Jake have to avoid at the festival?"),
        Fact("multi-hop", [[("user", f"My {pet} {pet_name} is scared of thunder.")],
                           [("user", "There's a big storm coming tonight, I'll stay home.")]], [(0, 0), (1, 0)],
             "Who will need comforting during tonight's storm?"),
        Fact("multi-hop", [[("user", f"My grandmother taught me to cook {food}.")],
                           [("user", "I'm cooking Grandma's signature dish for the party on Saturday.")]], [(0, 0), (1, 0)],
             "What am I cooking for Saturday's party?"),
        Fact("temporal", [[("user", "I ran my first half marathon today!")]], [(0, 0)],
             "When did I run the half marathon?", "What sporting achievement did I have on {date}?"),
        Fact("temporal", [[("user", "Had a root canal at the dentist this afternoon. Ouch.")]], [(0, 0)],
             "When was my dentist appointment?", "Which appointment did I have on {date}?"),
        Fact("temporal", [[("user", "I got the promotion!! Team lead from next month.")]], [(0, 0)],
             "When did I get promoted?", "What career news did I share on {date}?"),
        Fact("temporal", [[("user", "We adopted a baby turtle this evening.")]], [(0, 0)],
             "When did we get the turtle?", "What new family member arrived on {date}?"),
        Fact("open-domain", [[("user", f"Lately I keep playing {artist[0]} at night.")]], [(0, 0)],
             f"What kind of {artist[1]} do I enjoy?"),
        Fact("open-domain", [[("user", f"I'm {job[0]}, so it's {job[1]} again this week.")]], [(0, 0)],
             "Why is my sleep schedule so irregular?"),
        Fact("open-domain", [[("user", "I hate crowds and noise, give me a quiet cabin in the woods any day.")]], [(0, 0)],
             "Would I enjoy a big music festival?"),
        Fact("open-domain", [[("user", "I've been saving every month to buy a place of my own.")]], [(0, 0)],
             "What is my big financial goal?"),
    ]


# --- Japanese --------------------------------------------------------------------------------------
JA_FILLER_USER = [
    "今日は仕事が長くて疲れた…", "午後はずっと雨だったよ。", "今夜は何を作ろうかな。", "やっと部屋を片付けた！",
    "今朝も電車が遅れてた。", "タコのドキュメンタリーを見たよ。", "昼間にスマホの電池が切れちゃった。",
    "お昼はラーメンだった。", "退屈することってある？", "夕飯のあと少し散歩した。", "だんだん暖かくなってきたね。",
    "次に読む本が決まらない。", "隣の家の犬が一晩中吠えてた。", "会社の近くの新しいカフェに行ってみた。",
    "そろそろ髪を切りたい。", "夜は洗濯してた。", "タイ料理を作れるようになりたいな。", "渋滞がひどかった。",
    "ゲームしてたら夜更かししちゃった。", "新しいランニングシューズ、まだ履いてない。", "何か面白い話して！",
    "友達が猫の面白い動画を送ってきた。", "明日は朝早くから会議。", "今日はオフィスが寒かった。",
    "駅に傘を忘れちゃった。", "水をたくさん飲むようにしてる。", "きれいな夕焼けを見たよ。",
    "週末はベランダを片付ける予定。", "仕事は忙しいけど元気だよ。", "古いアルバムが出てきた。",
]
JA_FILLER_REPLY = [
    "長い一日だったね。ゆっくり休んでね！", "雨の日は気分も沈むよね。", "あったかくて簡単なものはどう？",
    "すっきりしたでしょ！", "それは困るね。", "タコって本当にすごい生き物だよね！", "それは不便だったね。",
    "ラーメンはいつでも正義！", "あなたと話してると退屈しないよ。", "食後の散歩、いいね。", "もうすぐ春だね！",
    "軽く読めるものはどうかな？", "それは眠れなかったでしょう。", "コーヒーはおいしかった？", "さっぱりすると気持ちいいよね。",
    "家事おつかれさま！", "タイ料理いいね、挑戦してみて！", "無事に帰れてよかった。", "ゲームはやめ時が難しいよね。",
    "週末に試してみたら？", "ラッコは手をつないで寝るんだって。", "猫動画は何度見ても飽きないね。", "明日がんばってね！",
    "次は上着を持っていってね。", "誰かが届けてくれているといいね。", "いい習慣だね！", "夕焼け、私も好き。",
    "ベランダがきれいだと気持ちいいよね。", "元気ならよかった。", "昔の写真って懐かしいよね。",
]
JA_DISTRACTORS = [
    "公園でかわいい犬を見かけた。", "同僚は猫を三匹飼ってるんだって。", "寒いのはあまり好きじゃない。",
    "昨日、妹から電話があった。", "いつか美術館に行ってみたい。", "パーティーでケーキを食べすぎた。",
    "友達がギターを弾くんだ。", "トロントっていい街らしいね。", "看護師さんの記事を読んだ。",
    "近所の歯医者が閉院した。", "道でジャズバンドの演奏を聴いた。", "いとこがピアノを習いたいって。",
]


def ja_facts(rng: random.Random) -> list[Fact]:
    pet, pet_name = rng.choice([("犬", "ポチ"), ("犬", "コロ"), ("猫", "ミケ"), ("猫", "タマ")])
    city = rng.choice(["トロント", "リスボン", "メルボルン", "札幌"])
    sister = rng.choice(["さくら", "あおい", "ゆい"])
    job = rng.choice([("看護師", "病院の夜勤"), ("パン職人", "朝4時からのパン焼き"), ("消防士", "消防署の24時間勤務")])
    food = rng.choice(["麻婆豆腐", "グリーンカレー", "パエリア"])
    allergy = rng.choice(["ピーナッツ", "エビ", "キウイ"])
    instrument = rng.choice(["チェロ", "トランペット", "ウクレレ"])
    car = rng.choice(["赤いフィット", "古い青のボルボ", "白いプリウス"])
    hometown = rng.choice(["北海道の小さな漁師町", "長野の山あいの村", "沖縄の離島"])
    artist = rng.choice(["ビル・エヴァンスのレコード", "マイルス・デイヴィスのアルバム"])
    team = rng.choice(["阪神タイガース", "広島カープ"])
    return [
        Fact("single", [[("assistant", "ペットは飼ってる？"), ("user", f"うん！{pet}。{pet_name}っていうの。")]], [(0, 1)],
             f"私の{pet}の名前は？"),
        Fact("single", [[("assistant", "お仕事は何をしてるの？"), ("user", f"{job[0]}だよ。")]], [(0, 1)],
             "私の仕事は何？"),
        Fact("single", [[("user", f"世界で一番好きな料理は{food}！")]], [(0, 0)], "私の大好物は？"),
        Fact("single", [[("assistant", "食べられないものはある？"), ("user", f"{allergy}アレルギーなんだ。")]], [(0, 1)],
             "私は何のアレルギー？"),
        Fact("single", [[("user", f"{instrument}のレッスンに通い始めたよ。")]], [(0, 0)], "私が習っている楽器は？"),
        Fact("single", [[("user", f"車は{car}に乗ってる。古いけど頑丈なの。")]], [(0, 0)], "私の車は？"),
        Fact("single", [[("assistant", "どこで育ったの？"), ("user", f"{hometown}。")]], [(0, 1)], "私の故郷はどこ？"),
        Fact("single", [[("user", f"{team}の試合は絶対見逃さない。")]], [(0, 0)], "私が応援している野球チームは？"),
        Fact("multi-hop", [[("user", f"妹の{sister}が去年{city}に引っ越したんだ。")],
                           [("user", f"来月{sister}に会いに行くんだ！")]], [(0, 0), (1, 0)],
             "来月私が行く街はどこ？"),
        Fact("multi-hop", [[("user", f"親友の健太も私と同じで{allergy}アレルギーなの。")],
                           [("user", "健太と食べ歩きフェスに行くことになった。")]], [(0, 0), (1, 0)],
             "フェスで健太が避けないといけないものは？"),
        Fact("multi-hop", [[("user", f"うちの{pet_name}は雷が大の苦手なの。")],
                           [("user", "今夜は大きな嵐が来るらしいから家にいるね。")]], [(0, 0), (1, 0)],
             "今夜の嵐で誰をなだめてあげる必要がある？"),
        Fact("multi-hop", [[("user", f"祖母に{food}の作り方を教わったんだ。")],
                           [("user", "土曜のパーティーにはおばあちゃん直伝の料理を作るよ。")]], [(0, 0), (1, 0)],
             "土曜のパーティーで私が作る料理は？"),
        Fact("temporal", [[("user", "今日、初めてハーフマラソンを走った！")]], [(0, 0)], "ハーフマラソンを走ったのはいつ？",
             "{date}に私が達成したスポーツの記録は？"),
        Fact("temporal", [[("user", "午後に歯医者で根管治療を受けた。痛かった…")]], [(0, 0)], "歯医者に行ったのはいつ？",
             "{date}に私が受けた治療は？"),
        Fact("temporal", [[("user", "昇進が決まった！来月からチームリーダー！")]], [(0, 0)], "私が昇進したのはいつ？",
             "{date}に私が話した仕事の知らせは？"),
        Fact("temporal", [[("user", "今夜、子ガメをお迎えしたよ。")]], [(0, 0)], "カメを迎えたのはいつ？",
             "{date}に家族に加わったのは？"),
        Fact("open-domain", [[("user", f"最近は夜に{artist}ばかりかけてる。")]], [(0, 0)], "私はどんな音楽が好き？"),
        Fact("open-domain", [[("user", f"{job[0]}だから、今週も{job[1]}なんだ。")]], [(0, 0)],
             "私の睡眠リズムが不規則なのはなぜ？"),
        Fact("open-domain", [[("user", "人混みと騒音は苦手。森の静かな小屋が一番。")]], [(0, 0)],
             "私は大きな音楽フェスを楽しめそう？"),
        Fact("open-domain", [[("user", "自分の家を買うために毎月貯金してるんだ。")]], [(0, 0)], "私のお金の大きな目標は？"),
    ]


LANGUAGES: dict[str, tuple[Callable[[random.Random], list[Fact]], list[str], list[str], list[str]]] = {
    "en": (en_facts, EN_FILLER_USER, EN_FILLER_REPLY, EN_DISTRACTORS),
    "ja": (ja_facts, JA_FILLER_USER, JA_FILLER_REPLY, JA_DISTRACTORS),
}
MONTHS_EN = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December"]


def _day(language: str, when: datetime) -> str:
    return f"{MONTHS_EN[when.month - 1]} {when.day}" if language == "en" else f"{when.month}月{when.day}日"


def conversation(language: str, seed: int) -> dict[str, Any]:
    """One conversation: messages (id, role, content, time, session) and questions (id, kind,
    question, evidence message ids)."""
    make_facts, filler_user, filler_reply, distractors = LANGUAGES[language]
    rng = random.Random(f"{language}-{seed}")
    facts = make_facts(rng)
    # Each fact part goes to its own session; the parts of a multi-hop fact at least 3 sessions apart.
    placements: list[list[int]] = []
    for fact in facts:
        first = rng.randrange(0, SESSIONS - (4 if len(fact.lines) > 1 else 0))
        placements.append([first] + ([rng.randrange(first + 3, SESSIONS)] if len(fact.lines) > 1 else []))
    planned: dict[int, list[tuple[int, int]]] = {}  # session → (fact, part)
    for fact_index, sessions in enumerate(placements):
        for part, session in enumerate(sessions):
            planned.setdefault(session, []).append((fact_index, part))
    messages: list[dict[str, Any]] = []
    evidence_ids: dict[tuple[int, int, int], int] = {}
    fact_time: dict[int, datetime] = {}

    def say(role: str, text: str, when: datetime, session: int) -> int:
        messages.append({"id": len(messages) + 1, "role": role, "content": text, "time": when.isoformat(),
                         "session": session})
        return len(messages)

    for session in range(SESSIONS):
        day = START + timedelta(days=session * 3 + rng.randrange(3))
        slots = sorted(rng.sample(range(TURNS_PER_SESSION), k=len(planned.get(session, []))))
        plants = dict(zip(slots, planned.get(session, [])))
        minute = 0
        for turn in range(TURNS_PER_SESSION):
            when = day + timedelta(minutes=minute)
            minute += 2
            if turn in plants:
                fact_index, part = plants[turn]
                lines = facts[fact_index].lines[part]
                for line_index, (role, text) in enumerate(lines):
                    evidence_ids[(fact_index, part, line_index)] = say(role, text, when, session)
                fact_time.setdefault(fact_index, when)
                if lines[-1][0] == "user":
                    say("assistant", rng.choice(filler_reply), when, session)
                continue
            if rng.random() < 0.15:
                say("user", rng.choice(distractors), when, session)
                say("assistant", rng.choice(filler_reply), when, session)
            else:  # a line and its own answer
                line = rng.randrange(len(filler_user))
                say("user", filler_user[line], when, session)
                say("assistant", filler_reply[line], when, session)
    questions = []
    for fact_index, fact in enumerate(facts):
        evidence = [evidence_ids[(fact_index, part, line)] for part, line in fact.evidence]
        questions.append({"kind": fact.kind, "question": fact.question, "evidence": evidence})
        if fact.by_day:  # the same fact asked by its day
            questions.append({"kind": "temporal", "question": fact.by_day.format(date=_day(language, fact_time[fact_index])),
                              "evidence": evidence})
    return {"language": language, "seed": seed, "messages": messages,
            "questions": [{"id": f"{language}{seed}-q{i}", **q} for i, q in enumerate(questions)]}


def path_for(language: str) -> Path:
    return DATA / f"longconv_{language}.jsonl"


def write() -> None:
    for language in LANGUAGES:
        with path_for(language).open("w", encoding="utf-8") as out:
            for seed in range(CONVERSATIONS):
                out.write(json.dumps(conversation(language, seed), ensure_ascii=False) + "\n")


def load(language: str) -> list[dict[str, Any]]:
    with path_for(language).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


# --- evaluation ------------------------------------------------------------------------------------
Ranker = Callable[[str], Sequence[int]]  # question → message ids, best first


def hit_rates(conversations: Sequence[dict[str, Any]], rank_for: Callable[[dict[str, Any]], Ranker]) -> dict[str, Any]:
    """hit@5 / hit@10 per question kind: a question is a hit when every evidence turn is in the top k."""
    tallies: dict[str, list[tuple[bool, bool]]] = {}
    for conv in conversations:
        rank = rank_for(conv)
        for question in conv["questions"]:
            ranked = list(rank(question["question"]))
            hits = tuple(all(e in ranked[:k] for e in question["evidence"]) for k in (5, 10))
            tallies.setdefault(question["kind"], []).append(hits)  # type: ignore[arg-type]
    every = [hit for hits in tallies.values() for hit in hits]
    result: dict[str, Any] = {kind: {"questions": len(hits), "hit@5": round(sum(h[0] for h in hits) / len(hits), 3),
                                     "hit@10": round(sum(h[1] for h in hits) / len(hits), 3)}
                              for kind, hits in sorted(tallies.items())}
    result["all"] = {"questions": len(every), "hit@5": round(sum(h[0] for h in every) / len(every), 3),
                     "hit@10": round(sum(h[1] for h in every) / len(every), 3)}
    return result


def main(argv: list[str]) -> None:
    if argv and argv[0] == "write":
        write()
        print(f"written to {DATA}")
        return
    from bench.memory_bench import longconv_quality

    print(json.dumps(longconv_quality(), ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
