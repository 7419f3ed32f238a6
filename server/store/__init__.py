"""Everything that touches the database. The rest of the server
calls `writes.*` through Store.submit() (or Store.submit_bookkeeping() for
session rows and tokens, which may wait for a writable database) and
`queries.*` inside Store.read(); nothing outside this package writes SQL.
"""

from . import queries, writes
from .errors import (
    IdReused,
    NickTaken,
    NoSuchRoom,
    NoSuchUser,
    NotVisible,
    StoreConflict,
    StoreError,
    StoreRejected,
    StoreUnwritable,
)
from .migrate import MigrationReport, current_revision, head_revision, upgrade_to_head
from .records import RoomInfo, StoredMessage, UserRecord, utcnow
from .writer import DEFERRED, Direct, LoginRecord, Store, is_database_wide

__all__ = [
    "DEFERRED",
    "Direct",
    "IdReused",
    "LoginRecord",
    "MigrationReport",
    "NickTaken",
    "NoSuchRoom",
    "NoSuchUser",
    "NotVisible",
    "RoomInfo",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoreRejected",
    "StoreUnwritable",
    "StoredMessage",
    "UserRecord",
    "current_revision",
    "head_revision",
    "is_database_wide",
    "queries",
    "upgrade_to_head",
    "utcnow",
    "writes",
]
