"""What one changed episode costs on a Plex with a big TV section, through the installed
command: its show is found among the section's shows and only that show's episodes are
listed (allLeaves), so the requests do not grow with the section's episodes.

The fake Plex (tests/support/fake_players.py) pages section listings and allLeaves as Plex
does and counts every request it receives.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Cli
from support.configs import config_with
from support.fake_players import FakePlex
from support.metarr_factory import MetarrDB, ago

SYNC = {"timeout": 10, "retry_attempts": 0}

#: Episodes per show of the filler shows (a long-running series)
PER_SHOW = 100


def one_changed_episode(root: Path, episodes: int) -> dict:
    """A Plex whose TV section holds `episodes` episodes (filler shows plus Severance),
    and a Metarr that published one episode of Severance: run, then verify. The requests
    each command made, by endpoint, and what they reported."""
    root.mkdir()
    cli, metarr = Cli(root), MetarrDB(root / "metarr.sqlite")
    plex = FakePlex().start()
    try:
        # The show was published long ago (outside the first run's 24 h): only the
        # episode, published an hour ago, is the run's work.
        show = metarr.add_series("Severance", when=ago(days=400))
        episode = metarr.add_episode(show, metarr.add_season(show, 1, when=ago(days=400)),
                                     1, 1)
        file = "/media/tv" + metarr.file_of("episodes", episode)[len(metarr.tv_root):]
        siblings = [f"/media/tv/Severance/Season 01/Severance - S01E{n:02d}.mkv"
                    for n in range(1, 10)]
        assert file in siblings
        plex.put_show("/media/tv/Severance", siblings)
        for n in range((episodes - len(siblings)) // PER_SHOW):
            folder = f"/media/tv/Show {n:04d}"
            plex.put_show(folder, [f"{folder}/Season 01/Show {n:04d} - S01E{e:03d}.mkv"
                                   for e in range(1, PER_SHOW + 1)])
        plex.add_file(*siblings)
        held = sum(1 for i in plex.items.values() if i.type == "episode")
        assert held == episodes
        (target,) = [i.rating_key for i in plex.items.values() if i.file == file]
        cli.write_config(config_with(metarr=metarr.path, sync=SYNC, players=[plex.player(
            "den", [(metarr.movies_root, "/media/movies"), (metarr.tv_root, "/media/tv")])]))

        figures = {}
        for command in ("run", "verify"):
            plex.reset_log()
            result = cli(command, "--json")
            assert result.returncode == 0, result.stdout + result.stderr
            (den,) = json.loads(result.stdout)["players"]
            listings = plex.received("GET /library/sections/{key}/all")
            figures[command] = {
                "requests": plex.count(), "by_endpoint": dict(plex.call_counts()),
                "report": {k: den[k] for k in ("items", "synced", "verified", "failed")},
                "listed_types": sorted({r.param("type") for r in listings}),
                "leaves_of": [r.path for r in plex.received("allLeaves")]}
        figures["refreshed"] = plex.refreshed == [target]
        figures["show"] = next(i.rating_key for i in plex.items.values()
                               if i.file == "/media/tv/Severance")
        return figures
    finally:
        plex.stop()
        metarr.close()


def test_one_changed_episode_costs_the_same_on_a_20000_episode_section(tmp_path):
    small = one_changed_episode(tmp_path / "small", 2_009)
    big = one_changed_episode(tmp_path / "big", 20_009)
    for figures in (small, big):
        # Synced (the episode's refresh, nothing else) and verified.
        assert figures["refreshed"]
        assert figures["run"]["report"] == {"items": 1, "synced": 1, "verified": 0,
                                            "failed": 0}
        assert figures["verify"]["report"]["verified"] == 1
        assert figures["verify"]["report"]["failed"] == 0
        for command in ("run", "verify"):
            # The section's shows (type 2) are listed, never its episodes (type 4); of
            # the episodes, only Severance's.
            assert figures[command]["listed_types"] == ["2"]
            assert figures[command]["leaves_of"] == [
                f"/library/metadata/{figures['show']}/allLeaves"]
    # Ten times the episodes, the same requests, endpoint by endpoint.
    for command in ("run", "verify"):
        assert big[command]["by_endpoint"] == small[command]["by_endpoint"]
        assert big[command]["requests"] == small[command]["requests"]
    # identity, sections, the shows (one page), Severance's episodes, the refresh (no
    # sessions: a Plex is updated while someone streams unless its skip_active says not)
    assert small["run"]["requests"] == 5, small["run"]["by_endpoint"]
