"""The path rules of paths.py, table by table: separators, trailing separators, Windows
drives and UNC shares, URLs, whole components, and which comparisons ignore case."""

from __future__ import annotations

import pytest

from metarr_sync.paths import (
    EXACT,
    WINDOWS,
    WINDOWS_OR_URL,
    MappingError,
    PathStyle,
    ancestor,
    collapse_folders,
    common_tail,
    compare_key,
    components,
    components_below,
    folder_of,
    is_absolute_any,
    is_local_absolute,
    is_under,
    is_url,
    is_windows,
    join,
    order_key,
    parent,
    same_place,
    split,
    strip_trailing,
    with_trailing,
)


@pytest.mark.parametrize(("path", "names"), [
    ("/media/movies/Heat", ["media", "movies", "Heat"]),
    ("/media//movies/", ["media", "movies"]),  # doubled and trailing separators
    ("S:\\Movies\\Heat", ["S:", "Movies", "Heat"]),  # the drive is a name like any other
    ("S:/Movies\\Heat", ["S:", "Movies", "Heat"]),  # both separators, mixed
    ("\\\\nas\\share\\Movies", ["nas", "share", "Movies"]),  # UNC
    ("smb://nas/share", ["smb:", "nas", "share"]),  # split knows no URLs
    ("/", []),
    ("", []),
])
def test_split_cuts_at_both_separators_and_drops_empty_names(path, names):
    assert split(path) == names


@pytest.mark.parametrize(("path", "parts"), [
    ("SMB://nas/Movies/", ["smb://", "nas", "Movies"]),  # scheme lower case, one component
    ("nfs://nas//x", ["nfs://", "nas", "x"]),
    ("/media/movies", ["media", "movies"]),
    ("\\\\nas\\share", ["nas", "share"]),
])
def test_components_treat_a_url_scheme_as_one_component(path, parts):
    assert components(path) == parts


@pytest.mark.parametrize(("path", "root", "under"), [
    ("/media/movies/Heat", "/media/movies", True),
    ("/media/movies", "/media/movies", True),  # a folder is under itself
    ("/media/movies/", "/media/movies", True),  # trailing separators do not count
    ("/media/movies", "/media/movies//", True),
    ("/media/movies2/Heat", "/media/movies", False),  # a prefix that is not a parent
    ("/media/movie", "/media/movies", False),
    ("/media", "/media/movies", False),  # the parent is not under its child
    ("/Media/movies/Heat", "/media/movies", False),  # EXACT: case matters
    ("S:\\Movies\\Heat", "S:\\Movies", True),
    ("S:/Movies/Heat", "S:\\Movies", True),  # either separator
    ("s:\\movies\\Heat", "S:\\Movies", False),  # EXACT even on Windows paths
    ("S:\\Movies4K\\Heat", "S:\\Movies", False),
    ("\\\\nas\\share\\Movies\\Heat", "\\\\nas\\share", True),  # UNC
    ("\\\\nas\\share2\\x", "\\\\nas\\share", False),
    ("\\\\nas\\share\\x", "/nas/share", True),  # UNC and POSIX compare alike
    ("smb://nas/Movies/Heat", "SMB://nas/Movies", True),  # the scheme ignores case
    ("smb://NAS/Movies/Heat", "smb://nas/Movies", False),  # the host does not
    ("smb://nas/Movies4K/x", "smb://nas/Movies", False),
    ("nfs://nas/Movies/x", "smb://nas/Movies", False),
    ("smb://nas/a%20b/x", "smb://nas/a b", False),  # escapes compared as they are
    ("/anything", "/", True),  # every absolute path is under the root
])
def test_is_under_compares_whole_components_exactly(path, root, under):
    assert is_under(path, root) is under
    assert is_under(path, root, EXACT) is under


@pytest.mark.parametrize(("path", "root", "case", "under"), [
    ("s:\\movies\\Heat", "S:\\Movies", WINDOWS, True),  # Windows: case ignored
    ("S:/MOVIES/Heat", "s:\\movies", WINDOWS, True),
    ("\\\\NAS\\Share\\x", "\\\\nas\\share", WINDOWS, True),  # UNC is Windows-spelled
    ("/Media/movies/x", "/media/movies", WINDOWS, False),  # POSIX: exact
    ("smb://NAS/Movies/x", "smb://nas/movies", WINDOWS, False),  # a URL is not Windows
    ("smb://NAS/Movies/x", "smb://nas/movies", WINDOWS_OR_URL, True),  # ... but SMB here
    ("/Media/movies/x", "/media/movies", WINDOWS_OR_URL, False),
    ("S:\\Movies4K\\x", "s:\\movies", WINDOWS_OR_URL, False),  # still whole components
    # Each side is folded by its own spelling, and an exact match always counts.
    ("\\Data\\x", "/data", WINDOWS_OR_URL, True),
    ("\\data\\x", "/Data", WINDOWS_OR_URL, False),
    ("\\Data\\x", "/Data", WINDOWS_OR_URL, True),
])
def test_a_case_rule_folds_the_paths_it_names(path, root, case, under):
    assert is_under(path, root, case) is under


