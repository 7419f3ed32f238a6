# server/store/errors.py: what the store raises, split by whose fault it is.
#
# StoreError: the database failed (disk full, I/O error, locked): the server's
# problem; the operation did not happen and may be retried.
# StoreConflict: the request contradicts what is stored (nick taken, no such
# user or room, not a member): the caller's problem; retrying will not help.


class StoreError(Exception):
    """The database could not do the work (disk full, I/O error). Nothing was written."""


class StoreConflict(Exception):
    """The request contradicts the stored state. Nothing was written."""


class NickTaken(StoreConflict):
    """Another account already has this nick (compared case-insensitively)."""


class NoSuchUser(StoreConflict):
    """No (live) account has this nick."""


class NoSuchRoom(StoreConflict):
    """No room has this name."""


class NotVisible(StoreConflict):
    """The user may not read or post there (not a member of the room)."""
