"""`mappings`: how each player sees Metarr's paths: list, add, remove, test, detect."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from metarr_sync.cli import common, options
from metarr_sync.cli.options import JsonOpt, PlayerArg, PlayerOpt

TEST_EXIT_HELP = (
    "Exit codes: 0 the path maps for every player; 1 it maps to nothing usable for some; "
    "2 bad command line (unknown player, relative path); 3 configuration unreadable."
)
DETECT_EXIT_HELP = (
    "Exit codes: 0 every library of Metarr is (or would be) mapped for every player; "
    "1 a player could not be probed, or a library found no match, several, or a conflicting "
    "mapping; 2 unknown player; 3 configuration unreadable or not writable; 4 Metarr's "
    "database unreadable."
)

#: How many items per library each side lists to match items by their paths.
SAMPLES = 20

app = options.command_group(
    "Path mappings: how each player sees Metarr's paths (list, add, remove, test, detect).")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="mappings")


def _absolute_metarr(path: str, what: str) -> str:
    from metarr_sync.paths import is_absolute_any

    if not path.strip() or not path.startswith("/") and not is_absolute_any(path):
        raise common.UsageError(f"{what} {path!r} is not an absolute Metarr-side path "
                    "(e.g. /data/media/movies)")
    return path


@app.command("list", epilog=common.EDIT_EXIT_HELP)
def list_command(ctx: typer.Context, player: PlayerOpt = None, json_out: JsonOpt = False
                 ) -> None:
    """Every player's path mappings (Metarr path → player path)."""
    from metarr_sync import render

    config = common.load(ctx, secrets=False)
    players = common.selected(config, player)
    if json_out:
        common.dump_json({"config": str(config.path), "players": {
            p.name: [{"metarr": m.metarr, "player": m.player} for m in p.mappings]
            for p in players}})
        return
    if not players:
        common.say(f"No players configured in {config.path}.")
        return
    render.console().print(render.mappings_table(players))


@app.command("add", epilog=common.EDIT_EXIT_HELP)
def add_command(
    ctx: typer.Context,
    player: PlayerArg,
    metarr_path: Annotated[str, typer.Argument(help="The folder as Metarr sees it")],
    player_path: Annotated[str, typer.Argument(
        help="The same folder as the player sees it (/..., D:\\... or smb://...)")],
    json_out: JsonOpt = False,
) -> None:
    """Add a path mapping to a player."""
    from metarr_sync.config import Mapping
    from metarr_sync.paths import is_absolute_any, match_key, strip_trailing

    _absolute_metarr(metarr_path, "METARR_PATH")
    if not player_path.strip() or not is_absolute_any(player_path):
        raise common.UsageError(
            f"PLAYER_PATH {player_path!r} is not an absolute path as the player sees "
            "it (/..., D:\\... or smb://...)")
    config = common.load_for_edit(ctx)
    target = common.player_of(config, player)
    for mapping in target.mappings:
        if match_key(mapping.metarr) == match_key(metarr_path):  # `D:\X` is `d:\x`
            raise common.UsageError(
                f"{player} maps {mapping.metarr} already (to {mapping.player}); "
                f"remove it first: metarr-sync mappings remove {player} "
                f"{mapping.metarr}")
    first = not target.mappings
    mapping = Mapping(strip_trailing(metarr_path), strip_trailing(player_path))
    target.mappings.append(mapping)
    common.save(config, f"mappings add {player}")
    if json_out:
        common.dump_json({"config": str(config.path), "player": player,
                          "added": {"metarr": mapping.metarr, "player": mapping.player}})
    else:
        common.say(f"{player}: added mapping {mapping.metarr} → {mapping.player}")
    if first:
        common.err(f"metarr-sync: note: {player} had no mappings, so it was sent Metarr's own "
                   "paths; now only paths under its mapped folders reach it")
    common.err(f"Check it with: metarr-sync players test {player}")


@app.command("remove", epilog=common.EDIT_EXIT_HELP)
def remove_command(
    ctx: typer.Context,
    player: PlayerArg,
    metarr_path: Annotated[str, typer.Argument(help="The Metarr side of the mapping")],
    json_out: JsonOpt = False,
) -> None:
    """Remove a player's path mapping (named by its Metarr side)."""
    from metarr_sync.paths import match_key

    _absolute_metarr(metarr_path, "METARR_PATH")
    config = common.load_for_edit(ctx)
    target = common.player_of(config, player)
    keep = [m for m in target.mappings
            if match_key(m.metarr) != match_key(metarr_path)]
    if len(keep) == len(target.mappings):
        mapped = ", ".join(m.metarr for m in target.mappings) or "none"
        raise common.UsageError(
            f"{player} has no mapping for {metarr_path} (its mappings: {mapped})")
    removed = [m for m in target.mappings if m not in keep]
    target.mappings = keep
    common.save(config, f"mappings remove {player}")
    if json_out:
        common.dump_json({"config": str(config.path), "player": player, "removed": [
            {"metarr": m.metarr, "player": m.player} for m in removed]})
        return
    for mapping in removed:
        common.say(f"{player}: removed mapping {mapping.metarr} → {mapping.player}")


