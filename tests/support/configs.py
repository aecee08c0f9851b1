"""Config files for tests, built as data and written as TOML (tomli_w), not pasted as text.

    config_with(metarr=db.path,
                players=[kodi(url=fake.url, password="pw"), plex(url=..., token="t")],
                sync={"batch_size": 10},
                mappings=[("/data/media", "/mnt")])

Each player builder takes the player's name (a default per type) and any config key as a
keyword; `mappings` are (metarr, player) pairs, given per player or once for every player
that has none of its own. A fake player of tests/support/fake_players.py gives itself as
such a table: `fake.player("lounge", [("/data/media", "/mnt")], concurrency=3)`. Secrets
kept outside the file are env_secret(...) and file_secret(...).

Tests whose subject is the text itself keep their TOML as text: how hand-written TOML is
parsed (test_config.py, test_bad_config.py, README's examples), invalid or malformed
configs, and edits that must keep a person's comments and layout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tomli_w

Pairs = Iterable[tuple[str, str]]
RECORDER_URL = "http://127.0.0.1:9"  # the recording adapter sends nothing anywhere


def _mappings(pairs: Pairs) -> list[dict[str, str]]:
    return [{"metarr": str(metarr), "player": str(player)} for metarr, player in pairs]


def player(type: str, name: str, *, mappings: Pairs | None = None, **keys: Any
           ) -> dict[str, Any]:
    """One [players.NAME] table; keys with the value None are left out."""
    table: dict[str, Any] = {"name": name, "type": type}
    table.update({key: value for key, value in keys.items() if value is not None})
    if mappings is not None:
        table["mappings"] = _mappings(mappings)
    return table


def kodi(name: str = "lounge", **keys: Any) -> dict[str, Any]:
    return player("kodi", name, **keys)


def jellyfin(name: str = "den", **keys: Any) -> dict[str, Any]:
    return player("jellyfin", name, **keys)


def emby(name: str = "den", **keys: Any) -> dict[str, Any]:
    return player("emby", name, **keys)


def plex(name: str = "den", **keys: Any) -> dict[str, Any]:
    return player("plex", name, **keys)


def recorder(name: str = "lounge", **keys: Any) -> dict[str, Any]:
    """The recording adapter of tests/support/recorder_player.py."""
    return player("recorder", name, **{"url": RECORDER_URL, **keys})


def env_secret(variable: str) -> dict[str, str]:
    """A secret read from an environment variable: `password = { env = "NAME" }`."""
    return {"env": variable}


def file_secret(path: str | Path) -> dict[str, str]:
    """A secret read from a file: `password = { file = "/path" }`."""
    return {"file": str(path)}


def config_with(*, metarr: str | Path | Mapping[str, Any] | None = None,
                players: Iterable[Mapping[str, Any]] = (),
                sync: Mapping[str, Any] | None = None,
                watch: Mapping[str, Any] | None = None,
                groups: Mapping[str, Mapping[str, Any]] | None = None,
                mappings: Pairs | None = None,
                alerts: Mapping[str, Any] | None = None) -> str:
    """The TOML text of a config file.

    `metarr`: the database (a path or URL) or the whole [metarr] table. `mappings`: given
    to every player that has none of its own. `alerts`: the [alerts] table
    ({"urls": [...]}).
    """
    document: dict[str, Any] = {}
    if metarr is not None:
        document["metarr"] = (dict(metarr) if isinstance(metarr, Mapping)
                              else {"database": str(metarr)})
    if sync:
        document["sync"] = dict(sync)
    if watch:
        document["watch"] = dict(watch)
    if groups:
        document["groups"] = {name: dict(table) for name, table in groups.items()}
    tables: dict[str, Any] = {}
    for entry in players:
        table = dict(entry)
        name = table.pop("name")
        assert name not in tables, f"two players named {name!r}"
        if "mappings" not in table and mappings is not None:
            table["mappings"] = _mappings(mappings)
        tables[name] = table
    if tables:
        document["players"] = tables
    if alerts is not None:
        document["alerts"] = dict(alerts)
    return tomli_w.dumps(document)
