"""The IRC gateway: a TLS-only IRC listener on the parley server's hub, store and
I/O loops (docs/irc.md). gateway.py dispatches, connection.py is the connection,
render.py turns parley events into IRC lines; login, channels, chat and history
hold the commands."""
