# Alembic owns the schema: an empty database upgrades to head, the models and
# the migrations agree, and a non-empty database is backed up first; on
# PostgreSQL the same migrations make pg_trgm search and the message counter.

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from parley_chat.server.store import current_revision, head_revision, upgrade_to_head
from parley_chat.server.store.engine import database_path
from parley_chat.server.store.migrate import HEAD_REVISION, SCRIPT_LOCATION, alembic_config
from parley_chat.server.store.models import Base, compared_with_models


def test_empty_database_upgrades_to_head_and_models_match(db_url):
    report = upgrade_to_head(db_url, backup=True)
    assert (report.from_revision, report.to_revision) == (None, head_revision())
    assert report.backup_path is None  # nothing to back up in an empty file
    engine = create_engine(db_url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"include_object": compared_with_models, "render_as_batch": True}
        )
        assert compare_metadata(ctx, Base.metadata) == []
    engine.dispose()


def test_view_index_and_default_room_exist(sqlite_url):
    db_url = sqlite_url  # SQLite's schema: see the _on_postgresql tests
    upgrade_to_head(db_url)
    con = sqlite3.connect(database_path(db_url))
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    assert {"chat_log", "messages_fts", "messages_fts_ai"} <= names
    assert con.execute("SELECT name FROM rooms").fetchall() == [("#lobby",)]
    cols = [r[1] for r in con.execute("PRAGMA table_info(chat_log)")]
    assert cols == [
        *("id", "ts", "room", "sender", "recipient", "kind", "text"),
        *("edited_at", "deleted_at", "deleted_by"),  # moderation (0003_moderation)
    ]
    con.close()


def test_upgrade_is_idempotent_and_backs_up_an_older_database(sqlite_url, tmp_path):
    db_url = sqlite_url  # SQLite's schema: see the _on_postgresql tests
    upgrade_to_head(db_url)
    again = upgrade_to_head(db_url)
    assert not again.changed and again.backup_path is None
    # Pretend the database is at an older revision: it is backed up before upgrading.
    path = database_path(db_url)
    con = sqlite3.connect(path)
    con.execute(
        "INSERT INTO users (nick, nick_key, password_hash, created_at) "
        "VALUES ('old', 'old', 'h', '2026-01-01 00:00:00')"
    )
    con.execute("DROP VIEW chat_log")
    for t in ("messages_fts_ai", "messages_fts_ad", "messages_fts_au"):
        con.execute(f"DROP TRIGGER {t}")
    con.execute("DROP TABLE messages_fts")
    for t in (
        *("moderation_actions", "message_versions", "room_sanctions"),
        *("room_invites", "room_moderators"),
        "user_keys",
        "read_markers",
        "sessions",
        "room_members",
        "resume_tokens",
        "messages",
        "server_settings",
        "rooms",
    ):
        con.execute(f"DROP TABLE {t}")
    con.execute("DELETE FROM alembic_version")
    con.commit()
    con.close()
    # users remains from "before": revision None with tables present. Alembic
    # would fail creating users again, so move it aside as an old schema would be.
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE users RENAME TO legacy_users")
    con.commit()
    con.close()
    report = upgrade_to_head(db_url, backup=True)
    assert report.backup_path is not None and report.backup_path.exists()
    # The same routine as `parley-logs backup`: private to its owner, one self-contained file.
    assert stat.S_IMODE(report.backup_path.stat().st_mode) == 0o600
    assert list(report.backup_path.parent.glob(".*partial*")) == []
    saved = sqlite3.connect(report.backup_path)
    assert saved.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert saved.execute("SELECT nick FROM legacy_users").fetchall() == [("old",)]
    saved.close()
    assert current_revision(db_url) == (head_revision(), True)


def test_0002_marks_everything_stored_before_it_read(sqlite_url):
    db_url = sqlite_url  # SQLite's schema: see the _on_postgresql tests
    from alembic import command

    from parley_chat.server.store.migrate import alembic_config

    command.upgrade(alembic_config(db_url), "0001")
    con = sqlite3.connect(database_path(db_url))
    now = "2026-11-30 10:00:00"
    for uid, nick in ((1, "alice"), (2, "bob"), (3, "carol")):
        con.execute(
            "INSERT INTO users (id, nick, nick_key, password_hash, created_at) VALUES (?, ?, ?, 'h', ?)",
            (uid, nick, nick, now),
        )
        con.execute("INSERT INTO room_members VALUES (1, ?, ?)", (uid, now))
    rows = [
        (1, "public", 1, 1, None, "hi"),
        (2, "private", None, 2, 3, "bob to carol"),
        (3, "public", 1, 2, None, "hello"),
        (4, "private", None, 3, 2, "carol to bob"),
    ]
    con.executemany(
        "INSERT INTO messages (id, created_at, kind, room_id, sender_id, recipient_id, body) "
        f"VALUES (?, '{now}', ?, ?, ?, ?, ?)",
        rows,
    )
    con.commit()
    con.close()
    upgrade_to_head(db_url)
    con = sqlite3.connect(database_path(db_url))
    markers = con.execute(
        "SELECT user_id, room_id, peer_id, message_id FROM read_markers ORDER BY user_id, id"
    ).fetchall()
    con.close()
    assert set(markers) == {
        (1, 1, None, 3),  # alice: the lobby only (she has no private conversation)
        (2, 1, None, 3),
        (2, None, 3, 4),  # bob and carol: their conversation, each from their side
        (3, 1, None, 3),
        (3, None, 2, 4),
    }


