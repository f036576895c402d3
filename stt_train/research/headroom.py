"""How much temporal consistency a per-frame model's own predictions hold: an exact-flow oracle.

For every frame, the class probabilities of the K most recent frames (the current one and K - 1
before it), each carried onto the current frame along SynthDrive's exact backward flow (bilinear),
are averaged and the class map is their argmax. A pixel occluded in the previous frame, or whose
flow leaves the frame, restarts its history from the current frame. mIoU and TC are computed
exactly as ``stt-eval`` computes them (the same confusion matrix, the same TC pairs), so K = 1 is
the per-frame model itself and equals ``stt-eval`` on it.

This needs exact flow, which no deployed model has: it is not a method, it measures what fusing a
model's evidence over time can give on a dataset, i.e. what a temporal module such as STT has to
learn. Temporal models run their per-frame path here (their transformer is ignored).

``--at features`` fuses where STT works instead: the network's logits on its 1/8 feature grid (the
head's output before upsampling), each carried along the exact flow resized to that grid (a
position is valid where most of its pixels are), are averaged there and then upsampled exactly as
the model upsamples its own logits. Logits rather than probabilities, so that K = 1 is still the
model itself. The gap between the two modes is what the coarse grid costs even a temporal module
with perfect motion.

``--ema w1,w2,...`` adds a recursive fusion: the fused map of the previous frame, carried along the
flow, weighted ``w`` against the current frame's ``1 - w`` (an exponential average over the whole
past; ``w = 0`` is the model). Every row also reports the mean negative log-likelihood of the labels
under the fused map (NLL, the cross-entropy a temporal module is trained on, without OHEM): where
fusing lowers it, the semi-supervised loss rewards a module for learning that fusion.

    python -m stt_train.research.headroom --weights runs/bise/final.safetensors --root data/synthdrive --split val
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from stt_ros.config import ConfigError, STTConfig
from stt_ros.metrics import ConfusionMatrix, TCAccumulator, pair_agreement
from stt_train.datasets import DatasetError, read_label, read_rgb
from stt_train.evaluate import eval_dataset, model_config_from_weights


def network_input(img: np.ndarray, cfg: STTConfig):
    """An RGB uint8 frame as the network's normalised input tensor (1, 3, H, W) at the config's size."""
    import torch

    if img.shape[:2] != (cfg.input_height, cfg.input_width):
        img = cv2.resize(img, (cfg.input_width, cfg.input_height), interpolation=cv2.INTER_LINEAR)
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(cfg.std).view(1, 3, 1, 1) * 255
    return (torch.from_numpy(img).permute(2, 0, 1)[None].float() - mean) / std


def warp_backward(x: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``x`` (H, W, C) of the previous frame sampled at ``p + flow(p)`` for every pixel p of the current one."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(x, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def carry_history(history: list[np.ndarray], probs: np.ndarray, flow: np.ndarray, valid: np.ndarray,
                  depth: int) -> list[np.ndarray]:
    """New history (newest first, at most ``depth``): ``probs`` of the current frame, then every older map
    warped onto it; pixels not ``valid`` (occluded, or flowing out of the frame) take the current ``probs``."""
    keep = valid[..., None] > 0
    carried = [np.where(keep, warp_backward(h, flow), probs) for h in history]
    return ([probs] + carried)[:depth]


def resize_flow(flow: np.ndarray, valid: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flow (H, W, 2) in pixels and its validity mask onto a (height, width) grid: flow averaged over each
    cell and rescaled to grid units; a cell is valid where more than half its pixels are."""
    h, w = flow.shape[:2]
    small = cv2.resize(flow, (width, height), interpolation=cv2.INTER_AREA)
    small *= np.array([width / w, height / h], np.float32)
    ok = cv2.resize(valid.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA) > 0.5
    return small, ok.astype(np.uint8)


