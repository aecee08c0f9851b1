"""Two small guards: the run table shows error text exactly as it is (no Rich markup), and
a player URL whose host cannot be right is refused when the config is written or loaded."""

from __future__ import annotations

import pytest
from rich.console import Console
from support.configs import config_with, kodi

from metarr_sync import render
from metarr_sync.config import validate_url
from metarr_sync.engine import RunReport
from metarr_sync.player_run import PlayerResult


def rendered(report: RunReport) -> str:
    out = Console(width=250, record=True, color_system=None, force_terminal=False)
    out.print(render.run_table(report))
    return out.export_text()


@pytest.mark.parametrize("error", [
    "Jellyfin has no library containing [Movies]/Heat (1995)",
    "[bold]not bold[/bold] and [red]not red[/red]",
    "a closing tag alone: [/] would make Rich raise MarkupError",
    "path /mnt/[2024] Films/x.mkv is in no section",
])
def test_run_table_shows_errors_with_brackets_as_written(error):
    report = RunReport(trigger="manual", command="run", dry_run=False,
                       started_at="2026-01-01 00:00:00", run_id=7)
    report.players = [PlayerResult("den", "plex", status="failed", items=2, failed=2,
                                   error=error),
                      PlayerResult("lounge", "kodi", status="synced", items=2, synced=2)]
    text = rendered(report)
    assert error in text
    assert "metarr-sync run #7" in text
    den = next(line for line in text.splitlines() if "den" in line)
    assert "plex" in den and "failed" in den


@pytest.mark.parametrize("url, reason", [
    ("http://bad host:80", "must not contain spaces"),
    ("http://kodi\t:8080", "must not contain spaces or control characters"),
    ("http://kodi\n.lan:8080", "must not contain spaces or control characters"),
    ("http://kodi;rm -rf:80", "must not contain spaces"),
    ("http://kodi;box:80", "invalid host name 'kodi;box'"),
    ("http://bad%20host:8096", "invalid host name 'bad%20host'"),
    ("http://jelly/base path", "write a space as %20"),
])
def test_urls_with_impossible_hosts_are_refused(url, reason):
    assert reason in (validate_url(url) or "")


@pytest.mark.parametrize("url", [
    "http://192.168.1.10:8080", "http://kodi:8080", "https://plex.example.org:32400",
    "http://[::1]:8096", "http://[fe80::1%25eth0]:8096", "http://my_nas.local:32400",
    "http://médiaserver:8096", "http://jelly.lan/jellyfin",
])
def test_ordinary_player_urls_are_accepted(url):
    assert validate_url(url) is None


def test_a_url_with_a_space_is_refused_by_players_add_and_by_loading(cli):
    cli.write_config(config_with(players=[kodi("a", url="http://kodi:8080")]))
    before = cli.config.read_bytes()
    added = cli("players", "add", "kodi", "lounge", "--url", "http://bad host:80")
    assert added.returncode == 2
    assert "--url 'http://bad host:80' must not contain spaces" in added.stderr
    assert cli.config.read_bytes() == before

    # Literal TOML: a hand-written URL with a space is what is tested.
    cli.write_config("[players.a]\ntype = \"kodi\"\nurl = \"http://bad host:80\"\n")
    loaded = cli("players", "list")
    assert loaded.returncode == 3
    assert "players.a.url: 'http://bad host:80' must not contain spaces" in loaded.stderr
    assert "Traceback" not in loaded.stderr
