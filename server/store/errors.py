"""What the store raises, split by whose fault it is.

StoreError: the database failed (disk full, I/O error, locked): the server's
problem; the operation did not happen and may be retried.
  StoreUnwritable: the database refuses writes at the moment (read-only,
  full, I/O error, locked): reads still work, and bookkeeping writes wait in
  the writer's backlog (Store.submit_bookkeeping).
StoreConflict: the request contradicts what is stored (nick taken, no such
user or room, not a member, a client id reused): the caller's problem;
retrying will not help.
StoreRejected: the input itself cannot be stored (a lone surrogate in a text,
an integer beyond SQLite's 64 bits, a value of an unsupported type): the
caller's problem; retrying the same input will not help either.

Every one of them means: nothing of that operation was written, and no other
caller's operation was affected.

database_said(exc) gives an operator the driver's own words for a failure.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError


class StoreError(Exception):
    """The database could not do the work (disk full, I/O error). Nothing was written."""


class StoreUnwritable(StoreError):
    """The database refuses writes (read-only, full, I/O error, locked); reads still work."""


class StoreConflict(Exception):
    """The request contradicts the stored state. Nothing was written."""


class StoreRejected(Exception):
    """The input could not be stored (e.g. text with a lone surrogate, an integer
    beyond 64 bits). The caller's fault, not the database's. Nothing was written."""


class NickTaken(StoreConflict):
    """Another account already has this nick (compared case-insensitively)."""


class NoSuchUser(StoreConflict):
    """No (live) account has this nick."""


class NoSuchRoom(StoreConflict):
    """No room has this name."""


class NotVisible(StoreConflict):
    """The user may not read or post there (not a member of the room)."""


class IdReused(StoreConflict):
    """A message with this sender's client id is stored with another kind, target
    or text: the new message was not stored (use a fresh id for a new message)."""


def database_said(exc: BaseException) -> str:
    """What the database driver said about *exc*, on one line: SQLAlchemy's
    wrapper, the failed SQL and its help link left out (an operator's message)."""
    said = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return " ".join(str(said).split()).rstrip(".?")
