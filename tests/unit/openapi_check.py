"""Checks answers of the REST API against ``ryu_nat/operator/openapi.json``, with maintained validators.

Response bodies are validated by ``jsonschema`` (JSON Schema 2020-12, the
dialect of OpenAPI 3.1, with format checks such as ``ipv4``); ``$ref``s resolve
inside the description. The description itself is checked by
``openapi-spec-validator`` (:func:`check_document`).
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC: dict[str, Any] = json.loads(resources.files("ryu_nat.operator").joinpath("openapi.json").read_text())
_URI = "urn:ryu-nat:openapi"
_REGISTRY = Registry().with_resource(_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012))
_FORMATS = FormatChecker()


def operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The path template and operation that ``method path`` (no query) stands for; KeyError if none."""
    for template, item in SPEC["paths"].items():
        pattern = "^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise KeyError(f"{method} {path} is not in openapi.json")


def response(answer: dict[str, Any], *where: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A response object found at the keys ``where``, or the one in components/responses that it refers
    to; and the keys where it is."""
    if "$ref" in answer:
        name = answer["$ref"].removeprefix("#/components/responses/")
        found: dict[str, Any] = SPEC["components"]["responses"][name]
        return found, ("components", "responses", name)
    return answer, where


def check_response(method: str, path: str, status: int, content_type: str, body: bytes) -> None:
    """AssertionError unless the description documents this status and the body fits its schema."""
    template, op = operation(method, path.split("?", 1)[0])
    responses = op["responses"]
    answer_key = str(status) if str(status) in responses else ("default" if status >= 500 else None)
    assert answer_key in responses, f"{method} {template}: status {status} is not documented"
    answer, where = response(responses[answer_key], "paths", template, method.lower(), "responses", answer_key)
    content = answer.get("content")
    if content is None:
        return
    media = content_type.split(";", 1)[0].strip()
    assert media in content, f"{method} {template} {status}: content type {media!r} is not documented"
    if media == "application/json":
        errors = problems(json.loads(body), *where, "content", media, "schema")
        assert not errors, f"{method} {path} {status}: " + "; ".join(errors)


def problems(value: Any, *where: str) -> list[str]:
    """What is wrong with ``value`` under the schema found in the description by the keys ``where``
    (``"components", "schemas", "Error"``, say), one line per problem."""
    pointer = "".join("/" + key.replace("~", "~0").replace("/", "~1") for key in where)
    validator = Draft202012Validator({"$ref": f"{_URI}#{pointer}"}, registry=_REGISTRY, format_checker=_FORMATS)
    return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(value)]


def check_document() -> None:
    """Raise unless the description is a valid OpenAPI 3.1 document whose schemas are valid JSON Schema."""
    validate_openapi(SPEC)
    for schema in SPEC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
