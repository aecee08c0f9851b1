"""A small OpenAPI 3 request validator for contract tests.

Adapters are tested with `responses`, which answers whatever the test registered: a
request to an endpoint the real server does not have, with a misspelt parameter or an
enum value the server rejects, would pass unnoticed. This module checks each request an
adapter sent against the player's published OpenAPI document (3.0 or 3.1, JSON or YAML):

- method + path must match a documented operation (templates like /Items/{itemId}/Refresh;
  literal segments win over templated ones, as servers route them);
- every query parameter must be documented for that operation, its value must satisfy the
  parameter's schema (types, enums, formats such as uuid/int32), and required path/query
  parameters must be present;
- a JSON body must match the requestBody schema ($ref resolved), and a body sent to an
  operation that documents none (or none sent where one is required) fails;
- header parameters are checked only when the caller passes the request's headers.

Known, documented deviations (e.g. Plex partial scans are GET although the spec says
POST) are declared with `Deviation`, each with the reason, so they stay visible.

Usage:
    spec = load_spec(path)                      # slow for big specs: once per session
    validate_request(spec, "POST", url, body)   # raises AssertionError with the reason
    validate_calls(spec, responses.calls)       # all calls, every problem in one message
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from jsonschema import FormatChecker
from openapi_schema_validator import OAS30Validator, OAS31Validator

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass(frozen=True)
class Deviation:
    """A known, intended difference between what an adapter sends and the spec.

    method/path: the request as sent (path is the spec's template, e.g.
    "/library/sections/{sectionId}/refresh"). validate_as: validate it as if sent with
    this documented method instead. extra_params: query parameters allowed although the
    spec does not list them. validate_path: for a path the spec does not have at all
    (`path` is then the path as sent, or a template of it), the documented template to
    validate it against instead. reason: why (required, so the exception explains itself).
    """

    method: str
    path: str
    reason: str
    validate_as: str | None = None
    extra_params: frozenset[str] = frozenset()
    validate_path: str | None = None

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError("a Deviation needs a reason")
        object.__setattr__(self, "method", self.method.upper())
        object.__setattr__(self, "extra_params", frozenset(self.extra_params))


@dataclass
class _Param:
    name: str
    location: str
    required: bool
    schema: dict[str, Any]
    style: str
    explode: bool


@dataclass
class _Operation:
    method: str
    template: str
    params: list[_Param]
    body: dict[str, Any] | None  # the requestBody object, $ref resolved
    #: query names documented as properties of an exploded form-style object parameter
    object_props: dict[str, dict[str, Any]] = field(default_factory=dict)


class Spec:
    """A loaded OpenAPI document with its path templates compiled for matching."""

    def __init__(self, document: Mapping[str, Any], *, source: str = "spec"):
        self.doc = dict(document)
        self.source = source
        version = str(self.doc.get("openapi", ""))
        if not version.startswith("3."):
            raise ValueError(f"{source}: not an OpenAPI 3 document (openapi={version!r})")
        self.version = version
        cls = OAS31Validator if version.startswith("3.1") else OAS30Validator
        # The whole document is the root schema, so "#/components/..." refs resolve in it;
        # evolve(schema=...) keeps that resolver for every sub-schema we validate.
        self._root = cls(self.doc, format_checker=_format_checker())
        self._paths: list[tuple[re.Pattern[str], str, int]] = []
        for template in self.doc.get("paths", {}):
            literal = sum(1 for seg in template.split("/") if seg and "{" not in seg)
            self._paths.append((_template_regex(template), template, literal))

    @property
    def title(self) -> str:
        info = self.doc.get("info", {})
        return f"{info.get('title', self.source)} {info.get('version', '')}".strip()

    def resolve(self, node: Any) -> Any:
        """Follow local $refs ("#/a/b") until a non-ref node."""
        seen = 0
        while isinstance(node, Mapping) and "$ref" in node and len(node) <= 3:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise AssertionError(f"{self.source}: only local $refs are supported: {ref}")
            target: Any = self.doc
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
            seen += 1
            if seen > 50:
                raise AssertionError(f"{self.source}: $ref loop at {ref}")
        return node

    def errors(self, schema: Mapping[str, Any], value: Any) -> list[str]:
        validator = self._root.evolve(schema=schema)
        found = []
        for error in sorted(validator.iter_errors(value), key=lambda e: list(e.path)):
            where = "/".join(str(p) for p in error.path)
            text = f"{where}: {error.message}" if where else error.message
            if text not in found:  # an enum repeated through allOf/$ref reports twice
                found.append(text)
        return found

    def match(self, path: str) -> list[tuple[str, dict[str, str]]]:
        """Templates matching a concrete path, best (most literal segments) first."""
        hits = []
        for regex, template, literal in self._paths:
            m = regex.fullmatch(path)
            if m:
                hits.append((literal, template, {k: unquote(v) for k, v in m.groupdict().items()}))
        hits.sort(key=lambda h: -h[0])
        return [(template, values) for _, template, values in hits]

    @lru_cache(maxsize=512)  # noqa: B019 - specs live for the test session
    def operation(self, method: str, template: str) -> _Operation | None:
        item = self.doc["paths"][template]
        op = item.get(method.lower())
        if not isinstance(op, Mapping):
            return None
        merged: dict[tuple[str, str], Mapping[str, Any]] = {}
        for raw in [*item.get("parameters", []), *op.get("parameters", [])]:
            p = self.resolve(raw)
            merged[(p["name"], p["in"])] = p  # operation level overrides path level
        params = []
        object_props: dict[str, dict[str, Any]] = {}
        for p in merged.values():
            location = p["in"]
            style = p.get("style", "simple" if location in ("path", "header") else "form")
            explode = p.get("explode", style == "form")
            schema = p.get("schema") or {}
            params.append(_Param(p["name"], location, bool(p.get("required")), schema, style,
                                 explode))
            if location == "query" and style == "form" and explode:
                props = self._object_properties(schema)
                for name, sub in props.items():
                    object_props.setdefault(name, sub)
        body = op.get("requestBody")
        return _Operation(method.upper(), template, params,
                          self.resolve(body) if body else None, object_props)

    def _object_properties(self, schema: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """Properties of an object-typed query parameter (serialized as separate keys)."""
        schema = self.resolve(schema)
        found: dict[str, dict[str, Any]] = {}
        if not isinstance(schema, Mapping):
            return found
        if schema.get("type") == "object" or "properties" in schema:
            for name, sub in schema.get("properties", {}).items():
                found[name] = sub
        for key in ("oneOf", "anyOf", "allOf"):
            for sub in schema.get(key, []):
                found.update(self._object_properties(sub))
        return found

    def types_of(self, schema: Any, depth: int = 0) -> set[str]:
        """The JSON types a schema allows (through $ref/allOf/oneOf/anyOf)."""
        schema = self.resolve(schema)
        if not isinstance(schema, Mapping) or depth > 10:
            return set()
        found: set[str] = set()
        kind = schema.get("type")
        if isinstance(kind, str):
            found.add(kind)
        elif isinstance(kind, list):
            found.update(kind)
        for key in ("allOf", "oneOf", "anyOf"):
            for sub in schema.get(key, []):
                found |= self.types_of(sub, depth + 1)
        if not found and "enum" in schema:
            found |= {_json_type(v) for v in schema["enum"]}
        return found

    def item_schema(self, schema: Any) -> Any:
        schema = self.resolve(schema)
        if isinstance(schema, Mapping):
            if "items" in schema:
                return schema["items"]
            for key in ("allOf", "oneOf", "anyOf"):
                for sub in schema.get(key, []):
                    found = self.item_schema(sub)
                    if found is not None:
                        return found
        return None


def load_spec(path: str | Path) -> Spec:
    """Load an OpenAPI document (JSON or YAML). Large specs: call once per test session."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OpenAPI spec not found: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        doc = json.loads(text)
    else:
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        doc = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    return Spec(doc, source=path.name)


