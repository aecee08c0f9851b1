"""disk.py: a removed item's media is gone only when the disk shows it gone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from metarr_sync.disk import Presence, media_presence, missing_anchors
from metarr_sync.metarr import Item


def movie(path: Path) -> Item:
    return Item("movie", 1, str(path), "Heat", removed=True)


def episode(show: Path, path: Path) -> Item:
    return Item("episode", 2, str(path), "Show", str(show), removed=True)


def series(show: Path) -> Item:
    return Item("series", 3, str(show), "Show", str(show), removed=True)


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "movies"
    (root / "Heat (1995)").mkdir(parents=True)
    (root / "Heat (1995)" / "Heat (1995).mkv").write_bytes(b"")
    (root / "Alien (1979)").mkdir()
    return root


def test_a_file_that_exists_is_present(library):
    verdict = media_presence(movie(library / "Heat (1995)" / "Heat (1995).mkv"))
    assert verdict.presence is Presence.PRESENT
    assert "still exists" in verdict.why


def test_a_missing_file_in_a_visible_library_is_gone(library):
    verdict = media_presence(movie(library / "Alien (1979)" / "Alien (1979).mkv"))
    assert verdict.presence is Presence.GONE
    # Its whole folder gone too (Radarr deletes the folder): still gone.
    verdict = media_presence(movie(library / "Brazil (1985)" / "Brazil (1985).mkv"))
    assert verdict.presence is Presence.GONE


def test_an_absent_or_empty_library_root_cannot_tell(tmp_path):
    # The share is not mounted: its mount point is missing ...
    verdict = media_presence(movie(tmp_path / "nas" / "movies" / "Heat" / "Heat.mkv"))
    assert verdict.presence is Presence.UNKNOWN
    assert "is the share mounted" in verdict.why and str(tmp_path / "nas" / "movies") in \
        verdict.why
    # ... or an empty folder.
    (tmp_path / "mnt").mkdir()
    verdict = media_presence(movie(tmp_path / "mnt" / "Heat" / "Heat.mkv"))
    assert verdict.presence is Presence.UNKNOWN
    assert "is empty" in verdict.why


def test_an_error_other_than_missing_cannot_tell(library):
    # A symlink loop (ELOOP) stands for any I/O error: the disk gave no answer.
    loop = library / "Loop (2000)"
    loop.symlink_to(loop)
    verdict = media_presence(movie(loop / "Loop (2000).mkv"))
    assert verdict.presence is Presence.UNKNOWN
    assert "cannot check" in verdict.why


def test_permission_denied_cannot_tell(library, monkeypatch):
    # Tests run as root, who reads any folder: the kernel's answer is given by hand.
    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(os, "stat", denied)
    verdict = media_presence(movie(library / "Alien (1979)" / "Alien (1979).mkv"))
    assert verdict.presence is Presence.UNKNOWN
    assert "Permission denied" in verdict.why


def test_a_file_in_the_way_of_a_folder_cannot_make_media_gone(tmp_path):
    # NOTDIR: a component of the path is a file; the library root is that file's parent.
    root = tmp_path / "tv"
    root.mkdir()
    (root / "Show").write_text("not a folder")
    verdict = media_presence(episode(root / "Show", root / "Show" / "S01" / "e.mkv"))
    assert verdict.presence is Presence.GONE  # the root is visible and not empty


def test_episodes_and_shows_are_judged_against_the_tv_root(tmp_path):
    root = tmp_path / "tv"
    show = root / "Severance"
    (show / "Season 01").mkdir(parents=True)
    (show / "Season 01" / "e1.mkv").write_bytes(b"")
    assert media_presence(episode(show, show / "Season 01" / "e1.mkv")).presence \
        is Presence.PRESENT
    assert media_presence(episode(show, show / "Season 01" / "e2.mkv")).presence \
        is Presence.GONE
    assert media_presence(series(show)).presence is Presence.PRESENT
    gone = root / "Dark"
    assert media_presence(series(gone)).presence is Presence.GONE
    # The TV share unmounted: nothing can be told about any of them.
    elsewhere = tmp_path / "unmounted" / "tv" / "Dark"
    assert media_presence(series(elsewhere)).presence is Presence.UNKNOWN


def test_missing_anchors_are_named(tmp_path):
    present = tmp_path / ".metarr-anchor"
    present.write_text("")
    absent = tmp_path / "nas" / ".metarr-anchor"
    assert missing_anchors([str(present), str(absent)]) == [str(absent)]
    assert missing_anchors([]) == []
