"""The path rules of paths.py, table by table: separators, trailing separators, Windows
drives and UNC shares, URLs, whole components, and which comparisons ignore case."""

from __future__ import annotations

import pytest

from metarr_sync.paths import (
    EXACT,
    PLATFORM,
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
    match_key,
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
    ("\\\\nas\\share", False, True, True, True),  # UNC: a Metarr on Windows reads a NAS
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


# --- comparing as the player's platform does (PLATFORM, NFC) -----------------------------
#: "Amélie" as macOS writes it (NFD: e + combining acute) and as Metarr holds it (NFC).
NFD = "Ame\u0301lie (2001)"
NFC = "Am\u00e9lie (2001)"


def test_the_two_spellings_of_a_name_differ_as_text():
    assert NFD != NFC and len(NFD) == len(NFC) + 1  # else the tables below prove nothing


@pytest.mark.parametrize(("path", "root", "under"), [
    # Windows drive paths ignore case, whichever side is typed otherwise.
    ("D:\\Movies\\Heat\\Heat.mkv", "d:\\movies", True),
    ("d:/movies/Heat", "D:\\Movies", True),
    ("D:\\MOVIES", "d:\\movies\\", True),
    # Whole components still: no false "is under".
    ("D:\\Movies\\Heat", "D:\\Movie", False),
    ("d:\\movies\\Heat", "D:\\Movie", False),
    ("D:\\Movies4K\\x", "d:\\movies", False),
    ("E:\\Movies\\x", "D:\\Movies", False),
    # UNC shares ignore case, host and share included.
    ("\\\\NAS\\Media\\Movies\\x.mkv", "\\\\nas\\media\\movies", True),
    ("\\\\nas\\media\\Movies2\\x", "\\\\NAS\\Media\\Movies", False),
    ("\\\\other\\media\\x", "\\\\nas\\media", False),
    # smb:// URLs ignore case (the SMB server's); other URLs only in their scheme.
    ("smb://NAS/Movies/Heat/Heat.mkv", "smb://nas/movies", True),
    ("SMB://nas/movies/x", "smb://NAS/Movies", True),
    ("smb://nas/Movies2/x", "smb://nas/movies", False),
    ("nfs://nas/Movies/x", "nfs://nas/movies", False),
    ("NFS://nas/movies/x", "nfs://nas/movies", True),
    # POSIX paths stay case-sensitive.
    ("/Media/Movies/x", "/media/movies", False),
    ("/media/movies/x", "/media/Movies", False),
    ("/media/movies/x", "/media/movies", True),
    # NFC and NFD spellings are one name, everywhere.
    (f"/media/movies/{NFD}/x.mkv", f"/media/movies/{NFC}", True),
    (f"/media/movies/{NFC}/x.mkv", f"/media/movies/{NFD}", True),
    (f"D:\\Movies\\{NFD.upper()}\\x.mkv", f"d:\\movies\\{NFC}", True),
    (f"smb://nas/movies/{NFD}", f"smb://NAS/Movies/{NFC.upper()}", True),
    (f"/media/movies/{NFD.upper()}", f"/media/movies/{NFC}", False),  # POSIX: case counts
])
def test_platform_compares_as_the_file_system_holding_the_path(path, root, under):
    assert is_under(path, root, PLATFORM) is under


@pytest.mark.parametrize(("path", "root"), [
    (f"/m/{NFD}/x", f"/m/{NFC}"),
    (f"S:\\{NFC}\\x", f"S:\\{NFD}"),
])
def test_every_rule_compares_names_in_nfc(path, root):
    for case in (EXACT, WINDOWS, WINDOWS_OR_URL, PLATFORM):
        assert is_under(path, root, case)
        assert compare_key(path, case)[:2] == compare_key(root, case)
    assert common_tail(f"/a/{NFD}", f"/b/{NFC}") == 1


@pytest.mark.parametrize(("a", "b", "same"), [
    ("D:\\Movies\\Heat\\Heat.mkv", "d:/movies/heat/HEAT.MKV", True),
    ("D:\\Movies\\", "d:\\movies", True),
    ("\\\\NAS\\Share\\Movies\\x.mkv", "\\\\nas\\share\\movies\\X.MKV", True),
    ("\\\\nas\\share\\x", "D:\\share\\x", False),
    ("smb://NAS/Movies/x.mkv", "smb://nas/movies/X.mkv", True),
    ("SMB://nas/movies/x.mkv", "smb://nas/movies/x.mkv", True),
    ("nfs://nas/Movies/x.mkv", "nfs://nas/movies/x.mkv", False),
    ("/media/Movies/x.mkv", "/media/movies/x.mkv", False),
    ("/media/movies/x.mkv", "/media/movies/x.mkv/", True),
    (f"/media/{NFD}/x.mkv", f"/media/{NFC}/x.mkv", True),
    (f"D:\\{NFD}", f"d:\\{NFC.upper()}", True),
    ("D:\\Movie\\x", "D:\\Movies\\x", False),
])
def test_match_key_is_one_string_per_place(a, b, same):
    assert (match_key(a) == match_key(b)) is same


@pytest.mark.parametrize(("path", "key", "above"), [
    ("/media/Movies/", "/media/Movies", "/media"),  # POSIX: as it is, no trailing `/`
    ("D:/Movies/Heat/", "d:\\movies\\heat", "d:\\movies"),  # Windows: folded, `\` only
    ("\\\\NAS\\Share\\", "\\\\nas\\share", "\\\\nas"),  # UNC keeps its leading `\\`
    ("SMB://NAS/Movies/", "smb://nas/movies", "smb://nas"),
    ("NFS://NAS/Movies", "nfs://NAS/Movies", "nfs://NAS"),  # only the scheme folds
])
def test_match_key_keeps_the_style_of_the_path(path, key, above):
    assert match_key(path) == key
    assert parent(key, PathStyle.of(path)) == above  # a key walks up like a path


@pytest.mark.parametrize(("path", "root", "below"), [
    (f"/m/{NFD}/x.mkv", f"/m/{NFC}", ["x.mkv"]),
    (f"S:\\MOVIES\\{NFD}\\x.mkv", "s:\\movies", [NFD, "x.mkv"]),  # the path's spelling kept
    ("\\\\NAS\\Share\\Movies\\x", "\\\\nas\\share", ["Movies", "x"]),
    ("/Media/x", "/media", None),
])
def test_components_below_compares_in_nfc_and_keeps_the_spelling(path, root, below):
    assert components_below(path, root, PLATFORM) == below


@pytest.mark.parametrize(("metarr_root", "player_root", "item", "sent"), [
    # The player side as configured + the names below as Metarr holds them: an NFD name
    # stays NFD and a Windows prefix typed in lower case still covers the item.
    ("/data/movies", "smb://nas/Movies", f"/data/movies/{NFD}/x.mkv",
     f"smb://nas/Movies/{NFD}/x.mkv"),
    ("D:\\Media\\Movies", "\\\\nas\\share\\movies", f"d:\\media\\movies\\{NFC}\\x.mkv",
     f"\\\\nas\\share\\movies\\{NFC}\\x.mkv"),
    # UNC on both sides: split at `\`, joined with `\`.
    ("\\\\NAS\\Media\\Movies", "\\\\srv\\films", "\\\\nas\\media\\movies\\Heat\\Heat.mkv",
     "\\\\srv\\films\\Heat\\Heat.mkv"),
    ("\\\\nas\\media", "/mnt/media", "\\\\nas\\media\\Movies\\Heat\\Heat.mkv",
     "/mnt/media/Movies/Heat/Heat.mkv"),
])
def test_a_mapped_path_is_the_configured_prefix_and_metarrs_names(
        metarr_root, player_root, item, sent):
    from metarr_sync.config import Mapping
    from metarr_sync.plan import map_path, unmap_path

    mappings = [Mapping(metarr_root, player_root)]
    assert map_path(item, mappings)[0] == sent
    # And back: the Metarr side as configured + the player's names as it spells them.
    back = unmap_path(sent.upper() if is_windows(player_root) else sent, mappings)
    assert back is not None and match_key(back) == match_key(item)


@pytest.mark.parametrize(("item", "mapped"), [
    ("/data/Movies/x.mkv", False),  # POSIX Metarr: the case of the prefix counts
    ("D:\\MEDIA\\x.mkv", True),
])
def test_a_mapping_covers_what_its_file_system_calls_the_same(item, mapped):
    from metarr_sync.config import Mapping
    from metarr_sync.plan import map_path

    mappings = [Mapping("/data/movies", "/m"), Mapping("d:\\media", "/w")]
    if mapped:
        assert map_path(item, mappings)[0] == "/w/x.mkv"
    else:
        with pytest.raises(MappingError, match="no path mapping covers"):
            map_path(item, mappings)


def test_an_unmapped_unc_path_is_its_own_root():
    from metarr_sync.plan import map_path

    assert map_path("\\\\nas\\share\\Movies\\x.mkv", []) == (
        "\\\\nas\\share\\Movies\\x.mkv", "\\\\nas\\share")
