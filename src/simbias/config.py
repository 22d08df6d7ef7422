"""Config validation: JSON-schema with defaults and the checks a schema cannot express.

Every problem is reported as one line that names the regime and the field
(:mod:`simbias.config_messages`). Files are parsed by :mod:`simbias.config_yaml`;
``validate_config`` coerces numbers given as text, fills the schema's defaults,
expands sweeps (:mod:`simbias.sweeps`), runs the semantic checks and the pre-flight
cost check (:mod:`simbias.costs`). What each job sees of a regime: :mod:`simbias.config_job`.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

from .config_messages import as_list, messages, where
from .config_yaml import ConfigError, check_size, read_config_yaml
from .targets import rule_name_clash

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

# Regime names that would collide with other folders under results/ (folder -> what it holds).
RESERVED_REGIME_NAMES = {"figures": "the figures", "sweeps": "the sweeps' tables"}


INT64_MAX = 2**63 - 1
REGIME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
MAX_NAME = 80  # a regime name (or a sweep point's) becomes part of file names; 255 bytes is the usual limit
RESULTS_FOLDER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
MAX_RESULTS = 100  # `results:` starts every output's path (regime names add up to 80 more)
# Non-zero second-layer weights must lie within this magnitude range: the sharpness
# Σ w_j² φ'(z)² ‖x‖² grows like w² and the Theorem 2 targets (φ''(z*) = a/(2w_j)) like 1/w, and
# past about 1e150 either way they leave float64's range (at 1e±300 the runs crashed).
WEIGHT_RANGE = (1e-100, 1e100)


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


# --------------------------------------------------------------------------- coercion


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
            types = set(as_list(e.validator_value)) if e.validator == "type" else set()
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
                    f"{where(list(e.absolute_path))}: read the text {x!r} as the number {num!r}{why}"
                )
            _set(cfg, list(e.absolute_path), num)
            changed = True
            break  # paths may shift once a value changes: validate again
        if not changed:
            break
    return notes


def _non_finite(obj: Any, path: list) -> str | None:
    if isinstance(obj, float) and not math.isfinite(obj):
        return f"{where(path)}: must be a finite number, got {obj!r}"
    if isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) > INT64_MAX:
        return f"{where(path)}: {obj:.3g} does not fit a 64-bit integer (at most {INT64_MAX:.3g})"
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
        raise ConfigError("; ".join(messages(errors, schema)))
    _check_results(cfg["results"])
    _check_sweep_sizes(cfg["regimes"], cfg["limits"])
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
        # `snakemake NAME` builds the regime, so NAME may not be a rule's (a plain regime named
        # after a results/ folder, 'figures', gets that reason from _semantic_checks)
        folder = name.lower() in RESERVED_REGIME_NAMES and not (isinstance(reg, dict) and "sweep" in reg)
        if not folder and (clash := rule_name_clash(name)) is not None:
            raise ConfigError(clash)
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
    """results: a plain relative folder (it is put into paths, file names and the report), short
    enough for file names, and not a file that already exists in the working folder."""
    parts = results.split("/")
    if not RESULTS_FOLDER.fullmatch(results) or ".." in parts or "." in parts:
        raise ConfigError(
            f"field 'results': must be a plain relative folder (letters, digits, '_', '-', '.', and '/' "
            f"between parts; no '..', no leading '/'), got {results!r}; to write elsewhere, run from "
            "there with -d FOLDER or link results/ to it"
        )
    if len(results) > MAX_RESULTS:
        raise ConfigError(
            f"field 'results': '{results[:20]}…' is {len(results)} characters long, at most {MAX_RESULTS} "
            "(it starts the path of every output): use a shorter folder name"
        )
    for i in range(len(parts)):
        prefix = Path(*parts[: i + 1])
        if prefix.exists() and not prefix.is_dir():
            raise ConfigError(
                f"field 'results': {str(prefix)!r} is a file in {Path.cwd()}, not a folder, so the outputs "
                f"cannot go under {results!r}; choose another folder name"
            )


def sweep_size(sweep: dict) -> int:
    """The number of grid points of a sweep block, from the lengths of its lists (no expansion)."""
    from .sweeps import SWEEP_KEYS

    lengths = [len(sweep[k]) for k in SWEEP_KEYS if isinstance(sweep.get(k), list)]
    if sweep.get("mode", "product") == "zip":
        return min(lengths, default=0)
    return math.prod(lengths)


def _check_sweep_sizes(regimes: dict, limits: dict) -> None:
    """Refuse a sweep over limits.sweep_points, and a config over limits.regimes regimes in all,
    before any grid point is made (a 1000 × 1000 grid would take gigabytes to expand)."""
    total = 0
    for name, reg in regimes.items():
        points = sweep_size(reg["sweep"]) if "sweep" in reg else 1
        if "sweep" in reg and points > limits["sweep_points"]:
            axes = " × ".join(f"{len(v)} {k}" for k, v in reg["sweep"].items() if isinstance(v, list))
            raise ConfigError(
                f"regime '{name}', field 'sweep': {points:,} grid points ({axes}), over "
                f"limits.sweep_points = {limits['sweep_points']:,}; use fewer values, or raise the "
                f"limit: --config limits='{{sweep_points: {points}}}'"
            )
        total += points
    if total > limits["regimes"]:
        raise ConfigError(
            f"field 'regimes': {total:,} regimes in all (sweep points included), over limits.regimes = "
            f"{limits['regimes']:,}; run them in parts, or raise the limit: --config "
            f"limits='{{regimes: {total}}}'"
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
    bases = {n for n, r in cfg["regimes"].items() if "sweep" in r}
    for name in cfg["regimes"]:
        base = next((b for b in bases if name.startswith(b + "__")), None)
        if base is not None:
            raise ConfigError(
                f"regime name '{name}' starts with '{base}__', which names the grid points of the "
                f"sweep '{base}' (README, parameter sweeps): rename the regime, e.g. "
                f"'{name.replace('__', '_', 1)}'"
            )
    out = dict(cfg, regimes=expanded)
    # A grid point is its validated base (defaults filled) with its grid values put in, and the
    # schema checks each field on its own: one point per distinct value of each axis checks them
    # all (a 1000-point (η, σ) sweep validates about 65 regimes here, not 1000).
    sample = dict(cfg, regimes={n: expanded[n] for n in sweeps.representatives(expanded)})
    errors = sorted(_Validator(schema).iter_errors(sample), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("; ".join(messages(errors, schema)))
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
    _check_weight_range(where, reg["weights"])
    for block in ("data", "labels"):
        b = reg[block]
        if b["distribution"] == "uniform" and not b["low"] < b["high"]:
            raise ConfigError(
                f"{where}, field '{block}.low': must be below {block}.high, got low = {b['low']:g}, "
                f"high = {b['high']:g}"
            )
        if b["distribution"] == "uniform" and not math.isfinite(b["high"] - b["low"]):
            raise ConfigError(
                f"{where}, field '{block}.low': the range {block}.high − {block}.low = "
                f"{b['high']:g} − ({b['low']:g}) overflows float64 (largest 1.8e308), so no uniform "
                "draw can be made; narrow the range"
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
    _check_clock(where, reg)
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


def _check_clock(where: str, reg: dict) -> None:
    """The flow-time clock at the last step (SGD's and its brute-force continuation's) must be a
    float64: τ = η²σ²k (label-noise SGD) or ηρ²k/n (1-SAM); past it every τ would be inf."""
    alg = reg["algorithm"]["name"]
    eta, sigma, rho = reg["eta"], reg["sigma"], reg["algorithm"]["rho"]
    k = max(reg["sgd"]["steps"] + reg["brute_force"]["steps"], 1)
    if alg == "label_noise_sgd":
        law, field, value = "η²σ²k", *max([("sigma", sigma), ("eta", eta)], key=lambda fv: fv[1])
        try:
            tau = eta**2 * sigma**2 * k
        except OverflowError:
            tau = math.inf
    elif alg == "one_sam":
        law, field, value = "ηρ²k/n", *max([("algorithm.rho", rho), ("eta", eta)], key=lambda fv: fv[1])
        try:
            tau = eta * rho**2 * k / reg["n"]
        except OverflowError:
            tau = math.inf
    else:
        return  # GD has no clock
    if not math.isfinite(tau):
        raise ConfigError(
            f"{where}, field '{field}': {field} = {value:g} makes the flow time τ = {law} overflow "
            f"float64 (largest 1.8e308) by step {k:g}, so every record's τ would be inf; use a value "
            "many orders of magnitude smaller"
        )


def _check_weight_range(where: str, wts: dict) -> None:
    """Second-layer weights within WEIGHT_RANGE in magnitude (0 allowed): every listed value, and
    the bounds of a uniform or normal draw."""
    lo, hi = WEIGHT_RANGE
    kind = wts["kind"]
    if kind == "list":
        fields = [("weights.values", abs(v)) for v in wts.get("values") or []]
    elif kind == "uniform":
        fields = [("weights.low", abs(wts["low"])), ("weights.high", abs(wts["high"]))]
    elif kind == "normal":
        fields = [("weights.mean", abs(wts["mean"])), ("weights.scale", wts["scale"])]
    else:
        return
    too_big = next(((f, v) for f, v in fields if v > hi), None)
    if kind == "list":
        too_small = next(((f, v) for f, v in fields if 0 < v < lo), None)
    else:  # a draw: refused when its whole range lies below lo
        widest = max(fields, key=lambda fv: fv[1])
        too_small = widest if 0 < widest[1] < lo else None
    bad = too_big or too_small
    if bad is not None:
        field, value = bad
        raise ConfigError(
            f"{where}, field '{field}': |w| = {value:g} is outside [{lo:g}, {hi:g}] (0 is allowed): "
            "the sharpness Σ w_j² φ'(z)² ‖x‖² grows like w² and the Theorem 2 targets "
            "(φ''(z*) = a/(2w_j)) like 1/w, and such weights take them out of float64's range; "
            "rescale the weights"
        )


def check_regimes_file(value: Any) -> str:
    """The value of ``regimes_file`` (``--config regimes_file=FILE`` or config.yaml) as a path;
    refused when given but empty (``regimes_file=``, ``null``) or not a file name."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ConfigError(
            f"field 'regimes_file': empty ({'null' if value is None else repr(value)}), so no regimes "
            "file would be read; give one (--config regimes_file=my_regimes.yaml) or leave it out"
        )
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ConfigError(f"field 'regimes_file': must be a file name, got {value!r}")
    return str(value)


