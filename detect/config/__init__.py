"""The configuration: its schema (schema.py: one typed section per part of a run) and its loading
(loading.py: YAML, `base:`, `--set`). Everything is importable from here:

    from detect.config import Config, load_config
"""

from detect.config.loading import (
    builtin_config_dir,
    builtin_config_names,
    config_to_dict,
    config_to_yaml,
    load_config,
    load_raw_config,
    parse_override,
    resolve_config_path,
    validate_config,
)
from detect.config.schema import (
    DEFAULT_MAX_PIXELS,
    MAX_IMAGE_SIDE,
    AnchorConfig,
    AugmentConfig,
    Config,
    DataConfig,
    EvalConfig,
    InputConfig,
    ModelConfig,
    RoIHeadsConfig,
    RPNConfig,
    Section,
    SSDConfig,
    SynthConfig,
    TrainConfig,
    TransformSpec,
)

__all__ = [
    "AnchorConfig",
    "AugmentConfig",
    "Config",
    "DEFAULT_MAX_PIXELS",
    "DataConfig",
    "EvalConfig",
    "InputConfig",
    "MAX_IMAGE_SIDE",
    "ModelConfig",
    "RPNConfig",
    "RoIHeadsConfig",
    "SSDConfig",
    "Section",
    "SynthConfig",
    "TrainConfig",
    "TransformSpec",
    "builtin_config_dir",
    "builtin_config_names",
    "config_to_dict",
    "config_to_yaml",
    "load_config",
    "load_raw_config",
    "parse_override",
    "resolve_config_path",
    "validate_config",
]
