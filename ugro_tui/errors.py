"""Errors the user sees as one readable line, never a traceback."""


class UgroError(Exception):
    """A failure with a message meant for the user; the CLI prints it and exits with `exit_code`."""

    exit_code = 1


class ConfigError(UgroError):
    """The cluster config is unreadable or invalid. The message names the file and the field path."""

    exit_code = 2

    def __init__(self, source: str, field: str | None, problem: str) -> None:
        self.source = source
        self.field = field
        self.problem = problem
        where = f"{source}: {field}: " if field else f"{source}: "
        super().__init__(where + problem)


class UsageError(UgroError):
    """Bad command-line arguments."""

    exit_code = 2


class ReadOnlyError(UgroError):
    """A change asked of a read-only ugro (`--read-only`, or `read_only = true` in cluster.toml)."""

    exit_code = 2

    def __init__(self, what: str) -> None:
        super().__init__(f"read-only: {what} is refused (--read-only, or read_only = true in [cluster])")