@pytest.mark.parametrize(("a", "b", "case", "same"), [
    ("/media/movies/", "/media/movies", EXACT, True),
    ("/media/movies", "/media/movies2", EXACT, False),
    ("S:\\Movies", "s:\\movies\\", EXACT, False),
    ("S:\\Movies", "s:\\movies\\", WINDOWS_OR_URL, True),
    ("smb://nas/TV", "smb://nas/tv", WINDOWS_OR_URL, True),
])
def test_same_place_means_each_under_the_other(a, b, case, same):
    assert same_place(a, b, case) is same


@pytest.mark.parametrize(("path", "case", "expected"), [
    ("/media/Movies/", EXACT, ("media", "Movies")),
    ("/media/Movies/", WINDOWS, ("media", "Movies")),  # POSIX: exact
    ("S:\\Movies\\Heat", WINDOWS, ("s:", "movies", "heat")),
    ("S:/Movies/Heat", WINDOWS, ("s:", "movies", "heat")),
    ("\\\\NAS\\Share", WINDOWS, ("nas", "share")),
])
def test_compare_key_is_the_names_folded_by_the_rule(path, case, expected):
    assert compare_key(path, case) == expected


@pytest.mark.parametrize(("path", "root", "case", "below"), [
    ("/media/movies/Heat/Heat.mkv", "/media/movies", EXACT, ["Heat", "Heat.mkv"]),
    ("/media/movies", "/media/movies/", EXACT, []),
    ("/media/movies2/Heat", "/media/movies", EXACT, None),
    ("s:/movies/Heat", "S:\\Movies", WINDOWS, ["Heat"]),  # the path's own spelling kept
    ("S:\\Movies\\Heat", "s:\\movies", WINDOWS, ["Heat"]),
    ("/Media/x", "/media", WINDOWS, None),  # the root decides, and it is POSIX
    ("S:\\Movies\\x", "S:\\", WINDOWS, ["Movies", "x"]),  # a drive root
])
def test_components_below(path, root, case, below):
    assert components_below(path, root, case) == below


@pytest.mark.parametrize(("a", "b", "count"), [
    ("/data/media/Movies", "S:\\Movies", 1),  # always without regard to case...
    ("/data/media/movies", "\\\\nas\\Media\\MOVIES", 2),
    ("/data/movies/", "/mnt/movies", 1),  # ... nor trailing separators
    ("/data/movies", "/data/tv", 0),
])
def test_common_tail_counts_trailing_names_ignoring_case(a, b, count):
    assert common_tail(a, b) == count


@pytest.mark.parametrize(("path", "stripped"), [
    ("/media/movies/", "/media/movies"),
    ("/media/movies//", "/media/movies"),
    ("/media/movies", "/media/movies"),
    ("/", "/"),
    ("//", "/"),
    ("S:\\Movies\\", "S:\\Movies"),
    ("S:\\", "S:\\"),  # a drive root keeps its separator
    ("S:", "S:\\"),
    ("S:/", "S:\\"),
    ("\\\\nas\\share\\", "\\\\nas\\share"),
    ("smb://nas/movies/", "smb://nas/movies"),
    ("smb://", "smb://"),
])
def test_strip_trailing_keeps_roots_whole(path, stripped):
    assert strip_trailing(path) == stripped


@pytest.mark.parametrize(("path", "style", "expected"), [
    ("/media/movies", None, "/media/movies/"),
    ("/media/movies//", None, "/media/movies/"),
    ("S:\\Movies", None, "S:\\Movies\\"),
    ("S:\\", None, "S:\\"),
    ("\\\\nas\\share", None, "\\\\nas\\share\\"),
    ("smb://nas/movies", None, "smb://nas/movies/"),
    ("D:\\Movies\\Heat", PathStyle("\\"), "D:\\Movies\\Heat\\"),
])
def test_with_trailing_ends_in_one_separator_of_the_style(path, style, expected):
    assert with_trailing(path, style) == expected


@pytest.mark.parametrize(("root", "style"), [
    ("/media/movies", PathStyle("/")),
    ("S:\\Movies", PathStyle("\\")),
    ("S:", PathStyle("\\")),
    ("\\\\nas\\share", PathStyle("\\")),
    ("smb://nas/movies", PathStyle("/", url=True)),
    ("smb://nas/my%20movies", PathStyle("/", url=True, encoded=True)),
])
def test_the_style_of_a_root(root, style):
    assert PathStyle.of(root) == style


