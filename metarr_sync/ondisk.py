"""What the disk says, as Metarr's host sees it: may a player's entry for a file go?

metarr-sync runs where Metarr's paths are readable (it reads Metarr's database there), so
it can look at the files itself before it asks a player to drop an entry. A player's
removal (Kodi's `Remove*` by id) is destructive and blind: it never checks the disk. So a
file counts as *gone* only when the disk proves it, never because a share is unmounted
or unreadable (then every file on it looks missing).

This is the one place such checks live. `old_file_gone` serves upgrades and renames
(issue 16): the old file of an item whose path Metarr rewrote in place. The general check
for removed items (issue 15) is meant to join it here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class DiskVerdict:
    """Whether a file is gone, and why in a person's words.

    `gone` is True (proved gone), False (still there) or None (cannot tell: hold).
    """

    gone: bool | None
    why: str


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


def _holds(folder: str, path: str) -> bool:
    folder = folder.rstrip(os.sep) + os.sep
    return path.startswith(folder)


def old_file_gone(old: str, new: str) -> DiskVerdict:
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
            return DiskVerdict(False, f"{old} is still on disk")
        if not os.path.exists(new):
            return DiskVerdict(None, (
                f"neither {old} nor the new file {new} can be seen on this machine: is the "
                "share mounted here, where metarr-sync runs? Nothing is removed until the "
                "disk can be checked"))
        folder = _nearest_existing(old)
        if folder is None or not _holds(folder, new):
            return DiskVerdict(None, (
                f"{old} is not on disk, but nothing above it that exists holds the new "
                f"file {new}: is the disk or share it was on offline? Nothing is removed "
                "until that can be checked"))
        os.listdir(folder)  # readable: its listing would show the old file
        if os.stat(folder).st_dev != os.stat(os.path.dirname(new)).st_dev:
            return DiskVerdict(None, (
                f"{old} is not on disk, and {folder} is on another file system than the "
                f"new file {new}: is a disk or share mounted below it offline? Nothing "
                "is removed until that can be checked"))
    except OSError as exc:
        return DiskVerdict(None, (
            f"cannot check whether {old} is gone ({exc.strerror or exc}): nothing is "
            "removed until the disk can be read"))
    return DiskVerdict(True, f"{old} is gone from disk")
