"""The catalogue of bad config.yaml inputs: each is refused before any job starts, with one
message that names the regime and the field (and a suggestion where one helps), and
nothing is written under results/. Theory-violating but valid choices are accepted.

Most entries go through ``simbias.config.load_config_file`` (the same code the Snakefile
runs); a handful go end to end through the ``snakemake`` command line.
"""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simbias.backend import cupy_usable
from simbias.config import ConfigError, load_config_file, validate_config
from simbias.config_yaml import parse_overrides

REPO = Path(__file__).resolve().parents[1]
GOOD = {"m": 3, "d": 2, "n": 2, "eta": 0.05, "sigma": 0.1, "replicas": 1, "sgd": {"steps": 10}}


def regime_text(name: str = "r1", **fields) -> str:
    reg = {**GOOD, **fields}
    return yaml.safe_dump({"regimes": {name: {k: v for k, v in reg.items() if v is not ...}}})


def r1(field: str) -> str:
    return f"regime 'r1', field '{field}'"


# (id, config.yaml text, substrings the message must contain)
CATALOGUE = [
    ("eta_zero", regime_text(eta=0), [r1("eta"), "must be > 0", "0.05"]),
    ("eta_negative", regime_text(eta=-0.1), [r1("eta"), "must be > 0"]),
    ("sigma_negative", regime_text(sigma=-0.1), [r1("sigma"), "must be ≥ 0", "σ = 0 is plain gradient"]),
    ("m_not_integer", regime_text(m=2.5), [r1("m"), "whole number", "2.5"]),
    ("d_not_positive", regime_text(d=0), [r1("d"), "must be ≥ 1"]),
    ("n_not_positive", regime_text(n=0), [r1("n"), "must be ≥ 1"]),
    ("m_one", regime_text(m=1), [r1("m"), "must be ≥ 2", "got 1", "F is constant on M"]),
    ("m_one_in_a_sweep", regime_text(sweep={"m": [1, 3]}), [r1("sweep.m.0"), "≥ 2", "F is constant on M"]),
    (
        "odd_power_k_1000",
        regime_text(activation={"name": "odd_power", "k": 1000}),
        [r1("activation.k"), "≤ 50", "overflows"],
    ),
    ("n_not_a_number", regime_text(n="three"), [r1("n"), "whole number", "'three'"]),
    ("m_boolean", regime_text(m=True), [r1("m"), "whole number", "got true"]),
    (
        "activation_unknown",
        regime_text(activation={"name": "quartic"}),
        [r1("activation.name"), "'quartic' is not one of", "odd_power"],
    ),
    (
        "activation_name_case",
        regime_text(activation={"name": "Cubic"}),
        [r1("activation.name"), "did you mean 'cubic'?"],
    ),
    ("activation_nu_negative", regime_text(activation={"nu": -1.0}), [r1("activation.nu"), "must be ≥ 0"]),
    ("activation_k_zero", regime_text(activation={"name": "odd_power", "k": 0}), [r1("activation.k"), "≥ 1"]),
    (
        "activation_cubic_with_k",
        regime_text(activation={"name": "cubic", "k": 2}),
        [r1("activation.k"), "odd_power"],
    ),
    ("replicas_zero", regime_text(replicas=0), [r1("replicas"), "must be ≥ 1"]),
    ("steps_negative", regime_text(sgd={"steps": -5}), [r1("sgd.steps"), "must be ≥ 0"]),
    (
        "record_step_outside_budget",
        regime_text(sgd={"steps": 100, "record_steps": [50, 500]}),
        [r1("sgd.record_steps"), "500 is outside the budget", "raise sgd.steps"],
    ),
    ("name_with_slash", regime_text("a/b"), ["regime name 'a/b' is not path-safe"]),
    ("name_dotdot", regime_text(".."), ["regime name '..' is not path-safe"]),
    ("name_with_space", regime_text("has space"), ["regime name 'has space' is not path-safe"]),
    ("name_reserved", regime_text("figures"), ["regime name 'figures' is reserved"]),
    ("missing_required", regime_text(sigma=...), [r1("sigma"), "required field is missing", "label-noise"]),
    ("unknown_field_typo", regime_text(sigma=..., sigmaa=0.1), [r1("sigmaa"), "did you mean 'sigma'?"]),
    ("unknown_nested_field", regime_text(sgd={"step": 10}), [r1("sgd.step"), "did you mean 'steps'?"]),
    ("unknown_top_level_field", "regime:\n  r1: {m: 3}\n", ["field 'regime'", "did you mean 'regimes'?"]),
    ("dtype_unknown", regime_text(dtype="float16"), [r1("dtype"), "float64, float32"]),
    ("number_as_text", regime_text(eta="fast"), [r1("eta"), "must be a number", "'fast'"]),
    ("decimal_comma", regime_text(eta="0,05"), [r1("eta"), "use '.' as the decimal mark"]),
    ("not_finite", regime_text(sigma=float("nan")), [r1("sigma"), "finite"]),
    ("infinite", regime_text(eta=float("inf")), [r1("eta"), "finite"]),
    ("block_not_a_mapping", regime_text(sgd=5), [r1("sgd"), "must be a mapping"]),
    ("data_low_above_high", regime_text(data={"low": 1.0, "high": 0.5}), [r1("data.low"), "below data.high"]),
    (
        "weights_wrong_length",
        regime_text(weights={"kind": "list", "values": [1, 2]}),
        [r1("weights.values"), "m = 3"],
    ),
    ("flow_records_too_few", regime_text(flow={"records": 1}), [r1("flow.records"), "≥ 2"]),
    (
        "checkpoint_interval_negative",
        regime_text(sgd={"checkpoint_every_steps": -1}),
        [r1("sgd.checkpoint_every_steps")],
    ),
    ("no_regimes", "regimes: {}\n", ["no regimes defined"]),
    ("empty_file", "", ["got an empty file"]),
    ("top_level_list", "- r1\n", ["must be a mapping with a 'regimes:' key"]),
    ("results_empty", "results: ''\n" + regime_text(), ["field 'results'", "must not be empty"]),
    (
        "malformed_yaml",
        "regimes:\n  r1:\n    m: 3\n   d: [2\n",
        ["config.yaml, line 4, column 4", "malformed YAML", "opened on line 2"],
    ),
    ("tab_indentation", "regimes:\n  r1:\n\tm: 3\n", ["line 3", "tabs"]),
    ("unclosed_brace", "regimes:\n  r1: {m: 3, d: 2\n", ["malformed YAML", "opened on line 2"]),
    (
        "duplicate_key",
        "regimes:\n  r1: {m: 3, d: 2, n: 2, eta: 0.05, sigma: 0.1, eta: 0.1}\n",
        ["line 2", "found the key 'eta' twice"],
    ),
    (
        "python_tag_refused",
        'regimes: !!python/object/apply:os.system ["echo unsafe"]\n',
        ["line 1", "python/object/apply:os.system", "safe loader"],
    ),
]

