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

from detect.config.model_sections import ALL_MODEL_KEYS, MODEL_SECTIONS, FasterRCNNModelConfig
from detect.config.schema import RESIZE_KEYS, Config, other_resize_keys
from detect.errors import ConfigError
from detect.text_files import MAX_YAML_FILE_BYTES, YAMLExpansionError, parse_yaml


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


def read_config_text(path: Path) -> str:
    """The file's text, unless it is larger than any config (MAX_YAML_FILE_BYTES)."""
    size = path.stat().st_size
    if size > MAX_YAML_FILE_BYTES:
        raise ConfigError(f"{path}: {size / 2**20:.0f} MiB, larger than any config (at most "
                          f"{MAX_YAML_FILE_BYTES >> 20} MiB); not read")
    return path.read_text()


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = parse_yaml(read_config_text(path))
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
        value = parse_yaml(raw) if raw.strip() else ""
    except YAMLExpansionError as error:
        raise ConfigError(f"--set '{key}': the value is refused: {error.problem}") from None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _nest(keys: list[str], value: Any) -> dict:
    for key in reversed(keys):
        value = {key: value}
    return value


def with_overrides(raw: dict, overrides: list[str] | tuple[str, ...], sources: dict[str, str]) -> dict:
    """`raw` with the `--set key.sub=value` overrides merged in, each key's source recorded in `sources`."""
    for text in overrides:
        keys, value = parse_override(text)
        raw = _merge(raw, _nest(keys, value), sources, f"--set {text}")
    return raw


def load_config(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a config by name or path, apply its `base:` and the `--set` overrides, and validate."""
    raw, sources = load_raw_config(name_or_path)
    raw = with_overrides(raw, overrides, sources)
    raw.setdefault("name", Path(str(name_or_path)).stem)
    return validate_config(raw, sources)


def saved_config_with_overrides(config: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """A run's config (a checkpoint's) with `--set` overrides, validated; errors name the override."""
    sources: dict[str, str] = {}
    return validate_config(with_overrides(config_to_dict(config), overrides, sources), sources)


def validate_saved_config(raw: dict) -> Config:
    """Validate a config saved by a run (in a checkpoint, or an exported model's metadata), as this version
    or an older one saved it. Before per-architecture model sections, a saved `model` held every
    detector's sections; those of other detectors never reached the model, so they are dropped."""
    return validate_config(_own_sections(raw))


def _own_sections(raw: dict) -> dict:
    """`raw` without the model sections of other detectors and the input sizes of other resize modes."""
    raw = _own_model_sections(raw)
    section = raw.get("input")
    if isinstance(section, dict):
        dropped = other_resize_keys(section.get("resize", "keep_ratio"))
        raw = {**raw, "input": {key: value for key, value in section.items() if key not in dropped}}
    return raw


def _own_model_sections(raw: dict) -> dict:
    model = raw.get("model")
    if not isinstance(model, dict):
        return raw
    section = MODEL_SECTIONS.get(model.get("arch", "faster_rcnn"))
    if section is None:
        return raw
    own = {key: value for key, value in model.items() if key in section.model_fields or key not in ALL_MODEL_KEYS}
    return {**raw, "model": own}


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
    _check_resize_keys(raw, sources)
    try:
        return Config.model_validate(with_current_names(raw))
    except ValidationError as error:
        raise ConfigError(_describe(error.errors()[0], sources)) from None


def _check_resize_keys(raw: dict, sources: dict[str, str]) -> None:
    """A config sets the sizes of its own `input.resize` mode only (see InputConfig)."""
    section = raw.get("input")
    if not isinstance(section, dict) or section.get("resize", "keep_ratio") not in RESIZE_KEYS:
        return
    resize = section.get("resize", "keep_ratio")
    for key in other_resize_keys(resize):
        if key in section:
            source = _source_of(["input", key], sources)
            where = f" in {source}" if source else ""
            raise ConfigError(f"'input.{key}'{where} is not a setting of input.resize {resize} (its sizes: "
                              f"{', '.join(RESIZE_KEYS[resize])})")


# The `model` union's members by the tag pydantic puts in error locations (their class names).
MODEL_TAGS = {section.__name__: section for section in MODEL_SECTIONS.values()}


def _describe(problem: dict, sources: dict[str, str]) -> str:
    loc = [str(part) for part in problem["loc"]]
    # Inside the `model` union, pydantic puts the chosen section's tag (its class name) after "model".
    in_union = len(loc) > 1 and loc[0] == "model" and loc[1] in MODEL_TAGS
    model_section = MODEL_TAGS[loc.pop(1)] if in_union else None
    value = problem.get("input")
    if problem["type"] == "unknown_arch":
        loc, value = loc + ["arch"], value.get("arch") if isinstance(value, dict) else value
    if problem["type"] == "other_detectors_key":
        loc = loc + [problem["ctx"]["key"]]
    key = ".".join(loc)
    source = _source_of(loc, sources)
    where = f" in {source}" if source else ""
    if problem["type"] == "other_detectors_key":
        return f"'{key}'{where} is {problem['msg']}"
    if problem["type"] == "unknown_arch":
        return f"bad value for '{key}'{where}: {value!r}: {problem['msg']}"
    if problem["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], model_section)
        close = difflib.get_close_matches(loc[-1], allowed, n=1)
        hint = f"; did you mean '{'.'.join(loc[:-1] + [close[0]])}'?" if close else ""
        return f"unknown key '{key}'{where}{hint} (allowed: {', '.join(allowed)})"
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


def _allowed_keys(section_loc: list[str], model_section: type[BaseModel] | None = None) -> list[str]:
    """The keys of the section at `section_loc`; `model_section`: the `model` union's chosen member."""
    model: type[BaseModel] = Config
    for part in section_loc:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if model is Config and part == "model":
            annotation = model_section or FasterRCNNModelConfig
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
