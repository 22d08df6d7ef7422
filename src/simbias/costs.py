"""Pre-flight cost estimates: what a regime would take, before any job starts.

``estimate`` gives, from a regime's resolved config alone (no NumPy, so it costs
nothing at start-up), the bytes of every output file (uncompressed: an upper
bound on disk), the largest array any stage holds in memory, an upper bound on a
job's peak memory, and the time of every stage that runs steps (SGD and its
brute-force continuation) from steps × replicas at a conservative throughput.
Every stage that allocates records is counted: SGD, the brute-force continuation,
the flow, and the comparison (which holds them together). ``simbias.config`` refuses a regime over ``limits.memory_gb`` or
``limits.hours`` (docs/reliability.md, "Limits").

The throughput model is per replica-step ``a + b·m·n·d`` seconds, plus ``c`` per
step, times a safety factor of 3 for a shared machine. The constants sit above
every row of the measured table in docs/performance.md (`benchmarks/sgd_throughput.py`,
float64, 1 to 1024 replicas): the compiled CPU kernel for the odd-power family
under label-noise SGD and GD, the NumPy reference loop otherwise (other
activations, 1-SAM). A GPU is faster; the estimate does not count on one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

FLOAT_BYTES = 8  # every output is float64 (float32 runs are stored as float64 too)
# A recording schedule is made as 2 arrays of its points at once (np.linspace, then rounded to
# integers: simbias.ensemble.record_schedule), before duplicates go.
NOISE_CHUNK = 2048  # steps of label noise drawn at once (simbias.ensemble.run's chunk)
SAFETY = 3.0
# (seconds per step, per replica-step, per replica-step and unit of m·n·d)
THROUGHPUT = {
    "numba": (2e-7, 1e-7, 3e-10),
    "numpy": (1.5e-5, 3e-6, 3e-9),
}
COMPILED_ACTIVATIONS = ("cubic", "odd_power")
DEFAULTS = {
    "m": 10,
    "d": 3,
    "n": 3,
    "replicas": 32,
    "sgd.log_points": 60,
    "sgd.linear_points": 20,
    "flow.records": 80,
    "brute_force.log_points": 60,
    "brute_force.linear_points": 20,
}
OUTPUT_FIELDS = {
    "data.nc": ("replicas", "m", "d", "n"),
    "sgd.nc": ("replicas", "sgd.log_points", "sgd.linear_points", "m", "d"),
    "flow.nc": ("replicas", "flow.records", "m", "d"),
    "comparison.nc": ("replicas", "sgd.log_points", "sgd.linear_points", "flow.records"),
    "brute_force.nc": ("replicas", "brute_force.log_points", "brute_force.linear_points", "m", "d"),
}


@dataclass
class Estimate:
    outputs: dict[str, int]  # file -> bytes (uncompressed)
    largest_array: tuple[int, str, tuple[str, ...]]  # bytes, what it is, the fields it grows with
    peak_memory: int  # bytes: the regime's outputs held at once plus the largest temporary array
    sgd_seconds: float  # SGD and its brute-force continuation
    kernel: str
    fields: dict[str, float] = field(default_factory=dict)  # field -> value (to name the largest)


def sgd_records(s: dict) -> int:
    """An upper bound on the number of SGD records (simbias.ensemble.record_schedule plus record_steps)."""
    return min(s["steps"] + 1, s["log_points"] + s["linear_points"] + len(s.get("record_steps", ())) + 2)


def sgd_kernel(reg: dict) -> str:
    """Which CPU loop the throughput model assumes (see simbias.sgd.select_advance)."""
    compiled = reg["activation"]["name"] in COMPILED_ACTIVATIONS and reg["algorithm"]["name"] != "one_sam"
    return "numba" if compiled else "numpy"


def _record_arrays(run: str, block: str, spec: dict, T: int, shape: tuple) -> list:
    """The arrays a run of steps allocates for its records (SGD's, or its brute-force
    continuation's): its two recording schedules, and θ and Z at every record."""
    R, m, d, n = shape
    b = FLOAT_BYTES
    rec = (f"{block}.log_points", f"{block}.linear_points")
    return [
        (
            2 * b * spec["linear_points"],
            f"the {run} linear recording schedule, before duplicates go",
            (f"{block}.linear_points",),
        ),
        (
            2 * b * spec["log_points"],
            f"the {run} log recording schedule, before duplicates go",
            (f"{block}.log_points",),
        ),
        (
            b * R * T * m * d,
            f"θ at every {run} record (replicas × records × m × d)",
            ("replicas", *rec, "m", "d"),
        ),
        (
            b * R * T * m * n,
            f"Z at every {run} record (replicas × records × m × n)",
            ("replicas", *rec, "m", "n"),
        ),
    ]


def estimate(reg: dict) -> Estimate:
    """Bytes and seconds of one resolved regime (see the module docstring)."""
    m, d, n, R, s, bf = reg["m"], reg["d"], reg["n"], reg["replicas"], reg["sgd"], reg["brute_force"]
    Ts, Tf = sgd_records(reg["sgd"]), reg["flow"]["records"]
    Tb = sgd_records(bf) if bf["steps"] > 0 else 0  # brute_force.steps: 0 runs no brute force
    k = max(min(m, n), min(m, d))
    b = FLOAT_BYTES
    outputs = {
        "data.nc": b * (n * d + n + m + R * m * d),
        "sgd.nc": b * (R * Ts * (m * d + 2 + 2 * k) + 2 * R + 2 * Ts),
        "flow.nc": b * (R * Tf * (m * d + 3 + 2 * k) + R * (m * d + 6) + 2 * Tf),
        "comparison.nc": b * (R * 40 + 2 * R * (Ts + Tf)),
    }
    if Tb:
        outputs["brute_force.nc"] = b * (R * Tb * (m * d + 2 + 2 * k) + 2 * R + 2 * Tb)
    arrays = [
        (b * R * m * d, "θ0 (replicas × m × d)", ("replicas", "m", "d")),
        (b * n * d, "X (n × d)", ("n", "d")),
        (b * n * n, "the Gram matrix XXᵀ (n × n)", ("n",)),
        (b * R * n * n, "JJᵀ of every replica (replicas × n × n)", ("replicas", "n")),
        (
            b * min(NOISE_CHUNK, reg["sgd"]["steps"]) * R * n,
            "a block of label noise (up to 2048 steps × replicas × n)",
            ("replicas", "n"),
        ),
        (
            b * R * Tf * m * n,
            "Z at every flow record (replicas × flow.records × m × n)",
            ("replicas", "flow.records", "m", "n"),
        ),
        (
            b * (m * min(n, d) * n + n * n),
            "the flow's structured solve per replica (m · rank X · n + n²)",
            ("m", "n"),
        ),
        (b * m * m, "neuron distances (m × m)", ("m",)),
    ]
    arrays += _record_arrays("SGD", "sgd", s, Ts, (R, m, d, n))
    if Tb:
        arrays += _record_arrays("brute-force", "brute_force", bf, Tb, (R, m, d, n))
    largest = max(arrays, key=lambda a: a[0])
    kernel = sgd_kernel(reg)
    per_step, per_rs, per_mnd = THROUGHPUT[kernel]
    steps = s["steps"] + bf["steps"]  # the brute force continues SGD with the same loop
    seconds = SAFETY * steps * (per_step + R * (per_rs + per_mnd * m * n * d))
    fields = {
        "m": m,
        "d": d,
        "n": n,
        "replicas": R,
        "sgd.log_points": s["log_points"],
        "sgd.linear_points": s["linear_points"],
        "flow.records": Tf,
        "brute_force.log_points": bf["log_points"],
        "brute_force.linear_points": bf["linear_points"],
    }
    return Estimate(outputs, largest, sum(outputs.values()) + largest[0], seconds, kernel, fields)


def _dominant(fields: tuple[str, ...], values: dict[str, float]) -> str:
    """Of the fields an array grows with, the one set furthest above its default."""
    return max(fields, key=lambda f: values[f] / DEFAULTS[f])


def human_bytes(x: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB", "EB"):
        if x < 1000 or unit == "EB":
            return f"{x:.3g} {unit}"
        x /= 1000
    return f"{x:.3g} EB"  # pragma: no cover


def human_seconds(s: float) -> str:
    if s < 3600:
        return f"{s:.3g} s"
    h = s / 3600
    return f"{h:.3g} hours" if h < 24 * 365 else f"{h / (24 * 365):.3g} years"


def check(name: str, reg: dict, limits: dict) -> str | None:
    """A one-line refusal naming regime, field and estimate, or None if the regime fits the limits."""
    est = estimate(reg)
    where = f"regime '{name}'"
    mem_limit = limits["memory_gb"] * 1e9
    if est.peak_memory > mem_limit:
        size, what, grows = est.largest_array
        big = max(est.outputs, key=est.outputs.get)
        if est.outputs[big] > size:  # an output file is held whole in memory while it is written
            size, what, grows = est.outputs[big], f"{big}, uncompressed", OUTPUT_FIELDS[big]
        f = _dominant(grows, est.fields)
        return (
            f"{where}, field '{f}': {f} = {est.fields[f]:g} needs about {human_bytes(est.peak_memory)} of "
            f"memory (largest: {what}, {human_bytes(size)}), over limits.memory_gb = {limits['memory_gb']:g}; "
            f"lower {f}, or raise the limit if this machine has the memory: "
            f"--config limits='{{memory_gb: {math.ceil(est.peak_memory / 1e9 * 1.2)}}}'"
        )
    hours = est.sgd_seconds / 3600
    if hours > limits["hours"]:
        sgd_steps, bf_steps = reg["sgd"]["steps"], reg["brute_force"]["steps"]
        steps_field, steps = (
            ("brute_force.steps", bf_steps) if bf_steps > sgd_steps else ("sgd.steps", sgd_steps)
        )
        f = steps_field if (sgd_steps + bf_steps) / 1e5 >= reg["replicas"] / 32 else "replicas"
        value = steps if f == steps_field else reg["replicas"]
        what = "SGD" if not bf_steps else "SGD and its brute-force continuation"
        counted = f"{sgd_steps:g}" if not bf_steps else f"{sgd_steps:g} + {bf_steps:g}"
        return (
            f"{where}, field '{f}': {f} = {value:g} makes {what} take about "
            f"{human_seconds(est.sgd_seconds)} ({counted} steps × {reg['replicas']} replicas at a "
            f"conservative CPU throughput, {est.kernel} loop), over limits.hours = {limits['hours']:g}; "
            f"lower {f}, or raise the limit: --config limits='{{hours: {math.ceil(hours * 1.2)}}}'"
        )
    return None