@pytest.mark.parametrize(("root", "names", "joined"), [
    ("/mnt/movies", ["Heat (1995)", "Heat.mkv"], "/mnt/movies/Heat (1995)/Heat.mkv"),
    ("/", ["x"], "/x"),
    ("S:\\Movies\\", ["Heat"], "S:\\Movies\\Heat"),
    ("S:\\", ["Movies"], "S:\\Movies"),  # never S:\\\\Movies
    ("\\\\nas\\share", ["Heat"], "\\\\nas\\share\\Heat"),
    ("smb://nas/movies", ["a b"], "smb://nas/movies/a b"),
    ("smb://nas/my%20movies", ["a b#1"], "smb://nas/my%20movies/a%20b%231"),
    ("/mnt/movies", [], "/mnt/movies"),
])
def test_join_spells_names_in_the_roots_style(root, names, joined):
    assert join(root, names) == joined


def test_join_refuses_a_name_a_windows_player_cannot_hold():
    with pytest.raises(MappingError, match="cannot exist on a Windows player"):
        join("S:\\Movies", ["What?"])
    assert join("/movies", ["What?"]) == "/movies/What?"


@pytest.mark.parametrize(("path", "sep", "up"), [
    ("/media/movies/Heat/", "/", "/media/movies"),
    ("/media", "/", "/"),
    ("/", "/", "/"),
    ("S:\\Movies\\Heat", "\\", "S:\\Movies"),
    ("S:\\Movies", "\\", "S:\\"),  # a drive root keeps its separator
    ("S:\\", "\\", "S:\\"),
    ("\\\\nas\\share\\x", "\\", "\\\\nas\\share"),
    ("smb://nas/movies", "/", "smb://nas"),
    ("smb://nas", "/", "smb://nas"),  # the host is the root
])
def test_parent(path, sep, up):
    assert parent(path, PathStyle(sep)) == up


@pytest.mark.parametrize(("path", "levels", "expected"), [
    ("/mnt/movies/Heat/Heat.mkv", 2, "/mnt/movies"),
    ("S:\\Movies\\Heat\\Heat.mkv", 2, "S:\\Movies"),
    ("/Heat/Heat.mkv", 2, "/"),
    ("/Heat.mkv", 2, None),  # not that many names
    ("smb://nas/x/y", 2, "smb://nas"),
])
def test_ancestor(path, levels, expected):
    assert ancestor(path, levels) == expected


@pytest.mark.parametrize(("path", "folder"), [
    ("/data/movies/Heat/Heat.mkv", "/data/movies/Heat"),
    ("/data/movies/Heat/", "/data/movies"),
    ("/Heat.mkv", "/"),
    ("C:\\Movies\\Heat.mkv", "C:\\Movies"),
    ("C:\\Movies", "C:"),  # no separator kept: this is for Metarr-side paths on disk
    ("Heat.mkv", "Heat.mkv"),
])
def test_folder_of(path, folder):
    assert folder_of(path) == folder


@pytest.mark.parametrize(("path", "url", "windows", "local", "absolute"), [
    ("/data/x", False, False, True, True),
    ("C:\\x", False, True, True, True),
    ("C:/x", False, True, True, True),
    ("C:x", False, True, False, False),  # relative to the drive's current folder
    ("\\\\nas\\share", False, True, False, True),
    ("smb://nas/x", True, False, False, True),
    ("data/x", False, False, False, False),
    ("a\\b", False, True, False, False),
])
def test_kinds_of_path(path, url, windows, local, absolute):
    assert (is_url(path), is_windows(path), is_local_absolute(path),
            is_absolute_any(path)) == (url, windows, local, absolute)


def test_collapse_keeps_outermost_folders_by_whole_components():
    folders = ["/tv/Show/Season 01", "/tv/Show", "/tv/Show-2/Season 01", "/movies/A/",
               "/movies/A", "/movies2/B", "smb://nas/x/y", "SMB://nas/x"]
    # In the order of their components (`smb://` sorts before `tv`).
    assert collapse_folders(folders) == ["/movies/A", "/movies2/B", "SMB://nas/x",
                                         "/tv/Show", "/tv/Show-2/Season 01"]


def test_order_key_sorts_component_by_component():
    paths = ["/a b/x", "/a/x", "/a-b/x", "/a/x/y"]
    assert sorted(paths, key=order_key) == ["/a/x", "/a/x/y", "/a b/x", "/a-b/x"]
