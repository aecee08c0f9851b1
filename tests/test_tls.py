"""TLS to players: certificates are verified by default; per player `ca_bundle = "/path"`
trusts a private CA and `verify_tls = false` accepts a self-signed certificate. Tested
against a local HTTPS fake Jellyfin whose certificate comes from a throw-away CA (trustme).
"""

from __future__ import annotations

import json
import ssl

import pytest
import trustme
from support.configs import config_with
from support.fake_players import FakeJellyfin

TOKEN = "jf-Tls-Secret-5e7a"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def https_jellyfin(ca: trustme.CA, *names: str) -> FakeJellyfin:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*(names or ("127.0.0.1",))).configure_cert(context)
    fake = FakeJellyfin(token=TOKEN, tls=context).start()
    fake.add_file("/media/movies/The Matrix (1999)/The Matrix (1999).mkv")
    return fake


def configure(cli, metarr, fake: FakeJellyfin, **tls: object) -> None:
    """One Jellyfin player; `tls`: its ca_bundle or verify_tls."""
    metarr.add_movie("The Matrix", 1999)
    cli.write_config(config_with(
        metarr=metarr.path,
        sync={"timeout": 2, "retry_attempts": 1, "initial_lookback": "all"},
        players=[fake.player("jelly", [("/data/media", "/media")], **tls)]))


def only_player(result) -> dict:
    return json.loads(result.stdout)["players"][0]


def test_an_untrusted_certificate_is_refused_by_default(cli, metarr, ca):
    with https_jellyfin(ca) as fake:
        assert fake.url.startswith("https://")
        configure(cli, metarr, fake)
        result = cli("run", "--json")
        assert result.returncode == 1, result.stderr
        row = only_player(result)
        assert row["status"] == "failed" and row["error_kind"] == "protocol_error"
        assert "TLS certificate check failed" in row["error"]
        assert "ca_bundle" in row["error"] and "verify_tls = false" in row["error"]
        assert fake.count() == 0  # not one request (nor the token) went over it
        assert TOKEN not in result.stdout + result.stderr


def test_ca_bundle_trusts_a_private_ca(cli, metarr, ca, tmp_path):
    bundle = tmp_path / "home-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with https_jellyfin(ca) as fake:
        configure(cli, metarr, fake, ca_bundle=str(bundle))
        result = cli("run", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        assert only_player(result)["synced"] == 1
        assert fake.count("POST /Library/Media/Updated") == 1


def test_ca_bundle_of_another_ca_is_refused(cli, metarr, ca, tmp_path):
    bundle = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    with https_jellyfin(ca) as fake:
        configure(cli, metarr, fake, ca_bundle=str(bundle))
        result = cli("run", "--json")
        assert result.returncode == 1
        assert "TLS certificate check failed" in only_player(result)["error"]
        assert fake.count() == 0


def test_the_host_name_is_checked_too(cli, metarr, ca, tmp_path):
    bundle = tmp_path / "home-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    with https_jellyfin(ca, "jellyfin.home.arpa") as fake:  # not 127.0.0.1
        configure(cli, metarr, fake, ca_bundle=str(bundle))
        result = cli("run", "--json")
        assert result.returncode == 1
        assert "TLS certificate check failed" in only_player(result)["error"]
        assert fake.count() == 0


def test_verify_tls_false_accepts_a_self_signed_certificate(cli, metarr, ca):
    with https_jellyfin(ca) as fake:
        configure(cli, metarr, fake, verify_tls=False)
        result = cli("run", "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        assert only_player(result)["synced"] == 1
        # urllib3's InsecureRequestWarning is the user's own choice: not printed per request.
        assert "InsecureRequestWarning" not in result.stderr
