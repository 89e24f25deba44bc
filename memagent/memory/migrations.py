"""Schema migrations, applied in order; `PRAGMA user_version` records how many have run.

Never edit a released migration: append a new one. DDL is written out (not generated from the
models) so that what version N means never changes.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

_V1 = [
    """CREATE TABLE agent (
        id INTEGER PRIMARY KEY,
        uid VARCHAR(32) NOT NULL,
        name VARCHAR NOT NULL,
        persona VARCHAR NOT NULL,
        human VARCHAR NOT NULL,
        language VARCHAR NOT NULL,
        created_at VARCHAR(26) NOT NULL,
        state JSON NOT NULL
    )""",
    """CREATE TABLE block (
        id INTEGER PRIMARY KEY,
        label VARCHAR NOT NULL UNIQUE,
        value VARCHAR NOT NULL,
        char_limit INTEGER NOT NULL,
        initial_value VARCHAR NOT NULL,
        position INTEGER NOT NULL,
        updated_at VARCHAR(26) NOT NULL
    )""",
    """CREATE TABLE block_history (
        id INTEGER PRIMARY KEY,
        block_id INTEGER NOT NULL REFERENCES block(id) ON DELETE CASCADE,
        old_value VARCHAR NOT NULL,
        new_value VARCHAR NOT NULL,
        time VARCHAR(26) NOT NULL,
        turn_id INTEGER,
        reason VARCHAR NOT NULL,
        undone BOOLEAN NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX ix_block_history_block ON block_history(block_id, id)",
    """CREATE TABLE message (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        turn_id INTEGER NOT NULL,
        role VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        content VARCHAR NOT NULL DEFAULT '',
        function_name VARCHAR,
        function_args JSON,
        inner_thoughts VARCHAR,
        time VARCHAR(26) NOT NULL,
        in_context BOOLEAN NOT NULL DEFAULT 1,
        token_count INTEGER,
        external_id JSON
    )""",
    "CREATE INDEX ix_message_time ON message(time)",
    "CREATE INDEX ix_message_turn ON message(turn_id)",
    "CREATE INDEX ix_message_in_context ON message(id) WHERE in_context",
    """CREATE TABLE passage (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        text VARCHAR NOT NULL,
        time VARCHAR(26) NOT NULL,
        source VARCHAR NOT NULL DEFAULT 'agent',
        external_id JSON
    )""",
    "CREATE INDEX ix_passage_time ON passage(time)",
    # External-content FTS5 tables: the text is stored once (in message/passage); triggers keep the
    # index in step. The trigram tokenizer matches any substring of 3+ characters, so Japanese needs
    # no word segmentation.
    "CREATE VIRTUAL TABLE message_fts USING fts5(content, content='message', content_rowid='id', tokenize='trigram')",
    """CREATE TRIGGER message_fts_insert AFTER INSERT ON message BEGIN
        INSERT INTO message_fts(rowid, content) VALUES (new.id, new.content);
    END""",
    """CREATE TRIGGER message_fts_delete AFTER DELETE ON message BEGIN
        INSERT INTO message_fts(message_fts, rowid, content) VALUES ('delete', old.id, old.content);
    END""",
    """CREATE TRIGGER message_fts_update AFTER UPDATE OF content ON message BEGIN
        INSERT INTO message_fts(message_fts, rowid, content) VALUES ('delete', old.id, old.content);
        INSERT INTO message_fts(rowid, content) VALUES (new.id, new.content);
    END""",
    "CREATE VIRTUAL TABLE passage_fts USING fts5(text, content='passage', content_rowid='id', tokenize='trigram')",
    """CREATE TRIGGER passage_fts_insert AFTER INSERT ON passage BEGIN
        INSERT INTO passage_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    """CREATE TRIGGER passage_fts_delete AFTER DELETE ON passage BEGIN
        INSERT INTO passage_fts(passage_fts, rowid, text) VALUES ('delete', old.id, old.text);
    END""",
    """CREATE TRIGGER passage_fts_update AFTER UPDATE OF text ON passage BEGIN
        INSERT INTO passage_fts(passage_fts, rowid, text) VALUES ('delete', old.id, old.text);
        INSERT INTO passage_fts(rowid, text) VALUES (new.id, new.text);
    END""",
    # Document frequency per trigram (read from the FTS index, nothing stored): weighs query terms.
    "CREATE VIRTUAL TABLE passage_vocab USING fts5vocab(passage_fts, row)",
]


# The partial index of v1 said `WHERE in_context`, but SQLAlchemy writes `in_context = 1`, which
# SQLite cannot prove implies it: every prompt build scanned the whole table.
_V2 = [
    "DROP INDEX ix_message_in_context",
    "CREATE INDEX ix_message_in_context ON message(id) WHERE in_context = 1",
    "CREATE INDEX ix_message_kind ON message(kind, id)",
]


# Captured facts (memory mode "assisted"): what was written into core memory or archival, from which
# message. A fact replaced by a newer one of the same kind keeps its row with `superseded_by` set.
# message_vocab gives recall search the term statistics passage_vocab gives archival search.
_V3 = [
    """CREATE TABLE fact (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind VARCHAR NOT NULL,
        label VARCHAR NOT NULL,
        value VARCHAR NOT NULL,
        line VARCHAR NOT NULL,
        block VARCHAR,
        passage_id INTEGER,
        message_id INTEGER REFERENCES message(id) ON DELETE SET NULL,
        turn_id INTEGER NOT NULL,
        time VARCHAR(26) NOT NULL,
        superseded_by INTEGER
    )""",
    "CREATE INDEX ix_fact_turn ON fact(turn_id)",
    "CREATE INDEX ix_fact_kind ON fact(kind, id)",
    "CREATE VIRTUAL TABLE message_vocab USING fts5vocab(message_fts, row)",
]


# Short-query indexes: a query of 1-2 characters (猫, 夏休, AI) has no trigram, and used to scan
# every row. These contentless FTS5 tables index words (unicode61) of the text as SQLite function
# memagent_short_tokens (fts.short_tokens, registered on every connection) spaces it: each kana,
# kanji or hangul character a word. Contentless: nothing is stored twice; a delete gives the
# tokens back, which the function recomputes from the old row.
def _short_index(table: str, column: str) -> list[str]:
    index = f"{table}_short"
    tokens = f"memagent_short_tokens({{row}}.{column})"
    return [
        f"CREATE VIRTUAL TABLE {index} USING fts5({column}, content='', tokenize='unicode61')",
        f"INSERT INTO {index}(rowid, {column}) SELECT id, {tokens.format(row=table)} FROM {table}",
        f"""CREATE TRIGGER {index}_insert AFTER INSERT ON {table} BEGIN
            INSERT INTO {index}(rowid, {column}) VALUES (new.id, {tokens.format(row='new')});
        END""",
        f"""CREATE TRIGGER {index}_delete AFTER DELETE ON {table} BEGIN
            INSERT INTO {index}({index}, rowid, {column}) VALUES ('delete', old.id, {tokens.format(row='old')});
        END""",
        f"""CREATE TRIGGER {index}_update AFTER UPDATE OF {column} ON {table} BEGIN
            INSERT INTO {index}({index}, rowid, {column}) VALUES ('delete', old.id, {tokens.format(row='old')});
            INSERT INTO {index}(rowid, {column}) VALUES (new.id, {tokens.format(row='new')});
        END""",
    ]


_V4 = _short_index("message", "content") + _short_index("passage", "text")


# The trigram indexes read NFKC-folded text (fts.fold, SQLite function memagent_fold), and queries
# are folded the same way: ＡＢＣ finds ABC, ｶﾀｶﾅ finds カタカナ. External content stays (the text is
# stored once); the triggers give the index the folded text, and a delete gives back the same.
def _folded_trigram_index(table: str, column: str) -> list[str]:
    index = f"{table}_fts"
    return [
        f"DROP TRIGGER {index}_insert",
        f"DROP TRIGGER {index}_delete",
        f"DROP TRIGGER {index}_update",
        f"INSERT INTO {index}({index}) VALUES ('delete-all')",
        f"INSERT INTO {index}(rowid, {column}) SELECT id, memagent_fold({column}) FROM {table}",
        f"""CREATE TRIGGER {index}_insert AFTER INSERT ON {table} BEGIN
            INSERT INTO {index}(rowid, {column}) VALUES (new.id, memagent_fold(new.{column}));
        END""",
        f"""CREATE TRIGGER {index}_delete AFTER DELETE ON {table} BEGIN
            INSERT INTO {index}({index}, rowid, {column}) VALUES ('delete', old.id, memagent_fold(old.{column}));
        END""",
        f"""CREATE TRIGGER {index}_update AFTER UPDATE OF {column} ON {table} BEGIN
            INSERT INTO {index}({index}, rowid, {column}) VALUES ('delete', old.id, memagent_fold(old.{column}));
            INSERT INTO {index}(rowid, {column}) VALUES (new.id, memagent_fold(new.{column}));
        END""",
    ]


_V5 = _folded_trigram_index("message", "content") + _folded_trigram_index("passage", "text")


# Requests that carried an Idempotency-Key (memagent serve): the turn count before the request and,
# once answered, the answer. Kept in the agent's database so that any worker, after a restart or a
# crash of the one that took it, answers a retried request as the first time, or finishes its turn.
_V6 = [
    """CREATE TABLE request (
        key VARCHAR PRIMARY KEY,
        turns_before INTEGER NOT NULL,
        answer JSON,
        created_at VARCHAR(26) NOT NULL
    )""",
    "CREATE INDEX ix_request_created ON request(created_at)",
]


def _run_all(statements: list[str]) -> Callable[[Connection], None]:
    def migrate(connection: Connection) -> None:
        for statement in statements:
            connection.exec_driver_sql(statement)

    return migrate


MIGRATIONS: list[Callable[[Connection], None]] = [
    _run_all(_V1),
    _run_all(_V2),
    _run_all(_V3),
    _run_all(_V4),
    _run_all(_V5),
    _run_all(_V6),
]

SCHEMA_VERSION = len(MIGRATIONS)


# --- PostgreSQL ---------------------------------------------------------------------------------
# The same versions on PostgreSQL (postgres.py), each agent in its own schema: version N means the
# same tables, columns and search behaviour as SQLite's version N. FTS5 has no PostgreSQL twin, so
# the text indexes are tables the database keeps itself, by triggers: (trigram, row id) for lexical
# search and (word, row id) for 1-2 character queries, from the functions in POSTGRES_SETUP (NFKC,
# lower case, split at spaces, punctuation and symbols, as fts.py does for SQLite).
_UNSPACED_CLASS = r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]"

POSTGRES_SETUP = [
    "CREATE SCHEMA IF NOT EXISTS memagent",
    """CREATE TABLE IF NOT EXISTS memagent.agent (
        name VARCHAR PRIMARY KEY,
        schema_name VARCHAR NOT NULL UNIQUE,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    )""",
    "CREATE EXTENSION IF NOT EXISTS vector",
    """CREATE OR REPLACE FUNCTION memagent.chunks(t text) RETURNS SETOF text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT c FROM regexp_split_to_table(lower(normalize(coalesce(t, ''), NFKC)), '[[:space:][:punct:]]+') AS c
        WHERE c <> ''
    $$""",
    """CREATE OR REPLACE FUNCTION memagent.trigrams(t text) RETURNS SETOF text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT DISTINCT substr(c, i, 3) FROM memagent.chunks(t) AS c, generate_series(1, char_length(c) - 2) AS i
    $$""",
    # The words of the text in order, each kana/kanji/hangul character a word, as ' w1 w2 … ': a
    # query's words are "in a row" when its line is inside the text's (the 1-2 character search).
    f"""CREATE OR REPLACE FUNCTION memagent.token_line(t text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT ' ' || coalesce(string_agg(w, ' ' ORDER BY n), '') || ' '
        FROM regexp_split_to_table(lower(regexp_replace(normalize(coalesce(t, ''), NFKC), '({_UNSPACED_CLASS})', ' \\1 ', 'g')),
                                   '[[:space:][:punct:]]+') WITH ORDINALITY AS s(w, n)
        WHERE w <> ''
    $$""",
    """CREATE OR REPLACE FUNCTION memagent.short_tokens(t text) RETURNS SETOF text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT DISTINCT w FROM regexp_split_to_table(memagent.token_line(t), ' ') AS w WHERE w <> ''
    $$""",
    # The text as the trigram index reads it: what a phrase is looked for in.
    """CREATE OR REPLACE FUNCTION memagent.folded(t text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT lower(normalize(coalesce(t, ''), NFKC))
    $$""",
]


def _schema(connection: Connection) -> str:
    schema = connection.get_execution_options().get("memagent_schema")
    if not schema:
        raise RuntimeError("a PostgreSQL migration runs on an agent's schema")
    return str(schema)


def _pg_text_index(schema: str, table: str, column: str, suffix: str, function: str) -> list[str]:
    """Table `{table}_{suffix}` of (term, row id), filled by triggers from memagent.`function`."""
    index, qualified = f"{schema}.{table}_{suffix}", f"{schema}.{table}"
    return [
        f"CREATE TABLE {index} (term VARCHAR NOT NULL, id BIGINT NOT NULL REFERENCES {qualified}(id) ON DELETE CASCADE, "
        "PRIMARY KEY (term, id))",
        f"CREATE INDEX ix_{table}_{suffix}_id ON {index}(id)",
        f"INSERT INTO {index} (term, id) SELECT t, r.id FROM {qualified} AS r, memagent.{function}(r.{column}) AS t",
        f"""CREATE FUNCTION {index}_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
            INSERT INTO {index} (term, id) SELECT t, r.id FROM new_rows AS r, memagent.{function}(r.{column}) AS t;
            RETURN NULL;
        END $$""",
        f"""CREATE TRIGGER {table}_{suffix}_insert AFTER INSERT ON {qualified} REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION {index}_insert()""",
        f"""CREATE FUNCTION {index}_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
            DELETE FROM {index} WHERE id = OLD.id;
            INSERT INTO {index} (term, id) SELECT t, NEW.id FROM memagent.{function}(NEW.{column}) AS t;
            RETURN NULL;
        END $$""",
        f"""CREATE TRIGGER {table}_{suffix}_update AFTER UPDATE OF {column} ON {qualified}
            FOR EACH ROW EXECUTE FUNCTION {index}_update()""",
    ]


def _pg_v1(connection: Connection) -> None:
    s = _schema(connection)
    for statement in [
        f"""CREATE TABLE {s}.agent (
            id INTEGER PRIMARY KEY, uid VARCHAR(32) NOT NULL, name VARCHAR NOT NULL, persona VARCHAR NOT NULL,
            human VARCHAR NOT NULL, language VARCHAR NOT NULL, created_at VARCHAR(26) NOT NULL, state JSON NOT NULL
        )""",
        f"""CREATE TABLE {s}.block (
            id INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, label VARCHAR NOT NULL UNIQUE,
            value VARCHAR NOT NULL, char_limit INTEGER NOT NULL, initial_value VARCHAR NOT NULL,
            position INTEGER NOT NULL, updated_at VARCHAR(26) NOT NULL
        )""",
        f"""CREATE TABLE {s}.block_history (
            id INTEGER GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            block_id INTEGER NOT NULL REFERENCES {s}.block(id) ON DELETE CASCADE, old_value VARCHAR NOT NULL,
            new_value VARCHAR NOT NULL, time VARCHAR(26) NOT NULL, turn_id INTEGER, reason VARCHAR NOT NULL,
            undone BOOLEAN NOT NULL DEFAULT false
        )""",
        f"CREATE INDEX ix_block_history_block ON {s}.block_history(block_id, id)",
        f"""CREATE TABLE {s}.message (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, turn_id INTEGER NOT NULL, role VARCHAR NOT NULL,
            kind VARCHAR NOT NULL, content VARCHAR NOT NULL DEFAULT '', function_name VARCHAR, function_args JSON,
            inner_thoughts VARCHAR, time VARCHAR(26) NOT NULL, in_context BOOLEAN NOT NULL DEFAULT true,
            token_count INTEGER, external_id JSON
        )""",
        f"CREATE INDEX ix_message_time ON {s}.message(time)",
        f"CREATE INDEX ix_message_turn ON {s}.message(turn_id)",
        f"""CREATE TABLE {s}.passage (
            id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, text VARCHAR NOT NULL, time VARCHAR(26) NOT NULL,
            source VARCHAR NOT NULL DEFAULT 'agent', external_id JSON
        )""",
        f"CREATE INDEX ix_passage_time ON {s}.passage(time)",
        *_pg_text_index(s, "message", "content", "gram", "trigrams"),
        *_pg_text_index(s, "passage", "text", "gram", "trigrams"),
    ]:
        connection.exec_driver_sql(statement)


def _pg_v2(connection: Connection) -> None:
    s = _schema(connection)
    connection.exec_driver_sql(f"CREATE INDEX ix_message_in_context ON {s}.message(id) WHERE in_context")
    connection.exec_driver_sql(f"CREATE INDEX ix_message_kind ON {s}.message(kind, id)")


def _pg_v3(connection: Connection) -> None:
    s = _schema(connection)
    connection.exec_driver_sql(f"""CREATE TABLE {s}.fact (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, kind VARCHAR NOT NULL, label VARCHAR NOT NULL,
        value VARCHAR NOT NULL, line VARCHAR NOT NULL, block VARCHAR, passage_id BIGINT,
        message_id BIGINT REFERENCES {s}.message(id) ON DELETE SET NULL, turn_id INTEGER NOT NULL,
        time VARCHAR(26) NOT NULL, superseded_by BIGINT
    )""")
    connection.exec_driver_sql(f"CREATE INDEX ix_fact_turn ON {s}.fact(turn_id)")
    connection.exec_driver_sql(f"CREATE INDEX ix_fact_kind ON {s}.fact(kind, id)")


def _pg_v4(connection: Connection) -> None:
    s = _schema(connection)
    for statement in (_pg_text_index(s, "message", "content", "word", "short_tokens")
                      + _pg_text_index(s, "passage", "text", "word", "short_tokens")):
        connection.exec_driver_sql(statement)


def _pg_v5(connection: Connection) -> None:
    """SQLite's v5 folds the trigram index with NFKC; memagent.trigrams has folded from v1."""


def _pg_v6(connection: Connection) -> None:
    s = _schema(connection)
    for statement in _V6:
        connection.exec_driver_sql(statement.replace("CREATE TABLE request", f"CREATE TABLE {s}.request")
                                   .replace("ON request(", f"ON {s}.request("))


POSTGRES_MIGRATIONS: list[Callable[[Connection], None]] = [_pg_v1, _pg_v2, _pg_v3, _pg_v4, _pg_v5, _pg_v6]
assert len(POSTGRES_MIGRATIONS) == SCHEMA_VERSION, "every migration has its PostgreSQL version"
