"""Bounds that keep parsing fast and safe on any output."""

# Model output longer than this is cut before parsing; no real call is this long, and the cap
# keeps the repair library's worst cases bounded.
MAX_PARSE_CHARS = 100_000
MAX_OBJECTS = 16
# A call nests 2-5 levels ({"tool_calls": [{"function": {"arguments": {...}}}]}).
MAX_JSON_DEPTH = 32
MAX_NESTING_SEARCH = 6
NAME_MATCH_CUTOFF = 0.85
EXTRA_NOTE_CHARS = 200
