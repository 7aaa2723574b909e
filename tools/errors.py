"""The one error the commands report: something the user must fix, with nothing changed. Standard library only, so
the commands that run before the project's dependencies are installed (istio_charts) raise it too."""


class CommandError(Exception):
    """Something the user must fix before a command can read or decide anything; nothing was changed. Reading,
    fetching and Prometheus errors are kinds of it, so a command reports them all the same way."""
