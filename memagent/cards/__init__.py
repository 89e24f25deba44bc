"""Character cards (V1, V2 `chara_card_v2`, V3 `chara_card_v3`) in and out of memagent personas.

A card arrives as JSON or as a PNG whose tEXt chunk `chara` (V2) or `ccv3` (V3) holds base64 of the
UTF-8 JSON; `ccv3` wins when both are there. Import writes three files to the user's personas folder:

    <key>.md          the persona (Markdown + front matter), what memagent reads and the user edits
    <key>.card.json   the card exactly as it came (a V1 card upgraded to the V2 shape)
    <key>.card.png    the card's picture without its card chunks (PNG cards only)

Export starts from `<key>.card.json`, so unknown fields and `extensions` survive untouched, and writes
back only the fields whose value in the persona file differs from what import made of the card (the
user's edits). memagent-only fields (language, rules, color, description) go to
`data.extensions.memagent`. A persona that never came from a card is exported from an empty card.

Placeholders: `{{char}}`/`<BOT>` become the character's name; `{{user}}`/`<USER>` stay in the persona
as `{{user}}`, because a persona is shared by every agent: each agent fills it at prompt time with
what the character calls its user (the name they gave, else the human profile's name — see
ContextWindow.user_name). Lorebook passages are stored text, so there `{{user}}` becomes a neutral
word for the human — 「ユーザー」 in Japanese cards, "User" in English ones.

Lorebook (`character_book`) entries become archival passages of an agent (`persona import --agent`,
`persona lorebook`), not keyword-triggered prompt inserts, because:
- archival search is hybrid (trigram full text + embeddings), so an entry is found by its keys (kept
  at the start of the passage) and also by paraphrases and Japanese text without spaces, which
  literal key matching misses;
- the system prompt stays small and unchanged between turns: small local models have 2k–8k token
  windows that a lorebook easily fills, and a stable prefix lets the server reuse its KV cache;
- the agent can already search, add to and correct archival memory, so world facts join the memory
  it manages instead of being a second mechanism the model cannot see or edit.
The price is that the model must search for lore. The entries stay in `<key>.card.json`, so they can
be loaded into any number of agents; reloading replaces the passages loaded before for that persona.
"""

from .convert import USER_WORDS, Macros, card_from_persona, lorebook_passages, parse_examples, persona_from_card
from .files import LOREBOOK_SOURCE, ImportedCard, PersonaFiles, export_card, import_card, load_lorebook, stored_card
from .spec import V2, V3, CardError, LoadedCard, Spec, as_spec, card_png, read_card, read_png_chunks

__all__ = [
    "LOREBOOK_SOURCE",
    "USER_WORDS",
    "V2",
    "V3",
    "CardError",
    "ImportedCard",
    "LoadedCard",
    "Macros",
    "PersonaFiles",
    "Spec",
    "as_spec",
    "card_from_persona",
    "card_png",
    "export_card",
    "import_card",
    "load_lorebook",
    "lorebook_passages",
    "parse_examples",
    "persona_from_card",
    "read_card",
    "read_png_chunks",
    "stored_card",
]
