"""parley's desktop client (customtkinter).

Nothing outside this package imports it (its own __main__ and the tests
aside): the per-user files it shares with the terminal client live in
client/settings.py, so the terminal client and the library never load Tk. It
builds on client.connection.ChatClient and only consumes that library's
events, on the Tk thread, through an after() pump (app.py).

Modules, one concern each: app (the window, wiring and the pump), jobs
(blocking work off the Tk thread), connect_flow (the steps from Connect to a
logged-in client), connect_policy (the connect form's checks, the trust policy
and the failure messages; no widgets), model (conversations, unread counts,
de-duplication; no widgets), commands (the input line's /commands), e2e and
key_dialog (end-to-end encryption: its commands, the passphrase and key file
dialogs), theme (colours per kind per mode), and the views: connect_page,
sidebar, chat_view, userlist, composer, statusbar. fonts imports customtkinter
without rewriting its font files (done here, before any module of the package
imports it).
"""

from .fonts import import_customtkinter

import_customtkinter()
