"""Project hygiene: licence and citation, the pinned environment, the default profile, the
console script, and no citation of design notes that are not in the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _requirements() -> list[Requirement]:
    proj = PYPROJECT["project"]
    reqs = [Requirement(r) for r in proj["dependencies"]]
    for extra, deps in proj["optional-dependencies"].items():
        if not extra.startswith("gpu"):  # CuPy (gpu, gpu-cuda13) depends on the CUDA version: not pinned
            reqs += [Requirement(r) for r in deps]
    return reqs


def test_licence_and_citation():
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    assert PYPROJECT["project"]["license"] == "MIT"
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    paper = cff["preferred-citation"]
    assert paper["title"] == "Simplicity Bias via Global Convergence of Sharpness Minimization"
    assert [a["family-names"] for a in paper["authors"]] == ["Gatmiry", "Li", "Reddi", "Jegelka"]
    assert paper["year"] == 2024 and cff["license"] == "MIT"


def test_constraints_pin_every_dependency_within_pyproject_ranges():
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt has no pin for {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])


def test_this_environment_was_installed_from_the_constraints():
    """CI installs with `-c constraints.txt` (.ci/run): every pinned package present here has its pin."""
    wrong = {}
    for name, version in _pins().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        if have != version:
            wrong[name] = (have, version)
    assert not wrong, f"installed != constraints.txt: {wrong}"


def test_readme_and_ci_install_from_the_constraints():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    setup = readme.split("## Set-up", 1)[1].split("## What you get", 1)[0]
    commands = [b.split("```", 1)[0].strip() for b in setup.split("```bash\n")[1:]]
    assert len(commands) == 2, commands
    for cmd in commands:
        assert cmd.startswith("python3 -m venv .venv && .venv/bin/pip install -c constraints.txt -e ")
    assert commands[0].endswith("&& .venv/bin/snakemake"), commands[0]
    assert commands[1] in ci  # CI runs the README's test command as written
    for line in ci.splitlines():
        if "pip install" in line:
            assert "-c constraints.txt" in line, line


def test_console_script():
    exe = shutil.which("simbias", path=str(Path(sys.executable).parent))
    assert exe, "the `simbias` console script is not installed (pip install -e .)"
    proc = subprocess.run([exe, "summary", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "usage: simbias summary" in proc.stdout, proc.stderr


def test_bare_snakemake_loads_the_default_profile(tmp_path):
    """No --cores: the default profile (profiles/default next to the Snakefile) supplies them."""
    shutil.copy(REPO / "tests" / "data" / "tiny.yaml", tmp_path / "config.yaml")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path)]
    proc = subprocess.run([*cmd, "results/tiny_a/data.nc"], capture_output=True, text=True, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "profiles/default" in out and (tmp_path / "results" / "tiny_a" / "data.nc").exists()


def test_no_file_cites_design_notes_outside_the_repository():
    files = subprocess.run(
        ["git", "grep", "-l", "DESIGN" + ".md", "--", ".", ":!CHANGELOG.md"],
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout.split()
    assert files == [], files


def _dry_run_files(tmp_path, *targets: str) -> list[str]:
    """Every output, log and benchmark file a dry run of config.yaml's targets would write."""
    shutil.copy(REPO / "config.yaml", tmp_path / "config.yaml")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path)]
    cmd += ["-n", *targets]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = re.findall(r"^    (?:output|log|benchmark): (.+)$", proc.stdout, re.M)
    return [f for line in lines for f in line.split(", ")]


def test_the_default_run_writes_no_tracked_file(tmp_path):
    """`snakemake` leaves `git status` clean: everything it writes is git-ignored. The README's
    image (tracked) is made only by `snakemake readme_figure`."""
    files = _dry_run_files(tmp_path)
    assert "results/fig1a/flow.nc" in files
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        input="\n".join(files),
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout.split()
    assert sorted(set(files) - set(ignored)) == []
    assert "docs/img/fig1a_trajectory.png" in _dry_run_files(tmp_path, "readme_figure")
    readme = (REPO / "README.md").read_text()
    assert "![fig1a: SGD continued by the manifold flow](docs/img/fig1a_trajectory.png)" in readme
