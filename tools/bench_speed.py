"""Training and inference throughput of our detectors against torchvision's of the same shape.

    python tools/bench_speed.py --model all --mode all --batch-size 8 --dtype bf16 --device cuda --json out.json
    python tools/bench_speed.py --model faster_rcnn_vgg16 --set model.backbone=resnet18 \
        --image-size 160 --batch-size 2 --device cpu --dtype fp32 --warmup 1 --repeats 2

Each `--model` is a shipped config (pretrained weights off) plus `--set` overrides:
  faster_rcnn_vgg16         voc_faster_rcnn               600 x 1000 by default, VGG16 + RoIPool 7
  faster_rcnn_resnet50      voc_faster_rcnn_resnet50      600 x 1000, ResNet-50 C4 + RoIAlign 14
  faster_rcnn_fpn           voc_faster_rcnn_fpn           600 x 1000, ResNet-50 FPN (fasterrcnn_resnet50_fpn's layout)
  faster_rcnn_mobilenet     voc_faster_rcnn_mobilenet     800 x 1333, MobileNetV3-Large FPN
                                                          (fasterrcnn_mobilenet_v3_large_fpn's layout and settings)
  faster_rcnn_mobilenet320  voc_faster_rcnn_mobilenet320  320 x 640, the same network with
                                                          fasterrcnn_mobilenet_v3_large_320_fpn's settings
  ssd300 / ssd512           voc_ssd300 / voc_ssd512       300 / 512 square
  ssdlite320                voc_ssdlite320                320 square, MobileNetV3-Large (reduced tail)
torchvision's counterpart: `FasterRCNN` on the same backbone with the same anchors, RoI pooling,
sampling and postprocess settings (for an FPN backbone that is `fasterrcnn_resnet50_fpn`'s or
`fasterrcnn_mobilenet_v3_large_fpn`'s architecture: pyramid, per-level anchors, MultiScaleRoIAlign,
TwoMLPHead); for SSD300 on VGG16 torchvision's SSD300 VGG16 (`ssd300_vgg16`'s
architecture, no weights) with our default boxes and settings; for SSDlite320 torchvision's own
`ssdlite320_mobilenet_v3_large` (same layout: our state dict maps onto it); for SSD512 and other
trunks, torchvision's `SSD` on a copy of our trunk (its SSD512 extractor has other extra layers); all
from benchmarks.peers.build_peer. Both get identical weights (ours copied into torchvision's,
benchmarks.shared_weights; reported per row) and identical tensors: torchvision's internal resize
and normalization are switched off (benchmarks.torchvision_adapter.switch_off_transform), and it gets
each image's valid region, which it pads back into the same batch tensor. Batches and timing:
benchmarks.speed.

Ours infers as `detect infer` runs it: BatchNorm folded into the convolutions (detect.models.fuse);
torchvision's model runs as torchvision ships it.

Inference weights: random (the default) or, with `--train-steps N`, ours trained N steps on the
benchmark batches, then copied. With shared weights both models score the same candidates; the
`cands/img` columns count them (scores above the threshold that enter NMS), so the table shows that
the postprocess work matches. `--score-threshold` overrides both models' threshold.

Timing: `--warmup` untimed steps, then `--repeats` timed ones, the device synchronised around each;
medians. A training step is forward with targets, the summed loss's backward, and an SGD step; an
inference step is forward plus postprocess (torchvision's includes it), in inference mode. Data
loading is excluded (batches are made on the device beforehand). `--dtype bf16` runs both under bf16
autocast. Peak memory (CUDA) is measured with only the model being timed on the device.
`--profile DIR` writes, per row and model, a table of the top ops of one step (torch.profiler).

`--model-file FILE` (repeatable) times a model file of any backend (a checkpoint, or what `detect export`
wrote: .onnx, OpenVINO .xml, TensorRT .engine, fp32 or INT8) on the same kind of batches at its config's
input size (its exported H x W), forward plus postprocess; these rows have no torchvision peer.

`--mode onnxruntime` and `--mode openvino` (included in `all` on the CPU in fp32, openvino where it is
installed): our model exported to ONNX (detect export: model, postprocess and NMS, batch fixed at the
benchmark's) run by that runtime on the CPU (detect.backends), against torchvision's eager inference
(its `infer` figure when that row was measured).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import speed  # noqa: E402
from benchmarks.host_syncs import find_host_syncs  # noqa: E402
from benchmarks.peers import build_peer  # noqa: E402
from benchmarks.shared_weights import copy_weights  # noqa: E402
from benchmarks.torchvision_adapter import switch_off_transform  # noqa: E402
from detect.config import load_config  # noqa: E402
from detect.detections.predict import predict_batch  # noqa: E402
from detect.device import synchronize  # noqa: E402
from detect.errors import DetectError  # noqa: E402
from detect.models.build import build_model  # noqa: E402
from detect.models.fuse import fold_batchnorm  # noqa: E402

GRAPH_MODES = ("onnxruntime", "openvino")  # our model exported and run by that runtime (detect.backends)
MODELS = {
    "faster_rcnn_vgg16": ("voc_faster_rcnn", (600, 1000)),
    "faster_rcnn_resnet50": ("voc_faster_rcnn_resnet50", (600, 1000)),
    "faster_rcnn_fpn": ("voc_faster_rcnn_fpn", (600, 1000)),
    "faster_rcnn_mobilenet": ("voc_faster_rcnn_mobilenet", (800, 1333)),
    "faster_rcnn_mobilenet320": ("voc_faster_rcnn_mobilenet320", (320, 640)),
    "ssd300": ("voc_ssd300", (300, 300)),
    "ssd512": ("voc_ssd512", (512, 512)),
    "ssdlite320": ("voc_ssdlite320", (320, 320)),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=[*MODELS, "all"], default=None,
                        help="default: all, or none when --model-file is given")
    parser.add_argument("--mode", choices=["train", "infer", *GRAPH_MODES, "all"], default="all",
                        help="all: infer, train, and on the CPU in fp32 onnxruntime and openvino")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the config's train.batch_size")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--image-size", type=int, nargs="+", default=None,
                        help="H [W]: the padded batch's largest image (default: the size listed for --model above)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--num-classes", type=int, default=20)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for both models, e.g. model.backbone=resnet18 (repeatable)")
    parser.add_argument("--score-threshold", type=float, default=None, help="inference score threshold for both")
    parser.add_argument("--train-steps", type=int, default=0, help="train ours this many steps before inference")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's); 1 on a CPU shared with other jobs")
    parser.add_argument("--model-file", dest="model_files", type=Path, action="append", default=[],
                        help="also time this model file (checkpoint, .onnx, .xml, .engine) through its backend; "
                             "repeatable; with --model-file only, no --model runs unless named")
    parser.add_argument("--backend", default="auto", help="--model-file's backend (default: by its suffix)")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    parser.add_argument("--profile", type=Path, default=None, help="write top-op tables of one step here")
    parser.add_argument("--sync-report", action="store_true",
                        help="list ops of ours that sync a CUDA host (file:line), found on one CPU-profiled step")
    args = parser.parse_args(argv)
    if args.image_size is not None and len(args.image_size) not in (1, 2):
        parser.error("--image-size takes H or H W")
    return args


# ---------------------------------------------------------------------------------------------------
# Models


def build_pair(name: str, args) -> tuple[dict, torch.nn.Module, torch.nn.Module, bool]:
    """The config, our model and torchvision's (on the CPU), and whether weights were shared."""
    config_name, _ = MODELS[name]
    overrides = ["model.pretrained=none", *args.overrides]
    size = _image_size(name, args)
    if name.startswith("ssd"):
        overrides.append(f"input.size={size[0]}")
        if args.score_threshold is not None:
            overrides.append(f"model.ssd.score_threshold={args.score_threshold}")
    elif args.score_threshold is not None:
        overrides.append(f"model.roi_heads.score_threshold={args.score_threshold}")
    cfg = load_config(config_name, overrides)
    torch.manual_seed(args.seed)
    ours = build_model(cfg.model, cfg.input, args.num_classes)
    peer = switch_off_transform(build_peer(cfg, args.num_classes, ours))
    return cfg, ours, peer, copy_weights(cfg, ours, peer)


