# server/store/: everything that touches the database. The rest of the server
# calls `writes.*` through Store.submit() and `queries.*` inside Store.read();
# nothing outside this package writes SQL.

from . import queries, writes
from .errors import NickTaken, NoSuchRoom, NoSuchUser, NotVisible, StoreConflict, StoreError
from .migrate import MigrationReport, current_revision, head_revision, upgrade_to_head
from .records import RoomInfo, StoredMessage, UserRecord
from .writer import Store

__all__ = [
    "MigrationReport",
    "NickTaken",
    "NoSuchRoom",
    "NoSuchUser",
    "NotVisible",
    "RoomInfo",
    "Store",
    "StoreConflict",
    "StoreError",
    "StoredMessage",
    "UserRecord",
    "current_revision",
    "head_revision",
    "queries",
    "upgrade_to_head",
    "writes",
]