# An alias bomb: 9 levels of 9 aliases, 9^9 (about 4e8) values once expanded, in 400 bytes.
BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
BOMB = "l0: &l0 [x]\n" + BOMB

# Issue 15: hostile configs (costs, integers, names, sweeps, paths, aliases)
CATALOGUE += [
    ("memory_m_1e9", regime_text(m=1e9), [r1("m"), "of memory", "over limits.memory_gb = 4", "memory_gb:"]),
    ("memory_replicas_1e9", regime_text(replicas=10**9), [r1("replicas"), "of memory", "TB"]),
    (
        "memory_linear_points",
        regime_text(sgd={"steps": 10**6, "linear_points": 10**9}),
        [r1("sgd.linear_points")],
    ),
    ("memory_flow_records", regime_text(flow={"records": 10**9}), [r1("flow.records"), "flow.nc"]),
    ("memory_n_1e8", regime_text(n=10**8), [r1("n"), "of memory", "n²"]),
    (
        "time_steps_1e18",
        regime_text(sgd={"steps": 10**18}),
        [r1("sgd.steps"), "years", "over limits.hours = 24"],
    ),
    (
        "time_replicas",
        regime_text(replicas=5 * 10**4, sgd={"steps": 10**7}),
        [r1("replicas"), "limits.hours"],
    ),
    (
        "int64_steps_1e19",
        regime_text(sgd={"steps": 1e19}),
        [r1("sgd.steps"), "does not fit a 64-bit integer"],
    ),
    ("int64_literal_1e23", regime_text(sgd={"seed": 10**23}), [r1("sgd.seed"), "64-bit integer"]),
    ("limits_not_positive", "limits: {memory_gb: 0}\n" + regime_text(), ["field 'limits.memory_gb'", "> 0"]),
    ("alias_bomb", BOMB + regime_text(), ["more than 100000 values", "alias"]),
    (
        "alias_bomb_in_sweep_of",
        "regimes:\n  r1: {m: 3, d: 2, n: 2, eta: 0.05, sigma: 0.1, sweep_of: &b [*b]}\n".replace(
            "&b [*b]", "{base: r1, point: {}, axes: []}"
        ),
        [r1("sweep_of"), "do not write it"],
    ),
    ("sweep_without_axes", regime_text(sweep={"mode": "zip"}), [r1("sweep"), "no axis to sweep"]),
    ("results_absolute", "results: /tmp/x\n" + regime_text(), ["field 'results'", "plain relative folder"]),
    ("results_dotdot", "results: ../x\n" + regime_text(), ["field 'results'", "'../x'"]),
    ("results_dot", "results: .\n" + regime_text(), ["field 'results'"]),
    ("results_newline", 'results: "a\\nb"\n' + regime_text(), ["field 'results'", "'a\\nb'"]),
    ("results_braces", "results: 'out{regime}'\n" + regime_text(), ["field 'results'", "out{regime}"]),
    (
        "results_rst_link",
        "results: 'x`_ `y <javascript:alert(1)>`_'\n" + regime_text(),
        ["field 'results'", "plain relative folder"],
    ),
    ("name_final_newline", regime_text("abc\n"), ["regime name 'abc\\n' is not path-safe", "line breaks"]),
    (
        "name_read_as_float",
        "regimes:\n  1.5: {m: 3}\n",
        ["regime name 1.5 is read by YAML as a number", "quote it"],
    ),
    (
        "name_read_as_int",
        "regimes:\n  42: {m: 3}\n",
        ["regime name 42 is read by YAML as a whole number", "quote it"],
    ),
    ("name_read_as_null", "regimes:\n  ~: {m: 3}\n", ["regime name ~ (null) is empty"]),
    (
        "name_read_as_date",
        "regimes:\n  2024-01-01: {m: 3}\n",
        ["regime name 2024-01-01 is read by YAML as a date", "quote it"],
    ),
    ("name_too_long", regime_text("a" * 300), ["300 characters long", "at most 80"]),
    (
        "sweep_point_name_too_long",
        regime_text("a" * 75, sweep={"eta": [0.05]}),
        ["regime '" + "a" * 75 + "__eta-0p05'", "at most 80"],
    ),
    (
        "weights_all_zero",
        regime_text(weights={"kind": "list", "values": [0, 0, 0]}),
        [r1("weights.values"), "all 3 weights are 0"],
    ),
]

