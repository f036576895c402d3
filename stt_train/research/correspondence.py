"""Does a trained STT's attention follow the scene's motion? A probe on SynthDrive's exact flow.

For every position of every frame but the first of each sequence, the transformer's attention
weights (:meth:`SparseTemporalTransformer.attention`, every position as a query) over the keys of
the **nearest** previous frame, averaged over heads, are renormalised to sum to 1 and compared with the exact backward
flow resized onto the 1/8 feature grid (:func:`stt_train.research.headroom.resize_flow`): the flow, rounded
to whole cells, names the key that shows the same scene point one frame earlier. Reported, split
into static cells (flow rounds to (0, 0)) and moving ones:

* ``weight_on_target``: mean weight on that key (a uniform attention gives ``chance`` = 1 / window);
* ``argmax_on_target``: how often it is the window's largest weight;
* ``nearest_share``: mean share of the nearest frame in the whole attention (the rest is on older frames).

Positions whose target lies outside the nearest window, is not valid (occluded, or flowing out of
the frame), or whose window crosses the map border are not counted. ``selected`` repeats the
numbers for the positions the model's query selection refines (all of them at TR = 1).

    python -m stt_train.research.correspondence --weights models/stt_bise18_synthdrive.safetensors \\
        --root data/synthdrive --split val
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from stt_ros.config import ConfigError
from stt_train.datasets import DatasetError, read_rgb
from stt_train.evaluate import eval_dataset, model_config_from_weights
from stt_train.research.headroom import network_input, resize_flow

KINDS = ("static", "moving")


def window_targets(flow: np.ndarray, valid: np.ndarray, half: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a (h, w) grid's flow in cells: per position (flat), the index of the flow target within a
    ``(2 half + 1)^2`` window (row-major, as :func:`stt_ros.model.stt.key_window_offsets`), whether it
    counts (target inside the window and valid, window inside the map), and whether the cell is static."""
    h, w = flow.shape[:2]
    dy = np.rint(flow[..., 1]).astype(np.int64).reshape(-1)
    dx = np.rint(flow[..., 0]).astype(np.int64).reshape(-1)
    ys, xs = np.divmod(np.arange(h * w), w)
    side = 2 * half + 1
    inner = (ys >= half) & (ys < h - half) & (xs >= half) & (xs < w - half)
    counted = (np.abs(dy) <= half) & (np.abs(dx) <= half) & valid.reshape(-1).astype(bool) & inner
    target = (np.clip(dy, -half, half) + half) * side + np.clip(dx, -half, half) + half
    return target, counted, (dy == 0) & (dx == 0)


class CorrespondenceTally:
    """Sums of the probe's per-position numbers, by kind (static / moving) and for selected queries."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.sums = {f"{scope}/{kind}": np.zeros(4) for scope in ("all", "selected") for kind in KINDS}

    def add(self, nearest: np.ndarray, share: np.ndarray, target: np.ndarray, counted: np.ndarray,
            static: np.ndarray, selected: np.ndarray) -> None:
        """``nearest`` (P, window) renormalised weights, ``share`` (P,) nearest frame's share, the rest from
        :func:`window_targets`; ``selected`` (P,) bool: the model's query selection picked the position."""
        on_target = nearest[np.arange(len(target)), target]
        hit = nearest.argmax(1) == target
        for kind, mask in (("static", static), ("moving", ~static)):
            for scope, m in (("all", counted & mask), ("selected", counted & mask & selected)):
                self.sums[f"{scope}/{kind}"] += [m.sum(), on_target[m].sum(), hit[m].sum(), share[m].sum()]

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"chance": 1.0 / self.window, "window": self.window}
        for key, (n, weight, hit, share) in self.sums.items():
            scope, kind = key.split("/")
            out.setdefault(scope, {})[kind] = {
                "positions": int(n), "weight_on_target": weight / n if n else None,
                "argmax_on_target": hit / n if n else None, "nearest_share": share / n if n else None}
        return out


def probe(weights: str, root: str, split: str, max_sequences: int | None = None) -> dict[str, Any]:
    """The probe's numbers (fractions) for an STT checkpoint on a SynthDrive split."""
    import torch

    from stt_ros.model.zoo import build_model
    from stt_ros.weights import load_weights
    from stt_train.synthdrive import read_flow_png

    cfg = model_config_from_weights(weights, {})
    if not cfg.temporal:
        raise ConfigError(f"{weights} holds {cfg.model}, a per-frame model: it has no attention to probe")
    model = build_model(cfg)
    load_weights(model, weights, config=cfg.to_dict())
    model.eval()
    stt = model.stt
    half = stt.half_widths[0]
    window = (2 * half + 1) ** 2
    _, seqs = eval_dataset("synthdrive", root, split, cfg)
    tally = CorrespondenceTally(window)
    for seq in seqs[:max_sequences] if max_sequences else seqs:
        past: list = []  # keys/values of the last T frames, nearest first (the runtime's ring buffer)
        for i, path in enumerate(seq.frames):
            x = network_input(read_rgb(path), cfg)
            with torch.inference_mode():
                feat = model.segnet.features(x)[0]
                if past:
                    weights_all, frame = stt.attention(feat, torch.stack(past, 1), range(len(past)))
                    sel = stt.select(stt.queries(feat))[0].numpy()
                    w = weights_all[0].mean(0).numpy()  # heads averaged
                past = [stt.project_memory(feat), *past][:stt.key_frames]
            if i == 0:
                continue
            nearest = w[:, frame.numpy() == 0]
            share = nearest.sum(1)
            nearest = nearest / np.maximum(share, 1e-12)[:, None]
            h, wd = feat.shape[-2:]
            flow, valid = read_flow_png(seq.flows[i])
            target, counted, static = window_targets(*resize_flow(flow, valid, h, wd), half)
            selected = np.zeros(h * wd, bool)
            selected[sel] = True
            tally.add(nearest, share, target, counted, static, selected)
    return {"weights": weights, "affinity": cfg.attn_affinity, **tally.result()}


def markdown(res: dict[str, Any]) -> str:
    lines = [f"nearest-frame window: {res['window']} keys (chance {100 * res['chance']:.1f} %)", "",
             "| positions | cells | weight on flow target (%) | argmax on target (%) | nearest frame's share (%) |",
             "|---|---|---|---|---|"]
    for scope in ("all", "selected"):
        for kind in KINDS:
            r = res[scope][kind]
            if not r["positions"]:
                lines.append(f"| {scope} | {kind} | - | - | - |")
                continue
            lines.append(f"| {scope} | {kind} ({r['positions']}) | {100 * r['weight_on_target']:.1f} | "
                         f"{100 * r['argmax_on_target']:.1f} | {100 * r['nearest_share']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stt_train.research.correspondence",
        description="Where a trained STT's attention looks in the previous frame, against SynthDrive's exact flow: "
                    "the weight on the key the flow points to and how often it is the largest.")
    parser.add_argument("--weights", required=True, help="STT .safetensors checkpoint (its config in the metadata)")
    parser.add_argument("--root", required=True, help="SynthDrive folder (it has the exact flow)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--max-sequences", type=int)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    try:
        if args.max_sequences is not None and args.max_sequences < 1:
            raise ConfigError(f"--max-sequences {args.max_sequences}: give at least 1")
        if not Path(args.weights).is_file():
            raise ConfigError(f"--weights {args.weights} does not exist")
        res = probe(args.weights, args.root, args.split, args.max_sequences)
    except (ConfigError, DatasetError, OSError) as exc:
        print(f"correspondence: error: {exc}", file=sys.stderr)
        return 2
    print(markdown(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
