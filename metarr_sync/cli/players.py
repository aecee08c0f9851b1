"""`players`: list, add, remove, enable, disable, test and import media players."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from metarr_sync import player_types
from metarr_sync.cli import common, complete, options
from metarr_sync.cli.options import JsonOpt

TEST_EXIT_HELP = (
    "Exit codes: 0 every step passed for every player (warnings about player settings "
    "included); 1 a step failed; 2 unknown player; 3 configuration or state unreadable."
)

app = options.command_group("List, add, remove, enable, disable, test and import media players.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="players")


# --- list ---------------------------------------------------------------------------

@app.command("list", epilog=common.EDIT_EXIT_HELP)
def list_command(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Every configured player, its credentials (masked) and its last result."""
    from metarr_sync import render

    config = common.load(ctx, secrets=False)
    state = common.open_state(ctx)
    try:
        disabled = state.player_states() if state else {}
        last = state.last_results() if state else {}
    finally:
        if state:
            state.close()
    rows = []
    for player in config.players.values():
        row = common.player_json(player)
        row["mappings"] = len(player.mappings)
        row["disabled_reason"] = (disabled.get(player.name) or {}).get("disabled_reason")
        row["disabled_at"] = (disabled.get(player.name) or {}).get("disabled_at")
        result = last.get(player.name)
        row["last_result"] = None if result is None else {
            k: result[k] for k in ("run_id", "status", "finished_at", "items", "synced",
                                   "failed", "error")}
        row["credentials_text"] = common.credentials_text(player)
        rows.append(row)
    if json_out:
        for row in rows:
            del row["credentials_text"]
        common.dump_json({"config": str(config.path), "players": rows})
        return
    if not rows:
        common.say(f"No players configured in {config.path}: add one with "
                "`metarr-sync players add` or `metarr-sync players import`.")
        return
    render.console().print(render.players_table(rows))


# --- add / remove / enable / disable ------------------------------------------------

def _parse_map(value: str) -> tuple[str, str]:
    from metarr_sync.paths import is_absolute_any

    metarr, sep, player = value.partition("=")
    example = "e.g. --map /data/media/movies=smb://nas/movies"
    if not sep or not metarr.strip() or not player.strip():
        raise common.UsageError(f"--map {value!r}: expected METARR_PATH=PLAYER_PATH, {example}")
    if not metarr.startswith("/") and not is_absolute_any(metarr):
        raise common.UsageError(
            f"--map {value!r}: the Metarr side {metarr!r} is not an absolute path "
            f"({example})")
    if not is_absolute_any(player):
        raise common.UsageError(
            f"--map {value!r}: the player side {player!r} is not an absolute path "
            "(/..., D:\\... or smb://...)")
    return metarr, player


def _secret(kind: str, value: str | None, env: str | None, file: str | None) -> Any:
    from metarr_sync.config import Secret

    given = [opt for opt, v in ((f"--{kind}", value), (f"--{kind}-env", env),
                                (f"--{kind}-file", file)) if v is not None]
    if len(given) > 1:
        raise common.UsageError(f"give only one of {', '.join(given)}")
    for opt, v in ((f"--{kind}", value), (f"--{kind}-env", env), (f"--{kind}-file", file)):
        if v is not None and not v.strip():
            raise common.UsageError(f"{opt} must not be empty")
    if value is not None:
        return Secret(value=common.read_secret_arg(value, f"--{kind}"))
    if env is not None:
        return Secret(env=env)
    if file is not None:
        return Secret(file=file)
    return None


