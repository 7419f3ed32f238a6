"""parley_chat: the installed namespace of parley, a TLS-only chat for a local network.

The repository keeps its folders at the top (server/, client/, protocol/, transport/,
certs/, migrations/); pyproject.toml's package-dir maps each of them under this package
(parley_chat.server, parley_chat.client, ...), so nothing generic installs at top level.

`__version__` is looked up on first use (PEP 562): importlib.metadata and the email
package it loads cost every command about 30 ms at start, and only the missing-extra
message of parley_chat.entry needs the version.
"""

from __future__ import annotations

import functools


@functools.cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("parley-chat")
    except PackageNotFoundError:  # a checkout that was never installed
        return "0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return _version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
