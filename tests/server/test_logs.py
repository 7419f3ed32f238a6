# Tests of server/logs.py (and logs_format.py): the operator's read-only SQL,
# export, search, stats and online backup, on real SQLite files built through
# server.store, in-process and as real `python -m parley_chat.server.logs` subprocesses.
#
# populate() is also the fixture database of tests/docs/test_schema_examples.py:
# every example query in docs/schema.md must find rows in it.

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from parley_chat.server import logs
from parley_chat.server.logs_format import cell_text, display_width, parse_time, write_table
from parley_chat.server.store import Store, upgrade_to_head, writes
from tests.server.moderation_sample import add_moderation

ROOT = Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT = 60

D1, D2, D3 = "2026-11-23", "2026-11-24", "2026-11-25"


def at(day: str, hhmm: str) -> datetime:
    """A naive UTC time on one of the three days of the fixture chat."""
    return datetime.fromisoformat(f"{day} {hhmm}")


def populate(url: str) -> dict[str, int]:
    """A small but complete chat over three days, written through server.store.

    Users alice, bob, carol, dave (never posts) and eve (posts, then is deleted);
    rooms #lobby, #dev (alice, bob) and #random (carol, no messages); twelve
    messages: public, private (with quotes, C++, a newline) and system notices;
    sessions ended for various reasons and one still open. Returns message ids
    by label (m1..m12) and user ids by nick.
    """
    upgrade_to_head(url, backup=False)
    store = Store(url)
    store.start()
    try:

        def run(op):  # type: ignore[no-untyped-def]
            return store.submit(op).result(10)

        ids: dict[str, int] = {}
        created = at("2026-11-20", "09:00")
        for nick in ("alice", "bob", "carol", "dave", "eve"):
            ids[nick] = run(lambda s, n=nick: writes.create_user(s, n, "scrypt$x", created)).id
        run(lambda s: writes.join_room(s, ids["alice"], "#dev", at(D1, "08:00")))
        run(lambda s: writes.join_room(s, ids["bob"], "#dev", at(D1, "08:00")))
        run(lambda s: writes.join_room(s, ids["carol"], "#random", at(D2, "08:00")))

        def msg(label: str, when: datetime, kind: str, body: str, **kw: object) -> None:
            stored, _dup = run(
                lambda s: writes.add_message(s, kind=kind, body=body, now=when, **kw)
            )
            ids[label] = stored.id

        a, b, c, e = ids["alice"], ids["bob"], ids["carol"], ids["eve"]
        msg("m1", at(D1, "09:00"), "system", "alice joined", room="#lobby")
        msg("m2", at(D1, "09:01"), "public", "hello everyone", room="#lobby", sender_id=a)
        msg(
            "m3",
            at(D1, "09:05"),
            "public",
            "hi alice, see example.com for the plan",
            room="#lobby",
            sender_id=b,
        )
        msg("m4", at(D1, "14:30"), "public", "the build is 50% done_ok", room="#dev", sender_id=a)
        msg(
            "m5",
            at(D2, "10:00"),
            "private",
            "are you there? C++ question",
            sender_id=a,
            recipient_id=b,
        )
        msg("m6", at(D2, "10:02"), "private", "yes, ask away", sender_id=b, recipient_id=a)
        msg(
            "m7",
            at(D2, "10:03"),
            "private",
            'what does "const" mean',
            sender_id=a,
            recipient_id=b,
        )
        msg(
            "m8", at(D2, "11:00"), "public", 'she said "hi" to everyone', room="#lobby", sender_id=c
        )
        msg("m9", at(D2, "12:00"), "public", "bye all, I am leaving", room="#lobby", sender_id=e)
        msg(
            "m10",
            at(D3, "08:00"),
            "public",
            "a much longer message about the release plan and everything that "
            "remains to be done before Friday",
            room="#dev",
            sender_id=b,
        )
        msg("m11", at(D3, "08:30"), "system", "bob left #dev", room="#dev")
        msg("m12", at(D3, "09:00"), "private", "lunch?\nat noon", sender_id=c, recipient_id=a)

        def session(nick: str, start: datetime, end: datetime | None, reason: str) -> None:
            def op(s):  # type: ignore[no-untyped-def]
                sid = writes.open_session(
                    s, user_id=ids[nick], peer="192.168.1.20:50000", client="cli", token_id=None,
                    now=start,
                )  # fmt: skip
                if end is not None:
                    writes.end_session(s, sid, reason, end)
                return sid

            run(op)

        session("alice", at(D1, "08:59"), at(D1, "18:00"), "bye")
        session("bob", at(D1, "09:04"), at(D2, "10:30"), "ping timeout")
        session("carol", at(D2, "10:59"), at(D3, "09:05"), "server restart")
        session("dave", at(D2, "09:00"), at(D2, "09:10"), "bye")
        session("eve", at(D2, "11:59"), at(D2, "12:01"), "client closed the connection")
        session("alice", at(D3, "07:55"), None, "")
        run(
            lambda s: writes.issue_token(
                s, ids["alice"], "0" * 64, at(D3, "07:55"), at("2026-12-09", "07:55")
            )
        )
        run(lambda s: writes.delete_user(s, "eve", at(D3, "12:00")))
        add_moderation(run, ids, at)  # audit log, ban, edit, deletion (docs/schema.md)
        return ids
    finally:
        store.close()


