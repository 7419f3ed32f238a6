# client/gui: the parley desktop client (customtkinter).
#
# Nothing outside this package imports it (its own __main__ and the tests
# aside). It builds on client.connection.ChatClient and only consumes that
# library's events, on the Tk thread, through an after() pump (app.py).
#
# Modules, one concern each: app (the window, wiring and the pump), jobs
# (blocking work off the Tk thread), connect_flow (from Connect to a logged-in
# client), model (conversations, unread counts, de-duplication; no widgets),
# settings (the per-user files), connecting (trust policy and failure
# messages), commands (the input line's /commands), theme (colours per kind
# per mode), and the views: connect_dialog, sidebar, chat_view, userlist,
# composer, statusbar.
