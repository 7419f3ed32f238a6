# Tests of server/admin.py: accounts made, reset and deleted by the operator
# while a real server runs on the same SQLite file, checked by logging in over
# real TLS (tests.support.RawClient); registration switched on a live server.

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command as alembic_command

from parley_chat.protocol import PROTOCOL_VERSION, Ack, Error, ErrorCode, Hello, Send, Welcome
from parley_chat.server import admin, logs
from parley_chat.server.store import Store, queries, upgrade_to_head, writes
from parley_chat.server.store.migrate import alembic_config
from tests.support import RawClient

ROOT = Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT = 60


def run_admin(
    db_url: str, *argv: str, password: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m parley_chat.server.admin --db URL --scrypt-n 16 ...` as a real process, stdin not a tty."""
    env = {k: v for k, v in os.environ.items() if k not in ("PARLEY_DB", "PARLEY_PASSWORD")}
    env["PYTHONPATH"] = str(ROOT)
    if password is not None:
        env["PARLEY_PASSWORD"] = password
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "parley_chat.server.admin",
            "--db",
            db_url,
            "--scrypt-n",
            "16",
            *argv,
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )


class FakeTty(io.StringIO):
    """Typed answers on a 'terminal' (for the prompts)."""

    def isatty(self) -> bool:
        return True


def run_main(db_url: str, *argv: str, **kw: object) -> tuple[int, str, str]:
    """server.admin.main in-process; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    kw.setdefault("environ", {})
    kw.setdefault("stdin", io.StringIO())
    code = admin.main(["--db", db_url, "--scrypt-n", "16", *argv], stdout=out, stderr=err, **kw)  # type: ignore[arg-type]
    return code, out.getvalue(), err.getvalue()


def hello(client: RawClient, nick: str, *, password: str | None = None, token: str | None = None,
          register: bool = False):  # fmt: skip
    """Send a hello and return the first reply (Welcome or Error)."""
    client.send(
        Hello(
            version=PROTOCOL_VERSION,
            nick=nick,
            password=password,
            token=token,
            register=register,
        )
    )
    return client.recv()


def login_reply(server, ca_file, nick: str, **kw: object):
    """One fresh connection's answer to a hello."""
    client = RawClient(server.address, ca_file)
    try:
        return hello(client, nick, **kw)  # type: ignore[arg-type]
    finally:
        client.close()


# --- add ---------------------------------------------------------------------------------


def test_an_account_added_while_the_server_runs_can_log_in(make_server, db_url, ca_file):
    server = make_server()
    proc = run_admin(db_url, "add", "alice", password="correct horse")
    assert proc.returncode == 0, proc.stderr
    assert "created the account alice" in proc.stdout
    client = RawClient(server.address, ca_file)
    try:
        welcome, _batch = client.login("alice", "correct horse", register=False)
        assert welcome.nick == "alice" and not welcome.created
        assert "#lobby" in welcome.rooms
    finally:
        client.close()
    reply = login_reply(server, ca_file, "alice", password="wrong")
    assert isinstance(reply, Error) and reply.code == ErrorCode.AUTH_FAILED


def test_the_default_scrypt_cost_is_the_servers(make_server, db_url, ca_file, tmp_path):
    # Without --scrypt-n the hash uses ServerConfig's cost, stored in the hash itself.
    out, err = io.StringIO(), io.StringIO()
    code = admin.main(
        ["--db", db_url, "add", "bob"], environ={"PARLEY_PASSWORD": "pw"}, stdout=out, stderr=err,
        stdin=io.StringIO(),
    )  # fmt: skip
    assert code == 0, err.getvalue()
    store = Store(db_url)
    store.start()
    try:
        with store.read() as s:
            stored = queries.get_user(s, "bob").password_hash  # type: ignore[union-attr]
    finally:
        store.close()
    assert stored.startswith(f"scrypt${2**17}$8$1$")
    server = make_server()
    reply = login_reply(server, ca_file, "bob", password="pw")
    assert isinstance(reply, Welcome)


def test_add_refuses_invalid_and_taken_nicks(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    for bad in ("bad nick", "x" * 25, "ålice", ""):
        code, _out, err = run_main(url, "add", bad, environ={"PARLEY_PASSWORD": "pw"})
        assert code == 2 and "not a valid nick" in err
    assert not (tmp_path / "a.db").exists()  # refused before the database is touched
    assert run_main(url, "add", "alice", environ={"PARLEY_PASSWORD": "pw"})[0] == 0
    code, _out, err = run_main(url, "add", "ALICE", environ={"PARLEY_PASSWORD": "pw"})
    assert code == 1 and "already taken" in err


def test_a_password_that_is_not_utf8_is_refused_in_words(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    code, _out, err = run_main(url, "add", "zed", environ={"PARLEY_PASSWORD": "pw\udcff"})
    assert code == 2 and "not UTF-8" in err


def test_the_password_never_comes_from_the_command_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    proc = run_admin(url, "add", "alice")  # no PARLEY_PASSWORD, stdin not a terminal
    assert proc.returncode == 2 and "PARLEY_PASSWORD" in proc.stderr
    proc = run_admin(url, "add", "alice", "secret")  # an extra argument is a usage error
    assert proc.returncode == 2
    code, _out, err = run_main(url, "add", "alice", environ={"PARLEY_PASSWORD": ""})
    assert code == 2 and "1 to 1024" in err


def test_the_prompt_asks_twice_on_a_terminal(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    answers = iter(["one", "two"])
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return next(answers)

    code, _out, err = run_main(url, "add", "alice", stdin=FakeTty(), prompt=prompt)
    assert code == 1 and "differ" in err and len(asked) == 2
    answers = iter(["same", "same"])
    code, out, err = run_main(url, "add", "alice", stdin=FakeTty(), prompt=prompt)
    assert code == 0, err
    assert "alice" in out


# --- passwd ------------------------------------------------------------------------------


def test_passwd_revokes_resume_tokens(make_server, db_url, ca_file):
    server = make_server()
    assert run_admin(db_url, "add", "alice", password="old-pw").returncode == 0
    client = RawClient(server.address, ca_file)
    welcome, _ = client.login("alice", "old-pw", register=False)
    client.close()
    token = welcome.token
    proc = run_admin(db_url, "passwd", "alice", password="new-pw")
    assert proc.returncode == 0, proc.stderr
    assert "revoked its 1 resume token(s)" in proc.stdout
    reply = login_reply(server, ca_file, "alice", token=token)
    assert isinstance(reply, Error) and reply.code == ErrorCode.BAD_TOKEN
    reply = login_reply(server, ca_file, "alice", password="old-pw")
    assert isinstance(reply, Error) and reply.code == ErrorCode.AUTH_FAILED
    reply = login_reply(server, ca_file, "alice", password="new-pw")
    assert isinstance(reply, Welcome)


def test_passwd_of_an_unknown_account_fails_before_asking(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"

    def prompt(_text: str) -> str:
        raise AssertionError("asked for a password for an account that does not exist")

    upgrade_to_head(url, backup=False)
    code, _out, err = run_main(url, "passwd", "nobody", stdin=FakeTty(), prompt=prompt)
    assert code == 1 and "no account named nobody" in err


# --- delete ------------------------------------------------------------------------------


def test_delete_keeps_messages_attributed_to_the_removed_account(make_server, db_url, ca_file):
    server = make_server()
    alice = RawClient(server.address, ca_file)
    alice.login("alice", "pw-a")
    alice.send(Send(id="c1", room="#lobby", text="remember me"))
    alice.expect(Ack, ref="c1")
    alice.close()
    proc = run_admin(db_url, "delete", "alice")  # not a terminal, no --yes: refused
    assert proc.returncode == 2 and "--yes" in proc.stderr
    proc = run_admin(db_url, "delete", "alice", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "1 message(s) stay" in proc.stdout and "alice (removed)" in proc.stdout

    out = io.StringIO()
    path = logs.resolve_database(db_url)
    with logs.ReadOnlyDatabase(path) as db:
        logs.run_query(db, "SELECT sender, text FROM chat_log WHERE kind = 'public'", out, "json")
    assert {"sender": "alice (removed)", "text": "remember me"} in json.loads(out.getvalue())
    reply = login_reply(server, ca_file, "alice", password="pw-a")
    assert isinstance(reply, Error) and reply.code == ErrorCode.NO_SUCH_ACCOUNT
    # The nick is free again: a new alice is a different account.
    reply = login_reply(server, ca_file, "alice", password="pw-new", register=True)
    assert isinstance(reply, Welcome) and reply.created
    proc = run_admin(db_url, "users")
    assert proc.returncode == 0
    lines = [line.split() for line in proc.stdout.splitlines()[2:-1]]
    assert [line[0] for line in lines] == ["alice", "alice"]
    # nick, created (2 words), deleted (2, only the removed one), last session (2)
    assert [len(line) for line in lines] == [7, 5]
    assert "2 account(s), 1 removed" in proc.stdout


def test_delete_asks_on_a_terminal(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    assert run_main(url, "add", "bob", environ={"PARLEY_PASSWORD": "pw"})[0] == 0
    code, out, _ = run_main(url, "delete", "bob", stdin=FakeTty("n\n"))
    assert code == 0 and "Delete the account bob?" in out and "nothing deleted" in out
    code, out, _ = run_main(url, "delete", "bob", stdin=FakeTty("y\n"))
    assert code == 0 and "deleted the account bob" in out
    code, _out, err = run_main(url, "delete", "bob", "--yes")
    assert code == 1 and "no account named bob" in err


# --- users -------------------------------------------------------------------------------


def test_users_lists_accounts_with_their_last_session(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade_to_head(url, backup=False)
    store = Store(url)
    store.start()
    try:
        t0 = datetime(2026, 11, 20, 9, 0, 0, 123456)
        uid = store.submit(lambda s: writes.create_user(s, "alice", "x", t0)).result(10).id
        store.submit(lambda s: writes.create_user(s, "dave", "x", t0)).result(10)
        for hour in (10, 12):
            store.submit(
                lambda s, h=hour: writes.open_session(
                    s, user_id=uid, peer="p", client=None, token_id=None, now=t0.replace(hour=h)
                )
            ).result(10)
    finally:
        store.close()
    code, out, _ = run_main(url, "users")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[0] == "nick"
    assert lines[2].split() == ["alice", "2026-11-20", "09:00:00", "2026-11-20", "12:00:00"]
    assert lines[3].split() == ["dave", "2026-11-20", "09:00:00"]
    assert lines[-1] == "2 account(s), 0 removed"


# --- registration ------------------------------------------------------------------------


def test_registration_closed_refuses_new_accounts_on_a_running_server(make_server, db_url, ca_file):
    server = make_server()
    # The changes come from other processes, as an operator's do; the status reads
    # (the same database, through the same code) run in-process.
    assert run_admin(db_url, "add", "alice", password="pw").returncode == 0
    code, out, _ = run_main(db_url, "registration", "status")
    assert code == 0 and "not set" in out
    proc = run_admin(db_url, "registration", "closed")
    assert proc.returncode == 0 and "closed" in proc.stdout
    reply = login_reply(server, ca_file, "newbie", password="pw", register=True)
    assert isinstance(reply, Error) and reply.code == ErrorCode.REGISTRATION_CLOSED
    # Existing accounts still log in.
    assert isinstance(login_reply(server, ca_file, "alice", password="pw"), Welcome)
    code, out, _ = run_main(db_url, "registration", "status")
    assert code == 0 and "registration is closed" in out
    assert run_admin(db_url, "registration", "open").returncode == 0
    reply = login_reply(server, ca_file, "newbie", password="pw", register=True)
    assert isinstance(reply, Welcome) and reply.created


def test_registration_setting_overrides_the_flag(make_server, db_url, ca_file):
    server = make_server(registration_open=False)
    reply = login_reply(server, ca_file, "newbie", password="pw", register=True)
    assert isinstance(reply, Error) and reply.code == ErrorCode.REGISTRATION_CLOSED
    code, out, _ = run_main(db_url, "registration", "open")
    assert code == 0 and "now open" in out
    assert isinstance(login_reply(server, ca_file, "newbie", password="pw", register=True), Welcome)


def test_usage_errors_exit_2(tmp_path):
    url = f"sqlite:///{tmp_path / 'a.db'}"
    assert run_main(url, "registration", "maybe")[0] == 2
    assert run_main(url)[0] == 2
    err = io.StringIO()
    code = admin.main(["--db", url, "--scrypt-n", "1000", "users"], environ={}, stderr=err)
    assert code == 2 and "power of two" in err.getvalue()


@pytest.mark.parametrize("command", [["users"], ["registration", "status"]])
def test_the_database_is_migrated_first(tmp_path, command):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    alembic_command.upgrade(alembic_config(url), "0001")
    code, _out, err = run_main(url, *command)
    assert code == 0 and "upgraded the database 0001" in err, err


@pytest.mark.parametrize(
    "command",
    [["users"], ["registration", "status"], ["operators"], ["op", "alice"], ["lock", "alice"]],
)
def test_a_missing_database_is_said_and_not_created_by_what_reads_or_changes_it(tmp_path, command):
    # A mistyped --db must not answer "0 account(s)" from a database it just made.
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    code, out, err = run_main(url, *command)
    assert code == 1 and f"no database at {tmp_path / 'typo.db'}" in err and out == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command", [["add", "alice"], ["registration", "closed"], ["registration", "open"]]
)
def test_setting_a_server_up_before_its_first_start_creates_the_database(tmp_path, command):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    code, _out, err = run_main(url, *command, environ={"PARLEY_PASSWORD": "pw"})
    assert code == 0 and "created the database" in err, err
    assert (tmp_path / "fresh.db").exists()


def test_a_file_that_is_not_a_database_is_said_in_the_drivers_words(tmp_path):
    (tmp_path / "notes.db").write_bytes(os.urandom(8192))
    code, out, err = run_main(f"sqlite:///{tmp_path / 'notes.db'}", "users")
    assert code == 1 and out == ""
    assert err == "parley-admin: the database failed: file is not a database\n"  # no SQL, no link
