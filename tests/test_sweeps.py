"""Sweep expansion: names are readable, path-safe and stable."""

import re

import pytest

from simbias import sweeps

BASE = {"m": 4, "d": 3, "n": 2, "eta": 0.05, "sigma": 0.1}


def test_product_and_zip():
    reg = dict(BASE, sweep={"mode": "product", "eta": [0.02, 0.05], "sigma": [0.1, 0.2, 0.3]})
    out = sweeps.expand({"s": reg})
    assert len(out) == 6
    assert out["s__eta-0p02__sigma-0p3"]["eta"] == 0.02 and out["s__eta-0p02__sigma-0p3"]["sigma"] == 0.3
    assert out["s__eta-0p02__sigma-0p3"]["sweep_of"]["axes"] == ["eta", "sigma"]
    z = sweeps.expand({"s": dict(BASE, sweep={"mode": "zip", "eta": [0.02, 0.05], "sigma": [0.1, 0.2]})})
    assert sorted(z) == ["s__eta-0p02__sigma-0p1", "s__eta-0p05__sigma-0p2"]
    with pytest.raises(ValueError, match="equal length"):
        sweeps.expand({"s": dict(BASE, sweep={"mode": "zip", "eta": [0.02], "sigma": [0.1, 0.2]})})


def test_nested_keys_and_plain_regimes_pass_through():
    out = sweeps.expand({"s": dict(BASE, sweep={"nu": [0.1, 1e-3]}), "plain": BASE})
    assert out["plain"] is BASE
    assert out["s__nu-0p001"]["activation"]["nu"] == 1e-3


def test_names_are_stable_and_path_safe():
    reg = dict(BASE, sweep={"eta": [0.05, 1e-4, 2.0], "m": [10, 30]})
    names = list(sweeps.expand({"s": reg}))
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", n) for n in names)
    assert "s__eta-0p0001__m-10" in names and "s__eta-2__m-30" in names
    # adding a grid value only adds names: existing points keep theirs
    more = list(sweeps.expand({"s": dict(BASE, sweep={"eta": [0.05, 1e-4, 2.0, 0.5], "m": [10, 30]})}))
    assert set(names) < set(more) and len(more) == len(names) + 2
    assert sweeps.format_value(-0.25) == "m0p25"


def test_validation_checks_every_grid_value_through_representatives():
    """Only one point per distinct value of each axis is schema-validated after expansion; every
    value must still be checked, wherever it sits in its list."""
    from simbias.config import ConfigError, load_schema, validate_config

    reg = dict(BASE, sweep={"eta": [0.05, 0.02, 0.01, 0.03], "sigma": [0.1, 0.2, 0.3]})
    out = sweeps.expand({"s": reg, "plain": BASE})
    reps = sweeps.representatives(out)
    assert "plain" in reps and len(reps) <= 1 + 4 + 3  # at most one point per value, not 12
    covered = {(k, v) for r in reps if "sweep_of" in out[r] for k, v in out[r]["sweep_of"]["point"].items()}
    assert covered == {("eta", e) for e in reg["sweep"]["eta"]} | {
        ("sigma", s) for s in reg["sweep"]["sigma"]
    }
    schema = load_schema()
    del schema["$defs"]["regime"]["properties"]["sweep"]["properties"]["eta"]["items"]["exclusiveMinimum"]
    bad = dict(BASE, sweep={"eta": [0.05, 0.02, -1.0], "sigma": [0.1, 0.2]})
    with pytest.raises(ConfigError, match=r"regime 's__eta-m1__sigma-0p1', field 'eta': must be > 0"):
        validate_config({"regimes": {"s": bad}}, schema)


def test_point_figures_auto_off_past_the_documented_size_and_never_a_rerun():
    from simbias.config_job import job_config

    small = sweeps.expand({"s": dict(BASE, sweep={"eta": [0.01, 0.02], "sigma": [0.1, 0.2]})})
    assert all(r["sweep_of"]["point_figures"] for r in small.values())
    n = sweeps.POINT_FIGURES_MAX + 1
    big = sweeps.expand({"s": dict(BASE, sweep={"eta": [0.01 * (i + 1) for i in range(n)]})})
    assert not any(r["sweep_of"]["point_figures"] for r in big.values())
    forced = sweeps.expand(
        {"s": dict(BASE, sweep={"eta": [0.01 * (i + 1) for i in range(n)], "point_figures": True})}
    )
    assert all(r["sweep_of"]["point_figures"] for r in forced.values())
    # the switch is operational: the jobs' params (and config_sha256) do not carry it
    one = next(iter(small.values()))
    assert "point_figures" not in job_config(one)["sweep_of"] and one["sweep_of"]["point_figures"]


def test_groups_chunk_grid_order_and_group_size_is_operational():
    from simbias.config import ConfigError, validate_config
    from simbias.config_job import job_config

    reg = dict(BASE, sweep={"eta": [0.01, 0.02, 0.03], "sigma": [0.1, 0.2], "group_size": 4})
    out = sweeps.expand({"s": reg, "plain": BASE})
    chunks = sweeps.groups(out)
    assert list(chunks) == ["s"] and [len(c) for c in chunks["s"]] == [4, 2]
    assert sum(chunks["s"], []) == sorted(n for n in out if n != "plain")  # name order, each point once
    assert chunks["s"][0][:2] == ["s__eta-0p01__sigma-0p1", "s__eta-0p01__sigma-0p2"]  # an η row together
    assert sweeps.groups(sweeps.expand({"s": dict(reg, sweep=dict(reg["sweep"], group_size=1))})) == {}
    default = sweeps.expand({"s": dict(BASE, sweep={"eta": [0.01] * 1 + [0.02]})})
    assert sweeps.groups(default)["s"] == [list(default)]  # GROUP_SIZE (64) holds both
    assert "group_size" not in job_config(out["s__eta-0p01__sigma-0p1"])["sweep_of"]
    for bad, why in ((0, "must be ≥ 1, got 0"), (2.5, "must be a whole number")):
        with pytest.raises(ConfigError, match=rf"^regime 's', field 'sweep.group_size': {why}"):
            validate_config({"regimes": {"s": dict(BASE, sweep={"eta": [0.1], "group_size": bad})}})
