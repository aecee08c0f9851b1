"""What every command shares: exit codes, the global options, loading config and Metarr,
opening the state, choosing players, editing the config, showing results.

Commands parse, call the core and render; errors become one message on stderr and a
documented exit code, never a traceback.

Editing the config: load without resolving secrets (they are only copied, never needed),
change the model, validate the whole new document, then write it atomically (0600)
through config.save_config, so a refused change leaves the file byte for byte as it was.
Only what changed is edited in: a hand-written file keeps its comments and layout.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metarr_sync.config import ConfigError as ConfigError  # re-exported: commands raise it

# Typer is imported where it is used: every command module imports it anyway, but the plain
# forms of `status` run without it (see cli/__init__.py).
if TYPE_CHECKING:
    import typer

    from metarr_sync.config import Config, PlayerConfig, Secret
    from metarr_sync.metarr import MetarrSource
    from metarr_sync.state import State

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


EDIT_EXIT_HELP = (
    "Exit codes: 0 done (or nothing to change); 2 bad command line (unknown player, bad "
    "URL or path, duplicate, unknown id); 3 the configuration file or state cannot be read "
    "or written (it is left as it was); 4 Metarr's database cannot be read."
)


def say(message: str) -> None:
    """The command's result for a person, on stdout (never used with --json)."""
    from metarr_sync.render import console

    console().print(message, markup=False, highlight=False)


def load_for_edit(ctx: typer.Context, *, missing_ok: bool = False) -> Config:
    """The config as written (secrets unresolved); an empty one if allowed and missing."""
    path = config_path(ctx)
    if missing_ok and not path.exists() and not path.is_symlink():
        from metarr_sync.config import Config

        return Config(path=path)
    return load(ctx, secrets=False)


def _without_path(problem: str, path: Path) -> str:
    prefix = f"{path}: "
    return problem[len(prefix):] if problem.startswith(prefix) else problem


def save(config: Config, action: str, *, from_command_line: bool = True) -> None:
    """Validate the changed config, then write it atomically.

    The whole document is validated first, so a file that would not load again is never
    written: a change the command line asked for is a usage error (exit 2), one read from
    elsewhere (Metarr's set-up, detected mappings) a configuration error (exit 3). Only
    what changed is edited into the file: its comments, order and layout stay.
    """
    from metarr_sync.config import parse_config, save_config, to_document

    try:
        parse_config(to_document(config), config.path)
    except ConfigError as exc:
        lines = [f"{action}: {_without_path(p, config.path)}" for p in exc.problems]
        lines.append(f"{action}: nothing was changed in {config.path}")
        raise (UsageError(*lines) if from_command_line else ConfigError(lines)
               ) from None
    try:
        save_config(config)
    except ConfigError as exc:
        raise ConfigError([f"{p}; nothing was changed" for p in exc.problems]) from None


def player_of(config: Config, name: str) -> PlayerConfig:
    player = config.players.get(name)
    if player is None:
        known = ", ".join(config.players) or "none configured"
        raise UsageError(f"unknown player {name!r} (players: {known})")
    return player


def selected(config: Config, names: list[str] | None) -> list[PlayerConfig]:
    """The named players (each checked), or every configured one."""
    if names:
        return [player_of(config, name) for name in dict.fromkeys(names)]
    return list(config.players.values())


def open_state(ctx: typer.Context) -> State | None:
    """The state database if a run created it (None otherwise); exit 3 when unusable."""
    from metarr_sync.state import State

    return State.open_existing(state_dir(ctx))


def create_state(ctx: typer.Context) -> State:
    from metarr_sync.state import State

    return State(state_dir(ctx))


def masked(secret: Secret | None) -> str | None:
    """A secret as it may be shown: •••• for a value, env:VAR / file:PATH by reference."""
    return None if secret is None else secret.masked()


def credentials(player: PlayerConfig) -> dict[str, str | None]:
    return {"username": player.username, "password": masked(player.password),
            "token": masked(player.token)}


def credentials_text(player: PlayerConfig) -> str:
    parts = []
    if player.username:
        parts.append(f"user {player.username}")
    if player.password:
        parts.append(f"password {player.password.masked()}")
    if player.token:
        parts.append(f"token {player.token.masked()}")
    return ", ".join(parts) or "none"


def read_secret_arg(value: str | None, option: str) -> str | None:
    """`-` reads the secret from stdin (keeps it out of `ps` and the shell history)."""
    if value != "-":
        return value
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise UsageError(f"{option} -: nothing on standard input")
    return line


def player_json(player: PlayerConfig) -> dict[str, Any]:
    return {
        "name": player.name, "type": player.type, "url": player.url, "group": player.group,
        "priority": player.priority, "enabled": player.enabled,
        "mappings": [{"metarr": m.metarr, "player": m.player} for m in player.mappings],
        "credentials": credentials(player),
    }
