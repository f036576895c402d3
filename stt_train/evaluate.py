"""stt-eval: accuracy (mIoU) and temporal consistency (TC) of a model on a video dataset.

The model runs through the streaming runtime (:class:`stt_ros.runtime.StreamingSegmenter`, the
code the node runs), one sequence at a time with its ring buffer reset between sequences, so the
numbers are those of deployment. Each frame is resized to the network input and its class map
back to the label size (nearest).

* mIoU: one confusion matrix over every labelled frame of every sequence
  (:class:`stt_ros.metrics.ConfusionMatrix`), IoU per class = TP / (TP + FP + FN), averaged over the
  classes present in labels or predictions. Pixels labelled 255 are ignored. This is what
  cityscapesscripts' ``evalPixelLevelSemanticLabeling`` computes (a test checks it).
* TC after ETC (Liu et al., ECCV 2020), in one of two protocols (``--tc-protocol``, see
  :mod:`stt_ros.metrics`). ``stt_ros`` (default, what the node publishes): for each pair of
  consecutive frames, the previous prediction is warped onto the current frame with backward
  optical flow (nearest sampling) and compared with the current prediction; intersections and
  unions are summed over all pairs of all sequences, then IoU is averaged over the classes that
  occur. Pixels whose flow leaves the frame are not compared; with ground-truth flow (SynthDrive)
  neither are pixels occluded in the previous frame. ``etc``: ETC's own evaluation, for comparison
  with published tables: frame t+1's prediction warped onto frame t with the forward flow t -> t+1
  (bilinear class ids truncated, borders clamped), IoU averaged over all classes; it needs
  estimated flow (ground-truth flow is backward only).
  Flow: ``dis`` (OpenCV DIS ``fast`` at half size, the node's TC flow; default), ``dis:<preset>`` (that
  preset at full size), ``gt`` (the dataset's exact flow), ``raft:<checkpoint>``
  (torchvision's RAFT-large with weights from that file; needs torchvision), ``none``.
* fps: frames per second of the whole streaming step (preprocessing, network, postprocessing),
  measured while evaluating (the first frames of the run are excluded as warm-up).

Results: per-class IoU and TC, mIoU, TC and fps, printed and written as JSON and a Markdown table.
The JSON also keeps every sequence's confusion matrix and TC intersections/unions (``per_sequence``):
``stt-compare`` resamples them to say how far a difference between two models is noise.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from stt_ros.config import ConfigError, STTConfig
from stt_ros.metrics import (
    TC_PROTOCOLS,
    ConfusionMatrix,
    ETCAccumulator,
    TCAccumulator,
    pair_agreement,
    percent_by_class,
)
from stt_ros.metrics import make_flow as make_estimated_flow
from stt_ros.viz import class_names
from stt_train.cli import command_parser
from stt_train.datasets import ClipDataset, DatasetError, SequenceSpec, build_dataset, read_label, read_rgb

WARMUP_FRAMES = 3


class RaftFlow:
    """Backward flow from torchvision's RAFT-large with weights from a user-supplied checkpoint."""

    def __init__(self, checkpoint: str, device: str = "cpu") -> None:
        try:
            from torchvision.models.optical_flow import raft_large
        except ImportError as exc:
            raise ConfigError("flow=raft needs torchvision, which stt_ros does not install (its PyPI build pulls a "
                              "CUDA torch); pip install torchvision matching your torch, or use --flow dis") from exc
        import torch

        from stt_ros.weights import read_state_dict

        self.torch = torch
        self.model = raft_large(weights=None)
        tensors, _ = read_state_dict(checkpoint)
        self.model.load_state_dict(tensors)
        self.device = torch.device(device)
        self.model.to(self.device).eval()

    def backward(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        torch = self.torch
        h, w = cur.shape[:2]
        ph, pw = (-h) % 8, (-w) % 8

        def prep(img: np.ndarray):
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float().to(self.device) / 127.5 - 1
            return torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")

        with torch.inference_mode():
            flow = self.model(prep(cur), prep(prev))[-1][0, :, :h, :w]  # cur -> prev: backward flow
        return flow.permute(1, 2, 0).cpu().numpy().astype(np.float32)


def make_flow(kind: str):
    """None (no TC), "gt" (the dataset's flow), a RaftFlow, or the estimator of
    :func:`stt_ros.metrics.make_flow` (``dis``: DIS ``fast`` at half size, ``dis:<preset>``, ``none``)."""
    if kind == "gt":
        return "gt"
    if kind.startswith("raft:"):
        return RaftFlow(kind.split(":", 1)[1])
    try:
        return make_estimated_flow(kind)
    except ValueError:
        raise ConfigError(f"flow={kind!r}: choose dis, dis:<preset> (ultrafast, fast, medium), gt, "
                          f"raft:<checkpoint> or none") from None


def evaluate_sequences(model_cfg: STTConfig, sequences: list[SequenceSpec], dataset: ClipDataset,
                       flow: str = "dis", model=None, progress: bool = True, desc: str = "eval",
                       names: list[str] | None = None, tc_protocol: str = "stt_ros",
                       before_frame: Callable[[Any, np.ndarray, int], None] | None = None) -> dict[str, Any]:
    """Stream every sequence through the runtime; returns the metrics dict (see module docstring).

    ``tc_protocol``: ``stt_ros`` (backward flow, nearest sampling, mean over the classes that occur)
    or ``etc`` (ETC's own evaluation, see :mod:`stt_ros.metrics`: frame t+1 warped onto frame t with
    the forward flow, the flow estimator's ``backward(prev=frame t+1, cur=frame t)``; mean over all
    classes). ETC's needs a forward flow, which ground-truth flow (SynthDrive's, backward) is not.

    ``before_frame(segmenter, image, index)``, where given, runs before each frame is segmented: a
    hook for research controls (:func:`stt_train.research.controls.prime_no_past`).
    """
    check_tc_protocol(tc_protocol, flow)
    from tqdm import tqdm

    from stt_ros.runtime import StreamingSegmenter, create_backend

    n = model_cfg.num_classes
    backend = create_backend(model_cfg, model)
    seg = StreamingSegmenter(backend)
    estimator = make_flow(flow)
    cm, tc = ConfusionMatrix(n), tc_accumulator(tc_protocol, n)
    per_sequence: list[dict[str, Any]] = []
    times: list[float] = []
    labelled = 0
    total = sum(len(s.frames) for s in sequences)
    t0 = time.perf_counter()
    with tqdm(total=total, desc=desc, unit="frame", disable=not progress, dynamic_ncols=True) as bar:
        for seq in sequences:
            seg.reset()
            prev_pred = prev_img = None
            seq_cm, seq_tc = ConfusionMatrix(n), tc_accumulator(tc_protocol, n)
            for i, path in enumerate(seq.frames):
                img = read_rgb(path)
                if before_frame is not None:
                    before_frame(seg, img, i)
                res = seg.process(img)
                times.append(res.timings["total_ms"])
                pred = res.mask
                if seq.labels[i] is not None:
                    label = read_label(seq.labels[i], dataset.label_lut)
                    if label.shape != pred.shape:
                        raise DatasetError(f"label {seq.labels[i]} is {label.shape[::-1]} but frame {path} is "
                                           f"{pred.shape[::-1]}")
                    seq_cm.update(pred, label)
                    labelled += 1
                if estimator is not None and prev_pred is not None:
                    if tc_protocol == "etc":  # frame t is the previous frame: its forward flow to this one
                        seq_tc.update(prev_pred, pred, estimator.backward(img, prev_img))
                    else:
                        fl, valid = _backward_flow(estimator, seq, i, prev_img, img)
                        seq_tc.add(pair_agreement(prev_pred, pred, fl, n, valid))
                prev_pred, prev_img = pred, img
                bar.update(1)
            cm.merge(seq_cm)
            tc.merge(seq_tc)
            # the raw accumulators of every sequence, so stt-compare can resample sequences
            per_sequence.append({"name": seq.name, "frames": len(seq.frames), "confusion": seq_cm.matrix.tolist(),
                                 "tc_intersection": seq_tc.intersection.tolist(), "tc_union": seq_tc.union.tolist()})
    wall = time.perf_counter() - t0
    steady = times[WARMUP_FRAMES:] if len(times) > 2 * WARMUP_FRAMES else times
    names = names or [f"class_{i}" for i in range(n)]
    return {
        "model": model_cfg.model, "weights": model_cfg.weights,
        "input": [model_cfg.input_height, model_cfg.input_width],
        "sequences": len(sequences), "frames": total, "labelled_frames": labelled, "tc_pairs": tc.pairs,
        "flow": flow, "tc_protocol": tc_protocol, "miou": 100 * cm.miou(),
        "tc": 100 * tc.value() if tc.pairs else float("nan"),
        "pixel_accuracy": 100 * cm.pixel_accuracy(),
        "fps": 1000.0 / float(np.mean(steady)) if steady else float("nan"), "wall_s": wall,
        "per_class_iou": percent_by_class(cm.iou(), names),
        # TC is a mean over the classes predicted in any pair (stt_ros; etc: over all classes): a rare class
        # predicted now and then weighs as much as the road, so this is where TC differences come from
        "per_class_tc": percent_by_class(tc.per_class(), names),
        "key_size": _key_size(model_cfg), "config": model_cfg.to_dict(),
        "per_sequence": per_sequence,
    }


def check_tc_protocol(tc_protocol: str, flow: str) -> None:
    """ConfigError for an unknown protocol, or ETC's protocol with a flow that has no forward direction."""
    if tc_protocol not in TC_PROTOCOLS:
        raise ConfigError(f"tc_protocol={tc_protocol!r}: choose {' or '.join(TC_PROTOCOLS)}")
    if tc_protocol == "etc" and flow == "gt":
        raise ConfigError("--tc-protocol etc warps frame t+1 onto frame t with the forward flow t -> t+1, but the "
                          "dataset's ground-truth flow (SynthDrive's) is backward only: use --flow dis (or "
                          "dis:<preset>, raft:<checkpoint>)")


def tc_accumulator(tc_protocol: str, num_classes: int) -> TCAccumulator | ETCAccumulator:
    return ETCAccumulator(num_classes) if tc_protocol == "etc" else TCAccumulator(num_classes)


def _backward_flow(estimator, seq: SequenceSpec, i: int, prev_img: np.ndarray,
                   img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Frame i's backward flow to frame i - 1 and its validity mask (None: estimated, all valid)."""
    if estimator != "gt":
        return estimator.backward(prev_img, img), None
    if seq.flows[i] is None:
        raise ConfigError(f"flow=gt but the dataset has no ground-truth flow for {seq.frames[i]}; use --flow dis")
    from stt_train.synthdrive import read_flow_png

    return read_flow_png(seq.flows[i])


def _key_size(cfg: STTConfig) -> int | None:
    if not cfg.temporal:
        return None
    from stt_ros.model.stt import key_half_widths, key_size

    return key_size(key_half_widths(cfg.key_frames, cfg.key_window_start, cfg.key_window_end, cfg.key_window_step))


def markdown(results: dict[str, Any]) -> str:
    """Summary table plus per-class IoU table."""
    r = results
    protocol = r.get("tc_protocol", "stt_ros")
    lines = ["| model | mIoU (%) | TC (%) | TC protocol | fps | frames | flow |", "|---|---|---|---|---|---|---|",
             f"| {r['model']} | {r['miou']:.1f} | {_fmt(r['tc'])} | {protocol} | {r['fps']:.1f} | {r['frames']} | "
             f"{r['flow']} |", "", f"| class | IoU (%) | TC (%, {protocol}) |", "|---|---|---|"]
    tc = r.get("per_class_tc", {})
    lines += [f"| {k} | {_fmt(v)} | {_fmt(tc.get(k))} |" for k, v in r["per_class_iou"].items()]
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    return "-" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.1f}"


def eval_dataset(dataset: str, root: str, split: str, model_cfg: STTConfig, stride: int = 1,
                 frames: int | None = None) -> tuple[ClipDataset, list[SequenceSpec]]:
    """The dataset and its evaluation sequences: whole videos for SynthDrive, otherwise ``frames``
    frames (default T + 1) ending at each labelled frame."""
    if dataset == "synthdrive":
        ds = build_dataset(dataset, root, split, 0, stride, mean=model_cfg.mean, std=model_cfg.std)
        return ds, ds.sequences(frames)
    n = frames or (model_cfg.key_frames + 1 if model_cfg.temporal else 1)
    ds = build_dataset(dataset, root, split, n - 1, stride, mean=model_cfg.mean, std=model_cfg.std)
    return ds, ds.sequences(n)


def evaluate_experiment(cfg, weights: str, split: str | None = None, flow: str | None = None,
                        max_sequences: int | None = None, out_json: str | Path | None = None,
                        out_md: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Evaluate ``weights`` with an :class:`stt_train.config.ExperimentConfig`'s model and data."""
    model_cfg = cfg.model.replace(weights=str(weights), backend="torch", device="cpu")
    flow = flow or ("gt" if cfg.data.dataset == "synthdrive" else "dis")
    ds, seqs = eval_dataset(cfg.data.dataset, cfg.data.root, split or cfg.data.val_split, model_cfg, cfg.data.stride)
    seqs = seqs[:max_sequences] if max_sequences else seqs
    res = evaluate_sequences(model_cfg, seqs, ds, flow, progress=progress,
                             names=class_names(model_cfg.num_classes, cfg.data.dataset))
    res.update(dataset=cfg.data.dataset, split=split or cfg.data.val_split)
    write_results(res, out_json, out_md)
    return res


def write_results(res: dict[str, Any], out_json: str | Path | None, out_md: str | Path | None) -> None:
    from stt_ros.weights import atomic_write

    if out_json:
        text = json.dumps(res, indent=2)
        atomic_write(out_json, lambda tmp: Path(tmp).write_text(text))
    if out_md:
        text = markdown(res)
        atomic_write(out_md, lambda tmp: Path(tmp).write_text(text))


def model_config_from_weights(weights: str, overrides: dict[str, Any]) -> STTConfig:
    from stt_ros.weights import checkpoint_config, read_state_dict

    _, meta = read_state_dict(weights)
    saved = checkpoint_config(meta)
    if saved is None:
        raise ConfigError(f"{weights} stores no config; pass --config with the experiment YAML it was trained with")
    saved.update(overrides)
    return STTConfig.from_dict(saved)


def build_parser(prog: str = "stt-eval") -> argparse.ArgumentParser:
    """stt-eval's options (the research evaluator adds its own)."""
    parser = command_parser(
        prog, "Evaluate mIoU, temporal consistency (TC) and fps of a model on a video dataset through the "
        "streaming runtime.",
        ["stt-eval --weights models/stt_bise18_synthdrive.safetensors --dataset synthdrive --root data/synthdrive "
         "--split val --flow gt",
         "stt-eval --config stt_train/configs/cityscapes_stt_bise18.yaml --weights runs/x/final.safetensors "
         "--set data.root=/data/cityscapes",
         "stt-eval --weights w.safetensors --dataset camvid --root /data/camvid --split test --flow dis:medium "
         "--json out.json --markdown out.md",
         "stt-eval --weights w.safetensors --dataset synthdrive --root data/synthdrive --tc-protocol etc --flow dis"
         "   # ETC's TC, comparable with published tables"],
        "Without --config the model settings come from the checkpoint's metadata.")
    parser.add_argument("--weights", required=True, help=".safetensors checkpoint to evaluate")
    parser.add_argument("--config", help="experiment YAML (model and data sections); optional")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                        help="override config values (repeatable)")
    parser.add_argument("--dataset", choices=("cityscapes", "camvid", "synthdrive"), help="dataset (without --config)")
    parser.add_argument("--root", help="dataset folder (without --config, or to override it)")
    parser.add_argument("--split", help="split to evaluate (default: the config's val_split, or val)")
    parser.add_argument("--flow", help="dis (default), dis:<preset>, gt (SynthDrive's exact flow; its default), "
                                       "raft:<checkpoint>, none")
    parser.add_argument("--tc-protocol", choices=TC_PROTOCOLS, default="stt_ros",
                        help="stt_ros (default; the node's TC: backward flow, nearest, mean over the classes that "
                             "occur) or etc (ETC's published protocol: forward flow, bilinear ids truncated, mean "
                             "over all classes; needs estimated flow, so its default --flow is dis)")
    parser.add_argument("--frames", type=int, help="frames per evaluation clip for Cityscapes/CamVid (default T+1) "
                                                   "or first N frames of each SynthDrive sequence")
    parser.add_argument("--max-sequences", type=int, help="evaluate only the first N sequences")
    parser.add_argument("--backend", default="torch", choices=("torch", "openvino", "auto"),
                        help="inference backend on the CPU (default: torch, the reference)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "int8", "auto"),
                        help="precision (bf16: torch or openvino; int8: openvino, calibrated on SynthDrive frames)")
    parser.add_argument("--json", help="write the results as JSON here")
    parser.add_argument("--markdown", help="write a Markdown table here")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def run_cli(args: argparse.Namespace, prog: str = "stt-eval",
            before_frame: Callable[[Any, np.ndarray, int], None] | None = None,
            record: dict[str, Any] | None = None, load_config: Callable[[str, list[str]], Any] | None = None) -> int:
    """Evaluate as the parsed options say. Hooks of the research evaluator: ``before_frame`` goes to
    :func:`evaluate_sequences`, ``record`` into the results, ``load_config(path, overrides)`` reads
    ``--config`` (default :func:`stt_train.config.load_experiment`)."""
    try:
        if args.config:
            from stt_train.config import load_experiment

            cfg = (load_config or load_experiment)(args.config, args.set)
            model_cfg, dataset = cfg.model, cfg.data.dataset
            root, split, stride = args.root or cfg.data.root, args.split or cfg.data.val_split, cfg.data.stride
        else:
            if not args.dataset or not args.root:
                raise ConfigError("without --config, give --dataset and --root")
            over = {}
            for item in args.set:
                key, _, value = item.partition("=")
                if not key.startswith("model."):
                    raise ConfigError(f"without --config only model.* can be set, not {key}")
                import yaml

                over[key[6:]] = yaml.safe_load(value)
            model_cfg = model_config_from_weights(args.weights, over)
            dataset, root, split, stride = args.dataset, args.root, args.split or "val", 1
        model_cfg = model_cfg.replace(weights=args.weights, backend=getattr(args, "backend", "torch"),
                                      precision=getattr(args, "precision", "fp32"), device="cpu")
        flow = args.flow or ("gt" if dataset == "synthdrive" and args.tc_protocol == "stt_ros" else "dis")
        check_tc_protocol(args.tc_protocol, flow)
        ds, seqs = eval_dataset(dataset, root, split, model_cfg, stride, args.frames)
        seqs = seqs[: args.max_sequences] if args.max_sequences else seqs
        res = evaluate_sequences(model_cfg, seqs, ds, flow, progress=not args.no_progress,
                                 names=class_names(model_cfg.num_classes, dataset),
                                 tc_protocol=args.tc_protocol, before_frame=before_frame)
        res.update(dataset=dataset, split=split, **(record or {}))
        write_results(res, args.json, args.markdown)
    except (ConfigError, DatasetError, ValueError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(res), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
