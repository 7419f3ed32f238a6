"""RPL_ISUPPORT (005): tokens split over as many lines as needed."""

from __future__ import annotations

#: Tokens per 005 line (servers commonly send at most 13).
TOKENS_PER_LINE = 12


def isupport_lines(tokens: dict[str, str]) -> list[list[str]]:
    """The parameter lists (after the target) of the 005 lines for *tokens*
    (a value of '' advertises the bare token)."""
    items = [f"{k}={v}" if v else k for k, v in tokens.items()]
    out = []
    for i in range(0, len(items), TOKENS_PER_LINE):
        out.append([*items[i : i + TOKENS_PER_LINE], "are supported by this server"])
    return out