def validate_request(spec: Spec | Mapping[str, Any], method: str, url: str, body: Any = None,
                     *, headers: Mapping[str, str] | None = None, base_path: str = "",
                     deviations: Iterable[Deviation] = ()) -> None:
    """Raise AssertionError when the request is not what the spec documents.

    url: the full URL sent (or just path?query). base_path: a prefix the server is
    mounted under (a reverse-proxy base URL such as "/jellyfin") to strip first.
    body: the request body (bytes/str JSON text, or an already parsed value; None = none).
    headers: when given, documented header parameters are checked too.
    """
    if not isinstance(spec, Spec):
        spec = Spec(spec)
    problems = _problems(spec, method.upper(), url, body, headers, base_path, list(deviations))
    if problems:
        raise AssertionError(f"{method.upper()} {_shown(url)} does not follow {spec.title}:\n  "
                             + "\n  ".join(problems))


def validate_calls(spec: Spec, calls: Iterable[Any], *, base_path: str = "",
                   deviations: Iterable[Deviation] = (), check_headers: bool = False) -> int:
    """Validate every request of `responses.calls` (or of PreparedRequests); report all.

    Returns how many requests were checked, so a test can assert it checked something.
    """
    deviations = list(deviations)
    failures = []
    count = 0
    for call in calls:
        request = getattr(call, "request", call)
        count += 1
        try:
            validate_request(spec, request.method, request.url, request.body,
                             headers=request.headers if check_headers else None,
                             base_path=base_path, deviations=deviations)
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        raise AssertionError(f"{len(failures)} of {count} request(s) break the contract:\n"
                             + "\n".join(failures))
    return count


