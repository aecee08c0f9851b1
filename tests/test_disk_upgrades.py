"""When the disk proves an upgraded item's old file gone (metarr_sync/disk.py), and the
player-side paths of those old files (plan.target_for)."""

from __future__ import annotations

import os
from pathlib import Path

from metarr_sync.config import Mapping
from metarr_sync.disk import old_file_gone
from metarr_sync.metarr import Item
from metarr_sync.plan import OldFile, target_for


def test_old_file_replaced_in_its_folder_is_gone(tmp_path: Path) -> None:
    folder = tmp_path / "Heat (1995)"
    folder.mkdir()
    new = folder / "Heat (1995) - 1080p.mkv"
    new.touch()
    verdict = old_file_gone(str(folder / "Heat (1995) - 720p.mkv"), str(new))
    assert verdict.gone is True and "is gone from disk" in verdict.why


def test_old_file_still_there_is_a_copy_kept_beside_the_new_one(tmp_path: Path) -> None:
    old, new = tmp_path / "Heat - 720p.mkv", tmp_path / "Heat - 1080p.mkv"
    old.touch()
    new.touch()
    verdict = old_file_gone(str(old), str(new))
    assert verdict.gone is False and verdict.why == f"{old} is still on disk"
    # A dangling link is still something on disk that someone put there.
    old.unlink()
    old.symlink_to(tmp_path / "nowhere.mkv")
    assert old_file_gone(str(old), str(new)).gone is False


def test_old_folder_renamed_within_the_library_is_gone(tmp_path: Path) -> None:
    new = tmp_path / "movies" / "Heat (1995) {imdb-tt0113277}" / "Heat (1995).mkv"
    new.parent.mkdir(parents=True)
    new.touch()
    old = tmp_path / "movies" / "Heat (1995)" / "Heat (1995).mkv"
    assert old_file_gone(str(old), str(new)).gone is True


def test_nothing_is_gone_while_the_share_cannot_be_seen(tmp_path: Path) -> None:
    # Neither file visible: an unmounted share looks exactly like this.
    verdict = old_file_gone(str(tmp_path / "nas" / "Heat" / "old.mkv"),
                            str(tmp_path / "nas" / "Heat" / "new.mkv"))
    assert verdict.gone is None and "is the share mounted here" in verdict.why


def test_an_old_file_on_another_disk_that_vanished_is_not_called_gone(tmp_path: Path) -> None:
    # The item moved from disk1 to disk2, and disk1 is offline: its mount point is an
    # empty folder. (When the mount point itself is gone, the folder above it lies on
    # another file system than disk2: st_dev tells them apart; not reproducible here
    # without mounting.)
    new = tmp_path / "disk2" / "Heat" / "Heat.mkv"
    new.parent.mkdir(parents=True)
    new.touch()
    (tmp_path / "disk1").mkdir()
    verdict = old_file_gone(str(tmp_path / "disk1" / "Heat" / "Heat.mkv"), str(new))
    assert verdict.gone is None and "offline" in verdict.why


def test_an_unreadable_folder_is_not_proof(tmp_path: Path) -> None:
    folder = tmp_path / "Heat"
    folder.mkdir()
    new = folder / "new.mkv"
    new.touch()
    folder.chmod(0o300)  # can enter, cannot list
    try:
        verdict = old_file_gone(str(folder / "old.mkv"), str(new))
    finally:
        folder.chmod(0o700)
    if os.geteuid() == 0:  # root lists any folder: then the check itself is proof
        assert verdict.gone is True
    else:
        assert verdict.gone is None and "cannot check" in verdict.why


def test_targets_carry_the_old_files_as_the_player_spells_them() -> None:
    mappings = [Mapping("/data/media/movies", "smb://nas/movies"),
                Mapping("/data/media/tv", "smb://nas/tv")]
    movie = Item("movie", 1, "/data/media/movies/Heat (1995)/Heat - 1080p.mkv",
                 previous_paths=("/data/media/movies/Heat (1995)/Heat - 720p.mkv",
                                 "/elsewhere/Heat.mkv"))
    target = target_for(movie, mappings)
    # A path no mapping covers any more is left out: no player spells it.
    assert target.previous == (OldFile("/data/media/movies/Heat (1995)/Heat - 720p.mkv",
                                       "smb://nas/movies/Heat (1995)/Heat - 720p.mkv"),)
    show = Item("series", 2, "/data/media/tv/Dark (2017)", series_path="/data/media/tv/Dark",
                previous_paths=("/data/media/tv/Dark",))
    assert target_for(show, mappings).previous == ()
