"""The configuration: its schema (schema.py: one typed section per part of a run; model_sections.py:
the `model` section of each detector family; section.py: what every section is) and its loading
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
    saved_config_with_overrides,
    validate_config,
    validate_saved_config,
)
from detect.config.model_sections import (
    AnchorConfig,
    FasterRCNNModelConfig,
    ModelConfig,
    RoIHeadsConfig,
    RPNConfig,
    SSDConfig,
    SSDModelConfig,
    model_section,
)
from detect.config.schema import (
    DEFAULT_MAX_PIXELS,
    MAX_IMAGE_SIDE,
    AugmentConfig,
    Config,
    DataConfig,
    EvalConfig,
    InputConfig,
    SynthConfig,
    TrackConfig,
    TrainConfig,
    TransformSpec,
)
from detect.config.section import Section

__all__ = [
    "AnchorConfig",
    "AugmentConfig",
    "Config",
    "DEFAULT_MAX_PIXELS",
    "DataConfig",
    "EvalConfig",
    "InputConfig",
    "MAX_IMAGE_SIDE",
    "FasterRCNNModelConfig",
    "ModelConfig",
    "RPNConfig",
    "RoIHeadsConfig",
    "SSDConfig",
    "SSDModelConfig",
    "Section",
    "TrackConfig",
    "SynthConfig",
    "TrainConfig",
    "TransformSpec",
    "builtin_config_dir",
    "builtin_config_names",
    "config_to_dict",
    "config_to_yaml",
    "load_config",
    "load_raw_config",
    "model_section",
    "parse_override",
    "resolve_config_path",
    "saved_config_with_overrides",
    "validate_config",
    "validate_saved_config",
]
