"""Property-based tests (hypothesis) for path mapping and config loading.

- Mapping never raises anything but MappingError, never produces a path outside the
  player root it claims (also not through `..`), always picks the longest whole-component
  prefix, and round-trips unusual names (spaces, &, #, %, +, unicode) into POSIX, Windows
  and URL-style (smb://, percent-encoded or not) player roots.
- Loading any text or any TOML document raises nothing but ConfigError, and whatever
  loads has usable values.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from urllib.parse import unquote

import tomli_w
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from metarr_sync.config import ConfigError, Mapping, load_config, parse_config
from metarr_sync.metarr import Item
from metarr_sync.paths import PathStyle, is_under, strip_trailing
from metarr_sync.plan import MappingError, build_plan, map_path

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

# Names as they occur in media libraries, with the characters that break naive code.
TRICKY = [" ", "&", "#", "%", "+", "'", ",", "(", ")", "[", "]", "!", "é", "ß", "日本",
          "Ω", "🎬", "%20", "a b", "~", "=", ";", "@", "$"]
_letters = st.characters(blacklist_characters="/\\\x00", blacklist_categories=("Cs",))
name = st.lists(st.one_of(st.sampled_from(TRICKY), st.text(_letters, min_size=1, max_size=6)),
                min_size=1, max_size=4).map("".join).filter(
    lambda n: n not in (".", "..") and n.strip() == n and n != "")
names = st.lists(name, min_size=1, max_size=4)

ROOTS = ["/mnt/media", "/", "D:\\Media", "D:\\", "\\\\nas\\media", "smb://nas/media",
         "smb://nas/My%20Media", "nfs://host/export/media", "smb://nas/"]
_WINDOWS_BAD = re.compile(r'[<>:"|?*\x00-\x1f]')


def rest_of(player_path: str, root: str) -> list[str]:
    """The components of `player_path` below `root`, decoded as the player would."""
    style = PathStyle.of(root)
    base = strip_trailing(root)
    assert player_path.startswith(base), (player_path, base)
    tail = player_path[len(base):]
    parts = [p for p in tail.split(style.sep) if p]
    return [unquote(p) for p in parts] if style.encoded else parts


@SETTINGS
@given(prefix=names, rest=names, root=st.sampled_from(ROOTS))
@example(prefix=["data", "media"], rest=["Amélie & Co #1 (2001)", "100% + more.mkv"],
         root="smb://nas/My%20Media")
@example(prefix=["data"], rest=["Movies 4K", "Léon (1994)", "Léon (1994).mkv"],
         root="D:\\Media")
@example(prefix=["data"], rest=["new\nline"], root="smb://nas/media")
def test_unusual_names_round_trip_into_every_root_style(prefix, rest, root):
    metarr_root = "/" + "/".join(prefix)
    path = metarr_root + "/" + "/".join(rest)
    try:
        player_path, player_root = map_path(path, [Mapping(metarr_root, root)])
    except MappingError as exc:
        # Only a name a Windows player cannot hold may be refused.
        assert PathStyle.of(root).sep == "\\" and any(_WINDOWS_BAD.search(n) for n in rest), exc
        return
    assert player_root == strip_trailing(root)
    assert is_under(player_path, player_root)
    assert rest_of(player_path, root) == rest
    style = PathStyle.of(root)
    other = "/" if style.sep == "\\" else "\\"
    assert other not in player_path[len(strip_trailing(root)):] or style.url


segment = st.sampled_from(["data", "media", "movies", "movies4k", "tv", "Movies", "a", "b"])


@SETTINGS
@given(prefixes=st.lists(st.lists(segment, min_size=1, max_size=3), min_size=1, max_size=5,
                         unique_by=tuple),
       path=st.lists(segment, min_size=1, max_size=5))
def test_the_longest_whole_component_prefix_wins(prefixes, path):
    mappings = [Mapping("/" + "/".join(p), f"/player{i}") for i, p in enumerate(prefixes)]
    full = "/" + "/".join(path)
    covering = [p for p in prefixes if path[:len(p)] == p]
    try:
        player_path, root = map_path(full, mappings)
    except MappingError:
        assert not covering or any(len(p) == len(path) for p in covering)
        return
    best = max(covering, key=len)
    assert root == f"/player{prefixes.index(best)}"
    assert player_path == root + "".join("/" + s for s in path[len(best):])


_any_path = st.lists(st.sampled_from(["data", "movies", "..", ".", "", "x y", "a\\b", "C:",
                                      "smb:", "%2e%2e", "~"]), max_size=6).map(
    lambda parts: "/" + "/".join(parts))


@SETTINGS
@given(path=st.one_of(_any_path, st.text(max_size=30)),
       mappings=st.lists(st.tuples(st.one_of(_any_path, st.text(max_size=10)),
                                   st.sampled_from(ROOTS)), max_size=3))
@example(path="/data/movies/../../etc/passwd", mappings=[("/data/movies", "/mnt/movies")])
@example(path="/data/movies/./x/../..", mappings=[("/data/movies", "smb://nas/movies")])
def test_mapping_never_escapes_the_root_it_claims(path, mappings):
    try:
        player_path, root = map_path(path, [Mapping(m, p) for m, p in mappings])
    except MappingError:
        return
    assert is_under(player_path, root)
    below = [p for p in re.split(r"[\\/]", player_path[len(strip_trailing(root)):]) if p]
    assert ".." not in below and "." not in below, (path, player_path)


kinds = st.sampled_from(["movie", "series", "episode"])


@SETTINGS
@given(items=st.lists(st.tuples(kinds, st.one_of(_any_path, st.text(max_size=20)),
                                st.booleans()), max_size=8),
       mappings=st.lists(st.tuples(_any_path, st.sampled_from(ROOTS)), max_size=3),
       batch=st.integers(min_value=-2, max_value=5))
def test_planning_never_raises_and_keeps_every_target_inside_its_root(items, mappings, batch):
    work = [Item(kind=k, id=n, path=p, title="t", series_path=p if k != "movie" else None,
                 removed=r) for n, (k, p, r) in enumerate(items)]
    plan = build_plan(work, [Mapping(m, p) for m, p in mappings], batch)
    assert len(plan.targets) + len(plan.errors) == len(work)
    for target in plan.targets:
        assert is_under(target.path, target.root) and is_under(target.folder, target.root)
        assert all(len(b) <= max(1, batch) for b in plan.batches)


# --- configuration ----------------------------------------------------------------------

toml_scalar = st.one_of(st.booleans(), st.integers(min_value=-2**63, max_value=2**63 - 1),
                        st.floats(), st.text(max_size=12))
toml_value = st.recursive(toml_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8)

VALID = {
    "metarr": {"database": "/opt/metarr/data/metarr.sqlite"},
    "sync": {"batch_size": 100, "timeout": 30, "retry_attempts": 3},
    "groups": {"room": {"sync_mode": "parallel"}},
    "players": {
        "lounge": {"type": "kodi", "url": "http://10.0.0.2:8080", "group": "room",
                   "username": "kodi", "password": "pw",
                   "mappings": [{"metarr": "/data", "player": "smb://nas/data"}]},
        "plex": {"type": "plex", "url": "http://plex:32400", "token": "tok",
                 "scan_delay": 0.5},
    },
}


def paths_of(doc: dict, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found += paths_of(value, prefix + (key,))
    return found


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict:
    """The valid example with one value replaced or one key added, anywhere in it."""
    import copy

    doc = copy.deepcopy(VALID)
    where = draw(st.sampled_from(paths_of(doc)))
    parent = doc
    for key in where[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        parent[where[-1]] = draw(toml_value)
    else:
        parent[draw(st.text(min_size=1, max_size=10))] = draw(toml_value)
    return doc


def assert_usable(config) -> None:
    """What the engine relies on in every config that loads."""
    s = config.sync
    assert s.batch_size >= 1 and s.retry_attempts >= 0
    assert math.isfinite(s.timeout) and 0 < s.timeout <= 3600
    s.lookback_seconds()
    for player in config.players.values():
        assert player.url.startswith(("http://", "https://"))
        assert math.isfinite(player.scan_delay) and player.scan_delay >= 0
        assert all(isinstance(m.metarr, str) and isinstance(m.player, str)
                   for m in player.mappings)
        assert player.group is None or player.group in config.groups


def load_document(tmp_path: Path, doc: dict):
    path = tmp_path / "config.toml"
    try:
        path.write_text(tomli_w.dumps(doc))
    except (TypeError, ValueError):
        assume(False)  # not representable as TOML (e.g. a NUL in a key)
    path.chmod(0o600)
    return load_config(path, secrets=False)


@SETTINGS
@given(doc=mutated_documents())
@example(doc={**VALID, "sync": {"timeout": math.nan}})
@example(doc={**VALID, "sync": {"timeout": math.inf}})
@example(doc={**VALID, "sync": {"timeout": 1e300}})
def test_any_mutation_of_a_valid_config_loads_or_raises_config_error(tmp_path, doc):
    try:
        config = load_document(tmp_path, doc)
    except ConfigError as exc:
        assert exc.problems and all(p.startswith(str(tmp_path)) for p in exc.problems)
        return
    assert_usable(config)


@SETTINGS
@given(doc=st.dictionaries(st.sampled_from(["metarr", "sync", "groups", "players", "x"]),
                           toml_value, max_size=4))
def test_any_document_parses_or_raises_config_error(doc):
    try:
        config = parse_config(doc, Path("/etc/metarr-sync/config.toml"))
    except ConfigError as exc:
        assert exc.problems
        return
    assert_usable(config)


@SETTINGS
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
@example(text='[players.a]\ntype = "kodi"\n[players.a]\n')
@example(text=b"\xff\xfe[sync]")
def test_any_file_content_loads_or_raises_config_error(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "replace"))
    try:
        assert_usable(load_config(path, secrets=False))
    except ConfigError as exc:
        assert all(p.startswith(str(path)) for p in exc.problems)
