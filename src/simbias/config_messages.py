"""Schema errors as one line each, naming the regime and the field, what was wrong and,
where it helps, what to write instead."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from jsonschema.exceptions import ValidationError


def as_list(x: Any) -> list:
    return x if isinstance(x, list) else [x]


def where(path: list) -> str:
    parts = [str(p) for p in path]
    if len(parts) >= 2 and parts[0] == "regimes":
        field = ".".join(parts[2:])
        return f"regime '{parts[1]}'" + (f", field '{field}'" if field else "")
    return "field '" + ".".join(parts) + "'" if parts else "top level"


def _fmt(x: Any) -> str:
    return repr(x) if isinstance(x, str) else json.dumps(x) if isinstance(x, bool | None) else f"{x!r}"


# Suggestions added to a range error on these fields.
_HINTS = {
    "eta": "the paper uses 0.05 or 0.1",
    "sigma": "σ = 0 is plain gradient descent",
    "sgd.steps": "0 runs no SGD: the flow starts from θ0",
    "m": "with one neuron F is constant on M (M fixes z = φ⁻¹(y/w)), so there is nothing to select",
    "activation.k": "beyond that z^(2k+1) overflows float64 as soon as |z| is a little above 1",
}


def _field_schema(root: dict | None, path: list) -> dict:
    """The schema of the field at ``path`` (a regime's fields through $defs.regime)."""
    if not root:
        return {}
    sub, parts = root, [str(p) for p in path]
    if len(parts) >= 2 and parts[0] == "regimes":
        sub, parts = root.get("$defs", {}).get("regime", {}), parts[2:]
    for p in parts:
        sub = sub.get("properties", {}).get(p, {})
    return sub


def _about(root: dict | None, path: list, schema: dict | None = None) -> str:
    """' (what the field is)' from the schema's title, or its description if that is short."""
    sub = _field_schema(root, path) or schema or {}
    d = sub.get("title") or sub.get("description") or (schema or {}).get("description") or ""
    d = " ".join(str(d).split())
    return f" ({d})" if d and len(d) <= 70 else ""


def _hint(path: list) -> str:
    parts = [str(p) for p in path]
    key = ".".join(parts[2:]) if len(parts) >= 2 and parts[0] == "regimes" else ".".join(parts)
    if re.fullmatch(r"sweep\.m\.\d+", key):  # a value of a sweep over m: the hint of m
        key = "m"
    return f"; {_HINTS[key]}" if key in _HINTS else ""


_TYPE_WORDS = {
    "integer": "a whole number",
    "number": "a number",
    "string": "text",
    "boolean": "true or false",
    "object": "a mapping (key: value lines, or {key: value})",
    "array": "a list",
}


def _describe(err: ValidationError, root: dict | None = None) -> tuple[tuple, str, str | None]:
    """(path, message, suggested field) for one schema error."""
    path = list(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        key = extra[0]
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known fields: {', '.join(allowed)})"
        return tuple(path + [key]), f"{where(path + [key])}: unknown field{hint}", (close or [None])[0]
    if v == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)[0]
        sub = err.schema.get("properties", {}).get(missing, {})
        return (
            tuple(path + [missing]),
            f"{where(path + [missing])}: required field is missing{_about(root, path + [missing], sub)}",
            None,
        )
    if "propertyNames" in list(err.absolute_schema_path):
        return (
            tuple(path),
            f"regime name {err.instance!r} is not path-safe: use letters, digits, '_' and '-' only "
            "(no '/', '..' or spaces), starting with a letter or digit",
            None,
        )
    at = where(path)
    if v == "type":
        want = " or ".join(_TYPE_WORDS.get(t, t) for t in as_list(err.validator_value))
        extra = (
            "; use '.' as the decimal mark" if isinstance(err.instance, str) and "," in err.instance else ""
        )
        about = _about(root, path, err.schema)
        return tuple(path), f"{at}: must be {want}{about}, got {_fmt(err.instance)}{extra}", None
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": "≥", "exclusiveMinimum": ">", "maximum": "≤", "exclusiveMaximum": "<"}[v]
        return (
            tuple(path),
            f"{at}: must be {op} {err.validator_value:g}{_about(root, path, err.schema)}, "
            f"got {_fmt(err.instance)}{_hint(path)}",
            None,
        )
    if v == "enum":
        opts = [str(o) for o in err.validator_value]
        close = difflib.get_close_matches(str(err.instance).lower(), opts, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return tuple(path), f"{at}: {_fmt(err.instance)} is not one of {', '.join(opts)}{hint}", None
    if v == "minProperties" and path == ["regimes"]:
        return tuple(path), "field 'regimes': no regimes defined; add at least one under 'regimes:'", None
    if v == "minLength":
        return tuple(path), f"{at}: must not be empty", None
    return tuple(path), f"{at}: {err.message}", None


def messages(errors: list[ValidationError], root: dict | None = None) -> list[str]:
    """One message per field; a missing field that a typo was meant to be is not repeated."""
    described = [_describe(e, root) for e in errors]
    meant = {p[:-1] + (s,) for p, _, s in described if s is not None}
    by_path: dict[tuple, str] = {}
    for p, msg, _ in described:
        if "required field is missing" in msg and p in meant:
            continue
        by_path.setdefault(p, msg)
    return list(dict.fromkeys(by_path.values()))