@app.command("test", epilog=TEST_EXIT_HELP)
def test_command(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="A Metarr-side path (file or folder)")],
    player: PlayerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show per player which mapping applies to PATH and the path the player gets."""
    from metarr_sync import render
    from metarr_sync.plan import MappingError, best_mapping, map_path

    _absolute_metarr(path, "PATH")
    config = common.load(ctx, secrets=False)
    players = common.selected(config, player)
    rows: list[dict[str, Any]] = []
    for p in players:
        mapping = best_mapping(path, p.mappings) if p.mappings else None
        row: dict[str, Any] = {
            "name": p.name, "enabled": p.enabled,
            "mapping": {"metarr": mapping.metarr, "player": mapping.player} if mapping
            else None, "player_path": None, "error": None}
        try:
            row["player_path"] = map_path(path, p.mappings)[0]
        except MappingError as exc:
            row["error"] = str(exc)
        rows.append(row)
    ok = all(r["error"] is None for r in rows)
    if json_out:
        common.dump_json({"path": path, "ok": ok, "players": rows})
    elif rows:
        render.console().print(render.mapping_test_table(path, rows))
    else:
        common.say(f"No players configured in {config.path}.")
    raise typer.Exit(common.EXIT_OK if ok else common.EXIT_FAILED)


@app.command("detect", epilog=DETECT_EXIT_HELP)
def detect_command(
    ctx: typer.Context,
    player: PlayerOpt = None,
    apply: Annotated[bool, typer.Option(
        "--apply", help="Write the proposed (new) mappings into the config")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Propose mappings by matching Metarr's library folders with each player's library
    roots by their trailing path components (/data/media/movies ↔ smb://nas/share/movies),
    and a few of Metarr's items with the player's own items (The Matrix (1999)/The Matrix
    (1999).mkv found under smb://nas/share/films).

    Asks each player for its library roots and a few item paths (sends no updates);
    --apply writes the new ones. Mappings in place are never changed: a conflict is
    shown, not overwritten.
    """
    from concurrent.futures import ThreadPoolExecutor

    from metarr_sync import render
    from metarr_sync.discovery import (
        library_item_paths,
        mappings_to_apply,
        probe_player,
        propose_mappings,
    )
    config = common.load_for_edit(ctx) if apply else common.load(ctx, secrets=False)
    players = common.selected(config, player)
    if not players:
        raise common.UsageError(f"no players configured in {config.path}")
    if config.metarr.password:
        try:
            config.metarr.password_value = config.metarr.password.resolve()
        except ValueError as exc:
            raise common.ConfigError.one(f"{config.path}: metarr.password: {exc}") from None
    from metarr_sync.libraries import resolve

    source = common.open_metarr(config)
    try:
        libraries = source.libraries()
        served = resolve(players, libraries)
        with ThreadPoolExecutor(max_workers=min(8, len(players))) as pool:
            probes = list(pool.map(
                lambda p: probe_player(p, config.sync, samples=SAMPLES), players))
        # Metarr's side of the item matching: a few items per library, and those named
        # like each player's samples.
        items = [library_item_paths(source, libraries, SAMPLES, probe.samples)
                 if probe.probed else {} for probe in probes]
    finally:
        source.close()
    rows: list[dict[str, Any]] = []
    added: dict[str, list[Any]] = {}
    ok = True
    for p, probe, known in zip(players, probes, items, strict=True):
        wrong = served.errors.get(p.name)
        if not probe.probed or wrong:
            ok = False
            rows.append({"player": p.name, "library": None, "library_path": None,
                         "status": "error", "mapping": None,
                         "detail": wrong or probe.error})
            continue
        # A library the player does not serve needs no mapping for it.
        own = [lib for lib in libraries if served.serves(p.name, lib.id)]
        proposals = propose_mappings(own, probe.roots, p.mappings, known, probe.samples)
        new = mappings_to_apply(proposals, p.mappings)
        if new:
            added[p.name] = new
        for proposal in proposals:
            ok = ok and proposal.status in ("new", "configured")
            status = "applied" if apply and proposal.status == "new" else proposal.status
            rows.append({
                "player": p.name, "library": proposal.library.name,
                "library_path": proposal.library.path, "status": status,
                "mapping": {"metarr": proposal.mapping.metarr,
                            "player": proposal.mapping.player} if proposal.mapping else None,
                "detail": proposal.detail, "roots": probe.roots,
                "confidence": proposal.confidence, "evidence": proposal.evidence,
                "samples_error": probe.samples_error})
    if apply and added:
        for name, mappings in added.items():
            target = config.players[name]
            have = {m.metarr for m in target.mappings}
            target.mappings.extend(m for m in mappings if m.metarr not in have)
        common.save(config, "mappings detect --apply", from_command_line=False)
    if json_out:
        common.dump_json({"applied": bool(apply and added), "proposals": rows,
                          "libraries": [{"id": lib.id, "name": lib.name, "path": lib.path,
                                         "type": lib.type}
                                        for lib in libraries]})
    else:
        render.console().print(render.detect_table(rows))
        if added and not apply:
            common.say("Write the new mappings with: metarr-sync mappings detect --apply")
    raise typer.Exit(common.EXIT_OK if ok else common.EXIT_FAILED)
