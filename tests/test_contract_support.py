"""The contract validator itself: it must pass documented requests and catch the rest.

A small hand-written spec keeps these tests exact; one test per real spec proves the
validator copes with the shared Jellyfin (JSON, 3.0) and Plex (YAML, 3.1) documents.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.contract import (
    Deviation,
    Spec,
    find_spec,
    load_spec,
    validate_calls,
    validate_request,
)

MINI = {
    "openapi": "3.0.1",
    "info": {"title": "Mini", "version": "1"},
    "paths": {
        "/Items/{itemId}/Refresh": {
            "post": {
                "parameters": [
                    {"name": "itemId", "in": "path", "required": True,
                     "schema": {"type": "string", "format": "uuid"}},
                    {"name": "mode", "in": "query",
                     "schema": {"allOf": [{"$ref": "#/components/schemas/Mode"}]}},
                    {"name": "force", "in": "query", "schema": {"type": "boolean"}},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "format": "int32"}},
                ],
            },
        },
        "/Items/Counts": {"get": {}},
        "/Items/{itemId}": {"get": {}},
        "/Items": {
            "get": {
                "parameters": [
                    {"name": "fields", "in": "query",
                     "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Field"}}},
                    {"name": "ids", "in": "query", "style": "form", "explode": False,
                     "schema": {"type": "array", "items": {"type": "string"}}},
                    {"name": "parentId", "in": "query", "required": True,
                     "schema": {"type": "string"}},
                ],
            },
        },
        "/Updated": {
            "post": {
                "requestBody": {"$ref": "#/components/requestBodies/Updates"},
            },
        },
        "/scan": {
            "post": {"parameters": [{"name": "path", "in": "query",
                                     "schema": {"type": "string"}}]},
        },
    },
    "components": {
        "schemas": {
            "Mode": {"enum": ["None", "Default", "FullRefresh"], "type": "string"},
            "Field": {"enum": ["Path", "ProviderIds"], "type": "string"},
            "Update": {"type": "object", "additionalProperties": False,
                       "required": ["Path"],
                       "properties": {"Path": {"type": "string"},
                                      "UpdateType": {"type": "string", "nullable": True}}},
        },
        "requestBodies": {
            "Updates": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"Updates": {"type": "array",
                                           "items": {"$ref": "#/components/schemas/Update"}}},
            }}}},
        },
    },
}
ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def mini() -> Spec:
    return Spec(MINI, source="mini")


def fails(spec: Spec, *args, **kw) -> str:
    with pytest.raises(AssertionError) as caught:
        validate_request(spec, *args, **kw)
    return str(caught.value)


def test_documented_requests_pass(mini: Spec) -> None:
    validate_request(mini, "POST", f"http://h:8096/Items/{ID}/Refresh?mode=Default&force=true"
                                   "&limit=5")
    validate_request(mini, "post", f"/Items/{ID.upper()}/Refresh")  # method case, no query
    validate_request(mini, "GET", "http://h/Items?parentId=x&fields=Path&fields=ProviderIds"
                                  "&ids=a,b")
    validate_request(mini, "POST", "http://h/Updated",
                     b'{"Updates": [{"Path": "/m/a.mkv", "UpdateType": null}]}')
    validate_request(mini, "POST", "http://h/Updated", {"Updates": []})


def test_literal_path_segments_win_over_templates(mini: Spec) -> None:
    # /Items/Counts is its own operation, not /Items/{itemId} with itemId="Counts"
    assert mini.match("/Items/Counts")[0][0] == "/Items/Counts"
    validate_request(mini, "GET", "http://h/Items/Counts")


def test_base_path_is_stripped(mini: Spec) -> None:
    validate_request(mini, "GET", "http://h/jf/Items?parentId=x", base_path="jf")
    assert "not under the base path /jf" in fails(mini, "GET", "http://h/Items?parentId=x",
                                                  base_path="/jf")


def test_undocumented_path(mini: Spec) -> None:
    assert "no documented path matches /Library/Refresh" in fails(
        mini, "POST", "http://h/Library/Refresh")


def test_undocumented_method(mini: Spec) -> None:
    text = fails(mini, "GET", f"http://h/Items/{ID}/Refresh")
    assert "GET is not documented for /Items/{itemId}/Refresh (documented: POST)" in text


def test_undocumented_query_parameter(mini: Spec) -> None:
    text = fails(mini, "POST", f"http://h/Items/{ID}/Refresh?mode=Default&Recursive=true")
    assert "query parameter 'Recursive' is not documented for POST /Items/{itemId}/Refresh" \
        in text
    assert "documented: force, limit, mode" in text


def test_bad_enum_value_through_ref(mini: Spec) -> None:
    text = fails(mini, "POST", f"http://h/Items/{ID}/Refresh?mode=Full")
    assert "query parameter 'mode'=Full: 'Full' is not one of ['None', 'Default', " \
           "'FullRefresh']" in text
    assert text.count("is not one of") == 1  # reported once, not once per allOf branch


def test_array_items_are_checked_and_explode_is_respected(mini: Spec) -> None:
    # exploded (the default): a comma-joined value is one (wrong) item
    assert "'Path,ProviderIds' is not one of" in fails(
        mini, "GET", "http://h/Items?parentId=x&fields=Path,ProviderIds")
    assert "'Overview' is not one of" in fails(mini, "GET", "http://h/Items?parentId=x"
                                                            "&fields=Overview")
    # explode=false: one comma-separated value, never repeated
    assert "repeated but documented as one comma-separated value" in fails(
        mini, "GET", "http://h/Items?parentId=x&ids=a&ids=b")


def test_scalar_types_and_formats(mini: Spec) -> None:
    assert "'True' is not a boolean" in fails(mini, "POST", f"http://h/Items/{ID}/Refresh"
                                                            "?force=True")
    assert "'ten' is not a number" in fails(mini, "POST", f"http://h/Items/{ID}/Refresh"
                                                          "?limit=ten")
    assert "is not a 'int32'" in fails(mini, "POST", f"http://h/Items/{ID}/Refresh"
                                                     "?limit=99999999999")
    assert "path parameter 'itemId'=Heat (1995): 'Heat (1995)' is not a 'uuid'" in fails(
        mini, "POST", "http://h/Items/Heat%20(1995)/Refresh")
    assert "takes a single value" in fails(mini, "POST", f"http://h/Items/{ID}/Refresh"
                                                         "?mode=Default&mode=None")


def test_required_parameter_missing(mini: Spec) -> None:
    assert "required query parameter 'parentId' is missing" in fails(
        mini, "GET", "http://h/Items?fields=Path")


def test_body_checked_against_schema(mini: Spec) -> None:
    assert "body Updates/0: Additional properties are not allowed ('path' was unexpected)" \
        in fails(mini, "POST", "http://h/Updated", json.dumps({"Updates": [{"path": "/a"}]}))
    assert "a request body is required but none was sent" in fails(mini, "POST",
                                                                   "http://h/Updated")
    assert "documents no request body" in fails(mini, "POST", f"http://h/Items/{ID}/Refresh",
                                                b'{"Recursive": true}')
    assert "not valid JSON" in fails(mini, "POST", "http://h/Updated", b"{oops")


def test_deviation_validates_as_documented_method_and_needs_a_reason(mini: Spec) -> None:
    assert "GET is not documented for /scan" in fails(mini, "GET", "http://h/scan?path=%2Fm")
    allowed = Deviation("GET", "/scan", reason="servers only accept GET here",
                        validate_as="POST")
    validate_request(mini, "GET", "http://h/scan?path=%2Fm", deviations=[allowed])
    # the deviation changes the method only: parameters are still checked
    assert "'force' is not documented" in fails(mini, "GET", "http://h/scan?force=1",
                                                deviations=[allowed])
    extra = Deviation("GET", "/scan", reason="x", validate_as="POST",
                      extra_params=frozenset({"force"}))
    validate_request(mini, "GET", "http://h/scan?force=1", deviations=[extra])
    with pytest.raises(ValueError, match="needs a reason"):
        Deviation("GET", "/scan", reason=" ")


def test_validate_calls_reports_every_failure(mini: Spec) -> None:
    import requests

    good = requests.Request("GET", "http://h/Items", params={"parentId": "x"}).prepare()
    bad1 = requests.Request("GET", "http://h/Nope").prepare()
    bad2 = requests.Request("POST", "http://h/Updated", json={"Updates": [{}]}).prepare()
    with pytest.raises(AssertionError) as caught:
        validate_calls(mini, [good, bad1, bad2])
    text = str(caught.value)
    assert text.startswith("2 of 3 request(s) break the contract")
    assert "no documented path matches /Nope" in text
    assert "'Path' is a required property" in text
    assert validate_calls(mini, [good]) == 1


def test_real_jellyfin_spec_loads_and_validates() -> None:
    spec = load_spec(find_spec("jellyfin-openapi-10.11.11.json"))
    validate_request(spec, "POST", f"http://h/Items/{ID}/Refresh?metadataRefreshMode=Default"
                                   "&imageRefreshMode=Default&replaceAllMetadata=false"
                                   "&replaceAllImages=false")
    assert "'Recursive' is not documented" in fails(
        spec, "POST", f"http://h/Items/{ID}/Refresh?Recursive=true")


def test_real_plex_yaml_spec_with_header_parameters() -> None:
    spec = load_spec(find_spec("plex-api-spec.yaml"))
    headers = {"X-Plex-Client-Identifier": "abc", "accepts": "application/json"}
    validate_request(spec, "GET", "http://h/library/sections/1/all?type=1&includeGuids=1",
                     headers=headers)
    text = fails(spec, "GET", "http://h/library/sections/1/all?includeGuids=2", headers={})
    assert "'includeGuids'=2: 2 is not one of [0, 1]" in text
    assert "required header 'X-Plex-Client-Identifier' is missing" in text


def test_missing_spec_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such.json not found; looked in"):
        find_spec("no-such.json", repo_root=tmp_path)
    with pytest.raises(FileNotFoundError):
        load_spec(tmp_path / "x.json")
