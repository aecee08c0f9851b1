"""Planning, as pure functions over plain data: path mapping (Metarr's paths to each
player's, and back), de-duplication, ordering and batching. The path rules themselves
(splitting, comparing, joining) are in paths.py.

Nothing here does I/O, so every rule is tested directly (tests/test_plan.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import unquote

from metarr_sync.config import Mapping
from metarr_sync.metarr import Item
from metarr_sync.paths import (
    PLATFORM,
    PathStyle,
    components,
    is_local_absolute,
    is_under,
    is_url,
    is_windows,
    join,
    order_key,
    parent,
    split,
    strip_trailing,
)
from metarr_sync.paths import MappingError as MappingError  # re-exported: map_path raises it

KIND_ORDER = {"movie": 0, "series": 1, "episode": 2}


def best_mapping(path: str, mappings: Sequence[Mapping], side: str = "metarr"
                 ) -> Mapping | None:
    """The mapping whose `side` ("metarr" or "player") is the longest whole-component
    prefix of `path`, compared as that side's file system does (paths.PLATFORM: a
    Windows or SMB prefix typed in another case still covers the path)."""
    best: Mapping | None = None
    best_len = -1
    for mapping in mappings:
        root = getattr(mapping, side)
        if is_under(path, root, PLATFORM):
            length = len(components(root))
            if length > best_len:
                best, best_len = mapping, length
    return best


def _root_of(path: str) -> str:
    """The root of an unmapped Metarr path: `/`, a drive `C:\\`, or a UNC share."""
    if path.startswith("\\\\"):
        return "\\\\" + "\\".join(split(path)[:2])
    return "/" if path.startswith("/") else path[:3]


def map_path(path: str, mappings: Sequence[Mapping]) -> tuple[str, str]:
    """(player path, player root) for a Metarr-side absolute path.

    The player path is the mapping's player side as configured, then the names below its
    Metarr side as Metarr holds them: nothing is case-folded or Unicode-normalised, since
    on a POSIX file system another spelling is another file. With no mappings the player
    sees Metarr's paths as they are.
    """
    if not path or not is_local_absolute(path):
        raise MappingError(f"Metarr path {path!r} is not absolute")
    if any(part in (".", "..") for part in split(path)):
        # `..` would lead the player outside the root the mapping claims.
        raise MappingError(f"Metarr path {path!r} contains '.' or '..'")
    if not mappings:
        return strip_trailing(path), _root_of(path)
    mapping = best_mapping(path, mappings)
    if mapping is None:
        roots = ", ".join(m.metarr for m in mappings)
        raise MappingError(f"no path mapping covers {path} (mapped: {roots})")
    rest = split(path)[len(split(mapping.metarr)):]
    return join(mapping.player, rest), strip_trailing(mapping.player)


class OldFile(NamedTuple):
    """A file an upgraded or renamed item had before (Item.previous_paths): in Metarr's
    path (to look at the disk) and as the player spells it (to find its entry)."""

    metarr: str
    path: str


def unmap_path(path: str, mappings: Sequence[Mapping]) -> str | None:
    """The Metarr-side path of a player-side path: map_path() the other way round.

    The mapping whose *player* side is the longest whole-component prefix of `path` is
    used; its prefix is replaced by the Metarr side, in the Metarr side's separator, and a
    percent-encoded player root's names are decoded. None when no mapping covers the path
    (with no mappings: when it is not an absolute local path, as the player then sees
    Metarr's own paths), or when a component is '.' or '..' (it could leave the root).
    Used to find the file behind a player's artwork URL on the disk metarr-sync reads.
    """
    if not path or any(part in (".", "..") for part in split(path)):
        return None
    if not mappings:
        local = is_local_absolute(path)
        return strip_trailing(path) if local and not is_url(path) else None
    best = best_mapping(path, mappings, "player")
    if best is None:
        return None
    rest = components(path)[len(components(best.player)):]
    if PathStyle.of(best.player).encoded:
        rest = [unquote(part) for part in rest]
    if any(part in (".", "..") or "/" in part or "\\" in part for part in rest):
        return None  # a decoded name must not smuggle in a separator
    sep = "\\" if is_windows(best.metarr) else "/"
    base = strip_trailing(best.metarr)
    if not rest:
        return base
    return base + ("" if base.endswith(("/", "\\")) else sep) + sep.join(rest)


@dataclass(frozen=True, slots=True)
class Target:
    """One item as one player sees it (slotted: one per queued item and player)."""

    item: Item
    path: str  # the video file (movie, episode) or the show folder (series)
    folder: str  # the folder to scan: movie folder, season folder, show folder
    series_folder: str | None  # show folder for episodes and series
    root: str  # the player-side root of the mapping used
    style: PathStyle = field(default_factory=PathStyle)
    #: Earlier files of an upgraded or renamed movie or episode the player may still list.
    previous: tuple[OldFile, ...] = ()

    @property
    def key(self) -> str:
        return self.item.key

    @property
    def folder_is_root(self) -> bool:
        """Scanning this folder would scan a whole library root."""
        return strip_trailing(self.folder) == strip_trailing(self.root)


def target_for(item: Item, mappings: Sequence[Mapping]) -> Target:
    """Map one item to the player's paths; raises MappingError with a reason."""
    path, root = map_path(item.path, mappings)
    style = PathStyle.of(root)
    series_folder = None
    if item.series_path:
        series_folder, _ = map_path(item.series_path, mappings)
    folder = path if item.kind == "series" else parent(path, style)
    if item.kind != "series" and strip_trailing(path) == strip_trailing(root):
        raise MappingError(f"{item.path} maps to the player's library root itself")
    previous: list[OldFile] = []
    # Movies and episodes only: a show whose folder moved is scanned at its new place like
    # a new show (its old entry is not replaced).
    for old in item.previous_paths if item.kind != "series" else ():
        try:
            previous.append(OldFile(old, map_path(old, mappings)[0]))
        except MappingError:
            continue  # no longer mapped (the mappings changed): no player spells it
    # Interned: the episodes of a season share one folder (and all targets one root).
    return Target(item, path, sys.intern(folder),
                  None if series_folder is None else sys.intern(series_folder),
                  sys.intern(root), style, tuple(previous))


@dataclass
class PlayerPlan:
    batches: list[list[Target]] = field(default_factory=list)
    errors: list[tuple[Item, str]] = field(default_factory=list)

    @property
    def targets(self) -> list[Target]:
        return [t for batch in self.batches for t in batch]


def build_plan(items: Iterable[Item], mappings: Sequence[Mapping],
               batch_size: int) -> PlayerPlan:
    """Map, de-duplicate, order and batch one player's work.

    Items are ordered by kind (movies, shows, episodes) and then by path, so that items
    in one folder land in the same batch and collapse into one folder operation.
    """
    plan = PlayerPlan()
    seen: set[str] = set()
    targets: list[Target] = []
    for item in items:
        if item.key in seen:
            continue
        seen.add(item.key)
        try:
            targets.append(target_for(item, mappings))
        except MappingError as exc:
            plan.errors.append((item, str(exc)))
    # Component by component, so that one folder's items stay together.
    targets.sort(key=lambda t: (KIND_ORDER.get(t.item.kind, 9), order_key(t.path)))
    size = max(1, batch_size)
    plan.batches = [targets[i:i + size] for i in range(0, len(targets), size)]
    return plan
