"""`players import`: the players, groups and path mappings set up in Metarr, as config.

Metarr keeps players in `media_players` (host, http_port, credentials), groups in
`media_player_groups` (with its `skip_active`, which each imported player keeps) and path
mappings per group in `media_player_group_path_mappings`.
Metarr syncs one member of a Kodi group for all of them (the members share a MySQL
library), so a Kodi group of several players becomes a `shared_library` group here.
The libraries a group serves (`media_player_libraries`) become each member's `libraries`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from metarr_sync import player_types as kinds
from metarr_sync.config import (
    Config,
    GroupConfig,
    Mapping,
    PlayerConfig,
    Secret,
    validate_url,
)
from metarr_sync.metarr import MetarrPlayer, MetarrPlayerGroup, PlayerSetup
from metarr_sync.paths import is_absolute_any


@dataclass
class Imported:
    players: list[PlayerConfig] = field(default_factory=list)
    groups: list[GroupConfig] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (Metarr's name, why)
    notes: list[str] = field(default_factory=list)


def slug(name: str, fallback: str = "player") -> str:
    """A config name (letters, digits, '-', '_', '.') for one of Metarr's display names."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip().lower()).strip("-_.")
    return text[:64].rstrip("-_.") or fallback


def player_url(host: str, port: int | None, player_type: str) -> tuple[str, str | None]:
    """http://host:port from Metarr's columns, and why it is unusable (None: usable)."""
    host = host.strip()
    if "://" in host:
        parts = urlsplit(host)
        url = host.rstrip("/")
        try:
            has_port = parts.port is not None
        except ValueError:
            has_port = True  # validate_url names the bad port
        if not has_port and port:
            url = f"{parts.scheme}://{parts.netloc}:{port}{parts.path}".rstrip("/")
    else:
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"  # an IPv6 address
        kind = kinds.TYPES.get(player_type)
        url = f"http://{host}:{port or (kind.default_port if kind else 80)}"
    reason = validate_url(url)
    return url, (f"its address {url!r} {reason}" if reason else None)


def from_metarr(setup: PlayerSetup, config: Config) -> Imported:
    """The config entries for Metarr's players; names already configured are skipped."""
    result = Imported()
    groups = {g.id: g for g in setup.groups}
    mappings: dict[int, list[Mapping]] = {}
    for group_id, metarr_path, player_path in setup.mappings:
        group = groups.get(group_id)
        where = f"group {group.name!r}" if group else f"group #{group_id}"
        if not metarr_path.startswith("/") and not is_absolute_any(metarr_path) \
                or not is_absolute_any(player_path):
            result.notes.append(f"{where}: path mapping {metarr_path!r} → {player_path!r} "
                                "left out: both sides must be absolute paths")
            continue
        mappings.setdefault(group_id, []).append(Mapping(metarr_path, player_path))
    configured = set(config.players)
    taken: set[str] = set()
    members: dict[int, list[PlayerConfig]] = {}
    unlimited: dict[str, list[str]] = {}  # why libraries is left unset -> players
    for row in setup.players:
        player, why = _player(row, groups.get(row.group_id) if row.group_id else None,
                              mappings.get(row.group_id or -1, []), configured, taken)
        if player is None:
            result.skipped.append((row.name, why or "unusable"))
            continue
        taken.add(player.name)
        result.players.append(player)
        player.libraries, why = _libraries(setup, groups.get(row.group_id or -1))
        if why:
            unlimited.setdefault(why, []).append(player.name)
        if row.group_id is not None and row.group_id in groups:
            members.setdefault(row.group_id, []).append(player)
    for group_id, players in members.items():
        if len(players) < 2:
            continue  # one player needs no group
        group = groups[group_id]
        name = slug(group.name, f"group-{group_id}")
        kind = kinds.TYPES.get(group.type.lower())
        shared = (kind is not None and kind.shares_library
                  and all(p.type == kind.name for p in players))
        if name in config.groups:
            result.notes.append(f"group {name!r} exists already: its settings are kept")
        else:
            result.groups.append(GroupConfig(name, "parallel", True, shared))
            if shared:
                result.notes.append(
                    f"group {name!r}: {len(players)} Kodi players imported with "
                    "shared_library = true (Metarr syncs one member of a Kodi group for all); "
                    "set it to false if each Kodi keeps its own library")
        for priority, player in enumerate(players, start=1):
            player.group, player.priority = name, priority * 10
    for why, names in unlimited.items():
        result.notes.append(f"{', '.join(names)}: libraries left unset, serving every "
                            f"library: {why}")
    if any(p.password or p.token for p in result.players):
        result.notes.append("passwords and API keys copied from Metarr are written into the "
                            "config file (mode 0600); { env = \"VAR\" } or { file = \"/path\" } "
                            "keep them out of it")
    return result


def _libraries(setup: PlayerSetup, group: MetarrPlayerGroup | None
               ) -> tuple[list[str | int] | None, str | None]:
    """`libraries` for a player of `group`: the names of the libraries Metarr's
    media_player_libraries gives the group (ids for a name two libraries share), or None
    and why not."""
    if setup.libraries is None:
        return None, "this Metarr has no table media_player_libraries"
    if group is None:
        return None, "not in a player group in Metarr, which records libraries per group"
    served = setup.libraries.get(group.id)
    if not served:
        return None, f"Metarr records no library for group {group.name!r}"
    names = Counter(lib.name for lib in setup.catalogue)
    return [lib.name if lib.name.strip() and names[lib.name] == 1 else lib.id
            for lib in served], None


def _player(row: MetarrPlayer, group: MetarrPlayerGroup | None, mappings: list[Mapping],
            configured: set[str], taken: set[str]) -> tuple[PlayerConfig | None, str | None]:
    player_type = row.type.strip().lower()
    kind = kinds.TYPES.get(player_type)
    if kind is None:
        return None, f"unknown player type {row.type!r} (expected one of " \
                     f"{', '.join(kinds.NAMES)})"
    name = slug(row.name, f"{player_type}-{row.id}")
    if name in taken:  # two of Metarr's names give the same config name
        name = f"{name[:58]}-{row.id}"
    if name in configured:
        return None, (f"a player named {name!r} is configured already; remove it first "
                      f"(`metarr-sync players remove {name}`) to import it again")
    url, why = player_url(row.host, row.http_port, player_type)
    if why:
        return None, why
    player = PlayerConfig(name=name, type=player_type, url=url,
                          enabled=row.enabled and (group.enabled if group else True),
                          mappings=list(mappings),
                          # Metarr's per-group "don't update while playing"
                          skip_active=group.skip_active if group else None)
    rule = kind.credentials
    why = rule.metarr_problem(player_type, username=bool(row.username),
                              password=bool(row.password), token=bool(row.api_key))
    if why:
        return None, why
    # Metarr keeps username and password in their own columns, a token as api_key.
    if "username" in rule.keys:
        player.username = row.username
    if "password" in rule.keys and row.password:
        player.password = Secret(value=row.password)
    if "token" in rule.keys and row.api_key:
        player.token = Secret(value=row.api_key)
    return player, None
