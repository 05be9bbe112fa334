"""Loading configurations: YAML files, one level of `base:` inheritance, `--set a.b=c` overrides.

`load_config(name_or_path, overrides)` returns a validated `Config` (detect/config/schema.py). A name
such as `voc_faster_rcnn` is looked up among the built-in YAML files (`configs/`, installed as
`detect/configs/`); a path to a YAML file works too. Errors name the key, the file or `--set` it came
from, and what is allowed.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from detect.config.schema import Config
from detect.errors import ConfigError


def builtin_config_dir() -> Path:
    """The folder of built-in YAML configs: `detect/configs/` of an installed package, or the
    repository's top-level `configs/` when running from a source checkout (editable installs too)."""
    package_dir = Path(__file__).resolve().parents[1]  # detect/
    installed = package_dir / "configs"
    return installed if installed.is_dir() else package_dir.parent / "configs"


def builtin_config_names() -> list[str]:
    return sorted(p.stem for p in builtin_config_dir().glob("*.yaml"))


def resolve_config_path(name_or_path: str, relative_to: Path | None = None) -> Path:
    """A config name (`voc_faster_rcnn`) or a path to a YAML file -> the file's path."""
    candidates = [Path(name_or_path)]
    if relative_to is not None:
        candidates.insert(0, relative_to / name_or_path)
    for candidate in candidates:
        for path in (candidate, candidate.with_name(candidate.name + ".yaml")):
            if path.is_file() and path.suffix in (".yaml", ".yml"):
                return path
    builtin = builtin_config_dir() / f"{Path(name_or_path).stem}.yaml"
    if builtin.is_file() and "/" not in name_or_path:
        return builtin
    names = builtin_config_names()
    close = difflib.get_close_matches(Path(name_or_path).stem, names, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(
        f"config '{name_or_path}' not found: not a YAML file, nor a built-in config{hint}; "
        f"built-in: {', '.join(names)}"
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except UnicodeDecodeError as error:
        line = error.object[:error.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{error.object[error.start]:02x}); "
                          f"save the config as UTF-8") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(data).__name__}")
    return data


def _merge(base: dict, override: dict, sources: dict, source: str, prefix: str = "") -> dict:
    """Deep-merge `override` into a copy of `base`, recording in `sources` where each key came from."""
    merged = dict(base)
    for key, value in override.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value, sources, source, prefix=f"{path}.")
        else:
            merged[key] = value
            _record_sources(value, path, sources, source)
    return merged


def _record_sources(value: Any, path: str, sources: dict, source: str) -> None:
    sources[path] = source
    if isinstance(value, dict):
        for key, sub in value.items():
            _record_sources(sub, f"{path}.{key}", sources, source)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=c` -> (['a', 'b'], value parsed as YAML, so `[x,y]`, `1e-3`, `true`, `null` work)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set '{text}': expected key.sub=value, e.g. --set train.epochs=20")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _nest(keys: list[str], value: Any) -> dict:
    for key in reversed(keys):
        value = {key: value}
    return value


def load_config(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a config by name or path, apply its `base:` and the `--set` overrides, and validate."""
    raw, sources = load_raw_config(name_or_path)
    for text in overrides:
        keys, value = parse_override(text)
        raw = _merge(raw, _nest(keys, value), sources, f"--set {text}")
    raw.setdefault("name", Path(str(name_or_path)).stem)
    return validate_config(raw, sources)


def load_raw_config(name_or_path: str) -> tuple[dict, dict[str, str]]:
    """The merged but unvalidated mapping, and for each dotted key the file it came from."""
    path = resolve_config_path(name_or_path)
    data = _read_yaml(path)
    sources: dict[str, str] = {}
    base_name = data.pop("base", None)
    merged: dict = {}
    if base_name is not None:
        if not isinstance(base_name, str):
            raise ConfigError(f"{path}: 'base' must be a config name or path, got {base_name!r}")
        base_path = resolve_config_path(base_name, relative_to=path.parent)
        base_data = _read_yaml(base_path)
        if "base" in base_data:
            raise ConfigError(
                f"{base_path}: has its own 'base:' but only one level of inheritance is allowed "
                f"(used as base of {path})"
            )
        merged = _merge({}, base_data, sources, str(base_path))
    merged = _merge(merged, data, sources, str(path))
    return merged, sources


# Keys renamed since configs were first saved in checkpoints: the old spelling is read as the new one,
# so checkpoints and YAML files written before the rename still load.
RENAMED_KEYS = {
    ("model", "rpn", "score_thresh"): "score_threshold",
    ("model", "roi_heads", "score_thresh"): "score_threshold",
    ("model", "ssd", "score_thresh"): "score_threshold",
}


def with_current_names(raw: dict) -> dict:
    """A copy of `raw` with every key of RENAMED_KEYS under its current name (a key given both ways
    keeps the current one)."""
    raw = dict(raw)
    for (*parents, old), new in RENAMED_KEYS.items():
        holders = [raw]
        for parent in parents:
            child = holders[-1].get(parent)
            if not isinstance(child, dict):
                break
            holders.append(dict(child))
        else:
            section = holders[-1]
            if old in section:
                value = section.pop(old)
                section.setdefault(new, value)
            for depth in range(len(parents), 0, -1):  # put the copies back, innermost first
                holders[depth - 1][parents[depth - 1]] = holders[depth]
    return raw


def validate_config(raw: dict, sources: dict[str, str] | None = None) -> Config:
    """Validate a mapping (old key names read as today's: RENAMED_KEYS); the first problem becomes a
    one-line ConfigError."""
    sources = sources or {}
    try:
        return Config.model_validate(with_current_names(raw))
    except ValidationError as error:
        raise ConfigError(_describe(error.errors()[0], sources)) from None


def _describe(problem: dict, sources: dict[str, str]) -> str:
    loc = [str(part) for part in problem["loc"]]
    key = ".".join(loc)
    source = _source_of(loc, sources)
    where = f" in {source}" if source else ""
    if problem["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"; did you mean '{'.'.join(loc[:-1] + [close[0]])}'?" if close else ""
        return f"unknown key '{key}'{where}{hint} (allowed: {', '.join(allowed)})"
    value = problem.get("input")
    message = problem["msg"]
    if problem["type"] == "literal_error":
        message = "must be one of " + message.removeprefix("Input should be ")
    message = message.removeprefix("Value error, ")
    if isinstance(value, dict):  # a check across keys of a section: the message names them
        return f"bad values in '{key}'{where}: {message}"
    return f"bad value for '{key}'{where}: {value!r}: {message}"


def _source_of(loc: list[str], sources: dict[str, str]) -> str | None:
    for end in range(len(loc), 0, -1):
        source = sources.get(".".join(loc[:end]))
        if source:
            return source
    return None


def _allowed_keys(section_loc: list[str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in section_loc:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return []
    return list(model.model_fields)


def config_to_dict(config: Config) -> dict:
    """Plain, YAML-safe mapping of a config (what `config show` prints and checkpoints store)."""
    return config.model_dump(mode="json")


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