def test_0003_moderation_gives_existing_rooms_an_owner_and_downgrades_cleanly(sqlite_url):
    db_url = sqlite_url  # SQLite's schema: see the _on_postgresql tests
    from alembic import command

    from parley_chat.server.store.migrate import alembic_config

    cfg = alembic_config(db_url)
    command.upgrade(cfg, "0002")
    con = sqlite3.connect(database_path(db_url))
    now = "2026-11-30 10:00:00"
    for uid, nick in ((1, "alice"), (2, "bob")):
        con.execute(
            "INSERT INTO users (id, nick, nick_key, password_hash, created_at) VALUES (?, ?, ?, 'h', ?)",
            (uid, nick, nick, now),
        )
    con.execute(
        "INSERT INTO rooms (id, name, name_key, created_at) VALUES (2, '#dev', '#dev', ?)", (now,)
    )
    con.execute("INSERT INTO room_members VALUES (2, 2, '2026-11-30 09:00:00')")  # bob first
    con.execute("INSERT INTO room_members VALUES (2, 1, '2026-11-30 11:00:00')")
    con.execute(
        "INSERT INTO messages (created_at, kind, room_id, sender_id, body) VALUES (?, 'public', 2, 1, 'hi')",
        (now,),
    )
    con.commit()
    command.upgrade(cfg, "head")
    assert con.execute("SELECT name, owner_id, private FROM rooms ORDER BY id").fetchall() == [
        ("#lobby", None, 0),
        ("#dev", 2, 0),
    ]
    assert con.execute("SELECT text, deleted_at FROM chat_log").fetchall() == [("hi", None)]
    command.downgrade(cfg, "0002")
    cols = [r[1] for r in con.execute("PRAGMA table_info(chat_log)")]
    assert cols == ["id", "ts", "room", "sender", "recipient", "kind", "text"]
    assert "operator" not in [r[1] for r in con.execute("PRAGMA table_info(users)")]
    # The search index still follows the messages (its triggers survived).
    con.execute("UPDATE messages SET body = 'hello there'")
    con.commit()
    assert con.execute(
        "SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'there'"
    ).fetchall() == [(1,)]
    con.close()
    command.upgrade(cfg, "head")
    assert current_revision(db_url) == (head_revision(), True)


def test_0004_e2e_adds_the_key_directory_and_envelopes_and_goes_back(sqlite_url):
    db_url = sqlite_url  # SQLite's schema: see the _on_postgresql tests
    from alembic import command

    from parley_chat.server.store.migrate import alembic_config

    upgrade_to_head(db_url)
    con = sqlite3.connect(database_path(db_url))
    now = "2026-12-01 10:00:00"
    for uid, nick in ((1, "alice"), (2, "bob")):
        con.execute(
            "INSERT INTO users (id, nick, nick_key, password_hash, created_at) VALUES (?, ?, ?, 'h', ?)",
            (uid, nick, nick, now),
        )
    con.execute(
        "INSERT INTO messages (created_at, kind, sender_id, recipient_id, body, envelope) "
        f"VALUES ('{now}', 'private', 1, 2, '', '{{\"v\":1}}')"
    )
    con.execute(
        "INSERT INTO messages (created_at, kind, sender_id, recipient_id, body) "
        f"VALUES ('{now}', 'private', 2, 1, 'in the clear')"
    )
    con.commit()
    shown = con.execute("SELECT text FROM chat_log ORDER BY id").fetchall()
    assert shown == [("[end-to-end encrypted]",), ("in the clear",)]
    con.close()

    command.downgrade(alembic_config(db_url), "0003_moderation")
    con = sqlite3.connect(database_path(db_url))
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    assert "user_keys" not in names and "messages_fts_ai" in names
    assert "envelope" not in [r[1] for r in con.execute("PRAGMA table_info(messages)")]
    assert con.execute("SELECT text FROM chat_log ORDER BY id").fetchall() == [
        ("",),
        ("in the clear",),
    ]
    con.close()
    upgrade_to_head(db_url)
    assert current_revision(db_url) == (head_revision(), True)


