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

Upgrades and renames: Metarr rewrites an item's path in place when Radarr/Sonarr replace
its file, and the player may still list the old file. Its entry goes only when the disk
proves the old file gone (old_file_gone): a copy kept beside the new file keeps its entry.

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

from metarr_sync.paths import folder_of

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

    @property
    def gone(self) -> bool | None:
        """True: proved gone; False: still there; None: cannot tell (hold)."""
        return {Presence.GONE: True, Presence.PRESENT: False}.get(self.presence)


_MISSING = (errno.ENOENT, errno.ENOTDIR)


def _witness(item: Item) -> str:
    """The folder that must be visible for a missing media path to count as gone: the
    parent of the item's own folder (movie folder, show folder) — normally the library
    root, which is empty or absent when its share is not mounted."""
    if item.kind == "movie":
        return folder_of(folder_of(item.path))
    return folder_of(item.series_path or item.path)


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


def _nearest_existing(path: str) -> str | None:
    """The nearest folder at or above the folder of `path` that exists, or None."""
    folder = os.path.dirname(path)
    while folder:
        if os.path.isdir(folder):
            return folder
        above = os.path.dirname(folder)
        if above == folder:
            return None
        folder = above
    return None


def old_file_gone(old: str, new: str) -> Verdict:
    """Is `old` (an item's previous file) gone from disk now that the item is at `new`?

    Gone only when all of this holds (both are Metarr's own paths):
    - `old` does not exist (not even as a dangling link);
    - `new` exists: the share is mounted and Metarr's paths are readable here;
    - the nearest existing folder above `old` can be listed, holds `new` too and lies on
      the same file system as `new` — so a vanished mount point (a second disk gone
      offline) never passes for a deleted file.
    A file that still exists is a copy kept beside the new one (or re-created): its entry
    stays.
    """
    try:
        if os.path.lexists(old):
            return Verdict(Presence.PRESENT, f"{old} is still on disk")
        if not os.path.exists(new):
            return Verdict(Presence.UNKNOWN, (
                f"neither {old} nor the new file {new} can be seen on this machine: is the "
                "share mounted here, where metarr-sync runs? Nothing is removed until the "
                "disk can be checked"))
        folder = _nearest_existing(old)
        if folder is None or not new.startswith(folder.rstrip(os.sep) + os.sep):
            return Verdict(Presence.UNKNOWN, (
                f"{old} is not on disk, but nothing above it that exists holds the new "
                f"file {new}: is the disk or share it was on offline? Nothing is removed "
                "until that can be checked"))
        os.listdir(folder)  # readable: its listing would show the old file
        if os.stat(folder).st_dev != os.stat(os.path.dirname(new)).st_dev:
            return Verdict(Presence.UNKNOWN, (
                f"{old} is not on disk, and {folder} is on another file system than the "
                f"new file {new}: is a disk or share mounted below it offline? Nothing "
                "is removed until that can be checked"))
    except OSError as exc:
        return Verdict(Presence.UNKNOWN, (
            f"cannot check whether {old} is gone ({exc.strerror or exc}): nothing is "
            "removed until the disk can be read"))
    return Verdict(Presence.GONE, f"{old} is gone from disk")
