"""parley_chat.server: the threaded TLS chat server, its store and its operator tools."""
