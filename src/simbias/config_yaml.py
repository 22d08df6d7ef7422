"""Reading config files: a safe YAML loader that refuses duplicate keys and alias bombs and
reports the line of a syntax error, and ``--config KEY=VALUE`` values read as YAML would.

``read_config_yaml`` is the only place config.yaml is parsed; :mod:`simbias.config`
validates what it returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config.yaml problem, with the regime and field it concerns."""


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


MAX_FILE_BYTES = 1_000_000  # a config file larger than this is refused before it is read


def _read_text(path: Path) -> str:
    """A config file's text: a regular file (a folder, a FIFO or a device such as /dev/zero would
    fail, hang or never end) of at most MAX_FILE_BYTES, refused before it is parsed."""
    import stat

    mode = path.stat().st_mode  # FileNotFoundError for the caller
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{path}: is a folder, not a config file")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{path}: is not a regular file (a pipe, a socket or a device): give a YAML file")
    with open(path, "rb") as fh:
        raw = fh.read(MAX_FILE_BYTES + 1)  # a file that grows while it is read is cut here
    if len(raw) > MAX_FILE_BYTES:
        size = max(path.stat().st_size, len(raw))
        raise ConfigError(
            f"{path}: {size / 1e6:.3g} MB, more than the {MAX_FILE_BYTES / 1e6:g} MB a config file may be "
            "(1000 regimes written out take about 150 KB): for many regimes write a sweep: block "
            "(README, parameter sweeps)"
        )
    return raw.decode("utf-8")


def read_config_yaml(path: Path | str = "config.yaml") -> Any:
    """Parse a config file with a safe YAML loader; every failure is a one-line ConfigError.

    Syntax errors name the line and column; Python-object tags (``!!python/...``) are
    refused rather than executed; a key given twice in one mapping is an error.
    """
    path = Path(path)
    try:
        text = _read_text(path)
    except FileNotFoundError:
        hint = (
            " (run from the folder that holds config.yaml, or pass -d FOLDER)"
            if path.name == "config.yaml"
            else ""
        )
        raise ConfigError(f"{path}: not found in {Path.cwd()}{hint}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
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


def check_size(data: Any, source: str = "config") -> None:
    """Refuse a document whose aliases expand to more than MAX_VALUES values (a "billion laughs"
    alias bomb: a few lines that every later step, deep copies and validation included, would
    walk as billions of values). Linear in the number of distinct objects."""
    sizes: dict[int, int] = {}
    aliased = [0]  # values counted again through an alias (a list or mapping met twice)

    def size(obj: Any) -> int:
        key = id(obj)
        if key in sizes:
            if isinstance(obj, dict | list):
                aliased[0] += sizes[key]
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
        if aliased[0] <= MAX_VALUES // 2:  # mostly written out, not repeated through aliases
            raise ConfigError(
                f"{source}: holds more than {MAX_VALUES} values, too many for a config; for many "
                "regimes write a sweep: block (README, parameter sweeps)"
            )
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
                # a float, as config.yaml's 1e6 becomes: validation makes it a whole number where
                # one is expected, and refuses it there if it does not fit 64 bits (both routes agree)
                parsed = float(parsed.replace("_", ""))
        except (yaml.YAMLError, ValueError):
            return values
        if parsed is None or isinstance(parsed, bool | int | float):
            return parsed
    return values
