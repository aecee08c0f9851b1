"""Player adapters. Imported lazily: commands that do not talk to players stay fast."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metarr_sync.players.base import Player

_BUILTIN = {
    "kodi": "metarr_sync.players.kodi:KodiPlayer",
    "jellyfin": "metarr_sync.players.jellyfin:JellyfinPlayer",
    "emby": "metarr_sync.players.jellyfin:EmbyPlayer",
    "plex": "metarr_sync.players.plex:PlexPlayer",
}


def _plugins() -> dict[str, str]:
    """Extra adapters named in METARR_SYNC_PLUGINS as `type=module:Class,...`.

    This is how the test suite plugs in a recording adapter, and how a third-party
    player type can be tried without forking.
    """
    found = {}
    for entry in filter(None, os.environ.get("METARR_SYNC_PLUGINS", "").split(",")):
        name, _, target = entry.partition("=")
        if name and target:
            found[name.strip()] = target.strip()
    return found


def plugin_types() -> list[str]:
    return list(_plugins())


def adapter_class(player_type: str) -> type[Player]:
    target = _plugins().get(player_type) or _BUILTIN[player_type]
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
