"""Models ready to run before any training: `<preset>_coco` (`detect infer ssdlite320_coco photo.jpg`,
`detect serve frcnn_fpn_coco`, `Detector.from_file("ssdlite320_coco")`) is the preset's architecture
with torchvision's COCO-trained weights and COCO's 80 class names.

The weights are read from the torch hub cache, downloaded there once on a machine with a network
(detect.models.backbones.weight_files.hub_state_dict: the same code `model.pretrained: coco` uses);
offline, put torchvision's file in the cache (the one-line error names both), or name it with
`--weights FILE` (`weights=` in the API): the file keeps its published name, which says which model and
which release it is (detect.models.weights.is_published_coco_file). The labels are COCO's
80 classes in torchvision's order, their COCO category ids kept, so `--json` writes COCO results.
"""

from __future__ import annotations

from pathlib import Path

from detect.detections.loaded import LoadedModel

SUFFIX = "_coco"


def ready_model_name(path: str | Path) -> str | None:
    """The preset a `<preset>_coco` name stands for, where `path` is such a name and no file is there."""
    from detect.config.presets import PRESETS

    name = str(path)
    if not name.endswith(SUFFIX) or Path(name).exists():
        return None
    preset = name.removesuffix(SUFFIX)
    return preset if preset in PRESETS else None


def load_ready_model(name: str, device: str = "auto", weights: str | Path | None = None) -> LoadedModel:
    """The LoadedModel of `<preset>_coco` (see the module docstring), on `device`, in eval mode; `weights`:
    torchvision's COCO file of that model, read instead of the hub cache's."""
    from detect.config import load_config
    from detect.config.presets import PRESETS
    from detect.device import resolve_device
    from detect.models.build import build_model
    from detect.models.weights import coco_categories

    preset = PRESETS.get(name.removesuffix(SUFFIX))
    config = load_config(preset.coco_base or preset.base, list(preset.overrides))
    pretrained = "coco" if weights is None else str(_published_file(name, config.model, Path(weights)))
    categories = coco_categories(config.model.arch, config.model.backbone)  # index: COCO category id
    class_names = [category for category in categories[1:] if category != "N/A"]
    category_ids = [index for index, category in enumerate(categories) if index and category != "N/A"]
    config = config.model_copy(update={
        "name": name,
        "data": config.data.model_copy(update={"format": "coco", "classes": class_names}),
        "model": config.model.model_copy(update={"pretrained": pretrained}),
    })
    resolved = resolve_device(device)
    model = build_model(config.model, config.input, len(class_names), class_names)
    return LoadedModel(model.to(resolved).eval(), config, class_names, category_ids, resolved)


def _published_file(name: str, model_cfg, path: Path) -> Path:
    """`path`, where it is torchvision's COCO file for `name`'s architecture; else a one-line DetectError."""
    from detect.errors import DetectError
    from detect.models.weights import is_published_coco_file, mapping_for

    mapping = mapping_for(model_cfg.arch, model_cfg.backbone)
    published = Path(mapping.coco_weights.url).name
    if not path.is_file():
        raise DetectError(f"--weights {path}: no such file (for {name}: torchvision's {published})")
    if not is_published_coco_file(path, mapping):
        raise DetectError(f"--weights {path}: {name} runs torchvision's COCO file {published}, and this file has "
                          f"another name; give that file under its published name (it says which model and release "
                          f"it is)")
    return path
