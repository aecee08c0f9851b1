"""Planning, as pure functions over plain data: path mapping, folder collapsing, batching.

Nothing here does I/O, so every rule is tested directly (tests/test_plan.py).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import quote, unquote

from metarr_sync.config import Mapping
from metarr_sync.metarr import Item

# DOTALL: a file name may hold a newline, and must not turn a URL into a plain path.
_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.DOTALL)
_DRIVE_RE = re.compile(r"^[A-Za-z]:[\\/]?$")
_WINDOWS_BAD = re.compile(r'[<>:"|?*\x00-\x1f]')
_PERCENT_RE = re.compile(r"%[0-9A-Fa-f]{2}")
KIND_ORDER = {"movie": 0, "series": 1, "episode": 2}
_SEP_TO_NUL = str.maketrans({"/": "\0", "\\": "\0"})


class MappingError(ValueError):
    """An item path that cannot be turned into a path the player understands."""


@dataclass(frozen=True)
class PathStyle:
    """How a player spells paths: its separator and whether names are percent-encoded."""

    sep: str = "/"
    url: bool = False
    encoded: bool = False

    @classmethod
    def of(cls, root: str) -> PathStyle:
        return _style_of(root)


@lru_cache(maxsize=256)
def _style_of(root: str) -> PathStyle:
    """One PathStyle per player root, shared by all the run's targets under it."""
    if _URL_RE.match(root):
        return PathStyle("/", url=True, encoded=bool(_PERCENT_RE.search(root)))
    if "\\" in root or re.match(r"^[A-Za-z]:", root):
        return PathStyle("\\")
    return PathStyle("/")


def _split(path: str) -> list[str]:
    return [part for part in re.split(r"[\\/]", path) if part]


def strip_trailing(path: str) -> str:
    """`path` without trailing separators, keeping roots (`/`, `C:\\`, `smb://host`) whole."""
    match = _URL_RE.match(path)
    if match:
        rest = match.group(2).rstrip("/")
        return match.group(1) + rest
    if _DRIVE_RE.match(path):
        return path[:2] + "\\"
    stripped = path.rstrip("/\\")
    return stripped or path[:1]


def with_trailing(path: str, style: PathStyle | None = None) -> str:
    """`path` ending in exactly one separator of its style (Kodi needs it on folders)."""
    style = style or PathStyle.of(path)
    path = strip_trailing(path)
    return path if path.endswith(style.sep) else path + style.sep


def is_under(path: str, root: str) -> bool:
    """True when `path` is `root` or inside it, by whole path components.

    `/data/movies` is not under `/data/movie`, and `/Movies4K` not under `/Movies`.
    """
    root_parts, parts = _split_for_compare(root), _split_for_compare(path)
    return parts[: len(root_parts)] == root_parts


def _split_for_compare(path: str) -> list[str]:
    match = _URL_RE.match(path)
    if match:
        return [match.group(1).lower(), *_split(match.group(2))]
    return _split(path)


def join(root: str, parts: Sequence[str], style: PathStyle | None = None) -> str:
    """Append path components to a player-side root in that root's style."""
    style = style or PathStyle.of(root)
    base = strip_trailing(root)
    if not parts:
        return base
    names = []
    for part in parts:
        if style.sep == "\\" and _WINDOWS_BAD.search(part):
            raise MappingError(f"the name {part!r} cannot exist on a Windows player")
        names.append(quote(part, safe="!$&'()+,;=@[]~") if style.encoded else part)
    if base.endswith(("/", "\\")):
        return base + style.sep.join(names)
    return base + style.sep + style.sep.join(names)


def best_mapping(path: str, mappings: Sequence[Mapping], side: str = "metarr"
                 ) -> Mapping | None:
    """The mapping whose `side` ("metarr" or "player") is the longest whole-component
    prefix of `path`."""
    best: Mapping | None = None
    best_len = -1
    for mapping in mappings:
        root = getattr(mapping, side)
        if is_under(path, root):
            length = len(_split_for_compare(root))
            if length > best_len:
                best, best_len = mapping, length
    return best


def map_path(path: str, mappings: Sequence[Mapping]) -> tuple[str, str]:
    """(player path, player root) for a Metarr-side absolute path.

    With no mappings the player sees Metarr's paths as they are.
    """
    if not path or not (path.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", path)):
        raise MappingError(f"Metarr path {path!r} is not absolute")
    if any(part in (".", "..") for part in _split(path)):
        # `..` would lead the player outside the root the mapping claims.
        raise MappingError(f"Metarr path {path!r} contains '.' or '..'")
    if not mappings:
        return strip_trailing(path), "/" if path.startswith("/") else path[:3]
    mapping = best_mapping(path, mappings)
    if mapping is None:
        roots = ", ".join(m.metarr for m in mappings)
        raise MappingError(f"no path mapping covers {path} (mapped: {roots})")
    rest = _split(path)[len(_split(mapping.metarr)):]
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
    if not path or any(part in (".", "..") for part in _split(path)):
        return None
    if not mappings:
        local = path.startswith("/") or bool(re.match(r"^[A-Za-z]:[\\/]", path))
        return strip_trailing(path) if local and not _URL_RE.match(path) else None
    best = best_mapping(path, mappings, "player")
    if best is None:
        return None
    rest = _split_for_compare(path)[len(_split_for_compare(best.player)):]
    if PathStyle.of(best.player).encoded:
        rest = [unquote(part) for part in rest]
    if any(part in (".", "..") or "/" in part or "\\" in part for part in rest):
        return None  # a decoded name must not smuggle in a separator
    sep = "\\" if "\\" in best.metarr or re.match(r"^[A-Za-z]:", best.metarr) else "/"
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


def parent(path: str, style: PathStyle) -> str:
    base = strip_trailing(path)
    cut = base.rfind(style.sep)
    match = _URL_RE.match(base)
    if match and cut < len(match.group(1)):
        return base
    if cut <= 0:
        return base[:1] if cut == 0 else base
    head = base[:cut]
    return head + style.sep if _DRIVE_RE.match(head + style.sep) else head


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
    # Component by component (`/a/x` before `/a b/x`): separators sort below every
    # character once they are NUL; one string per target, not a list of components.
    targets.sort(key=lambda t: (KIND_ORDER.get(t.item.kind, 9), t.path.translate(_SEP_TO_NUL)))
    size = max(1, batch_size)
    plan.batches = [targets[i:i + size] for i in range(0, len(targets), size)]
    return plan


def collapse_folders(folders: Iterable[str]) -> list[str]:
    """The distinct folders, leaving out any folder inside another one of the set.

    Sorting by components puts every folder right before its descendants, so one pass
    suffices: O(n log n), with no pairwise comparison.
    """
    unique = {strip_trailing(f): _split_for_compare(f) for f in folders}
    kept: list[str] = []
    last: list[str] | None = None
    for folder, parts in sorted(unique.items(), key=lambda kv: kv[1]):
        if last is not None and parts[: len(last)] == last:
            continue
        kept.append(folder)
        last = parts
    return kept
