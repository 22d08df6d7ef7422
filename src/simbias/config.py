"""Config validation: JSON-schema with defaults, and messages that name regime and field.

Every problem is reported as one line that names the regime and the field, says
what was wrong and, where it helps, what to write instead. ``read_config_yaml``
is the only place config.yaml is parsed (a safe loader that refuses duplicate
keys and reports the line of a syntax error); ``validate_config`` coerces
numbers given as text, fills the schema's defaults and runs the checks the
schema cannot express.
"""

from __future__ import annotations

import ast
import copy
import difflib
import functools
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

# Fields of a regime that the data stage depends on (so editing σ does not redo data).
DATA_FIELDS = ("m", "d", "n", "replicas", "data", "labels", "weights", "init")

# Operational settings: they change how a job runs, never what it computes, so they are
# kept out of the jobs' params (changing them reruns nothing) and out of config_sha256.
OPERATIONAL_FIELDS = {
    "sgd": ("checkpoint_every_steps", "checkpoint_every_seconds"),
    # whether a grid point's own figures are drawn; how many points one job runs
    "sweep_of": ("point_figures", "group_size"),
}

# Regime names that would collide with other folders under results/ (folder -> what it holds).
RESERVED_REGIME_NAMES = {"figures": "the figures", "sweeps": "the sweeps' tables"}


class ConfigError(ValueError):
    """A config.yaml problem, with the regime and field it concerns."""


# --------------------------------------------------------------------------- schema


def _with_defaults(cls):
    validate_props = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub and prop not in instance:
                    instance[prop] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    # "integer" means a Python int: 3.0 is coerced to 3 first (so m = 3.0 cannot reach
    # np.zeros as a float), 2.5 is refused, and True is not a number.
    checker = cls.TYPE_CHECKER.redefine(
        "integer", lambda _c, x: isinstance(x, int) and not isinstance(x, bool)
    )
    return validators.extend(cls, {"properties": set_defaults}, type_checker=checker)


_Validator = _with_defaults(Draft202012Validator)


def load_schema(path: Path | str = SCHEMA_PATH) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


# --------------------------------------------------------------------------- YAML


