"""What the operator commands (players, mappings, queue, status) share.

Editing the config: load without resolving secrets (they are only copied, never needed),
change the model, validate the whole new document, then write it atomically (0600)
through config.save_config, so a refused change leaves the file byte for byte as it was.
Only what changed is edited in: a hand-written file keeps its comments and layout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from metarr_sync.cli import common

if TYPE_CHECKING:
    from metarr_sync.config import Config, PlayerConfig, Secret
    from metarr_sync.state import State

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout")]

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
    path = common.config_path(ctx)
    if missing_ok and not path.exists() and not path.is_symlink():
        from metarr_sync.config import Config

        return Config(path=path)
    return common.load(ctx, secrets=False)


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
    from metarr_sync.config import ConfigError, parse_config, save_config, to_document

    try:
        parse_config(to_document(config), config.path)
    except ConfigError as exc:
        lines = [f"{action}: {_without_path(p, config.path)}" for p in exc.problems]
        lines.append(f"{action}: nothing was changed in {config.path}")
        raise (common.UsageError(*lines) if from_command_line else ConfigError(lines)
               ) from None
    try:
        save_config(config)
    except ConfigError as exc:
        raise ConfigError([f"{p}; nothing was changed" for p in exc.problems]) from None


def player_of(config: Config, name: str) -> PlayerConfig:
    player = config.players.get(name)
    if player is None:
        known = ", ".join(config.players) or "none configured"
        raise common.UsageError(f"unknown player {name!r} (players: {known})")
    return player


def selected(config: Config, names: list[str] | None) -> list[PlayerConfig]:
    """The named players (each checked), or every configured one."""
    if names:
        return [player_of(config, name) for name in dict.fromkeys(names)]
    return list(config.players.values())


def open_state(ctx: typer.Context) -> State | None:
    """The state database if a run created it (None otherwise); exit 3 when unusable."""
    from metarr_sync.state import State

    return State.open_existing(common.state_dir(ctx))


def create_state(ctx: typer.Context) -> State:
    from metarr_sync.state import State

    return State(common.state_dir(ctx))


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
        raise common.UsageError(f"{option} -: nothing on standard input")
    return line


def player_json(player: PlayerConfig) -> dict[str, Any]:
    return {
        "name": player.name, "type": player.type, "url": player.url, "group": player.group,
        "priority": player.priority, "enabled": player.enabled,
        "mappings": [{"metarr": m.metarr, "player": m.player} for m in player.mappings],
        "credentials": credentials(player),
    }
