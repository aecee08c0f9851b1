"""`players test` warns about the players' own settings that silently defeat Metarr.

Through the installed command against the fake players, whose settings have the shapes
of the players' APIs (Jellyfin's LibraryOptions from its OpenAPI specs 10.11/12.0, Plex's
section `agent`, Kodi's Profiles.*): each warning appears when the setting is wrong, with
its fix, in the table and in --json, and is absent once the setting is right. A warning
keeps exit code 0: the player works, it is its setting that needs a person.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.configs import config_with
from support.fake_players import FakeJellyfin, FakeKodi, FakePlex, JellyfinLibrary, PlexSection


def _test(cli: Any, *args: str) -> tuple[int, dict[str, Any], str]:
    """`players test` once with --json and once as a table: exit code, report, table."""
    report = cli("players", "test", *args, "--json")
    assert report.returncode in (0, 1), report.stderr
    table = cli("players", "test", *args)
    assert table.returncode == report.returncode, table.stderr
    return report.returncode, json.loads(report.stdout), table.stdout


def _steps(report: dict[str, Any], player: str) -> dict[str, dict[str, Any]]:
    (entry,) = [p for p in report["players"] if p["name"] == player]
    return {step["name"]: step for step in entry["steps"]}


def _table_row(table: str, step: str) -> str:
    """The cells of one step's table row, its wrapped lines joined: result, then detail."""
    rows: list[list[str]] = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) != 6:
            continue  # a border, the title or the summary
        if cells[2] or not rows:
            rows.append(cells[2:5])
        else:  # a wrapped line of the row above
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells[2:5], strict=True)]
    (row,) = [r for r in rows if r[0] == step]
    return f"{row[1]} | {row[2]}"


# --- Jellyfin / Emby --------------------------------------------------------------------

def test_jellyfin_library_saving_its_own_nfo_is_a_warning_with_its_fix(cli):
    movies = JellyfinLibrary("Movies", "movies", ["/media/movies"],
                             options={"MetadataSavers": ["Nfo"]})
    shows = JellyfinLibrary("Shows", "tvshows", ["/media/tv"])
    with FakeJellyfin(libraries=[movies, shows]) as jellyfin:
        cli.write_config(config_with(players=[jellyfin.player("den")]))
        code, report, table = _test(cli)
        assert code == 0  # a warning is not a failed step
        assert report["ok"] is True and report["warnings"] == 1
        steps = _steps(report, "den")
        assert steps["library Movies: NFO"] == {
            "name": "library Movies: NFO", "ok": True, "warning": True,
            "detail": "Jellyfin writes its own NFO files over Metarr's (metadata saver "
                      "\"Nfo\" is on)",
            "fix": "Dashboard → Libraries → Movies → Manage library: untick \"Nfo\" under "
                   "Metadata savers"}
        assert steps["library Shows: NFO"]["warning"] is False
        assert steps["library Shows: NFO"]["fix"] is None
        row = _table_row(table, "library Movies: NFO")
        assert "WARNING" in row and "fix: Dashboard → Libraries → Movies" in row
        assert "WARNING" not in _table_row(table, "library Shows: NFO")
        assert table.rstrip().endswith("1 of 1 player(s) passed; 1 warning(s) about player "
                                       "settings that defeat Metarr, each with its fix.")

        movies.options = {"MetadataSavers": []}  # the user unticked it
        code, report, table = _test(cli)
        assert code == 0 and report["warnings"] == 0
        assert _steps(report, "den")["library Movies: NFO"]["warning"] is False
        assert "WARNING" not in table
        assert table.rstrip().endswith("1 of 1 player(s) passed.")
        # Read-only: nothing was reported or refreshed.
        assert jellyfin.updates == [] and jellyfin.refreshed == []


def test_jellyfin_library_without_chosen_savers_saving_local_metadata_is_a_warning(cli):
    """A library not saved since MetadataSavers came (null) falls back to
    SaveLocalMetadata: Jellyfin's NFO saver then runs."""
    movies = JellyfinLibrary("Movies", "movies", ["/media/movies"],
                             options={"MetadataSavers": None, "SaveLocalMetadata": True})
    with FakeJellyfin(libraries=[movies]) as jellyfin:
        cli.write_config(config_with(players=[jellyfin.player("den")]))
        code, report, _ = _test(cli)
        assert code == 0 and report["warnings"] == 1
        step = _steps(report, "den")["library Movies: NFO"]
        assert step["warning"] is True and "may write its own NFO" in step["detail"]

        movies.options = {"MetadataSavers": None, "SaveLocalMetadata": False}
        code, report, _ = _test(cli)
        assert code == 0 and report["warnings"] == 0