def _image_size(name: str, args) -> tuple[int, int]:
    if args.image_size:
        height = args.image_size[0]
        width = args.image_size[-1] if not name.startswith("ssd") else height
        return height, width
    return MODELS[name][1]


# ---------------------------------------------------------------------------------------------------
# Steps


def autocast(device: torch.device, dtype: str):
    if dtype == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step_fn(model, is_ours: bool, device, dtype, lr: float = 1e-4):
    """One SGD step on a batch; the same optimizer for both models."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            if is_ours:
                losses = model(batch["images"], batch["image_sizes"], batch["targets"])
            else:
                losses = model(batch["image_list"], batch["targets"])
        sum(losses.values()).backward()
        optimizer.step()

    return step


def infer_step_fn(model, is_ours: bool, device, dtype):
    def step(batch):
        if is_ours:  # the prediction path of evaluation and inference
            with torch.inference_mode():
                return predict_batch(model, batch["images"], batch["image_sizes"], batch["scales"],
                                     lambda: autocast(device, dtype))
        with torch.inference_mode(), autocast(device, dtype):
            return model(batch["image_list"])

    return step


@contextlib.contextmanager
def on_device(model, device: torch.device, training: bool):
    """The model on `device` (and its peak memory counted from here), back on the CPU afterwards."""
    model.to(device).train(training)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield
    finally:
        model.to("cpu")
        if device.type == "cuda":
            torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------
# Candidate counts: what enters NMS, from each model's own class scores


def count_candidates(outputs, cfg, num_images: int) -> float:
    """Mean candidates per image above the score threshold (SSD: at most top_k per class)."""
    if cfg.model.arch == "faster_rcnn":
        scores = outputs["class_logits"].float().softmax(-1)[..., 1:]
        above = (scores > cfg.model.roi_heads.score_threshold) & outputs["roi_valid"][..., None]
        return above.sum().item() / num_images
    scores = outputs["cls_logits"].float().softmax(-1)[..., 1:]
    above = (scores > cfg.model.ssd.score_threshold).sum(dim=1).clamp(max=cfg.model.ssd.top_k_per_class)
    return above.sum().item() / num_images


def count_peer_candidates(peer, batch, cfg, device, dtype) -> float:
    """The same count for torchvision's model, from its classifier's output (a forward hook)."""
    seen = {}
    if cfg.model.arch == "faster_rcnn":
        module = peer.roi_heads.box_predictor

        def hook(_, __, output):
            scores = output[0].float().softmax(-1)[:, 1:]
            seen["count"] = (scores > cfg.model.roi_heads.score_threshold).sum().item()
    else:
        module = peer.head

        def hook(_, __, output):
            scores = output["cls_logits"].float().softmax(-1)[..., 1:]
            above = (scores > cfg.model.ssd.score_threshold).sum(dim=1).clamp(max=cfg.model.ssd.top_k_per_class)
            seen["count"] = above.sum().item()

    handle = module.register_forward_hook(hook)
    try:
        infer_step_fn(peer, False, device, dtype)(batch)
    finally:
        handle.remove()
    return seen["count"] / len(batch["image_list"])


# ---------------------------------------------------------------------------------------------------
# Rows


def measure(name: str, args, device: torch.device) -> list[dict]:
    cfg, ours, peer, shared = build_pair(name, args)
    batch_size = args.batch_size or cfg.train.batch_size
    height, width = _image_size(name, args)
    divisible = cfg.input.size_divisible
    batches = speed.make_batches(
        2, batch_size, height, width, args.num_classes, device,
        vary_sizes=cfg.input.resize == "keep_ratio", size_divisible=divisible, seed=args.seed,
    )
    base = {"model": name, "backbone": cfg.model.backbone, "batch_size": batch_size,
            "image_size": [height, width], "dtype": args.dtype, "device": str(device), "shared_weights": shared}
    rows = []
    modes = selected_modes(args, device)
    if ("infer" in modes or set(GRAPH_MODES) & set(modes)) and args.train_steps > 0:
        brief_training(ours, peer, batches, args, device, cfg)
    for mode in modes:
        row = dict(base, mode=mode)
        if mode in GRAPH_MODES:
            row["ours"] = run_exported(ours, batches, args, cfg, mode)
            infer_rows = [r for r in rows if r["mode"] == "infer"]
            row["torchvision"] = (infer_rows[0]["torchvision"] if infer_rows
                                  else run_one(peer, False, "infer", batches, args, device, cfg, name, "torchvision"))
        else:
            for label, model, is_ours in (("ours", ours, True), ("torchvision", peer, False)):
                row[label] = run_one(model, is_ours, mode, batches, args, device, cfg, name, label)
        row["ratio"] = row["ours"]["images_per_s"] / row["torchvision"]["images_per_s"]
        rows.append(row)
    return rows


def selected_modes(args, device: torch.device) -> list[str]:
    if args.mode != "all":
        return [args.mode]
    if device.type != "cpu" or args.dtype != "fp32":
        return ["infer", "train"]
    return ["infer", "train", "onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])


def run_exported(ours, batches, args, cfg, backend: str) -> dict:
    """Our model exported to ONNX (batch fixed at the benchmark's) and timed in `backend` (onnxruntime or
    OpenVINO, detect.backends) on the CPU, with torch's thread count."""
    import tempfile

    from detect.export import export_model
    from detect.export.load import load_model_file

    images = batches[0]["images"]
    class_names = [f"class{i}" for i in range(1, args.num_classes + 1)]
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as folder:
        path = Path(folder) / "model.onnx"
        export_model(ours.cpu().eval(), cfg, class_names, path, image_size=tuple(images.shape[-2:]),
                     batch_size=images.shape[0])
        graph = load_model_file(path, backend, "cpu", {"threads": torch.get_num_threads()}).model

    def step(batch):
        feeds = {"images": batch["images"].cpu().numpy(), "image_sizes": batch["image_sizes"].cpu().numpy(),
                 "scales": batch["scales"].cpu().numpy()}
        return graph.run_graph(feeds)

    times = speed.time_steps(step, batches, args.warmup, args.repeats, torch.device("cpu"))
    result = speed.summarise(times, images.shape[0])
    result["peak_mem_mib"] = None
    result["detections_per_image"] = float(step(batches[0])[3].mean())
    return result