class _SafeUniqueLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (YAML keeps the last)."""


def _construct_unique_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        try:
            key = loader.construct_object(key_node, deep=True)
            hash(key)
        except Exception:
            continue  # construct_mapping below reports unhashable keys itself
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"found the key {key!r} twice (first on line {seen[key]}); YAML would silently keep "
                "only the last one: delete or rename one of them",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_SafeUniqueLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def read_config_yaml(path: Path | str = "config.yaml") -> Any:
    """Parse a config file with a safe YAML loader; every failure is a one-line ConfigError.

    Syntax errors name the line and column; Python-object tags (``!!python/...``) are
    refused rather than executed; a key given twice in one mapping is an error.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = (
            " (run from the folder that holds config.yaml, or pass -d FOLDER)"
            if path.name == "config.yaml"
            else ""
        )
        raise ConfigError(f"{path}: not found in {Path.cwd()}{hint}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        data = yaml.load(text, Loader=_SafeUniqueLoader)  # noqa: S506 (a SafeLoader subclass)
        check_size(data, str(path))
        return data
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = str(exc.problem or exc.context or "not valid YAML")
        if isinstance(exc, yaml.constructor.ConstructorError):
            if "python/" in problem:
                tag = problem.rsplit(" ", 1)[-1]
                problem = (
                    f"the tag {tag} is not allowed: config.yaml is read with a safe loader, so write "
                    "plain numbers, text, lists and mappings"
                )
            raise ConfigError(f"{path}{where}: {problem}") from None
        if "\\t" in problem:
            problem += "; YAML does not allow tabs for indentation: use spaces"
        else:
            cm = exc.context_mark
            if exc.context and cm is not None and mark is not None and cm.line != mark.line:
                problem += f" ({exc.context} opened on line {cm.line + 1}, column {cm.column + 1})"
            problem += "; check the indentation and brackets there"
        raise ConfigError(f"{path}{where}: malformed YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None


MAX_VALUES = 100_000  # a config with more values than this, once aliases are expanded, is refused
INT64_MAX = 2**63 - 1
REGIME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
MAX_NAME = 80  # a regime name (or a sweep point's) becomes part of file names; 255 bytes is the usual limit
RESULTS_FOLDER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")


def check_size(data: Any, source: str = "config") -> None:
    """Refuse a document whose aliases expand to more than MAX_VALUES values (a "billion laughs"
    alias bomb: a few lines that every later step, deep copies and validation included, would
    walk as billions of values). Linear in the number of distinct objects."""
    sizes: dict[int, int] = {}

    def size(obj: Any) -> int:
        key = id(obj)
        if key in sizes:
            return sizes[key]
        sizes[key] = MAX_VALUES + 1  # a cycle counts as too big
        children = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, list) else ()
        total = 1
        for c in children:
            total += size(c)
            if total > MAX_VALUES:
                break
        sizes[key] = total
        return total

    if isinstance(data, dict | list) and size(data) > MAX_VALUES:
        raise ConfigError(
            f"{source}: holds more than {MAX_VALUES} values once its YAML aliases (*name) are expanded "
            "(an alias bomb?); write the values out, or use fewer aliases"
        )


def parse_overrides(values: Any) -> Any:
    """``--config KEY=VALUE`` values as YAML would read them.

    Snakemake reads ``false`` (and every value inside ``{...}``) as text; here each text
    value that YAML reads as true/false, a number or null becomes that, so
    ``--config limits='{memory_gb: 64}'`` and boolean overrides work. Other text stays text.
    """
    check_size(values, "--config")
    if isinstance(values, dict):
        return {k: parse_overrides(v) for k, v in values.items()}
    if isinstance(values, list):
        return [parse_overrides(v) for v in values]
    if isinstance(values, str):
        try:
            parsed = yaml.safe_load(values)
            if isinstance(parsed, str):  # YAML 1.1 reads 1e6 as text
                parsed = float(parsed.replace("_", ""))
                parsed = int(parsed) if parsed.is_integer() and "." not in values else parsed
        except (yaml.YAMLError, ValueError):
            return values
        if parsed is None or isinstance(parsed, bool | int | float):
            return parsed
    return values


# --------------------------------------------------------------------------- messages


def _where(path: list) -> str:
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
    **dict.fromkeys(("m", "d", "n"), "the figures need two neurons and two singular values of Z"),
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
        return tuple(path + [key]), f"{_where(path + [key])}: unknown field{hint}", (close or [None])[0]
    if v == "required":
        missing = re.findall(r"'([^']+)' is a required property", err.message)[0]
        sub = err.schema.get("properties", {}).get(missing, {})
        return (
            tuple(path + [missing]),
            f"{_where(path + [missing])}: required field is missing{_about(root, path + [missing], sub)}",
            None,
        )
    if "propertyNames" in list(err.absolute_schema_path):
        return (
            tuple(path),
            f"regime name {err.instance!r} is not path-safe: use letters, digits, '_' and '-' only "
            "(no '/', '..' or spaces), starting with a letter or digit",
            None,
        )
    where = _where(path)
    if v == "type":
        want = " or ".join(_TYPE_WORDS.get(t, t) for t in _as_list(err.validator_value))
        extra = (
            "; use '.' as the decimal mark" if isinstance(err.instance, str) and "," in err.instance else ""
        )
        about = _about(root, path, err.schema)
        return tuple(path), f"{where}: must be {want}{about}, got {_fmt(err.instance)}{extra}", None
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": "≥", "exclusiveMinimum": ">", "maximum": "≤", "exclusiveMaximum": "<"}[v]
        return (
            tuple(path),
            f"{where}: must be {op} {err.validator_value:g}{_about(root, path, err.schema)}, "
            f"got {_fmt(err.instance)}{_hint(path)}",
            None,
        )
    if v == "enum":
        opts = [str(o) for o in err.validator_value]
        close = difflib.get_close_matches(str(err.instance).lower(), opts, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return tuple(path), f"{where}: {_fmt(err.instance)} is not one of {', '.join(opts)}{hint}", None
    if v == "minProperties" and path == ["regimes"]:
        return tuple(path), "field 'regimes': no regimes defined; add at least one under 'regimes:'", None
    if v == "minLength":
        return tuple(path), f"{where}: must not be empty", None
    return tuple(path), f"{where}: {err.message}", None


def _messages(errors: list[ValidationError], root: dict | None = None) -> list[str]:
    """One message per field; a missing field that a typo was meant to be is not repeated."""
    described = [_describe(e, root) for e in errors]
    meant = {p[:-1] + (s,) for p, _, s in described if s is not None}
    by_path: dict[tuple, str] = {}
    for p, msg, _ in described:
        if "required field is missing" in msg and p in meant:
            continue
        by_path.setdefault(p, msg)
    return list(dict.fromkeys(by_path.values()))


# --------------------------------------------------------------------------- coercion


def _as_list(x: Any) -> list:
    return x if isinstance(x, list) else [x]


def _set(obj: Any, path: list, value: Any) -> None:
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _coerce_numbers(cfg: dict, schema: dict) -> list[str]:
    """YAML reads ``1e-3`` as text: turn such text into numbers where a number is expected,
    and a whole float (``3.0``) into an int where an integer is expected."""
    notes = []
    for _ in range(100):
        changed = False
        for e in _Validator(schema).iter_errors(copy.deepcopy(cfg)):
            types = set(_as_list(e.validator_value)) if e.validator == "type" else set()
            x = e.instance
            if "boolean" in types and isinstance(x, str) and x.strip().lower() in _BOOLS:
                # --config KEY=VALUE passes 'false' as text; YAML 1.1 words for true/false
                _set(cfg, list(e.absolute_path), _BOOLS[x.strip().lower()])
                changed = True
                break
            if not types & {"number", "integer"}:
                continue
            if isinstance(x, str):
                try:
                    num = float(x.strip().replace("_", ""))
                except ValueError:
                    continue
                if not math.isfinite(num):
                    continue
            elif isinstance(x, float) and not isinstance(x, bool):
                num = x
            else:
                continue
            if "number" not in types:
                if not num.is_integer():
                    continue
                num = int(num)
            if isinstance(x, str):
                why = " (YAML reads 1e-3 as text: write 1.0e-3)" if "e" in x.lower() else ""
                notes.append(
                    f"{_where(list(e.absolute_path))}: read the text {x!r} as the number {num!r}{why}"
                )
            _set(cfg, list(e.absolute_path), num)
            changed = True
            break  # paths may shift once a value changes: validate again
        if not changed:
            break
    return notes


def _non_finite(obj: Any, path: list) -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return f"{_where(path)}: must be a finite number, got {obj!r}"
    if isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) > INT64_MAX:
        return f"{_where(path)}: {obj:.3g} does not fit a 64-bit integer (at most {INT64_MAX:.3g})"
    if isinstance(obj, dict):
        for k, v in obj.items():
            if (msg := _non_finite(v, path + [k])) is not None:
                return msg
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            if (msg := _non_finite(v, path + [i])) is not None:
                return msg
    return None


# --------------------------------------------------------------------------- validation


def validate_config(config: Any, schema: dict | None = None, notes: list[str] | None = None) -> dict:
    """Validate, coerce numeric text and fill defaults; raise ConfigError naming regime and field.

    ``notes`` (if given) collects what was coerced, for the caller to show.
    """
    schema = schema or load_schema()
    if not isinstance(config, dict):
        got = "an empty file" if config is None else f"a {type(config).__name__}"
        raise ConfigError(f"config must be a mapping with a 'regimes:' key, got {got}")
    check_size(config)
    _check_names(config)
    cfg = copy.deepcopy(config)
    coerced = _coerce_numbers(cfg, schema)
    if notes is not None:
        notes.extend(coerced)
    if (msg := _non_finite(cfg, [])) is not None:
        raise ConfigError(msg)
    errors = sorted(
        _Validator(schema).iter_errors(cfg),
        key=lambda e: (list(map(str, e.absolute_path)), e.validator != "type"),
    )
    if errors:
        raise ConfigError("; ".join(_messages(errors, schema)))
    _check_results(cfg["results"])
    cfg = _expand_sweeps(cfg, schema)
    for name, reg in cfg["regimes"].items():
        _semantic_checks(name, reg)
    from .costs import check as cost_check  # the pre-flight cost check (docs/reliability.md)

    for name, reg in cfg["regimes"].items():
        if (msg := cost_check(name, reg, cfg["limits"])) is not None:
            raise ConfigError(msg)
    # keys sorted at every level: a job's params then do not depend on the order of keys in
    # config.yaml, so reordering fields reruns nothing (Snakemake compares params by repr).
    return json.loads(json.dumps(cfg, sort_keys=True))


def _check_names(config: dict) -> None:
    """Regime names: text (YAML reads 1.5, null or 2024-01-01 as other types), path-safe in
    full (a final newline included), short enough for file names; no hand-written sweep_of."""
    regimes = config.get("regimes")
    if not isinstance(regimes, dict):
        return  # the schema names the problem
    for name, reg in regimes.items():
        if name is None:
            raise ConfigError(
                "regime name ~ (null) is empty: give the regime a name (letters, digits, '_', '-')"
            )
        if not isinstance(name, str):
            kinds = {bool: "true/false", int: "a whole number", float: "a number"}
            what = next((w for t, w in kinds.items() if isinstance(name, t)), f"a {type(name).__name__}")
            raise ConfigError(
                f"regime name {name} is read by YAML as {what}, not text: quote it (e.g. '{name}':) "
                "or start it with a letter"
            )
        if not REGIME_NAME.fullmatch(name):
            raise ConfigError(
                f"regime name {name!r} is not path-safe: use letters, digits, '_' and '-' only "
                "(no '/', '..', spaces or line breaks), starting with a letter or digit"
            )
        if len(name) > MAX_NAME:
            raise ConfigError(
                f"regime name '{name[:20]}…' is {len(name)} characters long: at most {MAX_NAME} "
                "(it becomes part of file names)"
            )
        if isinstance(reg, dict) and "sweep_of" in reg:
            raise ConfigError(
                f"regime '{name}', field 'sweep_of': set by sweep expansion, do not write it; "
                "write a sweep: block instead (README, parameter sweeps)"
            )
        if isinstance(reg, dict) and isinstance(reg.get("sweep"), dict):
            from .sweeps import SWEEP_KEYS

            if not any(k in reg["sweep"] for k in SWEEP_KEYS):
                raise ConfigError(
                    f"regime '{name}', field 'sweep': no axis to sweep; give at least one of "
                    f"{', '.join(SWEEP_KEYS)} as a list, or remove sweep:"
                )


def _check_results(results: str) -> None:
    """results: a plain relative folder (it is put into paths, file names and the report)."""
    parts = results.split("/")
    if not RESULTS_FOLDER.fullmatch(results) or ".." in parts or "." in parts:
        raise ConfigError(
            f"field 'results': must be a plain relative folder (letters, digits, '_', '-', '.', and '/' "
            f"between parts; no '..', no leading '/'), got {results!r}; to write elsewhere, run from "
            "there with -d FOLDER or link results/ to it"
        )


def _expand_sweeps(cfg: dict, schema: dict) -> dict:
    """Replace each regime that has a ``sweep:`` block by its grid points, then re-validate them."""
    from . import sweeps

    if not any("sweep" in reg for reg in cfg["regimes"].values()):
        return cfg
    try:
        expanded = sweeps.expand(cfg["regimes"])
    except ValueError as exc:
        bad = next(n for n, r in cfg["regimes"].items() if "sweep" in r)
        raise ConfigError(f"regime '{bad}', field 'sweep': {exc}") from None
    out = dict(cfg, regimes=expanded)
    # A grid point is its validated base (defaults filled) with its grid values put in, and the
    # schema checks each field on its own: one point per distinct value of each axis checks them
    # all (a 1000-point (η, σ) sweep validates about 65 regimes here, not 1000).
    sample = dict(cfg, regimes={n: expanded[n] for n in sweeps.representatives(expanded)})
    errors = sorted(_Validator(schema).iter_errors(sample), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("; ".join(_messages(errors, schema)))
    return out


def _semantic_checks(name: str, reg: dict) -> None:
    where = f"regime '{name}'"
    if len(name) > MAX_NAME:  # a sweep's grid points append their values to the base name
        raise ConfigError(
            f"{where}: the name is {len(name)} characters long, at most {MAX_NAME} (it becomes part of "
            "file names): shorten the regime's name"
        )
    if name.lower() in RESERVED_REGIME_NAMES:
        raise ConfigError(
            f"regime name '{name}' is reserved (results/{name.lower()}/ holds "
            f"{RESERVED_REGIME_NAMES[name.lower()]}): choose another name"
        )
    if reg["weights"]["kind"] == "list":
        vals = reg["weights"].get("values")
        if vals is None or len(vals) != reg["m"]:
            got = "none" if vals is None else len(vals)
            raise ConfigError(f"{where}, field 'weights.values': needs m = {reg['m']} numbers, got {got}")
        if not any(vals):
            raise ConfigError(
                f"{where}, field 'weights.values': all {len(vals)} weights are 0, so the network's output "
                "is 0 for every θ and nothing trains; give at least one non-zero weight"
            )
    for block in ("data", "labels"):
        b = reg[block]
        if b["distribution"] == "uniform" and not b["low"] < b["high"]:
            raise ConfigError(
                f"{where}, field '{block}.low': must be below {block}.high, got low = {b['low']:g}, "
                f"high = {b['high']:g}"
            )
    alg = reg["algorithm"]["name"]
    if alg in ("gd", "one_sam") and reg["sigma"] != 0:
        raise ConfigError(
            f"{where}, field 'sigma': algorithm '{alg}' has no label noise, got sigma = {reg['sigma']:g}; "
            "set sigma: 0 (or use algorithm label_noise_sgd)"
        )
    wts = reg["weights"]
    if wts["kind"] == "uniform" and not wts["low"] < wts["high"]:
        raise ConfigError(f"{where}, field 'weights.low': must be below weights.high")
    act = reg["activation"]
    if act["name"] == "cubic" and act["k"] != 1:
        raise ConfigError(
            f"{where}, field 'activation.k': 'cubic' is z^3 + νz (k = 1), got k = {act['k']}; "
            f"for z^{2 * act['k'] + 1} + νz write name: odd_power"
        )
    if reg["brute_force"]["steps"] > 0 and alg != "label_noise_sgd":
        raise ConfigError(
            f"{where}, field 'brute_force.steps': the brute-force check continues label-noise SGD, "
            f"not '{alg}'; set brute_force.steps: 0"
        )
    s = reg["sgd"]
    outside = [k for k in s["record_steps"] if not 0 <= k <= s["steps"]]
    if outside:
        raise ConfigError(
            f"{where}, field 'sgd.record_steps': step {outside[0]} is outside the budget "
            f"[0, sgd.steps = {s['steps']}]; raise sgd.steps or drop the step"
        )
    if reg["backend"] == "cupy":
        from .backend import cupy_usable

        ok, why = cupy_usable()
        if not ok:
            raise ConfigError(
                f"{where}, field 'backend': 'cupy' needs a usable GPU ({why}); use auto or numpy"
            )


def load_config_file(path: Path | str) -> dict:
    """Read YAML safely (reporting the line of a syntax error) and validate it."""
    return validate_config(read_config_yaml(path))


# --------------------------------------------------------------------------- what a job sees


def regime_sha256(reg: dict) -> str:
    return hashlib.sha256(json.dumps(reg, sort_keys=True).encode()).hexdigest()


def job_config(reg: dict) -> dict:
    """A regime's entry without the operational fields (what the jobs' params carry)."""
    out = dict(reg)  # a new dict for each block it changes; the rest is shared, never modified
    for block, fields in OPERATIONAL_FIELDS.items():
        if isinstance(out.get(block), dict):
            out[block] = {k: v for k, v in out[block].items() if k not in fields}
    return out


def data_subset(reg: dict) -> dict:
    """The part of a regime's config that the data stage depends on."""
    return {k: reg[k] for k in DATA_FIELDS}


# --------------------------------------------------------------------------- code version

_PACKAGE = Path(__file__).resolve().parent

# The library modules each stage runs (their own imports are followed). stages.py and
# storage.py serve every stage. config.py reaches jobs only through their params, and
# __init__ / logs do not change results, so editing those reruns nothing.
STAGE_MODULES = {
    "make_data": ("data",),
    "run_sgd": ("sgd", "checkpoint", "backend", "activations", "model"),
    "run_flow": ("flow", "activations", "theory", "analysis", "model"),
    "run_brute_force": ("sgd", "backend", "activations", "model"),  # run_sgd without its checkpoint
    "compare": ("theory", "analysis", "activations", "model"),
    "summary": (),
    "figure": ("figures",),
    "table_html": ("tables",),
}
_ALWAYS = ("stages", "storage")
_NEVER = ("config", "__init__", "logs")


def _local_imports(module: str) -> set[str]:
    path = _PACKAGE / f"{module}.py"
    if not path.exists():
        return set()
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.add(node.module.split(".")[0])
            else:
                out.update(a.name for a in node.names)
    return out


@functools.cache
def code_version(stage: str) -> str:
    """sha256 (16 hex digits) of the library source a stage runs: a job's ``code`` param.

    Editing one of those modules changes the param, so Snakemake reruns that stage
    (and what depends on it); editing an unrelated module reruns nothing.
    """
    todo, seen = list(STAGE_MODULES[stage]), set()
    while todo:
        mod = todo.pop()
        if mod in seen or mod in _NEVER or mod in _ALWAYS:
            continue
        seen.add(mod)
        todo.extend(_local_imports(mod))
    h = hashlib.sha256()
    for mod in sorted(seen | set(_ALWAYS)):
        path = _PACKAGE / f"{mod}.py"
        if path.exists():
            h.update(mod.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
