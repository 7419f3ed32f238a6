# protocol/timefmt.py: the one timestamp format on the wire.
#
# Server time, UTC, ISO 8601 with milliseconds and a `Z`: 2026-11-24T09:30:00.123Z.
# Fixed width, so timestamps sort as strings too.

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