@pytest.fixture(scope="module")
def chat_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict[str, int]]:
    """The populated database (URL, path, ids), shared read-only by this module's tests."""
    path = tmp_path_factory.mktemp("logs") / "chat.db"
    url = f"sqlite:///{path}"
    ids = populate(url)
    return url, path, ids


def run_main(*argv: str) -> tuple[int, str, str]:
    """Run server.logs.main in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = logs.main(list(argv), environ={}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m parley_chat.server.logs` as a real process (with a timeout)."""
    full_env = {k: v for k, v in os.environ.items() if k != "PARLEY_DB"}
    full_env["PYTHONPATH"] = str(ROOT)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "parley_chat.server.logs", *argv],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )


def snapshot(path: Path) -> tuple[bytes, int]:
    """The file's bytes and mtime (ns), to prove a command changed nothing."""
    return path.read_bytes(), path.stat().st_mtime_ns


# --- query -----------------------------------------------------------------------------


def test_query_prints_an_aligned_table_with_null_as_empty(chat_db):
    url, _path, ids = chat_db
    code, out, err = run_main(
        "--db", url, "query", f"SELECT id, room, recipient FROM chat_log WHERE id = {ids['m2']}"
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["id", "room", "recipient"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == [str(ids["m2"]), "#lobby"]  # NULL recipient: empty cell
    assert "(1 row)" in err


def test_query_csv_and_json_formats(chat_db):
    url, _path, ids = chat_db
    sql = "SELECT id, sender, recipient, text FROM chat_log WHERE kind = 'private' ORDER BY id"
    code, out, _ = run_main("--db", url, "query", sql, "--format", "csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["id", "sender", "recipient", "text"]
    assert [r[0] for r in rows[1:]] == [str(ids[k]) for k in ("m5", "m6", "m7", "m12")]
    assert rows[-1][3] == "lunch?\nat noon"  # newlines survive CSV quoting
    code, out, _ = run_main("--db", url, "query", sql, "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data[0] == {
        "id": ids["m5"],
        "sender": "alice",
        "recipient": "bob",
        "text": "are you there? C++ question",
    }
    code, out, _ = run_main("--db", url, "query", "SELECT room FROM chat_log WHERE id = 5 AND 0", "--format", "json")  # fmt: skip
    assert code == 0 and json.loads(out) == []
    code, out, _ = run_main("--db", url, "query", f"SELECT room, recipient FROM chat_log WHERE id = {ids['m2']}", "--format", "json")  # fmt: skip
    assert json.loads(out) == [{"room": "#lobby", "recipient": None}]


def test_query_json_keeps_duplicate_column_names_apart(chat_db):
    url, _path, _ids = chat_db
    code, out, _ = run_main("--db", url, "query", "SELECT 1 AS id, 2 AS id", "--format", "json")
    assert code == 0 and json.loads(out) == [{"id": 1, "id_2": 2}]


def test_query_reads_everything_the_operator_owns(chat_db):
    url, _path, _ids = chat_db
    code, out, _ = run_main(
        "--db", url, "query",
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 3) "
        "SELECT count(*) FROM n",
    )  # fmt: skip
    assert code == 0 and out.splitlines()[2].strip() == "3"
    code, out, _ = run_main(
        "--db", url, "query", "SELECT rowid FROM messages_fts WHERE messages_fts MATCH '\"exam\"'"
    )
    assert code == 0 and len(out.splitlines()) == 3
    code, out, _ = run_main("--db", url, "query", "SELECT password_hash FROM users LIMIT 1")
    assert code == 0 and "scrypt$x" in out
    code, out, _ = run_main("--db", url, "query", "SELECT name FROM sqlite_schema WHERE type = 'view'")  # fmt: skip
    assert code == 0 and "chat_log" in out


REFUSED = [
    ("INSERT INTO users (nick, password_hash, created_at) VALUES ('x', '', '')", "INSERT on users"),
    ("UPDATE users SET nick = 'x'", "UPDATE on users"),
    ("DELETE FROM messages", "DELETE on messages"),
    ("DROP TABLE messages", "DROP TABLE"),
    ("DROP VIEW chat_log", "DROP VIEW"),
    ("CREATE TABLE t (x)", "CREATE TABLE"),
    ("CREATE TEMP TABLE t (x)", "CREATE TEMP TABLE"),
    ("CREATE INDEX ix ON messages (body)", "CREATE INDEX"),
    ("create  unique\n index ix ON users (nick)", "CREATE UNIQUE INDEX"),
    ("ALTER TABLE users ADD COLUMN x", "ALTER TABLE"),
    ("PRAGMA user_version=5", "PRAGMA user_version=5"),
    ("PRAGMA journal_mode=DELETE", "PRAGMA journal_mode"),
    ("PRAGMA query_only=OFF", "PRAGMA query_only"),
    ("BEGIN IMMEDIATE", "BEGIN"),
    ("SAVEPOINT a", "SAVEPOINT"),
    ("REINDEX", "REINDEX"),
    ("ANALYZE", "ANALYZE"),
    ("VACUUM", "VACUUM"),
    ("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')", "INSERT on messages_fts"),
    ("SELECT load_extension('/tmp/x')", "load_extension"),
    ("/* sneaky */ -- comment\n DELETE FROM users", "DELETE on users"),
    ("SELECT * FROM pragma_table_info('users')", "pragma_table_info"),
]


@pytest.mark.parametrize(("sql", "named"), REFUSED, ids=[s.split()[0] + str(i) for i, (s, _) in enumerate(REFUSED)])  # fmt: skip
def test_query_refuses_every_change_and_changes_nothing(chat_db, sql, named):
    url, path, _ids = chat_db
    before = snapshot(path)
    code, out, err = run_main("--db", url, "query", sql)
    assert code == 2
    assert out == ""
    assert "refused" in err and named in err
    assert snapshot(path) == before


@pytest.mark.parametrize("kind", ["vacuum", "attach"])
def test_vacuum_into_and_attach_create_no_file(chat_db, tmp_path, kind):
    url, path, _ids = chat_db
    target = tmp_path / "copy.db"
    sql = f"VACUUM INTO '{target}'" if kind == "vacuum" else f"ATTACH '{target}' AS other"
    before = snapshot(path)
    code, _out, err = run_main("--db", url, "query", sql)
    assert code == 2 and "ATTACH" in err and str(target) in err
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    assert snapshot(path) == before


def test_query_refusals_in_a_real_process(chat_db, tmp_path):
    url, path, _ids = chat_db
    before = snapshot(path)
    for sql in ("PRAGMA user_version=5", f"VACUUM INTO '{tmp_path / 'x.db'}'", "DELETE FROM users"):
        proc = run_cli("--db", url, "query", sql)
        assert proc.returncode == 2, proc.stderr
        assert "refused" in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "x.db").exists()
    assert snapshot(path) == before
    proc = run_cli("--db", url, "query", "SELECT count(*) AS n FROM chat_log")
    assert proc.returncode == 0 and proc.stdout.split()[-1] == "12"


def test_query_errors_exit_1(chat_db):
    url, _path, _ids = chat_db
    code, _out, err = run_main("--db", url, "query", "SELEC 1")
    assert code == 1 and "syntax error" in err
    code, _out, err = run_main("--db", url, "query", "SELECT 1; DELETE FROM users")
    assert code == 1 and "one statement" in err
    code, _out, err = run_main("--db", url, "query", "SELECT * FROM no_such_table")
    assert code == 1 and "no such table" in err


def test_a_missing_database_is_an_error_and_is_never_created(tmp_path):
    missing = tmp_path / "nope.db"
    for argv in (
        ["query", "SELECT 1"],
        ["stats"],
        ["search", "x"],
        ["backup", str(tmp_path / "b")],
    ):
        code, _out, err = run_main("--db", f"sqlite:///{missing}", *argv)
        assert code == 1 and "no database" in err
    assert list(tmp_path.iterdir()) == []
    proc = run_cli("query", "SELECT 1", env={"PARLEY_DB": f"sqlite:///{missing}"})
    assert proc.returncode == 1 and str(missing) in proc.stderr
    assert not missing.exists()


def test_not_a_sqlite_database(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    code, _out, err = run_main("--db", f"sqlite:///{junk}", "query", "SELECT 1")
    assert code == 1 and "not a database" in err
    code, _out, err = run_main("--db", "mysql://h/db", "stats")
    assert code == 1 and "not a SQLite file" in err
    # PostgreSQL is read too: a server that cannot be reached is a clear error.
    code, _out, err = run_main("--db", "postgresql://nosuchhost.invalid/db", "stats")
    assert code == 1 and "cannot connect to postgresql" in err


def test_the_default_database_is_parley_db_in_the_working_directory(chat_db, tmp_path):
    _url, path, _ids = chat_db
    (tmp_path / "parley.db").write_bytes(path.read_bytes())
    full_env = {k: v for k, v in os.environ.items() if k != "PARLEY_DB"}
    full_env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "parley_chat.server.logs", "query", "SELECT count(*) FROM users"],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-1] == "5"