# Issue 27: configs that ran for days, filled memory, hung, or crashed mid-run with a traceback
GRID_1000 = [round(0.01 + i * 1e-5, 6) for i in range(1000)]
CATALOGUE += [
    (
        "brute_force_steps_1e12",
        regime_text(brute_force={"steps": 10**12}),
        [r1("brute_force.steps"), "brute-force continuation", "over limits.hours = 24"],
    ),
    (
        "brute_force_linear_points_1e9",
        regime_text(brute_force={"steps": 10, "linear_points": 10**9}),
        [r1("brute_force.linear_points"), "of memory", "brute-force linear recording schedule"],
    ),
    (
        "sweep_1000_by_1000",
        regime_text(sweep={"eta": GRID_1000, "sigma": GRID_1000}),
        [r1("sweep"), "1,000,000 grid points (1000 eta × 1000 sigma)", "limits.sweep_points = 10,000"],
    ),
    (
        "regimes_over_the_total_limit",
        yaml.safe_dump(
            {
                "regimes": {
                    f"s{i}": {**GOOD, "sweep": {"eta": GRID_1000[:100], "sigma": GRID_1000[:60]}}
                    for i in range(2)
                }
            }
        ),
        ["field 'regimes'", "12,000 regimes in all", "limits.regimes = 10,000"],
    ),
    (
        "file_over_1_MB",
        regime_text() + "# " + "x" * 1_100_000 + "\n",
        ["config.yaml: 1.1 MB, more than the 1 MB a config file may be", "sweep"],
    ),
    (
        "many_values_written_out",
        regime_text() + "x: [" + "1, " * 100_001 + "1]\n",
        ["config.yaml: holds more than 100000 values, too many for a config"],
    ),
    (
        "weights_1e-300",
        regime_text(weights={"kind": "list", "values": [1e-300] * 3}),
        [r1("weights.values"), "|w| = 1e-300 is outside [1e-100, 1e+100]", "float64"],
    ),
    (
        "weights_mixed_range",
        regime_text(m=4, weights={"kind": "list", "values": [1e300, 1e-300, 1, -1]}),
        [r1("weights.values"), "|w| = 1e+300 is outside"],
    ),
    (
        "weights_1e300",
        regime_text(weights={"kind": "list", "values": [1e300] * 3}),
        [r1("weights.values"), "|w| = 1e+300"],
    ),
    (
        "weights_uniform_1e-300",
        regime_text(weights={"kind": "uniform", "low": 0.0, "high": 1e-300}),
        [r1("weights.high"), "|w| = 1e-300 is outside"],
    ),
    (
        "data_range_overflows",
        regime_text(data={"low": -1e308, "high": 1e308}),
        [r1("data.low"), "overflows float64"],
    ),
    (
        "labels_range_overflows",
        regime_text(labels={"low": -1e308, "high": 1e308}),
        [r1("labels.low"), "overflows float64"],
    ),
    (
        "one_sam_rho_1e300",
        regime_text(sigma=0, algorithm={"name": "one_sam", "rho": 1e300}),
        [r1("algorithm.rho"), "τ = ηρ²k/n overflow float64"],
    ),
    ("sigma_1e200", regime_text(sigma=1e200), [r1("sigma"), "τ = η²σ²k overflow float64"]),
    (
        "sweep_name_prefix_taken",
        yaml.safe_dump({"regimes": {"sw": {**GOOD, "sweep": {"eta": [0.05]}}, "sw__extra": GOOD}}),
        ["regime name 'sw__extra' starts with 'sw__'", "grid points of the sweep 'sw'"],
    ),
    ("results_is_a_file", "results: config.yaml\n" + regime_text(), ["field 'results'", "is a file"]),
    (
        "results_300_characters",
        f"results: {'a' * 300}\n" + regime_text(),
        ["field 'results'", "300 characters"],
    ),
]
if not cupy_usable()[0]:
    CATALOGUE.append(
        ("cupy_without_gpu", regime_text(backend="cupy"), [r1("backend"), "needs a usable GPU", "numpy"])
    )