# --- internals ---------------------------------------------------------------------------

def _problems(spec: Spec, method: str, url: str, body: Any,
              headers: Mapping[str, str] | None, base_path: str,
              deviations: list[Deviation]) -> list[str]:
    parts = urlsplit(url)
    path = parts.path or "/"
    base = "/" + base_path.strip("/") if base_path.strip("/") else ""
    if base:
        if not (path == base or path.startswith(base + "/")):
            return [f"path {path} is not under the base path {base}"]
        path = path[len(base):] or "/"
    matches = spec.match(path)
    rerouted: Deviation | None = None
    if not matches:
        for d in deviations:
            found = _template_regex(d.path).fullmatch(path) if d.validate_path else None
            if d.method == method and found:
                values = {k: unquote(v) for k, v in found.groupdict().items()}
                matches, rerouted = [(d.validate_path, values)], d
                break
    if not matches:
        return [f"no documented path matches {path}"]

    op: _Operation | None = None
    path_values: dict[str, str] = {}
    deviation: Deviation | None = None
    for template, values in matches:
        deviation = rerouted or next((d for d in deviations
                                      if d.method == method and d.path == template), None)
        documented = deviation.validate_as if deviation and deviation.validate_as else method
        op = spec.operation(documented.lower(), template)
        if op is not None:
            path_values = values
            break
    if op is None:
        allowed = sorted({m.upper() for t, _ in matches
                          for m in spec.doc["paths"][t] if m in HTTP_METHODS})
        return [f"{method} is not documented for {matches[0][0]} "
                f"(documented: {', '.join(allowed) or 'none'})"]

    problems: list[str] = []
    query: dict[str, list[str]] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(key, []).append(value)
    extra = deviation.extra_params if deviation else frozenset()

    by_location: dict[str, dict[str, _Param]] = {}
    for p in op.params:
        by_location.setdefault(p.location, {})[p.name] = p

    # path parameters
    for name, raw in path_values.items():
        param = by_location.get("path", {}).get(name)
        if param is None:
            problems.append(f"path parameter {{{name}}} is not declared for {op.template}")
            continue
        problems += _check_value(spec, param, [raw])

    # query parameters
    documented_query = by_location.get("query", {})
    for name, values in query.items():
        param = documented_query.get(name)
        if param is not None:
            problems += _check_value(spec, param, values)
        elif name in op.object_props:
            problems += _check_value(spec, _Param(name, "query", False, op.object_props[name],
                                                  "form", True), values)
        elif name not in extra:
            known = ", ".join(sorted(documented_query)) or "none"
            problems.append(f"query parameter {name!r} is not documented for "
                            f"{op.method} {op.template} (documented: {_clip(known)})")
    for name, param in documented_query.items():
        if param.required and name not in query:
            problems.append(f"required query parameter {name!r} is missing")

    # header parameters (only when the caller gave us the headers)
    if headers is not None:
        lower = {k.lower(): v for k, v in headers.items()}
        for name, param in by_location.get("header", {}).items():
            if name.lower() in ("accept", "content-type", "authorization"):
                continue  # OpenAPI 3 ignores these as parameters
            if name.lower() in lower:
                problems += _check_value(spec, param, [lower[name.lower()]])
            elif param.required:
                problems.append(f"required header {name!r} is missing")

    # body
    problems += _check_body(spec, op, body)
    return problems


