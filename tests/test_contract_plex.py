"""Contract of the Plex adapter: every request it sends must be one the Plex Media Server
OpenAPI spec (../shared/specs/plex-api-spec.yaml) documents, path and parameters.

The unit tests in test_plex.py check every request they provoke against the spec when
they end (`check_contract`, called by their `plex` fixture), so "every request the
adapter sends in those tests" is validated, not a hand-picked sample. This module holds
the spec, the documented exceptions, a scenario exercising every call the adapter makes,
and negative tests proving the check rejects what the spec does not document.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from support.contract import Deviation, Spec, find_spec, load_spec, validate_request

REPO_ROOT = Path(__file__).resolve().parents[1]
SPEC_NAME = "plex-api-spec.yaml"

#: What the adapter does that the spec says otherwise, each with the evidence.
DEVIATIONS = (
    Deviation(
        "GET", "/library/sections/{sectionId}/refresh", validate_as="POST",
        reason="Partial scans are GET: Plex Media Server >= 1.32.7 answers 404 to POST and "
               "PUT there (../shared/PLAYERS.md, Plex); the spec lists only POST. The "
               "parameters (path, force) are those of the documented POST."),
    Deviation(
        "GET", "/library/metadata/{ids}/allLeaves",
        extra_params=frozenset({"includeGuids", "X-Plex-Container-Start",
                                "X-Plex-Container-Size"}),
        reason="A show's episodes, paged like a section listing and with their provider "
               "ids. The spec documents no parameters here but answers with the "
               "X-Plex-Container-Start/Total-Size paging headers, and lists "
               "X-Plex-Container-Start/Size and includeGuids as query parameters of the "
               "section listing (listContent); public Plex clients send "
               "`allLeaves?includeGuids=1` with X-Plex-Container-Start/Size."),
    Deviation(
        "GET", "/library/sections", validate_path="/library/sections/all",
        reason="The classic section list every Plex client uses (python-plexapi, Sonarr, "
               "Radarr; earlier versions of this very spec documented it as "
               "get-all-libraries). Spec 1.1.1 documents the same answer only as "
               "/library/sections/all, which older servers do not have."),
)


@lru_cache(maxsize=1)
def plex_spec() -> Spec:
    """The Plex spec, found beside the repository (CI) or in /work/shared; loaded once.

    A missing spec raises: a contract test that cannot find its contract must fail, not
    skip.
    """
    return load_spec(find_spec(SPEC_NAME, REPO_ROOT))


def check_contract(calls: Iterable[Any]) -> int:
    """Validate requests (responses' calls, or PreparedRequests) against the Plex spec,
    headers included (X-Plex-Client-Identifier is required on most operations)."""
    from support.contract import validate_calls

    return validate_calls(plex_spec(), calls, deviations=DEVIATIONS, check_headers=True)


HEADERS = {"X-Plex-Client-Identifier": "9d5e6f1c-0b7a-5a55-9c38-2f4e5c3b1a77",
           "X-Plex-Product": "metarr-sync", "X-Plex-Version": "0.1.0",
           "Accept": "application/json"}


def validate(method: str, url: str, headers: dict[str, str] | None = None) -> None:
    validate_request(plex_spec(), method, url, None, headers=headers or HEADERS,
                     deviations=DEVIATIONS)


def test_the_spec_is_found_beside_the_repository_or_in_work_shared():
    path = find_spec(SPEC_NAME, REPO_ROOT)
    assert path.is_file() and path.name == SPEC_NAME
    assert plex_spec().title.startswith("Plex Media Server")


def test_a_missing_spec_fails_loudly_instead_of_skipping(tmp_path):
    with pytest.raises(FileNotFoundError, match="not-a-plex-spec.yaml not found"):
        find_spec("not-a-plex-spec.yaml", tmp_path / "repo")


@pytest.mark.parametrize(("method", "url"), [
    ("GET", "http://plex:32400/identity"),
    ("GET", "http://plex:32400/library/sections"),
    ("GET", "http://plex:32400/status/sessions"),
    ("GET", "http://plex:32400/library/sections/1/all?type=1&includeGuids=1"
            "&X-Plex-Container-Start=0&X-Plex-Container-Size=1000"),
    ("GET", "http://plex:32400/library/sections/3/all?type=4&includeGuids=1"),
    ("GET", "http://plex:32400/library/sections/3/all?type=2&includeGuids=1"),
    ("GET", "http://plex:32400/library/sections/1/refresh?path=%2Fdata%2FMovies%2FHeat+%281995%29"),
    ("GET", "http://plex:32400/library/sections/1/refresh"),
    ("PUT", "http://plex:32400/library/metadata/4711/refresh"),
    ("PUT", "http://plex:32400/library/metadata/4711/analyze"),
    ("PUT", "http://plex:32400/library/sections/1/emptyTrash"),
    ("GET", "http://plex:32400/library/metadata/4711/allLeaves"),
])
def test_every_call_the_adapter_makes_is_documented(method, url):
    validate(method, url)


@pytest.mark.parametrize(("method", "url", "why"), [
    # The old design card's partial scan: Plex >= 1.32.7 answers 404.
    ("PUT", "http://plex:32400/library/sections/1/refresh?path=%2Fdata", "PUT is not documented"),
    # A metadata refresh by GET: Plex answers 405.
    ("GET", "http://plex:32400/library/metadata/4711/refresh", "GET is not documented"),
    ("GET", "http://plex:32400/library/sections/1/scan?path=%2Fdata",
     "no documented path matches"),
    ("GET", "http://plex:32400/library/sections/1/all?type=1&includeGuid=1",
     "'includeGuid' is not documented"),
    ("GET", "http://plex:32400/library/sections/1/all?type=12", "12 is not one of"),
    ("GET", "http://plex:32400/library/sections/1/all?includeGuids=yes", "includeGuids"),
    ("PUT", "http://plex:32400/library/sections/movies/emptyTrash", "sectionId"),
    # The token belongs in a header: as a query parameter it is undocumented (and leaks).
    ("GET", "http://plex:32400/status/sessions?X-Plex-Token=abc", "'X-Plex-Token'"),
])
def test_an_undocumented_call_fails_the_contract(method, url, why):
    with pytest.raises(AssertionError, match=why):
        validate(method, url)


def test_a_missing_client_identifier_header_fails_the_contract():
    headers = {k: v for k, v in HEADERS.items() if k != "X-Plex-Client-Identifier"}
    with pytest.raises(AssertionError, match="X-Plex-Client-Identifier"):
        validate("GET", "http://plex:32400/library/sections/1/all?type=1", headers)


def test_the_deviations_are_needed_and_narrow():
    """Without its Deviation each exception would fail; the Deviations allow nothing more."""
    spec = plex_spec()
    with pytest.raises(AssertionError, match="GET is not documented"):
        validate_request(spec, "GET", "http://plex/library/sections/1/refresh?path=%2Fa",
                         headers=HEADERS)
    with pytest.raises(AssertionError, match="no documented path matches"):
        validate_request(spec, "GET", "http://plex/library/sections", headers=HEADERS)
    # The GET scan is held to the POST's parameters: an unknown one still fails.
    with pytest.raises(AssertionError, match="'paths' is not documented"):
        validate("GET", "http://plex:32400/library/sections/1/refresh?paths=%2Fa")
    # Only GET is rerouted: a DELETE of the section list is still undocumented.
    with pytest.raises(AssertionError, match="no documented path matches"):
        validate("DELETE", "http://plex:32400/library/sections")


def test_a_whole_adapter_run_follows_the_contract():
    """Every kind of request the adapter sends, from one run against a fake Plex."""
    from test_plex import full_run_calls

    calls = full_run_calls()
    kinds = {(c.request.method, _shape(c.request.path_url)) for c in calls}
    assert kinds == {
        ("GET", "/identity"), ("GET", "/library/sections"), ("GET", "/status/sessions"),
        ("GET", "/library/sections/N/all"), ("GET", "/library/sections/N/refresh"),
        ("PUT", "/library/metadata/N/refresh"), ("PUT", "/library/metadata/N/analyze"),
        ("PUT", "/library/sections/N/emptyTrash"), ("GET", "/library/metadata/N/allLeaves"),
    }
    assert check_contract(calls) == len(calls)


def _shape(path_url: str) -> str:
    path = path_url.split("?")[0]
    return "/".join("N" if part.isdigit() else part for part in path.split("/"))
