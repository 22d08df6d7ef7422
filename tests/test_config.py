"""Config validation: defaults, coercion, and messages that name the regime and the field."""

import copy

import pytest

from simbias.config import ConfigError, load_config_file, validate_config

BASE = {"regimes": {"r1": {"m": 3, "d": 2, "n": 2, "eta": 0.05, "sigma": 0.1}}}


def cfg_with(**fields):
    c = copy.deepcopy(BASE)
    c["regimes"]["r1"].update(fields)
    return c


def test_defaults_are_filled():
    c = validate_config(BASE)
    r = c["regimes"]["r1"]
    assert r["activation"] == {"name": "cubic", "k": 1, "nu": 0.1}
    assert r["replicas"] == 32 and r["dtype"] == "float64" and r["backend"] == "auto"
    assert r["sgd"]["steps"] == 100000 and r["flow"]["tol"] == 1e-10
    assert c["results"] == "results"


def test_numeric_text_is_coerced():
    c = validate_config(cfg_with(eta="1e-3", m="4"))
    assert c["regimes"]["r1"]["eta"] == 1e-3 and c["regimes"]["r1"]["m"] == 4


@pytest.mark.parametrize(
    "fields,needle",
    [
        ({"eta": 0}, "regime 'r1', field 'eta'"),
        ({"sigma": -0.1}, "regime 'r1', field 'sigma'"),
        ({"m": 2.5}, "regime 'r1', field 'm'"),
        ({"n": 0}, "regime 'r1', field 'n'"),
        ({"sigmaa": 0.1}, "did you mean 'sigma'?"),
        ({"activation": {"name": "relu"}}, "regime 'r1', field 'activation.name'"),
        ({"activation": {"nu": -1}}, "field 'activation.nu'"),
        ({"replicas": 0}, "field 'replicas'"),
        ({"sgd": {"steps": -5}}, "field 'sgd.steps'"),
        ({"dtype": "float16"}, "field 'dtype'"),
        ({"eta": "fast"}, "field 'eta'"),
        ({"weights": {"kind": "list", "values": [1, 2]}}, "field 'weights.values'"),
    ],
)
def test_bad_fields_are_named(fields, needle):
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg_with(**fields))
    assert needle in str(exc.value)


def test_missing_field_and_unsafe_name():
    c = copy.deepcopy(BASE)
    del c["regimes"]["r1"]["sigma"]
    with pytest.raises(ConfigError, match="regime 'r1', field 'sigma': required field is missing"):
        validate_config(c)
    for bad in ["a/b", "..", "has space"]:
        with pytest.raises(ConfigError, match="not path-safe"):
            validate_config({"regimes": {bad: BASE["regimes"]["r1"]}})


def test_malformed_yaml_reports_line(tmp_path):
    p = tmp_path / "config.yaml"
    p.write_text("regimes:\n  r1:\n    m: 3\n   d: [2\n")
    with pytest.raises(ConfigError, match="line"):
        load_config_file(p)


def test_operational_fields_stay_out_of_job_params():
    """Checkpoint intervals change how SGD runs, not what it computes: they never rerun a job."""
    from simbias.config_job import job_config, regime_sha256

    a = validate_config(cfg_with(sgd={"checkpoint_every_steps": 10}))["regimes"]["r1"]
    b = validate_config(cfg_with(sgd={"checkpoint_every_seconds": 5}))["regimes"]["r1"]
    assert a["sgd"]["checkpoint_every_steps"] == 10 and b["sgd"]["checkpoint_every_seconds"] == 5
    assert job_config(a) == job_config(b) and "checkpoint_every_steps" not in job_config(a)["sgd"]
    assert regime_sha256(job_config(a)) == regime_sha256(job_config(b))


def test_code_version_follows_the_modules_a_stage_runs():
    from simbias.code_version import STAGE_MODULES, code_version, stage_modules

    versions = {stage: code_version(stage) for stage in STAGE_MODULES}
    assert all(len(v) == 16 for v in versions.values())
    assert len(set(versions.values())) == len(versions)  # each stage has its own set of modules
    # a stage's hash covers all the code its job runs, and not the other stages' code
    sgd = stage_modules("run_sgd")
    assert {
        "stages.sgd",
        "stages.common",
        "stages.sgd_records",
        "stages.sgd_finished",
        "stages.stable_eta",
    } <= sgd
    assert {"ensemble", "step_rule", "sgd", "sam", "kernels_cpu", "gpu", "noise", "checkpoint"} <= sgd
    assert {"model", "activations", "backend", "storage"} <= sgd
    assert not sgd & {"flow", "stages.flow", "stages.compare", "theory"}
    flow = stage_modules("run_flow")
    assert {
        "stages.flow",
        "flow",
        "flow_field",
        "flow_kernels",
        "flow_checkpoint",
        "flow_pool",
        "checkpoint",
    } <= flow
    assert not flow & {"sgd", "ensemble", "kernels_cpu", "stages.sgd"}
    compare = stage_modules("compare")
    assert {"stages.compare", "stages.compare_brute", "theory", "analysis", "tables"} <= compare
    assert not compare & {"flow", "sgd", "stages.flow", "stages.sgd"}
    assert {"stages.brute_force", "sgd", "ensemble", "kernels_cpu"} <= stage_modules("run_brute_force")
    assert {"stages.data", "data"} <= stage_modules("make_data")
    assert {"figures.style", "figures.trajectory", "figures.phase", "sweeps"} <= stage_modules("figure")
    assert not {"config", "config_yaml", "config_messages", "logs"} & set().union(
        *map(stage_modules, STAGE_MODULES)
    )


def test_code_version_covers_the_cuda_sources_the_gpu_kernel_is_compiled_from(tmp_path, monkeypatch):
    import shutil

    from simbias import code_version as cv

    copy = tmp_path / "simbias"
    shutil.copytree(cv.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cv, "PACKAGE", copy)

    def versions() -> dict[str, str]:
        cv.code_version.cache_clear()
        return {stage: cv.code_version(stage) for stage in cv.STAGE_MODULES}

    try:
        before = versions()
        for name in cv.READS["cuda_build"]:
            (copy / name).write_text((copy / name).read_text() + "\n// edited\n")
            after = versions()
            changed = {s for s in before if before[s] != after[s]}
            assert changed == {"run_sgd", "run_brute_force"}, (name, changed)  # the stages that run SGD
            before = after
    finally:
        cv.code_version.cache_clear()