def _check_value(spec: Spec, param: _Param, values: list[str]) -> list[str]:
    label = f"{param.location} parameter {param.name!r}"
    types = spec.types_of(param.schema)
    if "array" in types:
        items_schema = spec.item_schema(param.schema) or {}
        raw_items: list[str] = []
        if param.explode:
            raw_items = list(values)
        else:
            if len(values) > 1:
                return [f"{label} is repeated but documented as one comma-separated value"]
            delimiter = {"spaceDelimited": " ", "pipeDelimited": "|"}.get(param.style, ",")
            raw_items = values[0].split(delimiter) if values[0] else []
        value: Any = [_coerce(spec, items_schema, item) for item in raw_items]
    else:
        if len(values) > 1:
            return [f"{label} is sent {len(values)} times but takes a single value"]
        value = _coerce(spec, param.schema, values[0])
    if isinstance(value, _Bad):
        return [f"{label}: {value.why}"]
    if isinstance(value, list):
        bad = [v for v in value if isinstance(v, _Bad)]
        if bad:
            return [f"{label}: {bad[0].why}"]
    return [f"{label}={_clip(', '.join(values))!s}: {e}" for e in spec.errors(param.schema, value)]


@dataclass
class _Bad:
    why: str


def _coerce(spec: Spec, schema: Any, raw: str) -> Any:
    """Turn a query-string value into the JSON value its schema describes."""
    types = spec.types_of(schema)
    if "integer" in types and re.fullmatch(r"-?\d+", raw):
        return int(raw)
    if "number" in types and re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", raw):
        return float(raw)
    if "boolean" in types:
        if raw in ("true", "false"):
            return raw == "true"
        if types <= {"boolean", "null"}:
            return _Bad(f"{raw!r} is not a boolean (send 'true' or 'false')")
    if types and types <= {"integer", "number", "null"}:
        return _Bad(f"{raw!r} is not a number")
    return raw


def _check_body(spec: Spec, op: _Operation, body: Any) -> list[str]:
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    if body == "":
        body = None
    if op.body is None:
        return [] if body is None else [f"{op.method} {op.template} documents no request body"]
    if body is None:
        return ["a request body is required but none was sent"] if op.body.get("required") \
            else []
    content = op.body.get("content", {})
    media = next((c for c in ("application/json", "text/json", "application/*+json")
                  if c in content), None)
    if media is None:
        media = next((c for c in content if "json" in c), None)
    if media is None:
        return [f"the request body is JSON but the spec documents only {', '.join(content)}"]
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return ["the request body is not valid JSON"]
    schema = content[media].get("schema")
    if schema is None:
        return []
    return [f"body {e}" for e in spec.errors(schema, body)]


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = ""
    for piece in re.split(r"(\{[^}/]+\})", template):
        if piece.startswith("{") and piece.endswith("}"):
            name = re.sub(r"\W", "_", piece[1:-1])
            pattern += f"(?P<{name}>[^/]+)"
        else:
            pattern += re.escape(piece)
    # servers often accept a trailing slash; the spec paths have none
    return re.compile(pattern + "/?")


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())

    @checker.checks("uuid")
    def _uuid(value: object) -> bool:
        # Jellyfin writes ids as 32 hex digits, and accepts the dashed form too
        if not isinstance(value, str):
            return True
        return bool(re.fullmatch(r"[0-9a-fA-F]{32}", value) or re.fullmatch(
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            value))

    @checker.checks("int32")
    def _int32(value: object) -> bool:
        return not isinstance(value, int) or -(2**31) <= value < 2**31

    @checker.checks("int64")
    def _int64(value: object) -> bool:
        return not isinstance(value, int) or -(2**63) <= value < 2**63

    return checker


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if value is None:
        return "null"
    return "string"


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


@cache
def shared_spec(name: str) -> Spec:
    """A spec from ../shared/specs, loaded once per test session (they are large)."""
    return load_spec(find_spec(name))


def spec_dirs(repo_root: Path) -> Sequence[Path]:
    """Where the shared specs live: ../shared/specs beside the repo (CI), then /work."""
    return [(repo_root / ".." / "shared" / "specs").resolve(), Path("/work/shared/specs")]


def find_spec(name: str, repo_root: Path | None = None) -> Path:
    """The path of a shared spec; raise (never skip) when it is missing."""
    root = repo_root or Path(__file__).resolve().parents[2]
    tried = []
    for folder in spec_dirs(root):
        candidate = folder / name
        if candidate.is_file():
            return candidate
        tried.append(str(candidate))
    raise FileNotFoundError(f"OpenAPI spec {name} not found; looked in: {', '.join(tried)}")