SUMMARY_TARGETS = ("default", "extensions", "paper")


def summary_groups(regimes: dict, added_by: dict, target: str = "default") -> dict[str, list[str]]:
    """{summary file stem: its regimes} for one target: config.yaml's regimes in summary
    (summary_extensions, summary_paper), the regimes each extra file adds in summary_{file stem}
    (summary_{file stem}_extensions, ...). ``added_by``: regime -> the stem of the file that added it."""
    groups: dict[str, list[str]] = {}
    for r, reg in regimes.items():
        if reg["target"] != target:
            continue
        source = added_by.get(reg.get("sweep_of", {}).get("base", r))
        stem = "summary" if source is None else f"summary_{source}"
        groups.setdefault(stem if target == "default" else f"{stem}_{target}", []).append(r)
    return groups


def check_summary_names(regimes: dict, added_by: dict, files: dict) -> None:
    """Refuse two groups of regimes whose summaries would be one file: a regimes file named
    extensions.yaml adds summary_extensions.csv, which is also the extensions target's summary.
    ``files``: file stem -> the file as given."""
    owner: dict[str, tuple] = {}

    def what(source, target):
        t = "" if target == "default" else f" {target}-target"
        return f"config.yaml's{t} regimes" if source is None else f"the{t} regimes of {files[source]}"

    for target in SUMMARY_TARGETS:
        for stem, members in summary_groups(regimes, added_by, target).items():
            first = regimes[members[0]].get("sweep_of", {}).get("base", members[0])
            key = (added_by.get(first), target)
            if stem in owner and owner[stem] != key:
                culprit, other = (key, owner[stem]) if key[0] is not None else (owner[stem], key)
                path = files[culprit[0]]
                raise ConfigError(
                    f"{path}: the summary of {what(*culprit)} would be {stem}.csv, the file that holds "
                    f"{what(*other)} (a file's regimes go to summary_{{file name}}): rename the file, "
                    f"e.g. my_{Path(path).name}"
                )
            owner[stem] = key


def check_environment(environ: Any = None) -> None:
    """Environment variables the jobs read, checked before any job: SIMBIAS_CPU_KERNEL."""
    import os

    from .sgd import CPU_KERNELS

    env = os.environ if environ is None else environ
    value = env.get("SIMBIAS_CPU_KERNEL", "")
    if value.strip() and value.strip() not in CPU_KERNELS:
        raise ConfigError(
            f"environment variable SIMBIAS_CPU_KERNEL={value!r} is not one of {', '.join(CPU_KERNELS)} "
            "(lower case); set one of them, or unset it for auto"
        )


def load_config_file(path: Path | str) -> dict:
    """Read YAML safely (reporting the line of a syntax error) and validate it."""
    return validate_config(read_config_yaml(path))
