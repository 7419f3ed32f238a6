"""parley_chat: the installed namespace of parley, a TLS-only chat for a local network.

The repository keeps its folders at the top (server/, client/, protocol/, transport/,
certs/, migrations/); pyproject.toml's package-dir maps each of them under this package
(parley_chat.server, parley_chat.client, ...), so nothing generic installs at top level.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("parley-chat")
except PackageNotFoundError:  # a checkout that was never installed
    __version__ = "0+unknown"
