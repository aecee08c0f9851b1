"""A corpus of broken configurations, each run through the installed `metarr-sync run`.

The promise: every broken file exits 3 with exactly one message on stderr that names the
file and the key (and, for TOML syntax errors, the line), never a traceback, and never
echoes a secret. Nothing is read from Metarr or sent to a player before the config is valid.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import Cli

KODI = '[players.tv]\ntype = "kodi"\nurl = "http://127.0.0.1:8080"\n'
DB = '[metarr]\ndatabase = "/nonexistent/metarr.sqlite"\n'

# (id, file text, fragments the one message must contain). `{cfg}` is not needed in the
# fragments: every message is checked to start with the file's path.
CORPUS: list[tuple[str, str, list[str]]] = [
    ("syntax-unclosed-table", DB + "[sync\nbatch_size = 1\n",
     ["line 3", "TOML syntax error"]),
    ("syntax-missing-value", DB + "[sync]\nbatch_size =\n",
     ["line 4", "TOML syntax error (in sync.batch_size)"]),
    ("syntax-unterminated-string", DB + KODI + 'username = "kodi\n',
     ["line 6", "TOML syntax error (in players.tv.username)"]),
    ("syntax-duplicate-player", DB + KODI + KODI,
     ["line 6", "TOML syntax error", "Cannot declare ('players', 'tv') twice"]),
    ("syntax-duplicate-key", DB + KODI + 'url = "http://127.0.0.1:9090"\n',
     ["line 6", "TOML syntax error (in players.tv.url)", "Cannot overwrite a value"]),
    ("syntax-bare-word", DB + "[sync]\nskip_active = yes\n",
     ["line 4", "TOML syntax error (in sync.skip_active)"]),
    ("syntax-secret-never-echoed", DB + KODI + 'username = "kodi"\npassword = "hunter2-secret\n',
     ["line 7", "TOML syntax error (in players.tv.password)"]),
    ("not-utf8", "# caf\xe9\n", ["not UTF-8"]),
    ("type-batch-size-string", DB + '[sync]\nbatch_size = "100"\n' + KODI,
     ["sync.batch_size", "must be an integer", "'100'"]),
    ("type-timeout-bool", DB + "[sync]\ntimeout = true\n" + KODI,
     ["sync.timeout", "not a boolean"]),
    ("type-enabled-string", DB + KODI + 'enabled = "yes"\n',
     ["players.tv.enabled", "must be a boolean"]),
    ("type-priority-float", DB + KODI + "priority = 1.5\n",
     ["players.tv.priority", "must be an integer"]),
    ("type-players-not-table", "players = 3\n" + DB, ["players: must be a table"]),
    ("unknown-top-key", DB + "[syncc]\nbatch_size = 1\n" + KODI,
     ["syncc", "did you mean 'sync'"]),
    ("unknown-sync-key", DB + "[sync]\nbatchsize = 1\n" + KODI,
     ["sync.batchsize", "did you mean 'batch_size'"]),
    ("unknown-player-key", DB + KODI + 'usrname = "kodi"\n',
     ["players.tv.usrname", "did you mean 'username'"]),
    ("setting-of-another-type", DB + KODI + "analyze = true\n",
     ["players.tv.analyze", "not a setting of kodi players"]),
    ("unknown-player-type", DB + '[players.tv]\ntype = "jellyfn"\nurl = "http://h:1"\n',
     ["players.tv.type", "'jellyfn'", "did you mean 'jellyfin'"]),
    ("missing-player-type", DB + '[players.tv]\nurl = "http://h:1"\n',
     ["players.tv.type", "missing"]),
    ("missing-url", DB + '[players.tv]\ntype = "kodi"\n', ["players.tv.url", "missing"]),
    ("bad-url-scheme", DB + '[players.tv]\ntype = "kodi"\nurl = "ftp://nas"\n',
     ["players.tv.url", "http:// or https://"]),
    ("bad-url-no-host", DB + '[players.tv]\ntype = "kodi"\nurl = "http://"\n',
     ["players.tv.url", "no host name"]),
    ("bad-url-port", DB + '[players.tv]\ntype = "kodi"\nurl = "http://kodi:99999"\n',
     ["players.tv.url", "not a valid URL"]),
    ("bad-url-query", DB + '[players.tv]\ntype = "kodi"\nurl = "http://kodi:8080/?x=1"\n',
     ["players.tv.url", "query string"]),
    ("bad-player-name", DB + '[players."living room"]\ntype = "kodi"\nurl = "http://h:1"\n',
     ["players.living room", "letters, digits"]),
    ("mapping-relative-metarr", DB + KODI +
     'mappings = [ { metarr = "data/movies", player = "/mnt/movies" } ]\n',
     ["players.tv.mappings[0].metarr", "absolute"]),
    ("mapping-relative-player", DB + KODI +
     'mappings = [ { metarr = "/data/movies", player = "movies" } ]\n',
     ["players.tv.mappings[0].player", "absolute"]),
    ("mapping-empty", DB + KODI + 'mappings = [ { metarr = "", player = "/mnt/movies" } ]\n',
     ["players.tv.mappings[0].metarr", "non-empty"]),
    ("mapping-not-table", DB + KODI + 'mappings = [ "/data=/mnt" ]\n',
     ["players.tv.mappings[0]", "must be a table"]),
    ("mapping-twice", DB + KODI + 'mappings = [ { metarr = "/data", player = "/a" }, '
     '{ metarr = "/data", player = "/b" } ]\n',
     ["players.tv.mappings[1].metarr", "mapped twice"]),
    # A Windows Metarr folder in another case is the same folder (its file system
    # ignores case); a POSIX one is not (not in this corpus: it is a valid config).
    ("mapping-twice-windows-case", DB + KODI + "mappings = [ { metarr = 'D:\\Media', "
     "player = '/a' }, { metarr = 'd:/media/', player = '/b' } ]\n",
     ["players.tv.mappings[1].metarr", "mapped twice"]),
    ("mapping-unknown-key", DB + KODI +
     'mappings = [ { metarr = "/data", player = "/a", plyer = "/b" } ]\n',
     ["players.tv.mappings[0].plyer", "did you mean 'player'"]),
    ("secret-env-unset", DB + KODI + 'username = "kodi"\n'
     'password = { env = "METARR_TEST_UNSET_PASSWORD" }\n',
     ["players.tv.password", "METARR_TEST_UNSET_PASSWORD", "not set"]),
    ("secret-file-missing", DB + '[players.jf]\ntype = "jellyfin"\nurl = "http://h:1"\n'
     'token = { file = "/nonexistent/jellyfin-token" }\n',
     ["players.jf.token", "/nonexistent/jellyfin-token", "does not exist"]),
    ("secret-file-unreadable", DB + '[players.jf]\ntype = "jellyfin"\nurl = "http://h:1"\n'
     'token = { file = "{tmp}" }\n',
     ["players.jf.token", "cannot be read"]),
    ("secret-file-empty", DB + '[players.jf]\ntype = "jellyfin"\nurl = "http://h:1"\n'
     'token = { file = "{tmp}/empty" }\n',
     ["players.jf.token", "is empty"]),
    ("secret-table-both", DB + '[players.jf]\ntype = "jellyfin"\nurl = "http://h:1"\n'
     'token = { env = "A", file = "/b" }\n',
     ["players.jf.token", "exactly one of 'env' or 'file'"]),
    ("token-missing", DB + '[players.jf]\ntype = "jellyfin"\nurl = "http://h:1"\n',
     ["players.jf.token", "missing"]),
    ("password-without-username", DB + KODI + 'password = "hunter2-secret"\n',
     ["players.tv.username", "needed with a password"]),
    ("group-names-no-player", DB + KODI + '[groups.bedroom]\nsync_mode = "parallel"\n',
     ["groups.bedroom", "no player names this group"]),
    ("player-names-unknown-group", DB + '[groups.bedroom]\n' + KODI + 'group = "bedrom"\n'
     '[players.tv2]\ntype = "kodi"\nurl = "http://h:2"\ngroup = "bedroom"\n',
     ["players.tv.group", "no [groups.bedrom] table", "did you mean 'bedroom'"]),
    ("group-sync-mode", DB + '[groups.g]\nsync_mode = "serial"\n' + KODI + 'group = "g"\n',
     ["groups.g.sync_mode", "'serial'"]),
    ("shared-library-not-kodi", DB + '[groups.g]\nshared_library = true\n'
     '[players.p]\ntype = "plex"\nurl = "http://h:1"\ntoken = "t0ken-x"\ngroup = "g"\n',
     ["groups.g.shared_library", "only Kodi"]),
    ("batch-size-zero", DB + "[sync]\nbatch_size = 0\n" + KODI,
     ["sync.batch_size", "at least 1", "not 0"]),
    ("timeout-negative", DB + "[sync]\ntimeout = -5\n" + KODI,
     ["sync.timeout", "positive", "-5"]),
    ("retry-attempts-negative", DB + "[sync]\nretry_attempts = -1\n" + KODI,
     ["sync.retry_attempts", "not be negative"]),
    ("lookback-bad", DB + '[sync]\ninitial_lookback = "3 days"\n' + KODI,
     ["sync.initial_lookback", "'3 days'"]),
    ("scan-delay-negative", DB + '[players.p]\ntype = "plex"\nurl = "http://h:1"\n'
     'token = "t0ken-x"\nscan_delay = -1\n', ["players.p.scan_delay", "negative"]),
    ("scan-timeout-zero", DB + KODI + "scan_timeout = 0\n",
     ["players.tv.scan_timeout", "positive number of seconds", "not 0"]),
    ("scan-timeout-not-kodi", DB + '[players.p]\ntype = "plex"\nurl = "http://h:1"\n'
     'token = "t0ken-x"\nscan_timeout = 60\n',
     ["players.p.scan_timeout", "not a setting of plex players"]),
    ("refresh-mode", DB + '[players.jf]\ntype = "jellyfin"\nurl = "http://h:1"\n'
     'token = "t0ken-x"\nrefresh_mode = "everything"\n', ["players.jf.refresh_mode"]),
    ("database-empty", '[metarr]\ndatabase = ""\n' + KODI, ["metarr.database", "empty"]),
    ("ca-bundle-missing", DB + '[players.tv]\ntype = "kodi"\nurl = "https://h:1"\n'
     'ca_bundle = "/nonexistent/ca.pem"\n', ["players.tv.ca_bundle", "/nonexistent/ca.pem"]),
]


@pytest.fixture(scope="module")
def corpus_results(tmp_path_factory):
    """Every corpus file run through the installed CLI, in parallel (each in its own
    directory), so that the corpus can grow without slowing the suite down."""

    def prepare(entry: tuple[str, str, list[str]]) -> Cli:
        name, text, _ = entry
        cli = Cli(tmp_path_factory.mktemp(name))  # not thread-safe: here, in order
        (cli.root / "empty").write_text("\n")
        text = text.replace("{tmp}", str(cli.root))
        cli.config.write_bytes(text.encode("latin-1") if "\xe9" in text else text.encode())
        cli.config.chmod(0o600)
        return cli

    clis = [prepare(entry) for entry in CORPUS]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda cli: cli("run"), clis))
    return {name: (cli, result)
            for (name, _, _), cli, result in zip(CORPUS, clis, results, strict=True)}


@pytest.mark.parametrize(("name", "fragments"), [(n, f) for n, _, f in CORPUS],
                         ids=[name for name, _, _ in CORPUS])
def test_broken_configuration_exits_3_with_one_clear_message(corpus_results, name, fragments):
    cli, result = corpus_results[name]
    assert result.returncode == 3, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    messages = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(messages) == 1, messages
    (message,) = messages
    assert message.startswith(f"metarr-sync: {cli.config}: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert "hunter2-secret" not in message and "t0ken-x" not in message
    # The config is rejected before anything else happens: no state was created.
    assert not cli.state_dir.exists()


def test_the_corpus_is_big_enough():
    assert len(CORPUS) >= 25
    assert len({name for name, _, _ in CORPUS}) == len(CORPUS)


def test_url_with_credentials_is_refused_without_echoing_the_password(cli):
    cli.write_config(DB + '[players.tv]\ntype = "kodi"\n'
                     'url = "http://kodi:s3cret-pass@10.0.0.2:8080"\n')
    result = cli("run")
    assert result.returncode == 3
    assert "players.tv.url" in result.stderr and "must not contain credentials" in result.stderr
    assert "s3cret-pass" not in result.stderr + result.stdout


def test_every_problem_of_one_file_is_reported_at_once(cli):
    cli.write_config(DB + "[sync]\nbatch_size = 0\ntimeout = -1\n"
                     '[players.tv]\ntype = "kodi"\nurl = "ftp://x"\n')
    result = cli("run")
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"metarr-sync: {cli.config}: ") for line in lines)


@pytest.mark.parametrize("where", ["missing", "directory"])
def test_a_config_path_that_is_no_file_exits_3(cli, where):
    if where == "directory":
        cli.config.mkdir()
    result = cli("run")
    assert result.returncode == 3
    assert str(cli.config) in result.stderr and "Traceback" not in result.stderr
