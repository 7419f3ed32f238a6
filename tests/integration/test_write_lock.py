"""Another program holding SQLite's write lock: the I/O loop keeps answering.

A real server and real clients: the loop commits its turns' messages itself
until one commit is slow, and then leaves them to the writer thread, so a
database that stays locked holds up the writes, not the connections.
"""

from __future__ import annotations

import logging
import sqlite3

from parley_chat.protocol import Ack, Message, Send
from tests.support import barrier, online
from tests.support import db_rows as _rows


def test_after_a_slow_commit_a_locked_database_holds_up_only_the_writes(server, ca_file, caplog):
    caplog.set_level(logging.INFO, logger="parley.store")
    server.store.inline_slow = 0.0  # the next commit on the loop counts as slow
    alice, bob = online(server, ca_file, "alice"), online(server, ca_file, "bob")
    barrier(alice)
    alice.send(Send(id="m1", text="first", room="#lobby"))
    assert alice.expect(Ack).ref == "m1"
    assert any("the writer thread commits alone" in r.getMessage() for r in caplog.records)

    path = server.store.database_path
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another program takes the write lock
        alice.send(Send(id="m2", text="second", room="#lobby"))
        # Pings after the send are answered while the lock is held: the loop
        # handed the commit to the writer thread instead of waiting for the
        # lock itself (SQLite's busy timeout is 5 s).
        barrier(alice, "after-send", timeout=2.0)
        barrier(bob, "bob", timeout=2.0)
    finally:
        other.execute("ROLLBACK")
        other.close()
    ack = alice.expect(Ack, ref="m2")
    assert bob.expect(Message, id=ack.id).text == "second"
    assert _rows(server, "SELECT text FROM chat_log WHERE id = ?", ack.id) == [("second",)]
