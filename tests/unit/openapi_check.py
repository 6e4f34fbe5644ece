"""Checks answers of the REST API against ``ryu_nat/operator/openapi.json``.

A small JSON Schema checker for the keywords the description uses (type,
properties, required, additionalProperties, items, enum, minimum, maximum,
oneOf, $ref, format ipv4); a keyword it does not know fails the check, so the
description cannot drift into what goes unchecked.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from ipaddress import IPv4Address
from typing import Any

SPEC: dict[str, Any] = json.loads(resources.files("ryu_nat.operator").joinpath("openapi.json").read_text())
_ANNOTATIONS = {"description", "title", "example"}
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The path template and operation that ``method path`` (no query) stands for; KeyError if none."""
    for template, item in SPEC["paths"].items():
        pattern = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise KeyError(f"{method} {path} is not in openapi.json")


def response(answer: dict[str, Any]) -> dict[str, Any]:
    """A response object, or the one in components/responses that it refers to."""
    if "$ref" in answer:
        found: dict[str, Any] = SPEC["components"]["responses"][answer["$ref"].removeprefix("#/components/responses/")]
        return found
    return answer


def check_response(method: str, path: str, status: int, content_type: str, body: bytes) -> None:
    """AssertionError unless the description documents this status and the body fits its schema."""
    template, op = operation(method, path.split("?", 1)[0])
    responses = op["responses"]
    answer = responses.get(str(status)) or (responses.get("default") if status >= 500 else None)
    assert answer is not None, f"{method} {template}: status {status} is not documented"
    answer = response(answer)
    content = answer.get("content")
    if content is None:
        return
    media = content_type.split(";", 1)[0].strip()
    assert media in content, f"{method} {template} {status}: content type {media!r} is not documented"
    if media == "application/json":
        errors = validate(json.loads(body), content[media]["schema"], "$")
        assert not errors, f"{method} {path} {status}: " + "; ".join(errors)


def validate(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """What is wrong with ``value`` under ``schema``, one line per problem."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/components/schemas/")
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return validate(value, SPEC["components"]["schemas"][name], where) + validate(value, rest, where)
    errors: list[str] = []
    for keyword, rule in schema.items():
        if keyword in _ANNOTATIONS or keyword in ("properties", "additionalProperties"):
            continue
        if keyword == "type":
            types = rule if isinstance(rule, list) else [rule]
            if not any(_is_type(value, t) for t in types):
                return [f"{where}: {value!r} is not of type {rule}"]
        elif keyword == "required":
            errors += [f"{where}: missing {key!r}" for key in rule if isinstance(value, dict) and key not in value]
        elif keyword == "items":
            if isinstance(value, list):
                for index, item in enumerate(value):
                    errors += validate(item, rule, f"{where}[{index}]")
        elif keyword == "enum":
            if value not in rule:
                errors.append(f"{where}: {value!r} is not one of {rule}")
        elif keyword == "minimum":
            if _is_number(value) and value < rule:
                errors.append(f"{where}: {value} < {rule}")
        elif keyword == "maximum":
            if _is_number(value) and value > rule:
                errors.append(f"{where}: {value} > {rule}")
        elif keyword == "oneOf":
            fits = [option for option in rule if not validate(value, option, where)]
            if len(fits) != 1:
                errors.append(f"{where}: {value!r} fits {len(fits)} of the oneOf options")
        elif keyword == "format":
            if rule != "ipv4":
                errors.append(f"{where}: unknown format {rule!r}")
            elif isinstance(value, str):
                try:
                    IPv4Address(value)
                except ValueError:
                    errors.append(f"{where}: {value!r} is not an IPv4 address")
        else:
            errors.append(f"{where}: schema keyword {keyword!r} is not checked by this validator")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                errors += validate(item, properties[key], f"{where}.{key}")
            elif extra is False:
                errors.append(f"{where}: unexpected property {key!r}")
            elif isinstance(extra, dict):
                errors += validate(item, extra, f"{where}.{key}")
    return errors


_KNOWN = {"type", "properties", "required", "additionalProperties", "items", "enum", "minimum", "maximum", "oneOf",
          "$ref", "format", *_ANNOTATIONS}


def unknown_keywords(node: Any, where: str = "$") -> list[str]:
    """Schema keywords under ``node`` (any part of the description) that :func:`validate` does not check."""
    found: list[str] = []
    if isinstance(node, dict):
        if "schema" in node and isinstance(node["schema"], dict):
            found += _schema_unknowns(node["schema"], f"{where}.schema")
        for key, value in node.items():
            if key != "schema":
                found += unknown_keywords(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += unknown_keywords(value, f"{where}[{index}]")
    return found


def _schema_unknowns(schema: dict[str, Any], where: str) -> list[str]:
    found = [f"{where}.{key}" for key in schema if key not in _KNOWN]
    for key, sub in schema.get("properties", {}).items():
        found += _schema_unknowns(sub, f"{where}.properties.{key}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found += _schema_unknowns(schema[key], f"{where}.{key}")
    for index, sub in enumerate(schema.get("oneOf", [])):
        found += _schema_unknowns(sub, f"{where}.oneOf[{index}]")
    return found


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return _is_number(value)
    return isinstance(value, _TYPES[name]) and not (name != "boolean" and isinstance(value, bool))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
