"""The data a model file (a checkpoint or an export) is scored or calibrated on: its own config's, read where
it is and never generated, on the validation part its run drew. `detect eval`, `detect export --int8` and
benchmarks/map_table.py use it.

    config = model_file_config(saved_config, overrides, model_file, class_names)
    config = with_split_lists_of_run(config, saved_config, model_file, given)
"""

from __future__ import annotations

from pathlib import Path

from detect.config import Config, saved_config_with_overrides
from detect.data.splits import draws_splits, run_split_lists


def model_file_config(saved: Config, overrides, model_file: Path, class_names: list[str] | None = None) -> Config:
    """The config a model file (checkpoint or export) holds, with `overrides`: its classes (`class_names`
    where it names none), the parts its run drew (with_split_lists_of_run), and its data only read where
    it is, never generated (detect.data.synthetic.existing_data_only), unless the user named the
    folder (`--set data.root=...`): a file handed to us never decides where we write."""
    from detect.data.synthetic import existing_data_only

    config = saved_config_with_overrides(saved, list(overrides))
    data = config.data
    if data.classes is None and class_names is not None:
        data = data.model_copy(update={"classes": list(class_names)})
    if not any(str(item).partition("=")[0].strip() == "data.root" for item in overrides):
        data = existing_data_only(data, model_file)
    config = config.model_copy(update={"data": data})
    return with_split_lists_of_run(config, saved, Path(model_file), given=False)


def with_split_lists_of_run(config: Config, ckpt_config: Config, checkpoint: Path, given: bool) -> Config:
    """A checkpoint of a run that drew its validation part is scored on that run's part: the lists in
    the checkpoint's folder (splits/), else those its config names (detect/data/splits.py). A config
    given on the command line keeps the lists it names itself."""
    if not draws_splits(config.data) or (given and config.data.split_lists is not None):
        return config
    lists = run_split_lists(checkpoint.parent, {"split_lists": ckpt_config.data.split_lists})
    if lists is None:
        return config
    return config.model_copy(update={"data": config.data.model_copy(update={"split_lists": str(lists)})})
