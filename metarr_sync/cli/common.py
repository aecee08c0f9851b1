"""What every command shares: exit codes, the global options, loading config and Metarr.

Commands parse, call the core and render; errors become one message on stderr and a
documented exit code, never a traceback.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from metarr_sync.config import ConfigError  # re-exported: commands raise it for exit 3

# Typer is imported where it is used: every command module imports it anyway, but the plain
# forms of `status` run without it (see cli/__init__.py).
if TYPE_CHECKING:
    import typer

    from metarr_sync.config import Config
    from metarr_sync.metarr import MetarrSource

# Exit codes of run/sync and the other commands (status has its own: see cli/status.py).
EXIT_OK = 0  # all synced, or nothing to do
EXIT_FAILED = 1  # a player failed or partially failed; its work is kept for retry
EXIT_USAGE = 2  # bad command line
EXIT_CONFIG = 3  # configuration error
EXIT_METARR = 4  # Metarr's database cannot be read
EXIT_LOCKED = 5  # another run holds the lock
EXIT_INTERNAL = 70  # a bug in metarr-sync (please report it)
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

EXIT_CODES_HELP = (
    "Exit codes: 0 all synced or nothing to do; 1 a player failed or partially failed "
    "(work kept for retry); 2 usage error; 3 configuration error; 4 Metarr database "
    "unreadable; 5 another run holds the lock; 130/143 interrupted (state saved)."
)


@dataclass
class Globals:
    config_path: Path | None = None
    state_dir: Path | None = None
    verbose: int = 0


def globals_of(ctx: typer.Context) -> Globals:
    root = ctx.find_root()
    if not isinstance(root.obj, Globals):
        root.obj = Globals()
    return root.obj


def err(message: str) -> None:
    """A message for the person: always stderr, never mixed into --json output. Printed
    as it is: no markup, no emoji codes (a path may hold `[x]` or `:name:`)."""
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True, emoji=False).print(
        message, markup=False)


class UsageError(Exception):
    """The command line asks for something that cannot be done (exit 2); each line of
    the message is shown as it is."""

    def __init__(self, *lines: str):
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def _exit_codes() -> tuple[tuple[type[BaseException], int], ...]:
    """Which error ends a command with which exit code: the one table, most specific
    first. Commands raise; the CLI entry (root.invoke) looks the code up here."""
    from metarr_sync.engine import LockHeld
    from metarr_sync.metarr import MetarrError, NotInMetarr
    from metarr_sync.state import StateError

    return ((UsageError, EXIT_USAGE), (NotInMetarr, EXIT_USAGE), (ConfigError, EXIT_CONFIG),
            (StateError, EXIT_CONFIG), (MetarrError, EXIT_METARR), (LockHeld, EXIT_LOCKED))


def report_error(error: BaseException) -> int | None:
    """Show an error the table knows (every line of it) and return its exit code; None
    for any other exception (a bug: the entry point shows it as an internal error)."""
    for kind, code in _exit_codes():
        if isinstance(error, kind):
            lines = (error.problems if isinstance(error, ConfigError)
                     else error.lines if isinstance(error, UsageError) else [str(error)])
            for line in lines:
                err(f"metarr-sync: {line}")
            return code
    return None


def config_path(ctx: typer.Context) -> Path:
    from metarr_sync.config import default_config_path

    return globals_of(ctx).config_path or default_config_path()


def state_dir(ctx: typer.Context) -> Path:
    from metarr_sync.config import default_state_dir

    return globals_of(ctx).state_dir or default_state_dir()


def load(ctx: typer.Context, *, secrets: bool = True) -> Config:
    from metarr_sync.config import load_config

    config = load_config(config_path(ctx), secrets=secrets)
    for warning in config.warnings:
        err(f"metarr-sync: warning: {warning}")
    if secrets:
        from metarr_sync.logs import add_secrets

        add_secrets(config.secrets())
    return config


def open_metarr(config: Config) -> MetarrSource:
    """Metarr's database as config.metarr_database finds it, opened read-only."""
    from metarr_sync.config import metarr_database
    from metarr_sync.metarr import open_source

    return open_source(metarr_database(config), config.sync.timeout,
                       config.metarr.password_value)


def dump_json(document: object) -> None:
    import json

    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()