def measure_file(path: Path, args, device: torch.device) -> dict:
    """A model file timed through its backend (detect.backends: checkpoint, ONNX, OpenVINO IR, TensorRT
    engine, fp32 or INT8) on the benchmark's batches at its config's input size, forward plus
    postprocess as `detect infer` runs it. No torchvision peer: the row's ratio is empty."""
    from detect.backends import resolve_backend
    from detect.export.load import load_model_file

    backend = resolve_backend(path, args.backend)
    loaded = load_model_file(path, backend, device if backend == "torch" else "auto",
                             None if backend in ("torch", "tensorrt") else {"threads": torch.get_num_threads()})
    cfg, model = loaded.config, loaded.model
    run_device = device if backend == "torch" else torch.device("cpu")  # graphs take host inputs
    if backend == "torch":
        model = fold_batchnorm(model)
    batch_size = args.batch_size or cfg.eval.batch_size
    if cfg.input.resize == "fixed":
        height = width = cfg.input.size
    else:
        height, width = getattr(model, "height", cfg.input.max_size), getattr(model, "width", cfg.input.max_size)
    batches = speed.make_batches(2, batch_size, height, width, len(loaded.class_names), run_device,
                                 vary_sizes=cfg.input.resize == "keep_ratio", size_divisible=cfg.input.size_divisible,
                                 seed=args.seed)
    step = infer_step_fn(model, True, run_device, args.dtype if backend == "torch" else "fp32")
    result = speed.summarise(speed.time_steps(step, batches, args.warmup, args.repeats, run_device), batch_size)
    result["peak_mem_mib"] = None
    result["detections_per_image"] = sum(len(d["boxes"]) for d in step(batches[0])) / batch_size
    precision = getattr(model, "metadata", {}).get("precision", "fp32")
    return {"model": str(path), "backbone": cfg.model.backbone, "mode": f"{backend} {precision}",
            "batch_size": batch_size, "image_size": [height, width], "dtype": args.dtype, "device": str(run_device),
            "shared_weights": None, "ours": result, "torchvision": None, "ratio": None}


