"""What Metarr's host sees on disk: is a removed item's media really gone, are the mounts there?

Metarr never deletes media files. Its "delete" is a soft delete into a 30-day recycle bin
(`deleted_at` set, no file touched); deleting a library is `DELETE FROM libraries` with
ON DELETE CASCADE (every row of the library vanishes, the files stay); a fresh or restored
Metarr database lacks rows for everything the players know. So a soft-deleted or vanished
row is only a *candidate* removal: whether the media is gone is a question for the disk.
metarr-sync runs where Metarr's paths are readable, and asks it here, before any removal
is planned:

- the media still exists (the video file of a movie or episode, the folder of a show):
  not a removal; nothing is sent and the item leaves the queue;
- it is missing, and the folder that should hold its folder (a movie folder's parent, a
  show folder's parent: normally the library root) is there and not empty: gone, and a
  removal may be sent (still subject to the mass-removal guard);
- anything else (that folder is missing or empty — a share that is not mounted looks like
  this — permission denied, an I/O error): it cannot be told, nothing is removed and the
  item waits with that cause.

Anchors (`anchors = [...]` in [sync] and per player) are files the user places on each
share: a missing anchor means a share is not mounted, and then no scan, removal, clean or
trash emptying may be sent at all (a scan of an unmounted share makes players drop items
too).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metarr_sync.metarr import Item


class Presence(Enum):
    PRESENT = "present"
    GONE = "gone"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Verdict:
    presence: Presence
    why: str


_MISSING = (errno.ENOENT, errno.ENOTDIR)


def _parent(path: str) -> str:
    trimmed = path.rstrip("/\\")
    cut = max(trimmed.rfind("/"), trimmed.rfind("\\"))
    if cut < 0:
        return trimmed
    return trimmed[:cut] or trimmed[:1]


def _witness(item: Item) -> str:
    """The folder that must be visible for a missing media path to count as gone: the
    parent of the item's own folder (movie folder, show folder) — normally the library
    root, which is empty or absent when its share is not mounted."""
    if item.kind == "movie":
        return _parent(_parent(item.path))
    return _parent(item.series_path or item.path)


def media_presence(item: Item) -> Verdict:
    """Is `item`'s media on disk, gone, or impossible to tell from here?"""
    what = "folder" if item.kind == "series" else "file"
    try:
        os.stat(item.path)
    except OSError as exc:
        if exc.errno not in _MISSING:
            return Verdict(Presence.UNKNOWN, f"cannot check its {what} {item.path}: "
                           f"{exc.strerror or exc}")
    else:
        return Verdict(Presence.PRESENT, f"its {what} {item.path} still exists (Metarr "
                       "only dropped it from its catalogue): not removed from any player")
    witness = _witness(item)
    try:
        with os.scandir(witness) as entries:
            empty = next(entries, None) is None
    except OSError as exc:
        if exc.errno in _MISSING:
            return Verdict(Presence.UNKNOWN, f"its {what} {item.path} is missing, but so is "
                           f"{witness}: is the share mounted here? Nothing is removed until "
                           "it can be checked")
        return Verdict(Presence.UNKNOWN, f"cannot check {witness}: {exc.strerror or exc}")
    if empty:
        return Verdict(Presence.UNKNOWN, f"its {what} {item.path} is missing, but {witness} "
                       "is empty: is the share mounted here? Nothing is removed until it can "
                       "be checked")
    return Verdict(Presence.GONE, f"its {what} {item.path} is gone from disk")


def missing_anchors(anchors: list[str]) -> list[str]:
    """The anchor files that cannot be seen (missing, or unreadable: both mean "not
    mounted as expected")."""
    missing = []
    for anchor in anchors:
        try:
            os.stat(anchor)
        except OSError:
            missing.append(anchor)
    return missing
