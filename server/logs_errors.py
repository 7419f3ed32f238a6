"""The errors and exit codes of `parley-logs`, shared by its SQLite and PostgreSQL parts."""

from __future__ import annotations

#: Exit codes: 0 done, 1 an error (missing file, bad SQL), 2 usage or a refused write.
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class LogsError(Exception):
    """The command could not be done (missing database, bad SQL). Exit code 1."""

    exit_code = EXIT_ERROR


class ReadOnlyViolation(LogsError):
    """A statement tried to change something and was refused before it ran. Exit code 2."""

    exit_code = EXIT_USAGE


class UsageError(LogsError):
    """The command line asks for something impossible (nothing to search for). Exit code 2."""

    exit_code = EXIT_USAGE