@app.command("add", epilog=common.EDIT_EXIT_HELP)
def add_command(
    ctx: typer.Context,
    player_type: Annotated[str, typer.Argument(
        metavar="TYPE", help=player_types.spoken_list(player_types.NAMES),
        autocompletion=complete.player_types)],
    name: Annotated[str, typer.Argument(
        help="A name for it: letters, digits, '-', '_' and '.'")],
    url: Annotated[str, typer.Option(
        "--url", metavar="URL",
        help="Its web address, e.g. http://192.168.1.10:8080")],
    username: Annotated[str | None, typer.Option(
        "--username", metavar="USER",
        help=f"{player_types.labels_using('username')}: the web server's user name")] = None,
    password: Annotated[str | None, typer.Option(
        "--password", metavar="PASSWORD",
        help=f"{player_types.labels_using('password')}: the password ('-' reads it from "
        "stdin; a value given here shows in `ps` and the shell history)")] = None,
    password_env: Annotated[str | None, typer.Option(
        "--password-env", metavar="VAR",
        help="Read the password from this variable")] = None,
    password_file: Annotated[str | None, typer.Option(
        "--password-file", metavar="PATH",
        help="Read the password from this file")] = None,
    token: Annotated[str | None, typer.Option(
        "--token", metavar="TOKEN",
        help=f"{player_types.labels_using('token')}: the API token ('-' reads it from "
        "stdin)")] = None,
    token_env: Annotated[str | None, typer.Option(
        "--token-env", metavar="VAR",
        help="Read the token from this variable")] = None,
    token_file: Annotated[str | None, typer.Option(
        "--token-file", metavar="PATH",
        help="Read the token from this file "
        "(e.g. under $CREDENTIALS_DIRECTORY)")] = None,
    group: Annotated[str | None, typer.Option(
        "--group", metavar="GROUP",
        help="Player group (created with default settings if new)")] = None,
    priority: Annotated[int | None, typer.Option(
        "--priority", metavar="N",
        help="Order inside its group: lower goes first [default: 100]")] = None,
    maps: Annotated[list[str] | None, typer.Option(
        "--map", metavar="METARR=PLAYER",
        help="Path mapping, e.g. /data/media/movies=smb://nas/movies (repeatable)")] = None,
    disabled: Annotated[bool, typer.Option(
        "--disabled", help="Add it disabled (enable it later)")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Add a player to the configuration (validated, written atomically with mode 0600)."""
    from metarr_sync.config import (
        GroupConfig,
        Mapping,
        PlayerConfig,
        player_types,
        validate_url,
    )

    types = player_types()
    if player_type not in types:
        raise common.UsageError(f"unknown player type {player_type!r}; expected one of "
                    f"{', '.join(types)}")
    reason = validate_url(url)
    if reason:
        # A password typed into the URL must not be echoed back.
        shown = re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:••••@", url)
        raise common.UsageError(f"--url {shown!r} {reason}")
    mappings = [Mapping(*_parse_map(value)) for value in maps or []]
    pw = _secret("password", password, password_env, password_file)
    tk = _secret("token", token, token_env, token_file)
    config = common.load_for_edit(ctx, missing_ok=True)
    if name in config.players:
        raise common.UsageError(f"a player named {name!r} is configured already in {config.path}; "
                    "remove it first or choose another name")
    created_group = None
    if group and group not in config.groups:
        config.groups[group] = GroupConfig(name=group)
        created_group = group
    player = PlayerConfig(name=name, type=player_type, url=url.rstrip("/"),
                          username=username, password=pw, token=tk, enabled=not disabled,
                          group=group, mappings=mappings)
    if priority is not None:
        player.priority = priority
    config.players[name] = player
    common.save(config, f"players add {name}")
    if json_out:
        common.dump_json({"config": str(config.path), "added": common.player_json(player),
                          "created_group": created_group})
    else:
        common.say(f"Added player {name} ({player_type}, {player.url}) to {config.path}"
                + (f", in new group {created_group}" if created_group else "") + ".")
    common.err(f"Check it with: metarr-sync players test {name}")


@app.command("remove", epilog=common.EDIT_EXIT_HELP)
def remove_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The player to remove",
                                        autocompletion=complete.player_names)],
    json_out: JsonOpt = False,
) -> None:
    """Remove a player from the configuration (its queue is dropped at the next run)."""
    config = common.load_for_edit(ctx)
    player = common.player_of(config, name)
    del config.players[name]
    dropped_group = None
    if player.group and not any(p.group == player.group for p in config.players.values()):
        # A group without members does not load: it goes with its last player.
        config.groups.pop(player.group, None)
        dropped_group = player.group
    common.save(config, f"players remove {name}")
    if json_out:
        common.dump_json({"config": str(config.path), "removed": name,
                          "removed_group": dropped_group})
        return
    common.say(f"Removed player {name} from {config.path}"
            + (f" (and its group {dropped_group}, now empty)" if dropped_group else "") + ".")


def _set_enabled(ctx: typer.Context, names: list[str], enabled: bool, json_out: bool) -> None:
    config = common.load_for_edit(ctx)
    players = common.selected(config, names)
    changed = [p for p in players if p.enabled != enabled]
    for player in changed:
        player.enabled = enabled
    action = "enable" if enabled else "disable"
    if changed:
        common.save(config, f"players {action}")
    cleared: list[str] = []
    if enabled:
        # An authentication failure disabled it in the state: the user says it is fixed.
        state = common.open_state(ctx)
        if state is not None:
            try:
                cleared = [p.name for p in players if state.enable_player(p.name)]
            finally:
                state.close()
    rows = [{"name": p.name, "enabled": p.enabled, "changed": p in changed,
             "auth_disable_cleared": p.name in cleared} for p in players]
    if json_out:
        common.dump_json({"config": str(config.path), "players": rows})
        return
    for row in rows:
        what = f"{action}d" if row["changed"] else f"already {action}d"
        if row["auth_disable_cleared"]:
            what += "; the disable after an authentication failure is cleared"
        common.say(f"{row['name']}: {what}")


@app.command("enable", epilog=common.EDIT_EXIT_HELP)
def enable_command(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(metavar="NAME", help="Players to enable",
                                               autocompletion=complete.player_names)],
    json_out: JsonOpt = False,
) -> None:
    """Enable players; also clears a disable after an authentication failure."""
    _set_enabled(ctx, names, True, json_out)


@app.command("disable", epilog=common.EDIT_EXIT_HELP)
def disable_command(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(metavar="NAME", help="Players to disable",
                                               autocompletion=complete.player_names)],
    json_out: JsonOpt = False,
) -> None:
    """Disable players: runs skip them (their queue is kept)."""
    _set_enabled(ctx, names, False, json_out)


# --- test ---------------------------------------------------------------------------

@app.command("test", epilog=TEST_EXIT_HELP)
def test_command(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(
        metavar="NAME", help="Players to test [default: all]",
        autocompletion=complete.player_names)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check each player step by step: reachable, version, credentials, rights, libraries,
    whether each path mapping's player side is one of its library roots, and the player's
    own settings that silently defeat Metarr (warnings, each with its fix).

    Sends no updates. A player that passes is re-enabled after an authentication failure.
    """
    from concurrent.futures import ThreadPoolExecutor

    from metarr_sync import render
    from metarr_sync.discovery import probe_player

    config = common.load(ctx, secrets=False)
    players = common.selected(config, names)
    if not players:
        raise common.UsageError(f"no players configured in {config.path}: add one with "
                    "`metarr-sync players add`")
    with ThreadPoolExecutor(max_workers=min(8, len(players))) as pool:
        results = list(pool.map(lambda p: probe_player(p, config.sync, settings=True),
                                players))
    reenabled: list[str] = []
    probed = [r.name for r in results if r.probed]
    if probed:
        state = common.open_state(ctx)
        if state is not None:
            try:
                reenabled = [name for name in probed if state.enable_player(name)]
            finally:
                state.close()
    ok = all(r.ok for r in results)
    warnings = sum(len(r.warnings) for r in results)
    if json_out:
        common.dump_json({"ok": ok, "warnings": warnings,
                          "players": [render.player_test_json(r, r.name in reenabled)
                                      for r in results]})
    else:
        render.console().print(render.player_test_table(results))
        passed = sum(r.ok for r in results)
        common.say(f"{passed} of {len(results)} player(s) passed"
                + (f"; {warnings} warning(s) about player settings that defeat Metarr, "
                   "each with its fix." if warnings else "."))
    for name in reenabled:
        common.err(f"metarr-sync: {name}: the credentials work: re-enabled after the earlier "
                   "authentication failure")
    raise typer.Exit(common.EXIT_OK if ok else common.EXIT_FAILED)


# --- import -------------------------------------------------------------------------

@app.command("import", epilog=common.EDIT_EXIT_HELP)
def import_command(
    ctx: typer.Context,
    database: Annotated[str | None, typer.Option(
        "--database", metavar="PATH",
        help="Metarr's database [default: [metarr] database of the config]")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", "-n", help="Print the TOML that would be written (secrets masked); "
        "change nothing")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Import the players, groups and path mappings set up in Metarr into the config.

    Players whose name is configured already are skipped (with a message), so the import
    can be run again after adding players in Metarr. A Kodi group of several players
    becomes a shared_library group, as Metarr syncs one member of it for all.
    """
    from metarr_sync import importer
    from metarr_sync.config import metarr_database_source
    from metarr_sync.metarr import open_source

    config = common.load_for_edit(ctx, missing_ok=True)
    if config.metarr.password:  # PostgreSQL: the only secret the import needs
        try:
            config.metarr.password_value = config.metarr.password.resolve()
        except ValueError as exc:
            raise common.ConfigError.one(f"{config.path}: metarr.password: {exc}") from None
    where = database or metarr_database_source(config)[0]
    if not where:
        raise common.ConfigError.one(
            f"no Metarr database to import from: give --database PATH (Metarr's "
            f"data/metarr.sqlite) or set [metarr] database in {config.path} "
            "(`metarr-sync config init` looks for it)")
    source = open_source(where, config.sync.timeout, config.metarr.password_value)
    try:
        setup = source.player_setup()
    finally:
        source.close()
    found = importer.from_metarr(setup, config)
    for group in found.groups:
        config.groups[group.name] = group
    for player in found.players:
        config.players[player.name] = player
    if database and not config.metarr.database:
        config.metarr.database = database
    toml = None
    if dry_run:
        from metarr_sync.config import ConfigError, parse_config, to_document

        try:
            parse_config(to_document(config), config.path)
        except ConfigError as exc:
            raise ConfigError([f"players import: {p}" for p in exc.problems]) from None
        toml = _masked_toml(config)
    elif found.players:
        common.save(config, "players import", from_command_line=False)
    if json_out:
        common.dump_json({
            "config": str(config.path), "database": where, "dry_run": dry_run,
            "imported": [{**common.player_json(p), "libraries": p.libraries}
                         for p in found.players],
            "groups": [{"name": g.name, "shared_library": g.shared_library}
                       for g in found.groups],
            "skipped": [{"name": n, "reason": r} for n, r in found.skipped],
            "notes": found.notes, **({"toml": toml} if dry_run else {}),
        })
    elif dry_run:
        common.say(toml or "")
    else:
        for player in found.players:
            served = ("" if player.libraries is None else ", libraries: "
                      + ", ".join(map(str, player.libraries)))
            common.say(f"Imported {player.name} ({player.type}, {player.url}, "
                    f"{len(player.mappings)} mapping(s){served})")
        if not found.players and not found.skipped:
            common.say("Nothing imported: no media players are set up in Metarr. Add yours "
                    "with `metarr-sync players add TYPE NAME --url URL`.")
        elif not found.players:
            common.say("Nothing new to import.")
    for name, reason in found.skipped:
        common.err(f"metarr-sync: skipped {name!r}: {reason}")
    for note in found.notes:
        common.err(f"metarr-sync: note: {note}")
    if found.players and not dry_run:
        common.err(f"Check them with: metarr-sync players test "
                   f"{' '.join(p.name for p in found.players)}")


def _masked_toml(config: Any) -> str:
    """The file as it would be written, with passwords and tokens shown as ••••."""
    import tomli_w

    from metarr_sync.config import to_document

    doc = to_document(config)
    for entry in doc.get("players", {}).values():
        for key in ("password", "token"):
            if isinstance(entry.get(key), str):
                entry[key] = "••••"
    if isinstance(doc.get("metarr", {}).get("password"), str):
        doc["metarr"]["password"] = "••••"
    return ("# passwords and tokens are masked here; the file gets the real values\n"
            + tomli_w.dumps(doc))