def headroom(weights: str, root: str, split: str, depths: list[int], max_sequences: int | None = None,
             at: str = "full", ema: list[float] = ()) -> dict[int | str, dict[str, Any]]:
    """{K: {"miou", "tc", "nll", "frames", "tc_pairs"}} for each history depth K (mIoU and TC in percent),
    then {"ema<w>": ...} for each weight of ``ema``.

    ``at``: ``"full"`` fuses class probabilities at the label resolution, ``"features"`` fuses logits
    on the network's 1/8 grid (see the module docstring).
    """
    import torch

    from stt_ros.model.zoo import build_model
    from stt_ros.weights import load_weights
    from stt_train.synthdrive import read_flow_png

    if not depths or min(depths) < 1:
        raise ConfigError(f"depths={depths}: give history depths >= 1")
    if any(not 0.0 <= w < 1.0 for w in ema):
        raise ConfigError(f"ema={list(ema)}: weights on the past must lie in [0, 1)")
    if at not in ("full", "features"):
        raise ConfigError(f"at={at!r}: choose full or features")
    cfg = model_config_from_weights(weights, {})
    model = build_model(cfg)
    load_weights(model, weights, config=cfg.to_dict())
    model.eval()
    ds, seqs = eval_dataset("synthdrive", root, split, cfg)
    seqs = seqs[:max_sequences] if max_sequences else seqs
    n = cfg.num_classes
    ema_keys = {a: f"ema{a:g}" for a in ema}
    keys: list[int | str] = [*depths, *ema_keys.values()]
    acc = {k: (ConfusionMatrix(n), TCAccumulator(n), NLL()) for k in keys}
    frames = 0
    for seq in seqs:
        history: list[np.ndarray] = []
        averaged: dict[str, np.ndarray] = {}
        prev: dict[int | str, np.ndarray] = {}
        for i, path in enumerate(seq.frames):
            img = read_rgb(path)
            h, w = img.shape[:2]
            x = network_input(img, cfg)
            with torch.inference_mode():
                if at == "features":  # the head's logits on the 1/8 grid
                    current = model.segnet.head(model.segnet.features(x)[0])[0].permute(1, 2, 0).contiguous().numpy()
                else:
                    logits = model(x).logits
                    if logits.shape[-2:] != (h, w):
                        logits = torch.nn.functional.interpolate(logits, size=(h, w), mode="bilinear",
                                                                 align_corners=False)
                    current = logits.softmax(1)[0].permute(1, 2, 0).contiguous().numpy()
            if i == 0:
                history, flow, valid = [current], None, None
                averaged = {key: current for key in ema_keys.values()}
            else:
                flow, valid = read_flow_png(seq.flows[i])
                motion = resize_flow(flow, valid, *current.shape[:2]) if at == "features" else (flow, valid)
                history = carry_history(history, current, *motion, max(depths))
                for a, key in ema_keys.items():  # the previous fused map carried here (restarted where invalid)
                    carried = carry_history([averaged[key]], current, *motion, 2)[1]
                    averaged[key] = (1 - a) * current + a * carried
            label = read_label(seq.labels[i], ds.label_lut) if seq.labels[i] is not None else None
            for k in keys:
                fused = np.mean(history[:k], 0) if isinstance(k, int) else averaged[k]
                if fused.shape[:2] != (h, w):  # bilinear, half-pixel centres: as the model upsamples its logits
                    fused = cv2.resize(fused, (w, h), interpolation=cv2.INTER_LINEAR)
                pred = fused.argmax(-1).astype(np.uint8)
                cm, tc, nll = acc[k]
                if label is not None:
                    cm.update(pred, label)
                    nll.add(fused, label, logits=at == "features")
                if flow is not None:
                    tc.add(pair_agreement(prev[k], pred, flow, n, valid))
                prev[k] = pred
            frames += 1
    return {k: {"miou": 100 * cm.miou(), "tc": 100 * tc.value(), "nll": nll.value(), "frames": frames,
                "tc_pairs": tc.pairs} for k, (cm, tc, nll) in acc.items()}


class NLL:
    """Mean negative log-likelihood of the labels; label ids >= the class count (255: ignore) are skipped."""

    def __init__(self) -> None:
        self.total, self.count = 0.0, 0

    def add(self, fused: np.ndarray, label: np.ndarray, logits: bool) -> None:
        """``fused`` (H, W, C): class probabilities, or logits when ``logits``."""
        keep = label < fused.shape[-1]
        scores = fused[keep].astype(np.float64)  # (N, C)
        if logits:
            top = scores.max(-1, keepdims=True)
            logp = scores - top - np.log(np.exp(scores - top).sum(-1, keepdims=True))
        else:
            logp = np.log(np.maximum(scores, np.finfo(np.float32).smallest_subnormal))  # float32 probabilities
        self.total += -float(logp[np.arange(len(scores)), label[keep]].sum())
        self.count += len(scores)

    def value(self) -> float:
        return self.total / max(self.count, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stt_train.research.headroom",
        description="Temporal headroom of a per-frame model on SynthDrive: mIoU and TC when its class "
        "probabilities are averaged over the last K frames along the exact flow (an oracle; K=1 is the model "
        "itself).")
    parser.add_argument("--weights", required=True, help=".safetensors checkpoint (its config in the metadata)")
    parser.add_argument("--root", required=True, help="SynthDrive folder (it has the exact flow)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--depths", default="1,2,3", help="comma-separated history depths K (default 1,2,3)")
    parser.add_argument("--max-sequences", type=int)
    parser.add_argument("--at", choices=("full", "features"), default="full",
                        help="fuse class probabilities at full resolution (default), or logits on the network's 1/8 "
                             "feature grid, where STT works")
    parser.add_argument("--ema", default="", help="comma-separated weights w in [0, 1) of the carried past in a "
                        "recursive average (e.g. 0.2,0.4), reported after the depths")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    try:
        depths = [int(v) for v in args.depths.split(",")]
    except ValueError:
        print(f"headroom: error: --depths {args.depths!r} is not a comma-separated list of integers", file=sys.stderr)
        return 2
    try:
        ema = [float(v) for v in args.ema.split(",")] if args.ema else []
    except ValueError:
        print(f"headroom: error: --ema {args.ema!r} is not a comma-separated list of numbers", file=sys.stderr)
        return 2
    try:
        if not Path(args.weights).is_file():
            raise ConfigError(f"--weights {args.weights} does not exist")
        res = headroom(args.weights, args.root, args.split, depths, args.max_sequences, args.at, ema)
    except (ConfigError, DatasetError, OSError) as exc:
        print(f"headroom: error: {exc}", file=sys.stderr)
        return 2
    print("| fusion | mIoU (%) | TC (%) | NLL |\n|---|---|---|---|")
    for k, r in res.items():
        name = f"K = {k}" if isinstance(k, int) else f"recursive, w = {k[3:]}"
        print(f"| {name} | {r['miou']:.1f} | {r['tc']:.1f} | {r['nll']:.4f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({str(k): v for k, v in res.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