def test_help_says_it_is_the_operators_tool():
    proc = run_cli("--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "OPERATOR" in text and "private messages included" in text


# --- export ----------------------------------------------------------------------------


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_export_jsonl_streams_every_row_oldest_first(chat_db):
    url, _path, ids = chat_db
    code, out, err = run_main("--db", url, "export", "--format", "jsonl")
    assert code == 0, err
    rows = _jsonl(out)
    assert [r["id"] for r in rows] == sorted(ids[f"m{i}"] for i in range(1, 13))
    assert list(rows[0]) == ["id", "ts", "room", "sender", "recipient", "kind", "text"]
    by_id = {r["id"]: r for r in rows}
    assert by_id[ids["m9"]]["sender"] == "eve (removed)"
    assert by_id[ids["m12"]]["text"] == "lunch?\nat noon"
    assert by_id[ids["m1"]]["sender"] is None and by_id[ids["m1"]]["kind"] == "system"
    assert by_id[ids["m2"]]["ts"] == "2026-11-23 09:01:00.000000"
    assert err == ""  # no bar: stderr is not a terminal and the export is small


def test_export_filters_by_room_and_time(chat_db):
    url, _path, ids = chat_db

    def exported(*flags: str) -> list[int]:
        code, out, err = run_main("--db", url, "export", "--format", "jsonl", *flags)
        assert code == 0, err
        return [r["id"] for r in _jsonl(out)]

    dev = [ids["m4"], ids["m10"], ids["m11"]]
    assert exported("--room", "#dev") == dev
    assert exported("--room", "DEV") == dev  # case-insensitive, # optional
    assert exported("--room", "#random") == []
    # A date alone for --until includes that whole day.
    assert exported("--since", D2, "--until", D2) == [ids[f"m{i}"] for i in range(5, 10)]
    assert exported("--since", "2026-11-24T10:02:00Z") == [ids[f"m{i}"] for i in range(6, 13)]
    # Offsets are converted to UTC: 11:00+01:00 is 10:00 UTC, exclusive.
    assert exported("--until", "2026-11-24T11:00:00+01:00") == [ids[f"m{i}"] for i in range(1, 5)]
    assert exported("--room", "lobby", "--since", D2) == [ids["m8"], ids["m9"]]


def test_export_rejects_unreadable_times(chat_db):
    url, _path, _ids = chat_db
    with pytest.raises(SystemExit):
        logs.build_parser().parse_args(["export", "--format", "csv", "--since", "yesterday"])
    proc = run_cli("--db", url, "export", "--format", "csv", "--since", "25/11/2026")
    assert proc.returncode == 2 and "ISO 8601" in proc.stderr


def test_export_csv_to_a_private_file(chat_db, tmp_path):
    url, _path, ids = chat_db
    target = tmp_path / "out.csv"
    proc = run_cli(
        "--db", url, "export", "--format", "csv", "--room", "#lobby", "--out", str(target)
    )
    assert proc.returncode == 0, proc.stderr
    assert "exported 5 message(s)" in proc.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    rows = list(csv.reader(target.open(newline="", encoding="utf-8")))
    assert rows[0] == list(logs.CHAT_LOG_COLUMNS)
    assert [int(r[0]) for r in rows[1:]] == [ids[k] for k in ("m1", "m2", "m3", "m8", "m9")]
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no partial file left


def test_export_to_a_folder_that_cannot_be_written_is_said_not_a_traceback(chat_db, tmp_path):
    url, _path, _ids = chat_db
    (tmp_path / "a-file").write_text("not a folder")
    proc = run_cli(
        "--db", url, "export", "--format", "csv", "--out", str(tmp_path / "a-file" / "out.csv")
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"cannot write in {tmp_path / 'a-file'}: Not a directory" in proc.stderr


def test_export_refuses_to_overwrite_the_database(chat_db):
    url, path, _ids = chat_db
    before = snapshot(path)
    code, _out, err = run_main("--db", url, "export", "--format", "csv", "--out", str(path))
    assert code == 2 and "database itself" in err
    assert snapshot(path) == before


def test_export_streams_a_large_log_with_a_progress_bar(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'big.db'}"
    upgrade_to_head(url, backup=False)
    store = Store(url)
    store.start()
    try:
        uid = (
            store.submit(lambda s: writes.create_user(s, "alice", "x", at(D1, "00:00")))
            .result(10)
            .id
        )

        def many(s):  # type: ignore[no-untyped-def]
            for i in range(2500):
                writes.add_message(s, kind="public", body=f"line {i}", now=at(D1, "10:00"), room="#lobby", sender_id=uid)  # fmt: skip

        store.submit(many).result(60)
    finally:
        store.close()
    # Streaming: count the rows export() has pulled from the cursor when it
    # writes its first line; a list() of everything first would show 2500.
    pulled = [0]
    pulled_at_first_write: list[int] = []
    real_rows = logs.ReadOnlyDatabase.rows

    def counting_rows(self, sql, params=()):  # type: ignore[no-untyped-def]
        headers, it = real_rows(self, sql, params)

        def counted():  # type: ignore[no-untyped-def]
            for row in it:
                pulled[0] += 1
                yield row

        return headers, counted()

    class Out(io.StringIO):
        def write(self, s: str) -> int:
            if not pulled_at_first_write:
                pulled_at_first_write.append(pulled[0])
            return super().write(s)

    monkeypatch.setattr(logs.ReadOnlyDatabase, "rows", counting_rows)
    monkeypatch.setattr(logs, "FETCH_ROWS", 100)
    with logs.ReadOnlyDatabase(logs.resolve_database(url)) as db:
        out, err = Out(), io.StringIO()
        n = logs.export(db, out, "jsonl", logs.ExportFilter(), progress=True, err=err)
    assert pulled_at_first_write == [2]  # the count(*) row, then the first message
    assert n == 2500
    assert len(out.getvalue().splitlines()) == 2500
    assert "export" in err.getvalue() and "2.50k" in err.getvalue()  # the tqdm bar
    # Without --progress the bar follows the rule: not a tty and few rows -> none.
    with logs.ReadOnlyDatabase(logs.resolve_database(url)) as db:
        err = io.StringIO()
        logs.export(db, io.StringIO(), "csv", logs.ExportFilter(), err=err)
        assert err.getvalue() == ""
        monkeypatch.setattr(logs, "LARGE_EXPORT_ROWS", 1000)
        logs.export(db, io.StringIO(), "csv", logs.ExportFilter(), err=err)
        assert "export" in err.getvalue()


# --- search ----------------------------------------------------------------------------


def _search_ids(url: str, text: str, limit: int = 50) -> list[int]:
    with logs.ReadOnlyDatabase(logs.resolve_database(url)) as db:
        rows, _more = logs.search(db, text, limit)
    return [r[0] for r in rows]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("exam", ["m3"]),  # a substring: trigram
        ("example.com", ["m3"]),  # punctuation is literal
        ("C++", ["m5"]),
        ("c++", ["m5"]),  # case-insensitive
        ('"const"', ["m7"]),  # quotes inside a phrase are doubled, not syntax
        ('"', ["m8", "m7"]),  # one character: LIKE; newest first
        ("%", ["m4"]),  # LIKE's wildcards are escaped
        ("_", ["m4"]),
        ("50%", ["m4"]),
        ("ok", ["m4"]),  # two characters: LIKE
        ("HELLO everyone", ["m2"]),  # every word must appear
        ("lunch noon", ["m12"]),  # private messages too: the operator's view
        ("leaving", ["m9"]),
        ("NEAR(a b)", []),
        ('x" OR "y', []),
        ("AND", ["m10"]),  # a word, not an operator: "plan and everything"
        ("*", []),
    ],
)
def test_search_quotes_every_term(chat_db, text, expected):
    url, _path, ids = chat_db
    assert _search_ids(url, text) == [ids[k] for k in expected]


