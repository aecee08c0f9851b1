"""`config`: where the configuration and state live, the effective configuration, and a
commented starter file for a fresh machine.

`config path` and `config show` must work exactly when something is wrong, so they never
need a valid configuration to say where they looked; `config show` never shows a secret.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from metarr_sync.cli import common, options
from metarr_sync.cli.options import JsonOpt

if TYPE_CHECKING:
    from metarr_sync.config import Config, Secret

CONFIG_EXIT_HELP = (
    "Exit codes: 0 done; 2 bad command line; 3 the configuration cannot be read, is "
    "invalid, or (config init) exists already or cannot be written: nothing is changed."
)

app = options.command_group(
    "The configuration: where it and the state live (path), what is in effect (show), a "
    "commented starter file (init).")

#: Where Metarr keeps its SQLite database by default: data/metarr.sqlite below the folder
#: it runs in. These are the folders people install it in (a checkout in the home folder,
#: /opt, and /app inside its container image), searched in this order after the current one.
METARR_HOMES = ("~/metarr", "/opt/metarr", "/app")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="config")


def _source(ctx: typer.Context, name: str) -> str:
    """Where a global option's value came from: the command line, its variable or default."""
    # Matched by name: Typer may bundle its own Click, with its own ParameterSource enum.
    source = getattr(ctx.find_root().get_parameter_source(name), "name", "")
    if source == "COMMANDLINE":
        return "--config" if name == "config" else "--state-dir"
    if source == "ENVIRONMENT":
        return "METARR_SYNC_CONFIG" if name == "config" else "METARR_SYNC_STATE_DIR"
    return "default"


def _shown_database(database: str | None) -> str | None:
    """A PostgreSQL URL may carry a password: never show it."""
    if database is None:
        return None
    from metarr_sync.metarr import describe_url, is_postgres_url

    return describe_url(database) if is_postgres_url(database) else database


# --- path -----------------------------------------------------------------------------

