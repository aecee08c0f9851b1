"""Path mapping, collapsing and batching: pure functions, no I/O."""

from __future__ import annotations

import pytest

from metarr_sync.config import Mapping
from metarr_sync.metarr import Item
from metarr_sync.paths import PathStyle, collapse_folders, is_under, with_trailing
from metarr_sync.plan import (
    MappingError,
    best_mapping,
    build_plan,
    map_path,
    target_for,
    unmap_path,
)

M = Mapping


def movie(path: str, id_: int = 1, **kw) -> Item:
    return Item("movie", id_, path, **kw)


def test_longest_whole_component_prefix_wins():
    maps = [M("/data", "/mnt/all"), M("/data/movies", "smb://nas/movies"),
            M("/data/movies4k", "smb://nas/uhd")]
    assert best_mapping("/data/movies4k/Heat/Heat.mkv", maps).player == "smb://nas/uhd"
    assert best_mapping("/data/movies/Heat/Heat.mkv", maps).player == "smb://nas/movies"
    assert best_mapping("/data/tv/Show/x.mkv", maps).player == "/mnt/all"
    assert best_mapping("/database/x.mkv", maps) is None


def test_prefix_must_match_whole_components():
    assert not is_under("/data/movies4k/x", "/data/movies")
    assert is_under("/data/movies/x", "/data/movies/")
    assert is_under("/data/movies", "/data/movies")
    assert not is_under("smb://nas/Movies4K/x", "smb://nas/Movies")


def test_only_the_prefix_is_replaced_not_later_occurrences():
    # String.replace would also rewrite the second "/data/movies".
    path, root = map_path("/data/movies/data/movies/x.mkv", [M("/data/movies", "/srv/m")])
    assert path == "/srv/m/data/movies/x.mkv" and root == "/srv/m"


@pytest.mark.parametrize("player_root, expected", [
    ("smb://nas/movies", "smb://nas/movies/The Matrix (1999)/The Matrix (1999).mkv"),
    ("smb://nas/movies/", "smb://nas/movies/The Matrix (1999)/The Matrix (1999).mkv"),
    ("D:\\Movies", "D:\\Movies\\The Matrix (1999)\\The Matrix (1999).mkv"),
    ("D:\\", "D:\\The Matrix (1999)\\The Matrix (1999).mkv"),
    ("\\\\nas\\movies", "\\\\nas\\movies\\The Matrix (1999)\\The Matrix (1999).mkv"),
    ("/mnt/movies", "/mnt/movies/The Matrix (1999)/The Matrix (1999).mkv"),
    ("nfs://nas/export/my%20movies",
     "nfs://nas/export/my%20movies/The%20Matrix%20(1999)/The%20Matrix%20(1999).mkv"),
])
def test_player_side_separator_and_encoding(player_root, expected):
    path, _ = map_path("/data/movies/The Matrix (1999)/The Matrix (1999).mkv",
                       [M("/data/movies", player_root)])
    assert path == expected


def test_windows_player_rejects_names_windows_cannot_hold():
    with pytest.raises(MappingError, match="cannot exist on a Windows player"):
        map_path("/data/movies/What? (2001)/x.mkv", [M("/data/movies", "D:\\Movies")])


def test_no_mappings_means_the_player_sees_metarr_paths():
    assert map_path("/data/movies/x/x.mkv", [])[0] == "/data/movies/x/x.mkv"


def test_unmapped_and_relative_paths_are_errors():
    with pytest.raises(MappingError, match="no path mapping covers /other/x.mkv"):
        map_path("/other/x.mkv", [M("/data", "/mnt")])
    with pytest.raises(MappingError, match="not absolute"):
        map_path("movies/x.mkv", [M("/data", "/mnt")])


def test_target_folders_for_each_kind():
    maps = [M("/data/tv", "smb://nas/tv")]
    episode = Item("episode", 7, "/data/tv/Show/Season 01/Show - S01E01.mkv",
                   series_path="/data/tv/Show")
    t = target_for(episode, maps)
    assert t.folder == "smb://nas/tv/Show/Season 01"
    assert t.series_folder == "smb://nas/tv/Show"
    assert with_trailing(t.folder, t.style) == "smb://nas/tv/Show/Season 01/"
    series = Item("series", 3, "/data/tv/Show", series_path="/data/tv/Show")
    assert target_for(series, maps).folder == "smb://nas/tv/Show"


def test_movie_directly_in_library_root_is_flagged():
    t = target_for(movie("/data/movies/Heat.mkv"), [M("/data/movies", "/mnt/m")])
    assert t.folder_is_root
    assert not target_for(movie("/data/movies/Heat/Heat.mkv"),
                          [M("/data/movies", "/mnt/m")]).folder_is_root


def test_with_trailing_uses_the_player_style():
    assert with_trailing("D:\\Movies\\Heat", PathStyle("\\")) == "D:\\Movies\\Heat\\"
    assert with_trailing("smb://nas/m/Heat/") == "smb://nas/m/Heat/"


def test_collapse_keeps_outermost_folders_only():
    folders = ["/tv/Show/Season 01", "/tv/Show", "/tv/Show/Season 02", "/tv/Show-2/Season 01",
               "/tv/Show", "/movies/A"]
    assert collapse_folders(folders) == ["/movies/A", "/tv/Show", "/tv/Show-2/Season 01"]