def test_search_limit_and_more(chat_db):
    url, _path, ids = chat_db
    with logs.ReadOnlyDatabase(logs.resolve_database(url)) as db:
        rows, more = logs.search(db, "e", 2)
        assert more and [r[0] for r in rows] == [ids["m11"], ids["m10"]]
        with pytest.raises(logs.UsageError):
            logs.search(db, "   ")


def test_search_cli_prints_a_table_newest_first(chat_db):
    url, _path, ids = chat_db
    proc = run_cli("--db", url, "search", "plan", "--limit", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == list(logs.CHAT_LOG_COLUMNS)
    assert lines[2].split()[0] == str(ids["m10"])
    assert len(lines) == 3 and "more than 1" in proc.stderr
    code, out, _ = run_main("--db", url, "search", "lunch")
    assert code == 0 and "lunch?\\nat noon" in out  # a newline cannot break the table
    code, _out, _err = run_main("--db", url, "search", "x", "--limit", "0")
    assert code == 2


# --- stats -----------------------------------------------------------------------------


def test_stats_counts_per_room_user_and_day(chat_db):
    url, _path, _ids = chat_db
    with logs.ReadOnlyDatabase(logs.resolve_database(url)) as db:
        (_t1, h1, rooms), (_t2, h2, users), (_t3, h3, days) = logs.stats(db)
    assert h1[:4] == ["room", "messages", "public", "system"]
    assert [r[:4] for r in rooms] == [("#lobby", 5, 4, 1), ("#dev", 3, 2, 1), ("#random", 0, 0, 0)]
    assert h2[:4] == ["user", "messages", "public", "private"]
    assert [r[:4] for r in users] == [
        ("alice", 4, 2, 2),
        ("bob", 3, 2, 1),
        ("carol", 2, 1, 1),
        ("eve (removed)", 1, 1, 0),
        ("dave", 0, 0, 0),
    ]
    assert h3 == ["day", "messages", "public", "private", "system"]
    assert days == [(D1, 4, 3, 0, 1), (D2, 5, 2, 3, 0), (D3, 3, 1, 1, 1)]


def test_stats_cli_prints_three_tables(chat_db):
    url, _path, _ids = chat_db
    proc = run_cli("--db", url, "stats")
    assert proc.returncode == 0, proc.stderr
    for title in ("Messages per room", "Messages per user", "Messages per day (UTC)"):
        assert title in proc.stdout
    assert "eve (removed)" in proc.stdout


# --- backup ----------------------------------------------------------------------------


def test_backup_while_a_store_writes(tmp_path):
    url = f"sqlite:///{tmp_path / 'live.db'}"
    ids = populate(url)
    store = Store(url)
    store.start()
    stop = threading.Event()
    going = threading.Event()  # set once 20 writes are in: the writer is surely going
    written = [0]

    def keep_writing() -> None:
        while not stop.is_set():
            store.submit(
                lambda s: writes.add_message(
                    s, kind="public", body="busy", now=at(D3, "10:00"), room="#lobby",
                    sender_id=ids["alice"],
                )
            ).result(10)  # fmt: skip
            written[0] += 1
            if written[0] == 20:
                going.set()

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        assert going.wait(60), f"the writer stalled after {written[0]} writes"
        target = tmp_path / "backup.db"
        low = 12 + written[0]
        proc = run_cli("--db", url, "backup", str(target))  # a real process, as operators run it
        high = 12 + written[0]
        assert proc.returncode == 0, proc.stderr
        in_process = logs.backup(Path(tmp_path / "live.db"), tmp_path / "backup2.db")
    finally:
        stop.set()
        writer.join(30)
        store.close()
    assert "written to" in proc.stdout
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    con = sqlite3.connect(target)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        count = con.execute("SELECT count(*) FROM messages").fetchone()[0]
        fts = con.execute(
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH '\"busy\"'"
        ).fetchone()[0]
    finally:
        con.close()
    assert low <= count <= high + 1
    assert fts == count - 12  # the index is consistent with the rows: one snapshot
    assert in_process.messages is not None and in_process.messages >= count
    leftovers = {p.name for p in tmp_path.iterdir()} - {
        "live.db", "live.db-wal", "live.db-shm", "backup.db", "backup2.db"
    }  # fmt: skip
    assert leftovers == set()


def test_backup_refuses_to_overwrite_unless_forced(chat_db, tmp_path):
    url, path, _ids = chat_db
    target = tmp_path / "b.db"
    target.write_text("keep me")
    code, _out, err = run_main("--db", url, "backup", str(target))
    assert code == 2 and "--force" in err and target.read_text() == "keep me"
    code, out, err = run_main("--db", url, "backup", str(target), "--force")
    assert code == 0, err
    assert "12 messages" in out
    code, _out, err = run_main("--db", url, "backup", str(path))
    assert code == 2 and "database itself" in err
    code, _out, err = run_main("--db", url, "backup", str(tmp_path))
    assert code == 2 and "directory" in err


# --- formatting ------------------------------------------------------------------------


def test_table_cells_are_terminal_safe_and_aligned():
    assert cell_text(None) == ""
    assert cell_text("a\nb\tc\x1b[2J") == "a\\nb\\tc\\x1b[2J"
    assert cell_text(b"\x01\xff") == "x'01ff'"
    assert display_width("日本") == 4 and display_width("e\u0301") == 1
    out = io.StringIO()
    write_table(out, ["n", "nick"], [(1, "日本"), (10, "bob")])
    assert out.getvalue().splitlines() == ["n   nick", "--  ----", " 1  日本", "10  bob"]


def test_parse_time_is_utc_text():
    assert parse_time("2026-11-25") == "2026-11-25 00:00:00.000000"
    assert parse_time("2026-11-25", end_of_day=True) == "2026-11-26 00:00:00.000000"
    assert parse_time("2026-11-25T09:30") == "2026-11-25 09:30:00.000000"
    assert parse_time("2026-11-25 09:30:00.5Z") == "2026-11-25 09:30:00.500000"
    assert parse_time("2026-11-25T01:00:00-02:00") == "2026-11-25 03:00:00.000000"
    with pytest.raises(ValueError):
        parse_time("tomorrow")
    # Past the calendar's ends: an error to read (or the end of time), not an OverflowError.
    with pytest.raises(ValueError, match="cannot read the time"):
        parse_time("0001-01-01T00:00:00+14:00")
    assert parse_time("9999-12-31", end_of_day=True) == "9999-12-31 23:59:59.999999"


# --- display safety ----------------------------------------------------------------------

#: Invisible characters a chat message may carry, and how a table shows them.
INVISIBLE = {
    **{chr(c): f"\\u{c:04x}" for c in range(0x202A, 0x202F)},  # LRE RLE PDF LRO RLO
    **{chr(c): f"\\u{c:04x}" for c in range(0x2066, 0x206A)},  # LRI RLI FSI PDI
    "\u200e": "\\u200e",  # LRM
    "\u200f": "\\u200f",  # RLM
    "\u061c": "\\u061c",  # ALM
    "\u200b": "\\u200b",  # zero-width space
    "\u200c": "\\u200c",  # ZWNJ
    "\u200d": "\\u200d",  # ZWJ
    "\u2060": "\\u2060",  # word joiner
    "\ufeff": "\\ufeff",  # BOM / ZWNBSP
    "\u00ad": "\\xad",  # soft hyphen (Cf)
    "\u2028": "\\u2028",  # line separator
    "\u2029": "\\u2029",  # paragraph separator
    "\U000e0041": "\\U000e0041",  # a tag character (Cf, astral)
    "\x85": "\\x85",  # NEL (C1)
    "\x7f": "\\x7f",  # DEL
    "\x00": "\\x00",
}


@pytest.mark.parametrize("ch", list(INVISIBLE), ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
def test_table_cells_show_invisible_characters_as_escapes(ch):
    assert cell_text(f"a{ch}b") == f"a{INVISIBLE[ch]}b"


def test_table_cells_keep_visible_text_as_it_is():
    text = "héllo 日本語 Ελληνικά עברית العربية 👍 e\u0301 \u00a0nbsp"
    assert cell_text(text) == text
    assert cell_text("tab\there\r\n") == "tab\\there\\r\\n"


@pytest.fixture
def bidi_db(tmp_path: Path) -> tuple[str, Path]:
    """A database whose messages carry bidi overrides and zero-width characters."""
    path = tmp_path / "bidi.db"
    url = f"sqlite:///{path}"
    upgrade_to_head(url, backup=False)
    store = Store(url)
    store.start()
    try:
        uid = (
            store.submit(lambda s: writes.create_user(s, "mallory", "h", at(D1, "00:00")))
            .result(10)
            .id
        )
        for body in ("evil \u202etxt.exe\u202c", "ad\u200bmin", "\u2066rtl\u2069 \ufeffbom"):
            store.submit(
                lambda s, b=body: writes.add_message(s, kind="public", body=b, now=at(D1, "09:00"), room="#lobby", sender_id=uid)
            ).result(10)  # fmt: skip
    finally:
        store.close()
    return url, path


def test_query_tables_escape_bidi_controls_but_csv_and_json_keep_them(bidi_db):
    url, _path = bidi_db
    sql = "SELECT id, sender, text FROM chat_log ORDER BY id"
    code, out, _err = run_main("--db", url, "query", sql)
    assert code == 0
    assert "evil \\u202etxt.exe\\u202c" in out and "ad\\u200bmin" in out
    assert "\\u2066rtl\\u2069 \\ufeffbom" in out
    assert all(unicodedata.category(ch) != "Cf" for ch in out)
    # The columns stay in place: every row's sender column starts at the same offset.
    lines = out.splitlines()
    offsets = {line.index("mallory") for line in lines[2:]}
    assert len(offsets) == 1
    code, out, _err = run_main("--db", url, "query", sql, "--format", "json")
    assert json.loads(out)[0]["text"] == "evil \u202etxt.exe\u202c"
    code, out, _err = run_main("--db", url, "query", sql, "--format", "csv")
    assert "ad\u200bmin" in out
    code, out, _err = run_main("--db", url, "export", "--format", "jsonl")
    assert [r["text"] for r in _jsonl(out)][2] == "\u2066rtl\u2069 \ufeffbom"
    code, out, _err = run_main("--db", url, "search", "admin")
    assert code == 0 and out.count("\n") == 2  # the zero-width space splits the word: no match
    code, out, _err = run_main("--db", url, "search", "exe")
    assert code == 0 and "\\u202etxt.exe\\u202c" in out and "\u202e" not in out


# --- never writing over the database's own files ------------------------------------------


@pytest.fixture(scope="module")
def live_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A populated database held open by a running Store, so its -wal and -shm
    exist; with a -journal and a server lock file beside it. Shared: the tests
    using it must leave it as they found it."""
    path = tmp_path_factory.mktemp("live") / "live.db"
    url = f"sqlite:///{path}"
    populate(url)
    store = Store(url)
    store.start()
    with store.read() as s:
        s.connection().exec_driver_sql("SELECT count(*) FROM messages").scalar()
    (path.parent / "live.db.lock").write_text("pid 1\n")
    (path.parent / "live.db-journal").write_bytes(b"")
    yield url, path
    store.close()


def _identities(directory: Path) -> dict[str, tuple[int, int, int]]:
    return {
        p.name: (p.lstat().st_ino, p.lstat().st_size, p.lstat().st_mtime_ns)
        for p in directory.iterdir()
    }


def _writers(url: str, target: Path) -> list[list[str]]:
    return [
        ["--db", url, "backup", str(target)],
        ["--db", url, "backup", str(target), "--force"],
        ["--db", url, "export", "--format", "csv", "--out", str(target)],
        ["--db", url, "export", "--format", "jsonl", "--out", str(target)],
    ]


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", "-journal", ".lock"])
@pytest.mark.parametrize("spelling", ["direct", "symlink", "hardlink", "dotdot"])
def test_no_command_writes_over_the_database_or_its_sidecars(live_db, tmp_path, suffix, spelling):
    url, path = live_db
    protected = path.with_name(path.name + suffix)
    assert protected.exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if spelling == "direct":
        target = protected
    elif spelling == "symlink":
        target = elsewhere / "innocent.db"
        target.symlink_to(protected)
    elif spelling == "hardlink":
        target = elsewhere / "innocent.db"
        os.link(protected, target)
    else:
        target = elsewhere / ".." / ".." / path.parent.name / protected.name
    before = _identities(path.parent)
    for argv in _writers(url, target):
        code, out, err = run_main(*argv)
        assert code == 2, (argv, err)
        assert "refusing to write" in err and "nothing was written" in err, err
        assert out == ""
    assert _identities(path.parent) == before
    if spelling in ("symlink", "hardlink"):
        assert {p.name for p in elsewhere.iterdir()} == {"innocent.db"}  # no partial file either


def test_a_dangling_symlink_to_a_sidecar_is_refused_too(chat_db, tmp_path):
    url, path, _ids = chat_db
    target = tmp_path / "link.db"
    target.symlink_to(path.with_name(path.name + "-journal"))  # does not exist
    code, _out, err = run_main("--db", url, "backup", str(target))
    assert code == 2 and "rollback journal" in err
    assert not path.with_name(path.name + "-journal").exists()


def test_a_database_reached_through_a_symlink_keeps_its_sidecars_safe(live_db, tmp_path):
    _url, path = live_db
    alias = tmp_path / "alias.db"
    alias.symlink_to(path)
    code, _out, err = run_main("--db", f"sqlite:///{alias}", "backup", str(path) + "-wal")
    assert code == 2 and "write-ahead log" in err


def test_a_pre_migration_backup_may_be_replaced(live_db):
    url, path = live_db
    old = path.with_name(path.name + ".before-0001-20260101T000000Z.bak")
    old.write_text("an old copy")
    try:
        code, _out, err = run_main("--db", url, "backup", str(old), "--force")
        assert code == 0, err
        con = sqlite3.connect(old)
        assert con.execute("SELECT count(*) FROM messages").fetchone()[0] == 12
        con.close()
    finally:
        old.unlink()


# --- what reading leaves beside the database ----------------------------------------------


def test_reading_a_closed_database_leaves_an_empty_log_owned_like_the_database(tmp_path):
    # Decision (docs/operations.md, "The logs tool"): SQLite needs the -shm
    # index to read a WAL database, so a reader creates it (and an empty -wal)
    # when no server has them open. They are harmless: the database file is not
    # touched, the -wal is empty, both get the database's owner and mode, and
    # the next server start uses them as its own.
    path = tmp_path / "closed.db"
    url = f"sqlite:///{path}"
    populate(url)
    assert {p.name for p in tmp_path.iterdir()} == {"closed.db"}  # checkpointed and closed
    os.chmod(path, 0o640)
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)  # nobody: a root operator reads a service's database
    before = snapshot(path)
    code, out, _err = run_main("--db", url, "query", "SELECT count(*) FROM messages")
    assert code == 0 and out.split()[-1] == "12"
    assert snapshot(path) == before
    wal, shm = tmp_path / "closed.db-wal", tmp_path / "closed.db-shm"
    assert wal.stat().st_size == 0
    for sidecar in (wal, shm):
        st = sidecar.stat()
        assert stat.S_IMODE(st.st_mode) == 0o640
        assert (st.st_uid, st.st_gid) == (path.stat().st_uid, path.stat().st_gid)
    # The server starts and writes as usual afterwards.
    store = Store(url)
    store.start()
    try:
        store.submit(lambda s: writes.set_setting(s, "after", "read")).result(10)
    finally:
        store.close()
    con = sqlite3.connect(path)
    assert con.execute("SELECT value FROM server_settings WHERE key = 'after'").fetchone() == (
        "read",
    )
    con.close()


def test_reading_while_the_server_runs_creates_no_file(live_db):
    url, path = live_db
    before = {p.name for p in path.parent.iterdir()}
    for argv in (["query", "SELECT count(*) FROM chat_log"], ["stats"], ["search", "plan"]):
        code, _out, err = run_main("--db", url, *argv)
        assert code == 0, err
    assert {p.name for p in path.parent.iterdir()} == before
