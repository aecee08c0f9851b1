"""Which of Metarr's libraries each player serves: `libraries` of `[players.NAME]`.

A Kodi in the kids' room may have the movies only. An item of a library a player does
not serve is not that player's work: it is never queued for it (nor its removal), and an
entry queued before the setting was added leaves its queue. Entries name libraries by
Metarr's `libraries.id` (an integer) or `libraries.name` (a string, matched exactly).
Metarr itself records which libraries a player group serves in `media_player_libraries`
(group_id, library_id; its migration 20251015_003 makes the pair unique, and Metarr's own
notification jobs tell a group only about the libraries linked there): `players import`
copies that into `libraries`. A group with no such row is left serving every library,
and the import says so.

A name or id Metarr does not have fails that player (its work stays queued, nothing is
dropped): guessing would either flood the player or silently serve nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from metarr_sync.config import Config, PlayerConfig
from metarr_sync.metarr import Library, MetarrSource


@dataclass
class Served:
    #: Player name -> ids of the libraries it serves; players serving every library
    #: (no `libraries`, or one that could not be resolved) are not in it.
    ids: dict[str, frozenset[int]] = field(default_factory=dict)
    #: Player name -> why its `libraries` cannot be used (names a library Metarr lacks).
    errors: dict[str, str] = field(default_factory=dict)
    #: Library id -> name, for messages.
    names: dict[int, str] = field(default_factory=dict)

    def serves(self, player: str, library_id: int | None) -> bool:
        """An item of unknown library stays everyone's work, as without the setting."""
        ids = self.ids.get(player)
        return ids is None or library_id is None or library_id in ids


def needed(players: Iterable[PlayerConfig]) -> bool:
    """Whether any player limits its libraries (only then is Metarr asked for them)."""
    return any(p.libraries is not None for p in players)


def resolve(players: Iterable[PlayerConfig], libraries: Sequence[Library]) -> Served:
    """Each limited player's library ids, or why its setting names a missing library."""
    by_name: dict[str, set[int]] = {}
    for lib in libraries:  # two libraries may share a name: it serves both
        by_name.setdefault(lib.name, set()).add(lib.id)
    served = Served(names={lib.id: lib.name for lib in libraries})
    for player in players:
        if player.libraries is None:
            continue
        ids: set[int] = set()
        missing: list[str] = []
        for entry in player.libraries:
            if isinstance(entry, int):
                if entry in served.names:
                    ids.add(entry)
                else:
                    missing.append(f"id {entry}")
            elif entry in by_name:
                ids |= by_name[entry]
            else:
                missing.append(repr(entry))
        if missing:
            have = ", ".join(f"{lib.name!r} (id {lib.id})" for lib in libraries) or "none"
            served.errors[player.name] = (
                f"players.{player.name}.libraries: Metarr has no library {', '.join(missing)} "
                f"(names match exactly; Metarr's libraries: {have}). Nothing was sent to "
                "this player; its work stays queued")
            continue
        served.ids[player.name] = frozenset(ids)
    return served


def served_by(config: Config, source: MetarrSource) -> Served:
    """The libraries of the players that limit theirs (Metarr is asked only then)."""
    if not needed(config.players.values()):
        return Served()
    return resolve(config.players.values(), source.libraries())
