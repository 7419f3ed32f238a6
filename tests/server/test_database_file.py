"""One server per database on every OS, and a server on an in-memory URL.

The lock is held by a real second process (the OS's lock, not this process's bookkeeping);
the in-memory server is a real TLS server a real client talks to.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from parley_chat.protocol import Ack, Message, Send
from parley_chat.server.database_file import DatabaseFile, is_memory_url
from parley_chat.server.errors import DatabaseLocked, DatabaseUnavailable
from tests.support import RawClient

_HOLDER = textwrap.dedent(
    """
    import sys
    from parley_chat.server.database_file import DatabaseFile
    db = DatabaseFile(sys.argv[1])
    db.acquire()
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test closes our stdin
    db.release()
    """
)


def test_a_second_process_on_the_same_database_is_refused_with_its_pid(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked", f"holder exited {holder.poll()}"
        with pytest.raises(DatabaseLocked, match=rf"\(pid {holder.pid}\) is already using"):
            DatabaseFile(url).acquire()
    finally:
        holder.communicate("", timeout=15)
    # Once the holder let go, the lock is free again.
    again = DatabaseFile(url)
    again.acquire()
    again.release()


def test_a_folder_the_lock_cannot_be_made_in_is_said_and_not_blamed_on_another_server(
    tmp_path: Path,
):
    # The database's "folder" is a file: nothing can be created there.
    (tmp_path / "notes").write_text("not a folder")
    with pytest.raises(DatabaseUnavailable, match=r"cannot create .*beside the database"):
        DatabaseFile(f"sqlite:///{tmp_path / 'notes' / 'chat.db'}").acquire()


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
def test_a_lock_file_that_cannot_be_created_is_not_taken_for_a_held_lock():
    # filelock reports a lock file it cannot create as a timeout, like a held one:
    # the server said "another parley server is already using /proc/chat.db".
    with pytest.raises(DatabaseUnavailable, match=r"cannot create /proc/chat\.db\.lock"):
        DatabaseFile("sqlite:////proc/chat.db").acquire()


def test_a_postgresql_server_that_is_not_there_is_said_plainly():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://parley:secret@127.0.0.1:{port}/chat"
    with pytest.raises(DatabaseUnavailable, match="cannot reach the database") as refused:
        DatabaseFile(url).acquire()
    assert "secret" not in str(refused.value)  # the URL's password is never shown


def test_release_frees_the_lock_for_the_next_server_in_this_process(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'chat.db'}"
    first = DatabaseFile(url)
    first.acquire()
    with pytest.raises(DatabaseLocked):
        DatabaseFile(url).acquire()
    first.release()
    first.release()  # twice is harmless
    second = DatabaseFile(url)
    second.acquire()
    second.release()


@pytest.mark.parametrize(
    ("url", "memory"),
    [
        ("sqlite://", True),
        ("sqlite:///:memory:", True),
        ("sqlite:///chat.db", False),
        ("sqlite:////var/lib/parley/chat.db", False),
    ],
)
def test_which_urls_are_in_memory(url: str, memory: bool):
    assert is_memory_url(url) is memory


def test_a_server_on_an_in_memory_url_serves_and_leaves_nothing_behind(make_server, ca_file):
    server = make_server(db_url="sqlite://")
    path = server.database.path
    assert path is not None and path.name == "parley.db"
    alice = RawClient(server.address, ca_file)
    alice.login("alice")
    bob = RawClient(server.address, ca_file)
    bob.login("bob")
    alice.send(Send(id="m1", text="kept while the server runs", room="#lobby"))
    assert alice.expect(Ack).ref == "m1"
    seen = bob.expect(Message, text="kept while the server runs")
    assert seen.from_ == "alice"
    server.stop()
    assert not path.parent.exists()