def test_catalogue_is_big_enough():
    assert len({case[0] for case in CATALOGUE}) >= 15


@pytest.mark.parametrize("text,needles", [c[1:] for c in CATALOGUE], ids=[c[0] for c in CATALOGUE])
def test_bad_config_is_refused_with_one_clear_message(tmp_path, monkeypatch, text, needles):
    (tmp_path / "config.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)  # messages name the file as the user wrote it: config.yaml
    with pytest.raises(ConfigError) as exc:
        load_config_file("config.yaml")
    msg = str(exc.value)
    for needle in needles:
        assert needle in msg, msg
    assert "\n" not in msg, msg
    assert msg.count("field '") <= 1 and msg.count("regime name") <= 1, f"more than one problem: {msg}"
    assert "Traceback" not in msg


@pytest.mark.parametrize(
    "fields",
    [
        {"n": 3, "d": 2},  # n > d: Theorem 2 does not apply; flagged in the outputs, not refused
        {"activation": {"nu": 0.0}},  # ν = 0 violates Assumption 1; still a valid run
        {"sigma": 0.0},  # plain gradient descent
        {"sgd": {"steps": 0}},
        {"n": 1, "d": 1},  # Assumption 2 holds with μ = ‖x‖² = 1: every neuron goes to φ⁻¹(y/m)
        {"n": 1},
        {"d": 1},  # with n = 2 > d the x_i are parallel: Theorem 2 does not apply, flagged
        {"sweep": {"n": [1, 2], "d": [1, 2]}},
    ],
    ids=["n_above_d", "nu_zero", "sigma_zero", "no_sgd_steps", "n_d_one", "n_one", "d_one", "sweep_n_d_one"],
)
def test_theory_violating_but_valid_choices_are_accepted(fields):
    validate_config({"regimes": {"r1": {**GOOD, **fields}}})


def test_numbers_written_as_text_are_coerced_with_a_note(tmp_path):
    (tmp_path / "config.yaml").write_text(
        "regimes:\n  r1: {m: '4', d: 3.0, n: 2, eta: 1e-3, sigma: 0.1, sgd: {steps: 1e5}}\n"
    )
    notes: list[str] = []
    raw = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert raw["regimes"]["r1"]["eta"] == "1e-3"  # YAML 1.1 reads 1e-3 as text
    reg = validate_config(raw, notes=notes)["regimes"]["r1"]
    assert reg["eta"] == 1e-3 and reg["m"] == 4 and reg["sgd"]["steps"] == 100000
    assert isinstance(reg["d"], int) and reg["d"] == 3  # a whole float where an integer is expected
    assert any("'1e-3' as the number 0.001" in n and "1.0e-3" in n for n in notes), notes


# --------------------------------------------------------------------------- end to end

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1"]
CLI_CASES = ["malformed_yaml", "unknown_field_typo", "number_as_text", "name_with_slash", "steps_negative"]
CLI_CASES += [  # issue 15
    "memory_m_1e9",
    "memory_flow_records",
    "time_steps_1e18",
    "int64_steps_1e19",
    "alias_bomb",
    "alias_bomb_in_sweep_of",
    "results_absolute",
    "results_rst_link",
    "name_final_newline",
    "name_read_as_float",
    "sweep_without_axes",
    "weights_all_zero",
]
CLI_CASES += [  # issue 27
    "brute_force_steps_1e12",
    "brute_force_linear_points_1e9",
    "sweep_1000_by_1000",
    "file_over_1_MB",
    "weights_mixed_range",
    "data_range_overflows",
    "one_sam_rho_1e300",
    "sweep_name_prefix_taken",
    "results_is_a_file",
    "results_300_characters",
]
if not cupy_usable()[0]:
    CLI_CASES.append("cupy_without_gpu")


def snapshot(folder: Path) -> dict:
    """Every file under folder: its bytes' sha256 and its mtime."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", CLI_CASES)
def test_snakemake_refuses_bad_config_before_any_job(tmp_path, case):
    text, needles = next(c[1:] for c in CATALOGUE if c[0] == case)
    (tmp_path / "config.yaml").write_text(text)
    existing = case in ("unknown_field_typo", "steps_negative")
    if existing:  # results of an earlier run must stay exactly as they were
        (tmp_path / "results" / "r1").mkdir(parents=True)
        (tmp_path / "results" / "r1" / "data.nc").write_bytes(b"earlier output")
        (tmp_path / "results" / "summary.csv").write_text("regime\nr1\n")
        before = snapshot(tmp_path / "results")
    proc = subprocess.run(
        SNAKEMAKE + ["-d", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    out = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    out = [line for line in out if not line.startswith("Using workflow specific profile")]
    # Snakemake's own note that it loaded profiles/default comes first; then our one line
    assert proc.returncode != 0
    assert len(out) == 1 and out[0].startswith("config error: "), out  # one message, nothing else
    for needle in needles:
        assert needle in out[0], out[0]
    if existing:
        assert snapshot(tmp_path / "results") == before
    else:
        assert not (tmp_path / "results").exists()
    assert not (tmp_path / "logs").exists()  # no job started
    # nothing else was written either (a crafted results: folder, a file named by a bad regime)
    assert {p.name for p in tmp_path.iterdir()} <= {"config.yaml", "results", ".snakemake"}


YTE_PAYLOAD = """__use_yte__: true
regimes:
  evil:
    m: 3
    d: 2
    n: 2
    eta: 0.05
    sigma: ?__import__("os").system("touch PWNED")*0+0.1
"""


def test_regimes_file_is_read_by_the_safe_loader_and_never_runs_code(tmp_path):
    """--config regimes_file=FILE (the README's route) never goes through Snakemake's yte."""
    (tmp_path / "config.yaml").write_text(regime_text())
    (tmp_path / "evil.yaml").write_text(YTE_PAYLOAD)
    proc = subprocess.run(
        SNAKEMAKE + ["-d", str(tmp_path), "-n", "--config", "regimes_file=evil.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    out = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    out = [line for line in out if not line.startswith("Using workflow specific profile")]
    assert proc.returncode != 0 and len(out) == 1, out
    assert "field '__use_yte__': unknown field" in out[0]
    assert "regime 'evil', field 'sigma': must be a number" in out[0]
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "results").exists()


def test_regimes_file_adds_regimes_and_config_values_are_read_as_yaml(tmp_path):
    (tmp_path / "config.yaml").write_text(regime_text())
    (tmp_path / "mine.yaml").write_text(regime_text("mine", sigma=0.2))
    proc = subprocess.run(
        SNAKEMAKE
        + ["-d", str(tmp_path), "-n", "--config", "regimes_file=mine.yaml"]
        + ["regimes={r1: {data: {normalize: false}}}", "limits={hours: 48}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "results/mine/sgd.nc" in proc.stdout and "results/r1/sgd.nc" in proc.stdout
    assert "config note" not in proc.stderr  # 'false' and '48' are read as YAML reads them
    assert not (tmp_path / "results").exists()
    # the same values through the library: booleans and numbers, not text
    reg = validate_config(
        parse_overrides(
            {"regimes": {"r1": {**GOOD, "data": {"normalize": "false"}}}, "limits": {"hours": "48"}}
        )
    )
    assert reg["regimes"]["r1"]["data"]["normalize"] is False and reg["limits"]["hours"] == 48


def test_raised_limits_accept_what_the_defaults_refuse():
    big = {"regimes": {"r1": {**GOOD, "sgd": {"steps": 10**12}}}}
    with pytest.raises(ConfigError, match="limits.hours"):
        validate_config(big)
    validate_config({**big, "limits": {"hours": 1e6}})


def test_snakemake_accepts_numeric_text_with_a_note(tmp_path):
    (tmp_path / "config.yaml").write_text(regime_text(eta="1e-3"))
    proc = subprocess.run(
        SNAKEMAKE + ["-d", str(tmp_path), "-n"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "config note: regime 'r1', field 'eta': read the text '1e-3' as the number 0.001" in proc.stderr
    assert not (tmp_path / "results").exists()


def test_only_validated_values_reach_the_report():
    """The HTML report's reStructuredText is built from these template expressions only. Each is
    a number, an enum, a regime name or the results folder (both limited to letters, digits and
    `_ - . /` above), an output path built from them, or the config inside a literal block: no
    user text can become rST markup such as a `javascript:` link. A new expression (e.g. a
    regime's free-text description) must be escaped before it is added to this list."""
    import re

    allowed = {
        'cfg | tojson(indent=2) | replace("\\\\u003c", "<") | replace("\\\\u003e", ">") | '
        'replace("\\\\u0026", "&") | replace("\\\\u0027", "\'") | indent(3, first=True)',
        'r["activation"] | dictsort | map("join", " = ") | join(", ")',
        'snakemake.config["results"]',
        "name",
        "snakemake.wildcards.base",
        "snakemake.wildcards.regime",
        "snakemake.output.csv",
        "snakemake.output.nc",
        "snakemake.output[0]",
        # table_summary.rst, table_sweep.rst: the summary's stem or the sweep's name (both
        # path-safe) and the CSV path built from `results` and it
        "snakemake.wildcards.summary",
        "snakemake.input[0]",
    } | {f'{v}["{k}"]' for v in ("cfg", "r") for k in ("d", "eta", "m", "n", "replicas", "sigma", "target")}
    allowed.add('r["sgd"]["steps"]')
    # workflow.rst's regime table (common.smk, _report_regimes): a regime's or sweep's name, the
    # fixed text " (sweep, N points)", and numbers, enums and φ written out from the validated
    # activation, several joined by ", " for a sweep
    fields = ("name", "note", "m", "d", "n", "eta", "sigma", "replicas", "steps", "activation", "target")
    allowed |= {f'row["{k}"]' for k in fields}
    # figure captions: each figure's PDF path, built from `results`, the regime name and the kind
    kinds = ("singular_values", "trajectory", "neuron_pca", "structure", "sgd_alone", "brute_force")
    allowed |= {f"snakemake.output.{kind}_pdf" for kind in kinds}
    used = set()
    for rst in (REPO / "workflow" / "report").glob("*.rst"):
        used |= {e.strip() for e in re.findall(r"{{(.*?)}}", rst.read_text())}
    assert used <= allowed, used - allowed


# --------------------------------------------------------------------------- issue 27


def test_a_big_sweep_is_refused_before_any_grid_point_is_made(monkeypatch):
    """The limit is checked on the lists' lengths: expanding 10⁶ points first took 5.8 GB."""
    from simbias import sweeps

    def no_expansion(regimes):
        raise AssertionError("the sweep was expanded before it was refused")

    monkeypatch.setattr(sweeps, "expand", no_expansion)
    raw = {"regimes": {"r1": {**GOOD, "sweep": {"eta": GRID_1000, "sigma": GRID_1000}}}}
    with pytest.raises(ConfigError, match="1,000,000 grid points"):
        validate_config(raw)
    # zip mode pairs the lists: 1000 points, within the limit (refused here only by the stub)
    raw["regimes"]["r1"]["sweep"]["mode"] = "zip"
    with pytest.raises(AssertionError, match="expanded"):
        validate_config(raw)
    # a raised limit lets the big grid through to expansion
    raw["regimes"]["r1"]["sweep"]["mode"] = "product"
    with pytest.raises(AssertionError, match="expanded"):
        validate_config({**raw, "limits": {"sweep_points": 10**6, "regimes": 10**6}})


def test_the_cost_check_counts_the_brute_force_stage():
    """Its steps add to SGD's time and its records to the memory (they were ignored)."""
    from simbias import costs

    reg = validate_config({"regimes": {"r1": {**GOOD, "brute_force": {"steps": 10**6}}}})["regimes"]["r1"]
    est = costs.estimate(reg)
    off = costs.estimate({**reg, "brute_force": {**reg["brute_force"], "steps": 0}})
    assert est.sgd_seconds > 1000 * off.sgd_seconds
    assert "brute_force.nc" in est.outputs and "brute_force.nc" not in off.outputs
    assert est.peak_memory > off.peak_memory


def cli(tmp_path, *args, env=None, timeout=60):
    """Snakemake's dry run in tmp_path: (return code, its output lines but the profile note)."""
    proc = subprocess.run(
        SNAKEMAKE + ["-d", str(tmp_path), "-n", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=timeout,
        env=env,
    )
    out = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    return proc.returncode, [line for line in out if not line.startswith("Using workflow specific profile")]


def assert_refused(tmp_path, code, out, *needles):
    assert code != 0
    assert len(out) == 1 and out[0].startswith("config error: "), out
    for needle in needles:
        assert needle in out[0], out[0]
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


@pytest.mark.parametrize("kind", ["folder", "fifo", "dev_zero", "empty", "null"])
def test_a_regimes_file_that_is_no_file_is_refused_at_once(tmp_path, kind):
    """A folder failed with a traceback, a FIFO hung, /dev/zero read until MemoryError, and an
    empty or null regimes_file was ignored without a word."""
    import os

    (tmp_path / "config.yaml").write_text(regime_text())
    value, needles = {
        "folder": (str(tmp_path), [f"{tmp_path}: is a folder, not a config file"]),
        "fifo": (str(tmp_path / "fifo"), ["fifo: is not a regular file"]),
        "dev_zero": ("/dev/zero", ["/dev/zero: is not a regular file"]),
        "empty": ("", ["field 'regimes_file': empty"]),
        "null": ("null", ["field 'regimes_file': empty"]),
    }[kind]
    if kind == "fifo":
        os.mkfifo(tmp_path / "fifo")
    code, out = cli(tmp_path, "--config", f"regimes_file={value}")
    assert_refused(tmp_path, code, out, *needles)


@pytest.mark.parametrize("stem", ["extensions", "paper"])
def test_a_regimes_file_named_after_a_target_is_refused(tmp_path, stem):
    """extensions.yaml's regimes went to summary_extensions.csv, replacing the target's summary."""
    reg = {**GOOD, "target": stem}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"regimes": {"r1": GOOD, "t1": reg}}))
    (tmp_path / f"{stem}.yaml").write_text(regime_text("mine"))
    code, out = cli(tmp_path, "--config", f"regimes_file={stem}.yaml")
    assert_refused(
        tmp_path,
        code,
        out,
        f"{stem}.yaml: the summary of the regimes of {stem}.yaml would be summary_{stem}.csv",
        f"config.yaml's {stem}-target regimes",
        f"my_{stem}.yaml",
    )
    # another name goes to a summary of its own
    (tmp_path / "mine.yaml").write_text(regime_text("mine"))
    code, out = cli(tmp_path, "--config", "regimes_file=mine.yaml")
    assert code == 0, out[-5:]
    assert any("results/summary_mine.csv" in line for line in out)


def test_summary_names_that_collide_are_refused_whatever_the_files():
    from simbias.config import check_summary_names

    regimes = {
        "a": {"target": "extensions"},  # a.yaml's extensions regimes: summary_a_extensions
        "b": {"target": "default"},  # a_extensions.yaml's regimes: summary_a_extensions too
        "c": {"target": "default"},  # config.yaml's: summary
    }
    files = {"a": "a.yaml", "a_extensions": "a_extensions.yaml"}
    with pytest.raises(ConfigError, match="summary_a_extensions.csv"):
        check_summary_names(regimes, {"a": "a", "b": "a_extensions"}, files)
    check_summary_names(regimes, {"a": "a", "b": "b"}, {"a": "a.yaml", "b": "b.yaml"})


@pytest.mark.parametrize("value", ["bogus", "NUMPY"])
def test_a_bad_cpu_kernel_variable_is_refused_before_any_job(tmp_path, value):
    """It failed inside run_sgd, after data.nc was written, without naming the variable."""
    import os

    (tmp_path / "config.yaml").write_text(regime_text())
    code, out = cli(tmp_path, env={**os.environ, "SIMBIAS_CPU_KERNEL": value})
    assert_refused(tmp_path, code, out, f"SIMBIAS_CPU_KERNEL={value!r} is not one of auto, numba, numpy")


def test_cpu_kernel_variable_values():
    from simbias.config import check_environment

    for ok in (
        {},
        {"SIMBIAS_CPU_KERNEL": ""},
        {"SIMBIAS_CPU_KERNEL": " numpy "},
        {"SIMBIAS_CPU_KERNEL": "numba"},
    ):
        check_environment(ok)
    with pytest.raises(ConfigError, match="SIMBIAS_CPU_KERNEL='gpu'"):
        check_environment({"SIMBIAS_CPU_KERNEL": "gpu"})


@pytest.mark.parametrize(
    "field,value,accepted",
    [("flow.tau_max", "1e20", True), ("sgd.steps", "1e20", False), ("sgd.steps", "1e5", True)],
)
def test_config_yaml_and_config_overrides_agree(tmp_path, monkeypatch, field, value, accepted):
    """tau_max: 1e20 was accepted in config.yaml but refused through --config ("does not fit a
    64-bit integer"): a value now means the same by either route."""
    block, key = field.split(".")
    reg = {**GOOD, block: {**GOOD.get(block, {}), key: value}}  # text, as YAML 1.1 reads 1e20
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"regimes": {"r1": reg}}))
    monkeypatch.chdir(tmp_path)
    outcomes = []
    for load in (
        lambda: load_config_file("config.yaml"),
        lambda: validate_config(
            {"regimes": {"r1": {**GOOD, **parse_overrides({block: {**GOOD.get(block, {}), key: value}})}}}
        ),
    ):
        try:
            cfg = load()
            outcomes.append(("accepted", cfg["regimes"]["r1"][block][key]))
        except ConfigError as exc:
            outcomes.append(("refused", str(exc)))
    assert outcomes[0] == outcomes[1]
    assert (outcomes[0][0] == "accepted") == accepted, outcomes
