"""The one timestamp format on the wire.

Server time, UTC, ISO 8601 with milliseconds and a `Z`: 2026-11-24T09:30:00.123Z.
Fixed width, so timestamps sort as strings too.
"""

import re
from datetime import UTC, datetime


def format_ts(moment: datetime) -> str:
    """Wire form of *moment*. A naive datetime is taken to be UTC (as the store keeps them)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_ts(text: str) -> datetime:
    """An aware UTC datetime from the wire form."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


#: The exact wire form; checked before parsing so that only this one spelling
#: of a moment is accepted (fromisoformat alone takes many others).
_TS_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


def valid_ts(text: str) -> bool:
    """True if *text* is a timestamp in the wire form that names a real moment."""
    if _TS_RE.fullmatch(text) is None:
        return False
    try:
        parse_ts(text)
    except ValueError:  # 2026-02-30, month 13, hour 25, year 0
        return False
    return True