def test_nfo_reader_switched_off_warns_on_emby_only(cli):
    """Jellyfin never reads DisabledLocalMetadataReaders (its NFO reader always runs):
    no warning there. Emby's library editor does switch readers off."""
    options = {"DisabledLocalMetadataReaders": ["Nfo"]}
    libraries = [JellyfinLibrary("Movies", "movies", ["/media/movies"], options=options)]
    with FakeJellyfin(libraries=libraries) as jellyfin, \
            FakeJellyfin(libraries=[JellyfinLibrary("Films", "movies", ["/media/films"],
                                                    options=dict(options))],
                         emby=True) as emby:
        cli.write_config(config_with(players=[jellyfin.player("den"), emby.player("attic")]))
        code, report, table = _test(cli)
        assert code == 0 and report["warnings"] == 1
        assert _steps(report, "den")["library Movies: NFO"]["warning"] is False
        step = _steps(report, "attic")["library Films: NFO"]
        assert step["warning"] is True
        assert step["detail"] == ("Emby does not read Metarr's NFO files (metadata reader "
                                  "\"Nfo\" is off)")
        assert step["fix"] == ("Settings → Library → Films → Manage library: tick \"Nfo\" "
                               "under Metadata readers")
        assert "WARNING" in _table_row(table, "library Films: NFO")

        emby.libraries[0].options = {"DisabledLocalMetadataReaders": []}
        code, report, _ = _test(cli, "attic")
        assert code == 0 and report["warnings"] == 0


# --- Plex -------------------------------------------------------------------------------

def test_plex_sections_on_agents_that_ignore_nfo_are_warnings_naming_the_nfo_agent(cli):
    movies = PlexSection("1", "movie", "Movies", ["/media/movies"])  # Plex Movie: default
    shows = PlexSection("2", "show", "TV Shows", ["/media/tv"],
                        agent="com.plexapp.agents.thetvdb")
    music = PlexSection("3", "artist", "Music", ["/media/music"],
                        agent="tv.plex.agents.music")
    with FakePlex(sections=[movies, shows, music]) as plex:
        cli.write_config(config_with(players=[plex.player("living")]))
        code, report, table = _test(cli)
        assert code == 0 and report["ok"] is True and report["warnings"] == 2
        steps = _steps(report, "living")
        assert steps["library Movies: agent"]["warning"] is True
        assert steps["library Movies: agent"]["detail"].startswith(
            "agent Plex Movie does not read NFO files: a refresh takes titles and plots "
            "from online sources instead of Metarr's NFO")
        assert steps["library Movies: agent"]["fix"] == (
            "Plex Web → Settings → Manage → Libraries → Movies → Edit → Advanced → Agent: "
            "Plex NFO Movie (Plex Media Server 1.43.1 or newer)")
        assert steps["library TV Shows: agent"]["detail"].startswith(
            "agent TheTVDB does not read NFO files")
        assert steps["library TV Shows: agent"]["fix"].endswith(
            "Agent: Plex NFO Series (Plex Media Server 1.43.1 or newer)")
        assert "library Music: agent" not in steps  # Metarr writes no NFO for music
        assert "WARNING" in _table_row(table, "library Movies: agent")
        assert "fix: Plex Web → Settings" in _table_row(table, "library TV Shows: agent")

        movies.agent, shows.agent = "tv.plex.agents.nfo.movie", "tv.plex.agents.nfo.series"
        code, report, table = _test(cli)
        assert code == 0 and report["warnings"] == 0
        steps = _steps(report, "living")
        assert steps["library Movies: agent"] == {
            "name": "library Movies: agent", "ok": True, "warning": False, "fix": None,
            "detail": "Plex NFO Movie reads Metarr's NFO files"}
        assert steps["library TV Shows: agent"]["detail"] == (
            "Plex NFO Series reads Metarr's NFO files")
        assert "WARNING" not in table
        assert plex.scans == [] and plex.refreshed == []


# --- Kodi -------------------------------------------------------------------------------

def test_kodi_with_several_profiles_warns_which_one_gets_the_updates(cli):
    with FakeKodi() as kodi:
        kodi.profiles = ["Master user", "Kids"]
        kodi.profile = "Kids"
        cli.write_config(config_with(players=[kodi.player("lounge")]))
        code, report, table = _test(cli)
        assert code == 0 and report["warnings"] == 1
        steps = _steps(report, "lounge")
        assert steps["profile"]["warning"] is True
        assert steps["profile"]["detail"] == (
            "Kids is loaded, one of 2 profiles: only its library gets Metarr's updates; "
            "Master user miss them unless they share its library")
        assert "keep the profile whose library people watch loaded" in steps["profile"]["fix"]
        assert "WARNING" in _table_row(table, "profile")
        # The scraper of a source is not readable over JSON-RPC: said, not guessed.
        scrapers = steps["source scrapers"]
        assert scrapers["warning"] is False and scrapers["ok"] is True
        assert scrapers["detail"].startswith("not readable over JSON-RPC")
        assert "\"Local information only\"" in scrapers["fix"]

        kodi.profiles = ["Master user"]
        kodi.profile = "Master user"
        code, report, table = _test(cli)
        assert code == 0 and report["warnings"] == 0
        assert _steps(report, "lounge")["profile"] == {
            "name": "profile", "ok": True, "warning": False, "fix": None,
            "detail": "Master user (the only profile)"}
        assert "WARNING" not in table
        assert kodi.scans == [] and kodi.refreshed == []


@pytest.mark.parametrize("fault", ["jsonrpc_error", "html"])
def test_kodi_settings_that_cannot_be_read_are_a_warning_not_a_failure(cli, fault):
    with FakeKodi() as kodi:
        cli.write_config(config_with(players=[kodi.player("lounge")]))
        kodi.misbehave(fault, match="Profiles.GetProfiles")
        result = cli("players", "test", "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["ok"] is True and report["warnings"] == 1
        step = _steps(report, "lounge")["player settings"]
        assert step["ok"] is True and step["warning"] is True
        assert step["detail"].startswith("could not be read: ")
        assert "profile" not in _steps(report, "lounge")
