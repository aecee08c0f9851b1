"""The catalogue of player types (metarr_sync/player_types.py) drives validation, import
and adapters, and importing it (or the config) loads no adapter and no import cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from metarr_sync import player_types as kinds
from metarr_sync.config import ConfigError, PlayerConfig, parse_config, to_document
from metarr_sync.importer import player_url

PACKAGE = Path(kinds.__file__).parent


def problems_of(doc: dict, tmp_path: Path) -> list[str]:
    path = tmp_path / "config.toml"
    try:
        parse_config(doc, path)
    except ConfigError as exc:
        return [p.removeprefix(f"{path}: ") for p in exc.problems]
    return []


@pytest.fixture
def acme(monkeypatch):
    """A new player type that exists only as a catalogue entry."""
    kind = kinds.PlayerType("acme", "Acme", "nowhere:AcmePlayer", settings=("concurrency",),
                            credentials=kinds.API_TOKEN, default_port=7000)
    monkeypatch.setitem(kinds.TYPES, "acme", kind)
    monkeypatch.setattr(kinds, "NAMES", (*kinds.NAMES, "acme"))
    return kind


def test_a_type_added_to_the_catalogue_only_is_validated_by_its_entry(acme, tmp_path):
    doc = {"players": {"box": {"type": "acme", "url": "http://box:7000",
                               "concurrency": 0, "scan_timeout": 5}}}
    assert problems_of(doc, tmp_path) == [
        "players.box.scan_timeout: not a setting of acme players",
        "players.box.concurrency: must be between 1 and 16 (refresh requests in flight at "
        "once), not 0",
        "players.box.token: missing (acme needs an API token)",
    ]
    doc = {"players": {"box": {"type": "acme", "url": "http://box:7000", "token": "t",
                               "concurrency": 2}}}
    config = parse_config(doc, tmp_path / "config.toml")
    assert config.players["box"].concurrency == 2
    # Written back with its own setting, which a Kodi player would not take.
    assert to_document(config)["players"]["box"] == {
        "type": "acme", "url": "http://box:7000", "token": "t", "concurrency": 2}
    assert player_url("box.lan", None, "acme") == ("http://box.lan:7000", None)


def test_a_credential_rule_swapped_in_the_catalogue_changes_what_is_required(tmp_path,
                                                                             monkeypatch):
    player = {"type": "plex", "url": "http://plex:32400", "password": "x"}
    assert problems_of({"players": {"p": player}}, tmp_path) == [
        "players.p.token: missing (plex needs an API token)"]
    monkeypatch.setitem(kinds.TYPES, "plex", replace(kinds.TYPES["plex"],
                                                     credentials=kinds.LOGIN))
    assert problems_of({"players": {"p": player}}, tmp_path) == [
        "players.p.username: needed with a password"]


@pytest.mark.parametrize("name", ["jellyfin", "emby", "plex"])
def test_the_servers_need_a_token_and_metarr_import_says_so(name, tmp_path):
    assert problems_of({"players": {"p": {"type": name, "url": "http://s:1"}}},
                       tmp_path) == [f"players.p.token: missing ({name} needs an API token)"]
    rule = kinds.TYPES[name].credentials
    assert rule.metarr_problem(name, username=False, password=False, token=False) == (
        f"Metarr has no API key for it ({name} needs one)")
    assert rule.metarr_problem(name, username=False, password=False, token=True) is None


def test_kodi_needs_no_credentials_but_a_user_name_with_a_password(tmp_path):
    kodi = {"type": "kodi", "url": "http://k:8080"}
    assert problems_of({"players": {"k": kodi}}, tmp_path) == []
    assert problems_of({"players": {"k": {**kodi, "password": "pw"}}}, tmp_path) == [
        "players.k.username: needed with a password"]
    assert kinds.LOGIN.metarr_problem("kodi", username=False, password=True, token=False) == (
        "Metarr has a password for it but no user name")


def test_default_ports_are_the_players_own():
    assert {name: player_url("h", None, name)[0] for name in kinds.NAMES} == {
        "kodi": "http://h:8080", "jellyfin": "http://h:8096", "emby": "http://h:8096",
        "plex": "http://h:32400"}


def test_player_config_defaults_are_the_catalogues():
    player = PlayerConfig(name="p", type="kodi", url="http://k")
    assert {key: getattr(player, key) for key in kinds.SETTINGS} == {
        "analyze": False, "refresh_mode": "default", "scan_delay": 0.0,
        "scan_timeout": 600.0, "max_trash_items": 10, "concurrency": 4,
        "verify_after": 1800.0}


def test_every_builtin_adapter_target_names_a_player_class():
    from metarr_sync.players import adapter_class
    from metarr_sync.players.base import Player

    classes = {name: adapter_class(name).__name__ for name in kinds.NAMES}
    assert classes == {"kodi": "KodiPlayer", "jellyfin": "JellyfinPlayer",
                       "emby": "EmbyPlayer", "plex": "PlexPlayer"}
    assert all(issubclass(adapter_class(name), Player) for name in kinds.NAMES)


def test_plugins_add_types_and_replace_adapters_but_keep_a_builtin_types_rules(
        monkeypatch, tmp_path):
    from metarr_sync.players import adapter_class

    monkeypatch.setenv("METARR_SYNC_PLUGINS",
                       "recorder=support.recorder_player:RecorderPlayer,"
                       "kodi=support.recorder_player:RecorderPlayer")
    assert kinds.known() == ("kodi", "jellyfin", "emby", "plex", "recorder")
    assert adapter_class("recorder").__name__ == "RecorderPlayer"
    assert adapter_class("kodi").__name__ == "RecorderPlayer"
    # The replaced kodi keeps kodi's settings and credential rule; the new type has none.
    assert problems_of({"players": {
        "k": {"type": "kodi", "url": "http://k:1", "password": "pw", "scan_timeout": 9},
        "r": {"type": "recorder", "url": "http://r:1", "scan_timeout": 9},
    }}, tmp_path) == ["players.k.username: needed with a password",
                      "players.r.scan_timeout: not a setting of recorder players"]
    monkeypatch.delenv("METARR_SYNC_PLUGINS")
    assert problems_of({"players": {"r": {"type": "recorder", "url": "http://r:1"}}},
                       tmp_path) == ["players.r.type: unknown player type 'recorder'; "
                                     "expected one of kodi, jellyfin, emby, plex"]


@pytest.mark.parametrize("module", ["metarr_sync.player_types", "metarr_sync.config"])
def test_loading_the_config_loads_neither_requests_nor_an_adapter(module):
    code = (f"import sys, {module}\n"
            "print(sorted(m for m in sys.modules if m == 'requests'"
            " or m.startswith('metarr_sync.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = set(ast.literal_eval(out))
    assert "requests" not in loaded
    assert not {m for m in loaded if m.startswith("metarr_sync.players")}
    if module == "metarr_sync.player_types":
        # The package's __init__ brings its version (a constant) and nothing else.
        assert loaded == {"metarr_sync.version", "metarr_sync.player_types"}


def import_graph() -> dict[str, set[str]]:
    """Which module of the package imports which, counting every import statement: at
    the top, inside functions (lazy) and under TYPE_CHECKING."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                found = [f"{base}.{alias.name}" for alias in node.names]
                if any(f not in modules for f in found):  # names from the module itself
                    found.append(base)
            else:
                continue
            for target in found:
                # A name imported from a package (`from metarr_sync import x`) depends on
                # its __init__, also from inside the package.
                if target in modules and target != name:
                    graph[name].add(target)
                # Importing a submodule runs its package's __init__ first (the packages
                # around the importing module itself have run already).
                while target and target != name:
                    if target in modules and not name.startswith(target + "."):
                        graph[name].add(target)
                    target = target.rpartition(".")[0]
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_finds_a_cycle_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "metarr_sync.player_types" in graph["metarr_sync.config"]
    # Imports under TYPE_CHECKING and inside functions count: the cycle this catalogue
    # removed (config → players → base → config) was made of those.
    assert "metarr_sync.config" in graph["metarr_sync.players.base"]
    assert "metarr_sync.players" in graph["metarr_sync.engine"]


def test_no_module_of_the_package_imports_itself_back():
    graph = import_graph()
    # The whole package, its entry point (metarr_sync/__init__.py, which imports the CLI)
    # included: the version the CLI and the HTTP clients show lives in metarr_sync.version.
    assert "metarr_sync.cli" in graph["metarr_sync"]
    assert cycles(graph) == []
    assert graph["metarr_sync.version"] == set()
    assert graph["metarr_sync.player_types"] == set()


def test_the_version_has_one_source():
    from importlib.metadata import version

    import metarr_sync
    from metarr_sync.version import __version__

    assert metarr_sync.__version__ == __version__
    # pyproject.toml reads it from metarr_sync/version.py (the installed metadata says so).
    assert version("metarr-sync") == __version__
    assert 'attr = "metarr_sync.version.__version__"' in (
        PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8")
