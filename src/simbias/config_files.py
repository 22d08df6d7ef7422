"""The run's config before validation: config.yaml, then each extra config file, then the regimes
file, then ``--config KEY=VALUE``. The Snakefile (workflow/rules/common.smk) and ``simbias list``
/ ``simbias show`` both resolve it here, so they see the same regimes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import check_regimes_file
from .config_yaml import ConfigError, read_config_yaml


def update_config(config: Any, more: dict) -> Any:
    """``config`` updated in place with ``more``, nested mappings merged key by key: what
    snakemake.utils.update_config does (the library does not import Snakemake)."""
    for key, value in more.items():
        if not isinstance(config, dict):
            config = {}
        config[key] = update_config(config.get(key, {}), value) if isinstance(value, dict) else value
    return config


def _note_added_regimes(
    raw: dict, more: dict, path: str, added_by: dict[str, str], added_from: dict[str, str]
) -> None:
    known, new = raw.get("regimes"), more.get("regimes")
    if isinstance(new, dict):
        stem = re.sub(r"[^A-Za-z0-9_-]", "_", Path(path).stem)
        for name in new:
            if not isinstance(known, dict) or name not in known:
                added_by.setdefault(name, stem)
                added_from.setdefault(stem, str(path))


def _read_mapping(path: str) -> dict:
    """An extra config file, read by the safe loader; its top level must be a mapping."""
    more = read_config_yaml(path)
    if not isinstance(more, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (regimes: ...)")
    return more


def merged_config(
    base: Path | str = "config.yaml",
    extras: Sequence[str] = (),
    overrides: dict | None = None,
    replace_base: bool = False,
    added_by: dict[str, str] | None = None,
    added_from: dict[str, str] | None = None,
) -> Any:
    """config.yaml, then each extra file (``--configfile``), then the regimes file, then the
    ``--config KEY=VALUE`` overrides (already read by :func:`simbias.config_yaml.parse_overrides`).

    Every file goes through the safe YAML loader (not Snakemake's configfile:). An extra
    file's regimes merge with config.yaml's: a new name adds a regime, a known name
    overrides only the fields it gives. ``replace_base`` (--replace-workflow-config) drops
    config.yaml. ``regimes_file`` (in the overrides or config.yaml) is the safe route for extra
    regimes: Snakemake itself parses every --configfile first, with yte, which runs Python written
    in the file (docs/reliability.md); a regimes file is read only by the safe loader.
    ``added_by`` (if given) collects {regime name: stem of the file that added it}, ``added_from``
    {that stem: the file as given}. A ``regimes_file`` given but empty or null is refused.
    """
    added_by = {} if added_by is None else added_by
    added_from = {} if added_from is None else added_from
    base = Path(base)
    keep_base = not replace_base and (base.exists() or not extras)
    raw = read_config_yaml(base) if keep_base else {}
    if not isinstance(raw, dict):
        return raw  # validate_config names the problem
    for extra in extras:
        if Path(extra).resolve() == base.resolve():
            continue
        more = _read_mapping(extra)
        _note_added_regimes(raw, more, extra, added_by, added_from)
        update_config(raw, more)
    overrides = dict(overrides or {})
    # --config regimes_file= wins over config.yaml's; given but empty or null is refused
    given = [src.pop("regimes_file") for src in (overrides, raw) if "regimes_file" in src]
    if given:
        regimes_file = check_regimes_file(given[0])
        more = _read_mapping(regimes_file)
        _note_added_regimes(raw, more, regimes_file, added_by, added_from)
        update_config(raw, more)
    update_config(raw, overrides)  # --config KEY=VALUE overrides
    return raw
