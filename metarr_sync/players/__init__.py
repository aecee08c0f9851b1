"""Player adapters. Imported lazily: commands that do not talk to players stay fast.

Which adapter serves which player type (and METARR_SYNC_PLUGINS, which adds or replaces
adapters) is in metarr_sync/player_types.py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from metarr_sync import player_types

if TYPE_CHECKING:
    from metarr_sync.players.base import Player


def adapter_class(player_type: str) -> type[Player]:
    kind = player_types.get(player_type)
    if kind is None:
        raise KeyError(player_type)
    module_name, _, class_name = kind.adapter.partition(":")
    adapter: type[Player] = getattr(importlib.import_module(module_name), class_name)
    return adapter