def run_one(model, is_ours, mode, batches, args, device, cfg, name, label) -> dict:
    training = mode == "train"
    if is_ours and not training:
        model = fold_batchnorm(model)  # as detect infer runs it (detect.infer.Detector)
    with on_device(model, device, training):
        if training:
            step = train_step_fn(model, is_ours, device, args.dtype)
        else:
            step = infer_step_fn(model, is_ours, device, args.dtype)
        times = speed.time_steps(step, batches, args.warmup, args.repeats, device)
        result = speed.summarise(times, len(batches[0]["image_list"]))
        result["peak_mem_mib"] = (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        )
        if not training:
            result["candidates_per_image"] = candidates(model, is_ours, batches[0], cfg, device, args.dtype)
            detections = step(batches[0])
            result["detections_per_image"] = sum(len(d["boxes"]) for d in detections) / len(detections)
        if args.profile is not None:
            write_profile(step, batches[0], device, args.profile / f"{name}_{mode}_{label}.txt")
    return result


def candidates(model, is_ours, batch, cfg, device, dtype) -> float:
    if not is_ours:
        return count_peer_candidates(model, batch, cfg, device, dtype)
    with torch.inference_mode(), autocast(device, dtype):
        outputs = model(batch["images"], batch["image_sizes"])
    return count_candidates(outputs, cfg, len(batch["image_list"]))


