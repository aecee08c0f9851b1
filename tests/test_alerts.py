"""Alerts ([alerts] urls, Apprise): the installed `metarr-sync` against a fake Kodi
(tests/support/fake_players.py) that sends to a JSON webhook on 127.0.0.1
(tests/support/webhook.py) through Apprise's json://.

One message per change of a player's condition, never one per run; no secret in any
message, output or log; a failed alert never changes a run's exit code and shows in
`status`; without apprise, [alerts] is a configuration error (exit 3) and everything
else works.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.configs import config_with, recorder
from support.fake_players import FakeKodi
from support.webhook import Webhook

from metarr_sync.state import MAX_DELIVERIES

ALERT_PASSWORD = "SECRETPASS-alert-7d1f"
KODI_PASSWORD = "KODI-PW-secret-9931"
SYNC = {"initial_lookback": "all", "timeout": 5, "retry_attempts": 0}
MOVIES = "/data/media/movies"
SEEN = [f"/mnt/movies/Seen {n} ({2000 + n})/Seen {n} ({2000 + n}).mkv" for n in range(4)]

# Simulates apprise not being installed: `import apprise` (and importlib's find_spec)
# fail as for a missing package.
NO_APPRISE = '''\
import sys


class _NoApprise:
    def find_spec(self, name, path=None, target=None):
        if name == "apprise" or name.startswith("apprise."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoApprise())
'''


@pytest.fixture
def hook():
    with Webhook() as server:
        yield server


@pytest.fixture
def kodi():
    fake = FakeKodi(sources={"/mnt/movies/": "movies"}, username="kodi",
                    password=KODI_PASSWORD).start()
    fake.add_file(*SEEN)
    yield fake
    fake.stop()


class Runs:
    """Every command run in a test, so that all their output is checked for secrets."""

    def __init__(self, cli, log: Path) -> None:
        self.cli, self.log, self.results = cli, log, []

    def __call__(self, *args: str, env: dict[str, str] | None = None):
        result = self.cli("-vv", "--log-file", str(self.log), *args, env=env)
        assert "Traceback" not in result.stderr, result.stderr
        self.results.append(result)
        return result

    def assert_no_secret(self, hook: Webhook) -> None:
        texts = [r.stdout + r.stderr for r in self.results]
        texts.append(self.log.read_text() if self.log.exists() else "")
        texts.append(json.dumps(hook.messages))
        if (self.cli.state_dir / "state.sqlite").exists():
            texts.append(_state_dump(self.cli))
        for text in texts:
            assert ALERT_PASSWORD not in text
            assert KODI_PASSWORD not in text


def _state_dump(cli) -> str:
    with cli.state() as state:
        return "\n".join(str(tuple(row)) for table in ("alert_log", "player_alerts",
                                                       "run_players", "sync_queue")
                         for row in state.execute(f"SELECT * FROM {table}"))


def configure(cli, metarr, kodi, hook_url: str | None, **sync: object) -> None:
    cli.write_config(config_with(
        metarr=metarr.path, sync={**SYNC, **sync},
        players=[kodi.player("lounge", [(MOVIES, "/mnt/movies")])],
        alerts=None if hook_url is None else {"urls": [hook_url]}))


@pytest.fixture
def runs(cli, tmp_path):
    return Runs(cli, tmp_path / "metarr-sync.log")


def secret_url(hook: Webhook) -> str:
    return hook.apprise_url(user="alerts", password=ALERT_PASSWORD)


def label(hook: Webhook) -> str:
    return f"json://••••@127.0.0.1:{hook.port}/••••"


def seen_movies(metarr, count: int = 3) -> None:
    for n in range(count):
        metarr.add_movie(f"Seen {n}", 2000 + n)


def test_a_failing_player_is_alerted_once_and_its_recovery_once(cli, metarr, kodi, hook,
                                                                runs):
    seen_movies(metarr)
    configure(cli, metarr, kodi, secret_url(hook))
    assert runs("run").returncode == 0
    assert hook.take() == []  # all well from the start: nothing to say

    kodi.misbehave("refused")
    metarr.add_movie("Seen 3", 2003)  # work, so that the player is contacted
    down = runs("run")
    assert down.returncode == 1
    [alert] = hook.take()
    assert alert["title"] == "metarr-sync: lounge: player failed"
    assert alert["type"] == "failure"
    assert "lounge failed: " in alert["message"] and "refused" in alert["message"]
    assert "Its work stays queued for the next run." in alert["message"]
    assert alert["message"].endswith("More: metarr-sync players test lounge")

    again = runs("run")
    assert again.returncode == 1
    assert hook.take() == []  # the same condition: nothing new to say

    kodi.heal()
    back = runs("run")
    assert back.returncode == 0, back.stdout + back.stderr
    [recovered] = hook.take()
    assert recovered["title"] == "metarr-sync: lounge: recovered"
    assert recovered["type"] == "success"
    assert recovered["message"] == (
        "lounge recovered: nothing is wrong with it any more (before: player failed)."
        "\nMore: metarr-sync status")
    assert runs("run").returncode == 0
    assert hook.take() == []
    with cli.state() as state:
        assert [tuple(r) for r in state.execute(
            "SELECT player, condition FROM player_alerts")] == [("lounge", "")]
    runs.assert_no_secret(hook)


def test_an_authentication_failure_is_alerted_once(cli, metarr, kodi, hook, runs):
    seen_movies(metarr)
    configure(cli, metarr, kodi, secret_url(hook))
    assert runs("run").returncode == 0
    kodi.misbehave("401")
    metarr.add_movie("Seen 3", 2003)
    refused = runs("run")
    assert refused.returncode == 1
    [alert] = hook.take()
    assert alert["title"] == "metarr-sync: lounge: authentication failed"
    assert alert["type"] == "failure"
    assert alert["message"].startswith(
        "lounge is disabled after an authentication failure (authentication failed: ")
    assert alert["message"].endswith("More: metarr-sync players test lounge")

    disabled = runs("run")  # disabled: not contacted, the same condition
    assert disabled.returncode == 1
    assert hook.take() == []

    kodi.heal()
    assert runs("players", "enable", "lounge").returncode == 0
    assert runs("run").returncode == 0
    assert [m["title"] for m in hook.take()] == ["metarr-sync: lounge: recovered"]
    runs.assert_no_secret(hook)


def test_removals_held_by_the_guard_are_alerted_once(cli, metarr, kodi, hook, runs,
                                                     tmp_path):
    metarr.use_disk(tmp_path / "media")
    movies = [metarr.add_movie(f"Seen {n}", 2000 + n) for n in range(3)]
    cli.write_config(config_with(
        metarr=metarr.path, sync={**SYNC, "max_removals": 0},
        players=[kodi.player("lounge", [(metarr.movies_root, "/mnt/movies")])],
        alerts={"urls": [secret_url(hook)]}))
    assert runs("run").returncode == 0
    metarr.delete_media("movies", movies[0])
    metarr.soft_delete("movies", movies[0])
    kodi.remove_file(SEEN[0])

    held = runs("run")
    assert held.returncode == 1
    [alert] = hook.take()
    assert alert["title"] == "metarr-sync: lounge: removals held"
    assert alert["type"] == "warning"
    assert alert["message"].startswith("1 removal(s) held, not sent on lounge; the first: ")
    assert alert["message"].endswith(
        "More: metarr-sync queue list --status held --player lounge")
    assert runs("run").returncode == 1
    assert hook.take() == []

    released = runs("run", "--allow-removals", "1")
    assert released.returncode == 0, released.stdout + released.stderr
    assert [m["title"] for m in hook.take()] == ["metarr-sync: lounge: recovered"]
    runs.assert_no_secret(hook)


def test_items_that_become_failed_are_alerted_once(cli, metarr, kodi, hook, runs):
    seen_movies(metarr)
    configure(cli, metarr, kodi, secret_url(hook))
    assert runs("run").returncode == 0
    show = metarr.add_series("Severance")  # no mapping covers TV: failed for a person
    metarr.add_episode(show, metarr.add_season(show, 1), 1, 1)

    failed = runs("run")
    assert failed.returncode == 1
    [alert] = hook.take()
    assert alert["title"] == "metarr-sync: lounge: items failed"
    assert alert["type"] == "warning"
    assert alert["message"].startswith(
        "2 item(s) failed and need a person on lounge; the first: no path mapping covers "
        "/data/media/tv/")
    assert alert["message"].endswith(
        "More: metarr-sync queue list --status failed --player lounge")
    metarr.add_movie("Seen 3", 2003)  # a new delivery; the failed items still wait
    assert runs("run").returncode == 0
    assert hook.take() == []
    runs.assert_no_secret(hook)


def test_items_that_become_unverified_are_alerted_once_and_their_recovery_once(
        cli, metarr, hook, runs):
    """An item delivered MAX_DELIVERIES times and never seen on the player (the recording
    player here never lists it) is one alert when it gets there, not one per run."""
    cli.write_config(config_with(
        metarr=metarr.path, sync=SYNC, alerts={"urls": [secret_url(hook)]},
        players=[recorder("lounge", mappings=[(MOVIES, "smb://nas/movies")])]))
    heat = metarr.add_movie("Heat", 1995)
    cli.behave("lounge", "unverified", "Heat")
    for _ in range(MAX_DELIVERIES - 1):
        assert runs("run").returncode == 1
    assert hook.take() == []  # not seen yet, but still being tried
    assert runs("run").returncode == 1  # the last delivery: given up on
    [alert] = hook.take()
    assert alert["title"] == "metarr-sync: lounge: items never seen on the player"
    assert alert["message"].startswith(
        f"1 item(s) delivered {MAX_DELIVERIES} times but never seen on the player on lounge")
    assert alert["message"].endswith(
        "More: metarr-sync queue list --status unverified --player lounge")
    runs("run")
    assert hook.take() == []  # the same condition
    cli.heal("lounge", "unverified")
    metarr.republish_movie(heat)  # a person fixed it; Metarr published it again
    assert runs("run").returncode == 0
    [recovered] = hook.take()
    assert recovered["title"] == "metarr-sync: lounge: recovered"
    runs.assert_no_secret(hook)


def test_a_failed_alert_changes_no_exit_code_and_shows_in_status(cli, metarr, kodi, hook,
                                                                 runs):
    seen_movies(metarr)
    configure(cli, metarr, kodi, secret_url(hook))
    assert runs("run").returncode == 0
    kodi.misbehave("refused")
    metarr.add_movie("Seen 3", 2003)
    assert runs("run").returncode == 1
    assert len(hook.take()) == 1

    hook.stop()  # the alert target is down
    kodi.heal()
    back = runs("run")
    assert back.returncode == 0, back.stdout + back.stderr  # as without alerts
    warning = [line for line in back.stderr.splitlines()
               if line.startswith("metarr-sync: warning: alert not sent")]
    assert len(warning) == 1
    assert warning[0].startswith(f"metarr-sync: warning: alert not sent to {label(hook)}: ")
    assert "the run's result is unchanged" in warning[0]
    assert "alert not sent to" in runs.log.read_text()

    status = runs("status")
    assert status.returncode == 0, status.stdout
    lines = status.stdout.splitlines()
    assert any(line.startswith("last alert error (") and label(hook) in line
               for line in lines), status.stdout
    doc = json.loads(runs("status", "--json").stdout)
    assert doc["alerts"]["urls"] == 1
    assert doc["alerts"]["last_error"].startswith(f"{label(hook)}: ")
    assert doc["alerts"]["last_error_at"] >= doc["alerts"]["last_sent_at"]

    # Not told: the next run (the webhook back) says it.
    hook.start()
    configure(cli, metarr, kodi, secret_url(hook))  # its new port
    assert runs("run").returncode == 0
    assert [m["title"] for m in hook.take()] == ["metarr-sync: lounge: recovered"]
    assert runs("run").returncode == 0
    assert hook.take() == []
    runs.assert_no_secret(hook)


def test_alerts_test_sends_one_message_per_url_and_says_which_went(cli, metarr, kodi, hook,
                                                                   runs):
    seen_movies(metarr)
    configure(cli, metarr, kodi, secret_url(hook))
    result = runs("alerts", "test")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"1. {label(hook)}: sent"]
    [message] = hook.take()
    assert message["title"] == "metarr-sync: test alert"
    assert message["message"].startswith("This is a test alert from metarr-sync on ")
    assert hook.received == []

    down = Webhook().start()
    down_label = label(down)
    down_url = down.apprise_url(user="alerts", password=ALERT_PASSWORD, path="/x")
    down.stop()
    cli.write_config(config_with(
        metarr=metarr.path, sync=SYNC, players=[kodi.player("lounge", [(MOVIES, "/mnt")])],
        alerts={"urls": [secret_url(hook), down_url]}))
    mixed = runs("alerts", "test", "--json")
    assert mixed.returncode == 1
    doc = json.loads(mixed.stdout)
    assert [(u["url"], u["sent"]) for u in doc["urls"]] == [(label(hook), True),
                                                             (down_label, False)]
    assert doc["urls"][1]["error"]
    assert (doc["sent"], doc["failed"]) == (1, 1)
    assert len(hook.take()) == 1
    plain = runs("alerts", "test")
    assert plain.returncode == 1
    assert plain.stdout.splitlines()[1].startswith(f"2. {down_label}: NOT sent: ")
    assert "1 of 2 alert URL(s) did not take the test message" in plain.stderr
    hook.take()

    configure(cli, metarr, kodi, None)
    none = runs("alerts", "test")
    assert none.returncode == 3
    assert "no [alerts] urls to test" in none.stderr
    runs.assert_no_secret(hook)


def test_config_show_masks_the_alert_urls(cli, metarr, kodi, hook, runs):
    configure(cli, metarr, kodi, secret_url(hook))
    shown = runs("config", "show")
    assert shown.returncode == 0, shown.stderr
    assert f'[alerts]\nurls = [\n    "{label(hook)}",\n]' in shown.stdout or \
        f'[alerts]\nurls = [ "{label(hook)}" ]' in shown.stdout or \
        f'[alerts]\nurls = ["{label(hook)}"]' in shown.stdout, shown.stdout
    doc = json.loads(runs("config", "show", "--json").stdout)
    assert doc["alerts"] == {"urls": [label(hook)]}
    cli.write_config(config_with(
        metarr=metarr.path, players=[kodi.player("lounge", [(MOVIES, "/mnt")])],
        alerts={"urls": [{"env": "ALERT_URL"}, "discord://1234567890/TOKENTOKENTOKEN"]}))
    doc = json.loads(runs("config", "show", "--json").stdout)
    assert doc["alerts"] == {"urls": ["env:ALERT_URL", "discord://••••"]}
    assert "TOKENTOKENTOKEN" not in json.dumps(doc)
    runs.assert_no_secret(hook)


def test_without_apprise_alerts_are_a_configuration_error_and_the_rest_works(
        cli, metarr, kodi, hook, runs, tmp_path):
    shim = tmp_path / "no-apprise"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NO_APPRISE)
    env = {"PYTHONPATH": f"{shim}:{cli.env['PYTHONPATH']}"}
    seen_movies(metarr)

    configure(cli, metarr, kodi, secret_url(hook))
    for command in (["run"], ["sync", "--movie", "1"], ["verify"], ["watch"],
                    ["alerts", "test"]):
        refused = runs(*command, env=env)
        assert refused.returncode == 3, (command, refused.stderr)
        assert refused.stderr.splitlines()[-1] == (
            f"metarr-sync: {cli.config}: [alerts] urls are set, but the apprise package "
            "that sends alerts is not installed: pip install 'metarr-sync[alerts]' (or "
            "remove [alerts] from the file)"), command
    assert kodi.received() == []  # refused before anything was sent
    # Commands that send no alert work all the same (and never import apprise).
    assert runs("config", "show", env=env).returncode == 0
    assert runs("status", env=env).returncode == 3  # UNKNOWN: no run yet, not a crash

    configure(cli, metarr, kodi, None)
    assert runs("run", env=env).returncode == 0
    assert len(kodi.movies) == 3
    configure(cli, metarr, kodi, secret_url(hook))
    status = runs("status", env=env)
    assert status.returncode == 0, status.stdout  # status needs no apprise
    assert "alerts: 1 URL(s); last sent: never" in status.stdout
    assert hook.received == []
    runs.assert_no_secret(hook)


def test_alert_urls_are_labelled_and_their_secret_parts_known():
    from metarr_sync.config import alert_url_label, alert_url_secrets

    assert alert_url_label("json://alerts:pw-1234@nas.lan:8080/hook") == \
        "json://••••@nas.lan:8080/••••"
    assert alert_url_label("jsons://nas.lan") == "jsons://nas.lan"
    assert alert_url_label("mailto://me:app-password@gmail.com") == "mailto://••••@gmail.com"
    # Schemes whose host part is a token, an id or a topic show nothing of it.
    for url in ("discord://123456789012/WEBHOOKTOKENabcdef", "ntfy://my-secret-topic",
                "tgram://123456789:AAH-bot-token-xyz/-100200300", "pover://USERKEY1234@APPTOKEN5678"):
        assert alert_url_label(url) == url.split("://")[0] + "://••••", url
    assert alert_url_label("no scheme here") == "(not a URL)"

    assert set(alert_url_secrets("discord://123456789012/WEBHOOKTOKENabcdef")) >= {
        "123456789012", "WEBHOOKTOKENabcdef"}
    assert set(alert_url_secrets("tgram://123456789:AAH-bot-token-xyz/-100200300")) >= {
        "AAH-bot-token-xyz", "-100200300"}
    assert set(alert_url_secrets("pover://USERKEY1234@APPTOKEN5678")) >= {
        "USERKEY1234", "APPTOKEN5678"}
    found = alert_url_secrets("json://alerts:p%40ss-word@nas.lan:8080/hook?token=abcdefgh12")
    assert {"p%40ss-word", "p@ss-word", "abcdefgh12"} <= set(found)
    # A server's name and short path words are no secrets: masking them would garble
    # every message that names them.
    assert "nas.lan" not in found and "hook" not in found and "alerts" not in found