def test_build_plan_dedupes_orders_batches_and_reports_errors():
    maps = [M("/data/movies", "/mnt/m")]
    items = [movie(f"/data/movies/M{n}/M{n}.mkv", n) for n in (3, 1, 2)]
    items.append(movie("/data/movies/M1/M1.mkv", 1))  # duplicate
    items.append(movie("/elsewhere/X/X.mkv", 9))
    plan = build_plan(items, maps, batch_size=2)
    assert [[t.key for t in b] for b in plan.batches] == [["movie:1", "movie:2"], ["movie:3"]]
    assert [(i.key, why) for i, why in plan.errors] == [
        ("movie:9", "no path mapping covers /elsewhere/X/X.mkv (mapped: /data/movies)")]


def test_build_plan_keeps_a_folder_s_items_together_component_by_component():
    # By components, `/A/...` sorts before `/A B/...` (a plain string sort would put the
    # space first and split folder A's files across batches around folder "A B").
    maps = [M("/data", "smb://nas/data")]
    items = [movie("/data/A B/x.mkv", 1), movie("/data/A/y.mkv", 2),
             Item("episode", 3, "/data/S/Season 1/e.mkv", series_path="/data/S"),
             movie("/data/A/sub/z.mkv", 4), Item("series", 5, "/data/S")]
    plan = build_plan(items, maps, batch_size=10)
    assert [t.key for t in plan.targets] == [
        "movie:4", "movie:2", "movie:1", "series:5", "episode:3"]


def test_plan_is_linear_in_items():
    # 20,000 items must plan quickly: no pairwise step (a quadratic plan would take minutes).
    maps = [M("/data/movies", "smb://nas/movies")]
    items = [movie(f"/data/movies/M{n}/M{n}.mkv", n) for n in range(20000)]
    plan = build_plan(items, maps, batch_size=100)
    assert len(plan.batches) == 200
    assert len(collapse_folders(t.folder for t in plan.targets)) == 20000


# --- unmap_path: a player's path back to Metarr's (to read the file behind Kodi's artwork)


@pytest.mark.parametrize("player_path, expected", [
    ("smb://nas/movies/Heat (1995)/poster.jpg", "/data/media/movies/Heat (1995)/poster.jpg"),
    ("SMB://nas/movies/Heat (1995)/poster.jpg", "/data/media/movies/Heat (1995)/poster.jpg"),
    ("smb://nas/movies/", "/data/media/movies"),
    ("D:\\TV\\Dark\\season01-poster.jpg", "/data/media/tv/Dark/season01-poster.jpg"),
    ("nfs://nas/export/my%20films/Ran%20(1985)/fanart.jpg",
     "/data/media/films/Ran (1985)/fanart.jpg"),
    ("/mnt/uhd/Heat/poster.jpg", "C:\\Media\\UHD\\Heat\\poster.jpg"),
])
def test_unmap_path_uses_the_longest_player_side_prefix_and_metarrs_separator(
        player_path, expected):
    maps = [M("/data/media/movies", "smb://nas/movies"), M("/data/media/tv", "D:\\TV"),
            M("/data/media/films", "nfs://nas/export/my%20films"),
            M("C:\\Media\\UHD", "/mnt/uhd"), M("/data/media", "smb://nas")]
    assert unmap_path(player_path, maps) == expected


def test_unmap_path_is_the_inverse_of_map_path():
    maps = [M("/data/media/movies", "smb://nas/movies"), M("/data/media", "/srv/all"),
            M("/data/media/films", "nfs://nas/my%20films")]
    for path in ("/data/media/movies/Heat (1995)/Heat (1995)-poster.jpg",
                 "/data/media/tv/Dark/Season 01/Dark - S01E01-thumb.jpg",
                 "/data/media/films/Ça & Co (2001)/fanart.jpg"):
        assert unmap_path(map_path(path, maps)[0], maps) == path


def test_unmap_path_needs_a_whole_component_match():
    maps = [M("/data/media/movies", "smb://nas/movies")]
    assert unmap_path("smb://nas/movies4k/Heat/poster.jpg", maps) is None
    assert unmap_path("smb://other/movies/Heat/poster.jpg", maps) is None
    assert unmap_path("http://image.tmdb.org/t/p/original/x.jpg", maps) is None
    assert unmap_path("DefaultVideo.png", maps) is None
    assert unmap_path("", maps) is None


def test_unmap_path_refuses_dot_dot_also_when_percent_encoded():
    maps = [M("/data/media/movies", "smb://nas/movies"), M("/data/tv", "nfs://nas/t%20v")]
    assert unmap_path("smb://nas/movies/../secret/x.jpg", maps) is None
    assert unmap_path("nfs://nas/t%20v/%2e%2e/x.jpg", maps) is None
    assert unmap_path("nfs://nas/t%20v/a%2fb.jpg", maps) is None


def test_unmap_path_without_mappings_keeps_local_absolute_paths_only():
    assert unmap_path("/data/media/movies/Heat/poster.jpg", []) == \
        "/data/media/movies/Heat/poster.jpg"
    assert unmap_path("C:\\Media\\poster.jpg", []) == "C:\\Media\\poster.jpg"
    assert unmap_path("smb://nas/movies/Heat/poster.jpg", []) is None
    assert unmap_path("DefaultVideo.png", []) is None