@app.command("path", epilog=CONFIG_EXIT_HELP)
def path_command(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Where the configuration file, the state database, the run lock and Metarr's
    database are, and where each location came from (option, variable or default)."""
    from metarr_sync.config import ConfigError, load_config, metarr_database_source

    config_file = common.config_path(ctx)
    state_dir = common.state_dir(ctx)
    database, database_from, problem = None, "no configuration file yet", None
    if config_file.exists():
        try:
            database, database_from = metarr_database_source(load_config(config_file,
                                                                         secrets=False))
        except ConfigError as exc:
            problem, database_from = exc.problems[0], "unknown: the configuration does not load"
    doc: dict[str, Any] = {
        "config": {"path": str(config_file), "source": _source(ctx, "config"),
                   "exists": config_file.exists()},
        "state_dir": {"path": str(state_dir), "source": _source(ctx, "state_dir"),
                      "exists": state_dir.is_dir()},
        "state_database": {"path": str(state_dir / "state.sqlite"),
                           "exists": (state_dir / "state.sqlite").exists()},
        "lock": {"path": str(state_dir / "run.lock")},
        "metarr_database": {"location": _shown_database(database), "source": database_from},
        "problem": problem,
    }
    if json_out:
        common.dump_json(doc)
        return
    if not config_file.exists():
        config_note = "missing: create it with `metarr-sync config init`"
    else:
        config_note = "exists" if problem is None else "exists, but does not load (below)"
    lines = [
        ("config file", str(config_file), f"{doc['config']['source']}; {config_note}"),
        ("state directory", str(state_dir), doc["state_dir"]["source"]),
        ("state database", doc["state_database"]["path"],
         "exists" if doc["state_database"]["exists"] else "created by the first run"),
        ("run lock", doc["lock"]["path"], "held while a run works"),
        ("Metarr database", _shown_database(database) or "-", database_from),
    ]
    width = max(len(label) for label, _, _ in lines)
    for label, where, note in lines:
        sys.stdout.write(f"{label:<{width}}  {where}  ({note})\n")
    if problem:
        common.err(f"metarr-sync: {problem}")


# --- show -----------------------------------------------------------------------------

def effective(config: Config) -> dict[str, Any]:
    """Every setting in effect, defaults included; secrets masked, never resolved here."""
    from metarr_sync.config import (
        _GROUP_FIELDS,
        _SYNC_FIELDS,
        _WATCH_FIELDS,
        metarr_database_source,
        player_keys,
    )

    database, source = metarr_database_source(config)
    metarr: dict[str, Any] = {"database": _shown_database(database),
                              "database_source": source}
    if config.metarr.password:
        metarr["password"] = config.metarr.password.masked()
    players: dict[str, Any] = {}
    for name, player in config.players.items():
        entry: dict[str, Any] = {}
        for key in player_keys(player.type):
            value = getattr(player, key)
            if key == "mappings":
                value = [{"metarr": m.metarr, "player": m.player} for m in value]
            elif key in ("password", "token"):
                value = None if value is None else value.masked()
            elif key == "skip_active":  # [sync]'s or the player type's, when not its own
                value = player.skips_active(config.sync)
            elif key == "max_defer":
                value = player.max_defer_in(config.sync)[0]
            entry[key] = value
        players[name] = entry
    return {
        "config": str(config.path),
        "metarr": metarr,
        "sync": {k: getattr(config.sync, k) for k in _SYNC_FIELDS if k != "sync_interval"},
        "watch": {k: getattr(config.watch, k) for k in _WATCH_FIELDS},
        "groups": {name: {k: getattr(g, k) for k in _GROUP_FIELDS}
                   for name, g in config.groups.items()},
        "players": players,
        "alerts": {"urls": [_shown_alert_url(u) for u in config.alerts.urls]},
    }


def _shown_alert_url(url: Secret) -> str:
    """An alert URL as `config show` may print it: its label (scheme, a server's host and
    port; anything that may be a secret masked), or env:VAR / file:PATH."""
    from metarr_sync.config import alert_url_label

    return alert_url_label(url.value) if url.value is not None else url.masked()


def _as_toml(doc: dict[str, Any]) -> str:
    """The effective settings as TOML (None values, which TOML cannot hold, left out)."""
    import tomli_w

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    body = {k: v for k, v in clean(doc).items() if k != "config"}
    body["metarr"].pop("database_source", None)
    body = {k: v for k, v in body.items() if v}  # no empty [groups] / [players]
    return tomli_w.dumps(body)


@app.command("show", epilog=CONFIG_EXIT_HELP)
def show_command(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """The configuration in effect: every setting with its default filled in, secrets
    masked (•••• inline, env:VAR or file:PATH by reference). Secrets that cannot be read
    (variable not set, file missing) are named on stderr."""
    from metarr_sync.config import ConfigError, resolve_secrets

    config = common.load(ctx, secrets=False)
    problems: list[str] = []
    try:
        resolve_secrets(config)  # only to say which would fail; values are never shown
    except ConfigError as exc:
        problems = exc.problems
    doc = effective(config)
    if json_out:
        common.dump_json(doc | {"secret_problems": problems})
    else:
        database, source = doc["metarr"]["database"], doc["metarr"]["database_source"]
        header = [f"# {config.path}: the settings in effect, defaults filled in, "
                  "secrets masked"]
        if database is None:
            header.append("# [metarr] database is not set (nor METARR_DATABASE_URL): runs "
                          "will ask for it")
        elif source != "[metarr] database":
            header.append(f"# [metarr] database comes from {source}")
        if not config.players:
            header.append("# no players yet: `metarr-sync players import` or "
                          "`metarr-sync players add`")
        sys.stdout.write("\n".join(header) + "\n\n" + _as_toml(doc))
    for problem in problems:
        common.err(f"metarr-sync: warning: {problem} (runs will refuse to start)")


# --- init -----------------------------------------------------------------------------

def find_metarr_database(cwd: Path | None = None) -> tuple[Path | None, list[Path]]:
    """Metarr's default database (data/metarr.sqlite) in the usual places: the current
    folder (Metarr's own folder or its data/), then METARR_HOMES. Returns the first found
    and every place looked at."""
    here = cwd or Path.cwd()
    places = [here / "data" / "metarr.sqlite", here / "metarr.sqlite"]
    places += [Path(home).expanduser() / "data" / "metarr.sqlite" for home in METARR_HOMES]
    for place in places:
        if place.is_file():
            return place.absolute(), places
    return None, places


def _toml_string(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML string


def starter_config(database: str | None, looked: list[Path], note: str = "") -> str:
    """The commented starter file. Written as text so the comments survive."""
    from metarr_sync import stamps

    today = stamps.today()
    if database:
        metarr = (f"{note}database = {_toml_string(database)}\n")
    else:
        where = ", ".join(str(p) for p in looked)
        metarr = (
            f"# No Metarr database was found (looked at {where}).\n"
            "# Set this to Metarr's SQLite file (data/metarr.sqlite in the folder Metarr runs\n"
            "# in) or to its postgresql:// URL, then remove the '#':\n"
            "# database = \"/opt/metarr/data/metarr.sqlite\"\n"
        )
        if os.environ.get("METARR_DATABASE_URL", "").strip():
            metarr += ("# (METARR_DATABASE_URL is set in this environment: it is used while "
                       "database stays unset.)\n")
    return f"""\
# metarr-sync configuration, written by `metarr-sync config init` on {today}.
# Every setting is explained in `man metarr-sync` and README's "Configuration".
# `metarr-sync config show` prints what is in effect; `metarr-sync config path` says
# where this file and the state live.
#
# Passwords and tokens can be written inline ("..."), read from an environment variable
# ({{ env = "KODI_PASSWORD" }}) or from a file, such as what systemd's LoadCredential=
# provides ({{ file = "/run/credentials/metarr-sync.service/kodi" }}).
# Keep this file private: it is mode 0600.
#
# Note: `players add`, `players import` and `mappings` rewrite this file without its
# comments (the commented version is kept next to it as config.toml.bak).

[metarr]
# Metarr's database; metarr-sync only ever reads it.
{metarr}# password = {{ env = "METARR_DB_PASSWORD" }}  # PostgreSQL only

[sync]
# Each line shows the default; remove the '#' to change it.
# enabled = true              # false: runs do nothing (and exit 0) until turned back on
# auto_sync = true            # false: `sync` (from your own scripts) only queues
# targeted_updates = true     # false: full library scans instead of targeted updates
# clean_deleted = true        # remove what Metarr deleted from the players' libraries
# send_notifications = false  # show "N item(s) updated" on players that got updates
# batch_size = 100            # items per batch sent to a player
# timeout = 30                # seconds to wait for each answer of a player
# retry_attempts = 3          # retries of a request that failed (with backoff)
# max_attempts = 5            # failed runs in a row before an item waits for a person
# skip_active = true          # defer updates while someone watches; unset: by player
#                             # type (Kodi yes; Plex, Jellyfin, Emby no); also per player
# max_defer = "6h"            # ...but at most this long; "never": as long as they watch
# initial_lookback = "24h"    # a new player gets the last day's changes; "all" or "none"
# sync_interval = "15m"       # documentation only: schedule runs with cron or a timer

# Players. The quickest way in:
#   metarr-sync players import     # the players and path mappings set up in Metarr
# or one by one:
#   metarr-sync players add kodi lounge --url http://192.168.1.10:8080 \\
#       --username kodi --password-env KODI_PASSWORD --map /data/media=smb://nas/media
#   metarr-sync players add jellyfin jelly --url http://jellyfin:8096 --token-env JELLYFIN_TOKEN
#   metarr-sync players add plex plex --url http://plex:32400 --token-file /etc/metarr-sync/plex
# then check them with `metarr-sync players test` and `metarr-sync mappings detect`.
# By hand, a player looks like this:
#
# [players.lounge]
# type = "kodi"                   # kodi, jellyfin, emby or plex
# url = "http://192.168.1.10:8080"
# username = "kodi"
# password = {{ env = "KODI_PASSWORD" }}
# mappings = [ {{ metarr = "/data/media/movies", player = "smb://nas/movies" }} ]
# libraries = ["Movies"]          # only these Metarr libraries (names or ids); default: all
#
# [players.jelly]
# type = "jellyfin"
# url = "http://jellyfin:8096"
# token = {{ env = "JELLYFIN_TOKEN" }}
# verify_after = 1800             # seconds before its items are looked for: a new movie makes
#                                 # Jellyfin rescan its whole library folder, and that folder
#                                 # is not reported again meanwhile

# Alerts (needs `pip install 'metarr-sync[alerts]'`): one message when a player fails, is
# disabled, or leaves items for a person, and one when it recovers; any Apprise URL.
# Try them with `metarr-sync alerts test`.
# [alerts]
# urls = ["ntfys://ntfy.sh/my-media-alerts", {{ env = "METARR_SYNC_DISCORD_URL" }}]
"""


@app.command("init", epilog=CONFIG_EXIT_HELP)
def init_command(
    ctx: typer.Context,
    database: Annotated[str | None, typer.Option(
        "--database", metavar="PATH",
        help="Metarr's database (its data/metarr.sqlite or a postgresql:// URL) "
        "[default: looked for in ./data, ~/metarr, /opt/metarr and /app]")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a commented starter configuration with Metarr's database filled in when it
    is found. Never overwrites an existing file."""
    from metarr_sync.config import parse_config, write_atomic
    from metarr_sync.metarr import MetarrError, is_postgres_url, open_source

    path = common.config_path(ctx)
    if path.exists() or path.is_symlink():
        raise common.ConfigError.one(f"{path} exists already: nothing was written. See it with "
                    "`metarr-sync config show`; to start afresh, move it away first")
    found: Path | None
    looked: list[Path]
    found, looked = (None, [])
    note = ""
    if database is not None:
        if not database.strip():
            raise common.UsageError("--database must not be empty")
        if not is_postgres_url(database):
            given = Path(database).expanduser()
            if not given.is_file():
                raise common.UsageError(
                    f"--database {database}: no such file (Metarr's database is "
                    "data/metarr.sqlite in the folder Metarr runs in)")
            database = str(given.absolute())
    else:
        found, looked = find_metarr_database()
        database = str(found) if found else None
        if found:
            note = "# Found by `metarr-sync config init`.\n"
    check = None
    if database and not is_postgres_url(database):
        try:
            open_source(database).close()
        except MetarrError as exc:
            check = str(exc)  # written anyway: the user may be setting up ahead of Metarr
    text = starter_config(database, looked, note)
    import tomllib

    parse_config(tomllib.loads(text), path)  # the starter file must load as it is
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise common.ConfigError.one(
            f"{path}: cannot be written: {exc.strerror}; nothing was written") from None
    shown = _shown_database(database)
    if json_out:
        common.dump_json({"config": str(path), "database": shown,
                          "database_found": bool(found), "database_problem": check,
                          "looked_at": [str(p) for p in looked]})
    else:
        common.say(f"Wrote a starter configuration to {path} (mode 0600).")
        if database:
            common.say(f"Metarr's database: {shown}" + (" (found)" if found else ""))
        else:
            common.say("Metarr's database was not found (looked at "
                       + ", ".join(str(p) for p in looked) + "): set [metarr] database in "
                       f"{path} to Metarr's data/metarr.sqlite or its postgresql:// URL.")
        common.say("Next: `metarr-sync players import` (the players set up in Metarr) or "
                   "`metarr-sync players add TYPE NAME --url URL`, then `metarr-sync players "
                   "test` and `metarr-sync run`.")
    if check:
        common.err(f"metarr-sync: warning: {check}")
