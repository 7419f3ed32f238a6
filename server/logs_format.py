"""How the operator tools (server.logs, server.admin)
print rows: an aligned text table for people, CSV and JSON for programs, and
the parsing of the times operators type (--since, --until).

Rules this module keeps:
1. It never touches a database: it formats the rows it is given.
2. Table cells are made safe for a terminal: a newline or tab inside a
   message would break the table, and any other control character (possible
   in a hand-edited database) must never reach the operator's terminal, where
   it could move the cursor or retitle the window. Invisible format
   characters are shown as escapes too: bidi controls (U+202E RIGHT-TO-LEFT
   OVERRIDE and friends) would reorder the columns on screen, and
   zero-width ones would hide text, e.g. make two different nicks look
   alike. Chat users may send any of them, and the store keeps them
   verbatim. CSV and JSON are data formats and keep values exactly.
3. NULL is an empty cell in tables and CSV, and `null` in JSON (use JSON to
   tell NULL from an empty string).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, TextIO

#: The text form the store keeps times in (naive UTC, SQLAlchemy's SQLite format).
DB_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

#: Output formats of `query` (export has its own: jsonl and csv).
FORMATS = ("table", "csv", "json")

# Candidates for escaping: everything but printable ASCII. Which of them are
# escaped is decided by Unicode category (below), so new format characters in
# a newer Unicode are covered without a list to keep up to date.
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")
_NAMED_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}

#: Unicode categories a table shows as escapes: controls (C0, DEL, C1), format
#: characters (bidi controls U+202A-U+202E, U+2066-U+2069, U+200E, U+200F,
#: U+061C; zero-width U+200B-U+200D, U+2060, U+FEFF; soft hyphen; tags), line
#: and paragraph separators (a terminal may break the line), and surrogates.
UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    named = _NAMED_ESCAPES.get(ch)
    if named is not None:
        return named
    if unicodedata.category(ch) not in UNSAFE_CATEGORIES:
        return ch
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def cell_text(value: Any) -> str:
    """One value as table text: NULL is empty, bytes are hex, and control and
    invisible format characters are escaped (`\\n`, `\\x1b`, `\\u202e`)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return "x'" + value.hex() + "'"
    return _NOT_PRINTABLE_ASCII.sub(_escape, str(value))


def display_width(text: str) -> int:
    """Terminal columns *text* takes: wide East Asian characters count 2, combining marks 0."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _pad(text: str, width: int, right: bool) -> str:
    fill = " " * (width - display_width(text))
    return fill + text if right else text + fill


def write_table(out: TextIO, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Print an aligned table (headers, a rule, then the rows); numbers align right.

    Returns the number of rows printed. The rows are read in full first: the
    column widths depend on every row.
    """
    headers = [cell_text(h) for h in headers]
    materialized = [tuple(row) for row in rows]
    cells = [[cell_text(v) for v in row] for row in materialized]
    widths = [display_width(h) for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], display_width(text))
    # A column is numeric when every non-NULL value is a number: align it right.
    numeric = [
        all(
            row[i] is None or (isinstance(row[i], int | float) and not isinstance(row[i], bool))
            for row in materialized
        )
        for i in range(len(headers))
    ]
    out.write(
        "  ".join(_pad(h, w, False) for h, w in zip(headers, widths, strict=True)).rstrip() + "\n"
    )
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        line = "  ".join(
            _pad(t, w, numeric[i]) for i, (t, w) in enumerate(zip(row, widths, strict=True))
        )
        out.write(line.rstrip() + "\n")
    return len(cells)


def json_value(value: Any) -> Any:
    """A value JSON can carry: bytes become hex text, everything else stays."""
    return value.hex() if isinstance(value, bytes) else value


def unique_names(headers: Sequence[str]) -> list[str]:
    """Column names made unique for JSON objects (`id`, `id` -> `id`, `id_2`)."""
    seen: dict[str, int] = {}
    names = []
    for h in headers:
        n = seen.get(h, 0) + 1
        seen[h] = n
        names.append(h if n == 1 else f"{h}_{n}")
    return names


def write_csv(out: TextIO, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write a header line and one CSV line per row, streaming; returns the row count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    n = 0
    for row in rows:
        writer.writerow([json_value(v) for v in row])
        n += 1
    return n


def write_json(out: TextIO, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write a JSON list of objects (one per row), streaming; returns the row count."""
    names = unique_names(headers)
    out.write("[")
    n = 0
    for row in rows:
        obj = {k: json_value(v) for k, v in zip(names, row, strict=True)}
        out.write(("\n  " if n == 0 else ",\n  ") + json.dumps(obj, ensure_ascii=False))
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n


def write_rows(out: TextIO, fmt: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write *rows* in *fmt* (table, csv or json); returns the row count."""
    if fmt == "table":
        return write_table(out, headers, rows)
    if fmt == "csv":
        return write_csv(out, headers, rows)
    if fmt == "json":
        return write_json(out, headers, rows)
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def parse_time(text: str, *, end_of_day: bool = False) -> str:
    """An operator's ISO date or time as the store's naive-UTC text.

    Accepts `2026-11-25`, `2026-11-25T09:30`, `2026-11-25 09:30:00.5`, with an
    optional `Z` or `+01:00` (converted to UTC); no offset means UTC. A date
    alone means its midnight, or the next midnight when *end_of_day* (so
    `--until 2026-11-25` includes that whole day). ValueError if unreadable.
    """
    text = text.strip()
    try:
        day = date.fromisoformat(text)
    except ValueError:
        pass
    else:
        start = datetime(day.year, day.month, day.day)
        if end_of_day and day == date.max:  # no next midnight to end on
            return datetime.max.strftime(DB_TIME_FORMAT)
        return (start + timedelta(days=1) if end_of_day else start).strftime(DB_TIME_FORMAT)
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is not None:
            # 0001-01-01T00:00+14:00 is before year 1 in UTC: OverflowError.
            moment = moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError) as exc:
        raise ValueError(
            f"cannot read the time {text!r}: use ISO 8601, e.g. 2026-11-25 or 2026-11-25T09:30Z"
        ) from exc
    return moment.strftime(DB_TIME_FORMAT)


def short_time(value: Any) -> str:
    """A stored time cut to whole seconds for people (`2026-11-25 09:30:00`); '' for NULL."""
    if value is None:
        return ""
    return str(value)[:19]


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (--limit)."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