def test_0006_indexes_only_changed_messages_for_the_catch_up_and_goes_back(sqlite_url):
    upgrade_to_head(sqlite_url)
    con = sqlite3.connect(database_path(sqlite_url))
    sql = dict(con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'"))
    for column in ("deleted_at", "edited_at"):
        assert f"WHERE {column} IS NOT NULL" in sql[f"ix_messages_{column}"]
    # The catch-up's question (changed since a time, at or below an id) takes the index.
    plan = " ".join(
        row[3]
        for row in con.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM messages WHERE id <= 100 AND deleted_at >= ?",
            ("2026-01-01",),
        )
    )
    assert "ix_messages_deleted_at" in plan, plan
    con.close()
    command.downgrade(alembic_config(sqlite_url), "0005_postgres")
    con = sqlite3.connect(database_path(sqlite_url))
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert not names & {"ix_messages_deleted_at", "ix_messages_edited_at"}
    con.close()


def test_the_schema_on_postgresql_has_the_view_trigram_index_and_counter(pg_url):
    report = upgrade_to_head(pg_url)
    assert report.to_revision == head_revision() and report.backup_path is None
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        cols = conn.execute(
            text(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'chat_log' ORDER BY ordinal_position"
            )
        ).scalars()
        assert list(cols) == [
            *("id", "ts", "room", "sender", "recipient", "kind", "text"),
            *("edited_at", "deleted_at", "deleted_by"),
        ]
        index = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_messages_body_trgm'")
        ).scalar()
        assert "gin" in index and "gin_trgm_ops" in index
        for column in ("deleted_at", "edited_at"):  # partial: only changed messages
            index = conn.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                {"n": f"ix_messages_{column}"},
            ).scalar()
            assert index is not None and f"WHERE ({column} IS NOT NULL)" in index
        assert conn.execute(text("SELECT pos FROM message_counter")).scalar() == 0
        assert conn.execute(text("SELECT name FROM rooms")).all() == [("#lobby",)]
        # Every integer column is BIGINT: ids up to 2**63 - 1, as on SQLite.
        small = conn.execute(
            text(
                "SELECT table_name || '.' || column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND data_type = 'integer'"
                " AND table_name <> 'chat_log'"
            )
        ).scalars()
        assert list(small) == []
    engine.dispose()


def test_postgresql_migrations_go_down_and_up_again_keeping_ids_in_order(pg_url):
    upgrade_to_head(pg_url)
    cfg = alembic_config(pg_url)
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (nick, nick_key, password_hash, created_at)"
                " VALUES ('old', 'old', 'h', now())"
            )
        )
        for _ in range(3):
            conn.execute(
                text(
                    "INSERT INTO messages (created_at, kind, room_id, sender_id, body)"
                    " VALUES (now(), 'public', 1, 1, 'before')"
                )
            )
    command.downgrade(cfg, "0004_e2e")
    with engine.begin() as conn:  # without the counter: the sequence, moved past the counter
        new = conn.execute(
            text(
                "INSERT INTO messages (created_at, kind, room_id, sender_id, body)"
                " VALUES (now(), 'public', 1, 1, 'during') RETURNING id"
            )
        ).scalar()
        assert new == 4
    command.upgrade(cfg, "head")
    with engine.begin() as conn:
        assert conn.execute(text("SELECT pos FROM message_counter")).scalar() == 4
        new = conn.execute(
            text(
                "INSERT INTO messages (created_at, kind, room_id, sender_id, body)"
                " VALUES (now(), 'public', 1, 1, 'after') RETURNING id"
            )
        ).scalar()
        assert new == 5
    command.downgrade(cfg, "base")
    with engine.connect() as conn:
        left = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).scalars()
        assert set(left) == {"alembic_version"}
    engine.dispose()


def test_the_written_head_is_alembics_head_and_the_newest_script():
    # upgrade_to_head trusts HEAD_REVISION to recognise a database at head without
    # Alembic: a new migration that does not move it would be skipped at every start.
    assert head_revision() == HEAD_REVISION
    newest = sorted(p.stem for p in (SCRIPT_LOCATION / "versions").glob("0*.py"))[-1]
    assert newest == HEAD_REVISION


def test_a_database_at_head_is_recognised_without_importing_alembic(db_url):
    upgrade_to_head(db_url, backup=False)  # the real migrations, from empty
    program = (
        "import sys\n"
        "import parley_chat.server.__main__\n"
        "from parley_chat.server.store import upgrade_to_head\n"
        f"report = upgrade_to_head({db_url!r}, backup=True)\n"
        "assert not report.changed and report.backup_path is None, report\n"
        "print(report.to_revision, sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [HEAD_REVISION, "[]"]


def test_a_database_one_revision_behind_is_upgraded_by_alembic(sqlite_url):
    # The plain SELECT reads what Alembic wrote; any revision but head goes to Alembic.
    upgrade_to_head(sqlite_url)
    command.downgrade(alembic_config(sqlite_url), "0004_e2e")
    assert current_revision(sqlite_url) == ("0004_e2e", True)
    report = upgrade_to_head(sqlite_url, backup=False)
    assert (report.from_revision, report.to_revision) == ("0004_e2e", HEAD_REVISION)
    assert current_revision(sqlite_url) == (HEAD_REVISION, True)
