"""Config validation: JSON-schema with defaults, and messages that name regime and field."""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

# Fields of a regime that the data stage depends on (so editing σ does not redo data).
DATA_FIELDS = ("m", "d", "n", "replicas", "data", "labels", "weights", "init")


class ConfigError(ValueError):
    """A config.yaml problem, with the regime and field it concerns."""


def _with_defaults(cls):
    validate_props = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return validators.extend(cls, {"properties": set_defaults})


_Validator = _with_defaults(Draft202012Validator)


def load_schema(path: Path | str = SCHEMA_PATH) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def _where(path: list) -> str:
    parts = [str(p) for p in path]
    if len(parts) >= 2 and parts[0] == "regimes":
        field = ".".join(parts[2:])
        return f"regime '{parts[1]}'" + (f", field '{field}'" if field else "")
    return "field '" + ".".join(parts) + "'" if parts else "top level"


def _describe(err: ValidationError) -> str:
    path = list(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = list(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        msgs = []
        for key in extra:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known fields: {', '.join(allowed)})"
            msgs.append(f"{_where(path + [key])}: unknown field{hint}")
        return "; ".join(msgs)
    if err.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)
        return f"{_where(path + missing)}: required field is missing"
    if "propertyNames" in list(err.absolute_schema_path):
        return (
            f"regime name {err.instance!r} is not path-safe: use letters, digits, '_' and '-' only "
            "(no '/', '..' or spaces), starting with a letter or digit"
        )
    if err.validator == "enum":
        return f"{_where(path)}: {err.instance!r} is not one of {err.validator_value}"
    return f"{_where(path)}: {err.message}"


def _coerce_numeric_strings(cfg: dict, schema: dict) -> list[str]:
    """YAML reads ``1e-3`` as text: turn such strings into numbers where a number is expected."""
    notes = []
    for _ in range(100):
        v = _Validator(schema)
        errs = [
            e
            for e in v.iter_errors(copy.deepcopy(cfg))
            if e.validator == "type"
            and isinstance(e.instance, str)
            and set(_as_list(e.validator_value)) & {"number", "integer"}
        ]
        changed = False
        for e in errs:
            try:
                num = float(e.instance)
            except ValueError:
                continue
            if "integer" in _as_list(e.validator_value) and "number" not in _as_list(e.validator_value):
                if not num.is_integer():
                    continue
                num = int(num)
            _set(cfg, list(e.absolute_path), num)
            notes.append(f"{_where(list(e.absolute_path))}: read text {e.instance!r} as the number {num!r}")
            changed = True
        if not changed:
            break
    return notes


def _as_list(x: Any) -> list:
    return x if isinstance(x, list) else [x]


def _set(obj: Any, path: list, value: Any) -> None:
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Validate, coerce numeric text and fill defaults; raise ConfigError on the first problem."""
    schema = schema or load_schema()
    if not isinstance(config, dict):
        raise ConfigError("config must be a mapping with a 'regimes:' key")
    cfg = copy.deepcopy(config)
    _coerce_numeric_strings(cfg, schema)
    errors = sorted(_Validator(schema).iter_errors(cfg), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("; ".join(dict.fromkeys(_describe(e) for e in errors)))
    for name, reg in cfg["regimes"].items():
        _semantic_checks(name, reg)
    # keys sorted at every level: a job's params then do not depend on the order of keys in
    # config.yaml, so reordering fields reruns nothing (Snakemake compares params by repr).
    return json.loads(json.dumps(cfg, sort_keys=True))


def _semantic_checks(name: str, reg: dict) -> None:
    where = f"regime '{name}'"
    if reg["weights"]["kind"] == "list":
        vals = reg["weights"].get("values")
        if vals is None or len(vals) != reg["m"]:
            got = "none" if vals is None else len(vals)
            raise ConfigError(f"{where}, field 'weights.values': needs m = {reg['m']} numbers, got {got}")
    for block in ("data", "labels"):
        if reg[block]["distribution"] == "uniform" and not reg[block]["low"] < reg[block]["high"]:
            raise ConfigError(f"{where}, field '{block}.low': must be below {block}.high")
    if reg["backend"] == "cupy":
        from .backend import cupy_usable

        ok, why = cupy_usable()
        if not ok:
            raise ConfigError(
                f"{where}, field 'backend': 'cupy' needs a usable GPU ({why}); use auto or numpy"
            )


def load_config_file(path: Path | str) -> dict:
    """Read YAML safely; report the line of a syntax error."""
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{line}: {getattr(exc, 'problem', exc)}") from None
    return validate_config(raw)


def regime_sha256(reg: dict) -> str:
    return hashlib.sha256(json.dumps(reg, sort_keys=True).encode()).hexdigest()


def data_subset(reg: dict) -> dict:
    """The part of a regime's config that the data stage depends on."""
    return {k: reg[k] for k in DATA_FIELDS}