def brief_training(ours, peer, batches, args, device, cfg) -> None:
    """Train ours `--train-steps` steps on the batches (so scores are no longer uniform), then copy
    the weights into torchvision's model again."""
    with on_device(ours, device, training=True):
        step = train_step_fn(ours, True, device, args.dtype, lr=1e-3)
        speed.time_steps(step, batches, 0, args.train_steps, device)
    copy_weights(cfg, ours, peer)


def write_profile(step, batch, device, path: Path) -> None:
    """The top ops of one step by self device time (CUDA) or self CPU time, as a text table."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, record_shapes=False) as prof:
        step(batch)
        synchronize(device)
    sort_by = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prof.key_averages().table(sort_by=sort_by, row_limit=30) + "\n")


def sync_report(name: str, args) -> dict:
    """Ops of ours that would sync a CUDA host, one training step and one inference step on the CPU."""
    cfg, ours, _, _ = build_pair(name, args)
    height, width = _image_size(name, args)
    batch = speed.make_batches(1, args.batch_size or 2, height, width, args.num_classes, "cpu",
                               vary_sizes=cfg.input.resize == "keep_ratio",
                               size_divisible=cfg.input.size_divisible, seed=args.seed)[0]
    cpu = torch.device("cpu")
    ours.train()
    report = {"train": find_host_syncs(lambda: train_step_fn(ours, True, cpu, "fp32")(batch))}
    ours.eval()
    report["infer"] = find_host_syncs(lambda: infer_step_fn(ours, True, cpu, "fp32")(batch))
    return report


# ---------------------------------------------------------------------------------------------------
# Output


def markdown_table(rows: list[dict]) -> str:
    header = ("| model | backbone | mode | batch | size | dtype | ours img/s | tv img/s | ours ms/it | tv ms/it "
              "| ours peak MiB | tv peak MiB | ours/tv | cands/img ours, tv | dets/img ours, tv |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        ours, tv = row["ours"], row["torchvision"] or {}  # a --model-file row has no peer
        lines.append(
            f"| {row['model']} | {row['backbone']} | {row['mode']} | {row['batch_size']} | "
            f"{row['image_size'][0]}x{row['image_size'][1]} | {row['dtype']} | {ours['images_per_s']:.1f} | "
            f"{_number(tv, 'images_per_s')} | {ours['ms_per_iter']:.1f} | {_number(tv, 'ms_per_iter')} | "
            f"{_mib(ours)} | {_mib(tv)} | {_number(row, 'ratio', 2)} | {_pair(row, 'candidates_per_image')} | "
            f"{_pair(row, 'detections_per_image')} |"
        )
    return "\n".join(lines)


def _mib(result: dict) -> str:
    return "-" if result.get("peak_mem_mib") is None else f"{result['peak_mem_mib']:.0f}"


def _number(values: dict, key: str, digits: int = 1) -> str:
    return "-" if values.get(key) is None else f"{values[key]:.{digits}f}"


def _pair(row: dict, key: str) -> str:
    if key not in row["ours"] or not row["torchvision"]:
        return "-"
    return f"{row['ours'][key]:.0f}, {row['torchvision'][key]:.0f}"


def environment(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpu_threads": torch.get_num_threads()}
    import torchvision

    info["torchvision"] = torchvision.__version__
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.model == "all" or (args.model is None and not args.model_files):
        names = list(MODELS)
    else:
        names = [args.model] if args.model else []  # --model-file alone: only the files
    if args.sync_report:
        for name in names:
            print(json.dumps({name: sync_report(name, args)}, indent=2))
        return 0
    rows = []
    command = "python tools/bench_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)

    def save_rows() -> None:
        """Each model's rows as soon as they are measured: a run cut short keeps what it finished."""
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"command": command, "environment": environment(device), "rows": rows},
                                            indent=2))

    for name in names:
        rows.extend(measure(name, args, device))
        print(f"{name}: measured ({len(rows)} rows so far)", file=sys.stderr, flush=True)
        save_rows()
    for path in args.model_files:
        try:
            rows.append(measure_file(path, args, device))
        except DetectError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        save_rows()
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
