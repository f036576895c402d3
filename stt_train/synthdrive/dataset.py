"""SynthDrive sequences and files: frames rendered from a seed, the dataset tree, the CLI."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from stt_train.cli import command_parser
from stt_train.synthdrive import truth
from stt_train.synthdrive.config import CITY, GENERATOR_VERSION, SynthDriveConfig, intrinsics, train_to_label_id
from stt_train.synthdrive.nuisances import Nuisances
from stt_train.synthdrive.raycast import cast
from stt_train.synthdrive.shading import shade
from stt_train.synthdrive.world import World


@dataclass
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: np.ndarray  # (H, W) uint8 trainIds
    flow: np.ndarray | None  # (H, W, 2) float32 backward flow to the previous frame (None for frame 0)
    flow_valid: np.ndarray | None  # (H, W) bool
    clean: np.ndarray | None = None  # image before nuisances (on request)




def sequence_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    code = sum((i + 1) * ord(ch) for i, ch in enumerate(split))
    return np.random.default_rng(np.random.SeedSequence([seed, code, index, stream]))


def render_sequence(cfg: SynthDriveConfig, seed: int, split: str = "train", index: int = 0,
                    keep_clean: bool = False):
    """Yield the :class:`Frame` s of one sequence (deterministic in cfg, seed, split, index)."""
    cfg.validate()
    dt = 1.0 / cfg.fps
    world = World(sequence_rng(seed, split, index, 0), cfg.frames * dt, cfg.view_distance)
    nuis = Nuisances(sequence_rng(seed, split, index, 1), cfg.nuisance, cfg.height, cfg.width)
    f, cx, cy = intrinsics(cfg)
    h, w, ss = cfg.height, cfg.width, cfg.supersample
    v1, u1 = np.mgrid[0:h, 0:w].astype(np.float64)
    if ss > 1:
        grid = (np.arange(h * ss) + 0.5) / ss - 0.5, (np.arange(w * ss) + 0.5) / ss - 0.5
        vs, us = np.meshgrid(grid[0], grid[1], indexing="ij")
    prev_surf = None
    for i in range(cfg.frames):
        t = i * dt
        ray = cast(world, t, u1, v1, f, cx, cy)
        label = truth.label(world, ray["surf"], ray["point"])
        if ss > 1:
            img = shade(world, t, cast(world, t, us, vs, f, cx, cy))
            img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
        else:
            img = shade(world, t, ray)
        clean = np.clip(img, 0, 255).round().astype(np.uint8) if keep_clean else None
        img = nuis(img)
        flow = valid = None
        if prev_surf is not None:
            flow, valid = truth.backward_flow(world, t, t - dt, ray, prev_surf, f, cx, cy)
        prev_surf = ray["surf"]
        yield Frame(np.ascontiguousarray(img.round().astype(np.uint8)), label, flow, valid, clean)


# ---------------------------------------------------------------------------------------- files
def write_flow_png(path: str | os.PathLike[str], flow: np.ndarray, valid: np.ndarray) -> None:
    """KITTI flow encoding: 16-bit PNG, R = u * 64 + 2^15, G = v * 64 + 2^15, B = valid."""
    enc = np.empty((*flow.shape[:2], 3), np.uint16)
    enc[..., 2] = np.clip(np.rint(flow[..., 0] * 64 + 2 ** 15), 0, 65535)
    enc[..., 1] = np.clip(np.rint(flow[..., 1] * 64 + 2 ** 15), 0, 65535)
    enc[..., 0] = valid.astype(np.uint16)
    if not cv2.imwrite(str(path), enc):
        raise OSError(f"could not write {path}")


def read_flow_png(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`write_flow_png`: (flow (H, W, 2) float32, valid (H, W) bool)."""
    enc = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if enc is None or enc.dtype != np.uint16 or enc.ndim != 3:
        raise ValueError(f"{path} is not a KITTI-format 16-bit flow PNG")
    flow = np.stack([(enc[..., 2].astype(np.float32) - 2 ** 15) / 64,
                     (enc[..., 1].astype(np.float32) - 2 ** 15) / 64], -1)
    return flow, enc[..., 0] > 0


def frame_stem(seq: int, frame: int, city: str = CITY) -> str:
    return f"{city}_{seq:06d}_{frame:06d}"


def _write_png(path: Path, img: np.ndarray) -> None:
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"could not write {path}")


def write_dataset(out: str | os.PathLike[str], cfg: SynthDriveConfig, seed: int = 0,
                  splits: dict[str, int] | None = None, bags: bool = True, overwrite: bool = False,
                  progress: bool = True) -> Path:
    """Generate ``splits`` ({split: number of sequences}) into ``out`` (see module docstring).

    The tree is built in a temporary sibling folder and renamed onto ``out`` when complete, so an
    interrupted run leaves no partial dataset. ``out`` must not exist unless ``overwrite``.
    """
    from tqdm import tqdm

    cfg.validate()
    splits = {"train": 20, "val": 4} if splits is None else splits
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another --out or pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    lut = train_to_label_id()
    f, cx, cy = intrinsics(cfg)
    total = sum(splits.values()) * cfg.frames
    bar = tqdm(total=total, desc="synthdrive", unit="frame", disable=not progress)
    meta = {"generator": "stt_train.synthdrive", "version": GENERATOR_VERSION, "seed": seed, "config": asdict(cfg),
            "intrinsics": {"f": f, "cx": cx, "cy": cy}, "city": CITY, "splits": {}}
    try:
        for split, n in splits.items():
            img_dir = tmp / "leftImg8bit_sequence" / split / CITY
            gt_dir = tmp / "gtFine" / split / CITY
            flow_dir = tmp / "flow" / split / CITY
            for d in (img_dir, gt_dir, flow_dir):
                d.mkdir(parents=True, exist_ok=True)
            meta["splits"][split] = []
            for seq in range(n):
                bag = None
                if bags:
                    from stt_train.bagwriter import SegBagWriter

                    (tmp / "bags" / split).mkdir(parents=True, exist_ok=True)
                    bag = SegBagWriter(tmp / "bags" / split / f"{CITY}_{seq:06d}")
                try:
                    for i, fr in enumerate(render_sequence(cfg, seed, split, seq)):
                        stem = frame_stem(seq, i)
                        _write_png(img_dir / f"{stem}_leftImg8bit.png", cv2.cvtColor(fr.image, cv2.COLOR_RGB2BGR))
                        _write_png(gt_dir / f"{stem}_gtFine_labelTrainIds.png", fr.label)
                        _write_png(gt_dir / f"{stem}_gtFine_labelIds.png", lut[fr.label])
                        if fr.flow is not None:
                            write_flow_png(flow_dir / f"{stem}_flowBackward.png", fr.flow, fr.flow_valid)
                        if bag is not None:
                            bag.write(fr.image, fr.label, int(round(i * 1e9 / cfg.fps)))
                        bar.update(1)
                finally:
                    if bag is not None:
                        bag.close()
                meta["splits"][split].append(f"{CITY}_{seq:06d}")
        (tmp / "synthdrive.json").write_text(json.dumps(meta, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(
        "stt-synthdrive", "Generate SynthDrive, a synthetic labelled driving video dataset with exact optical flow, "
        "in the Cityscapes video layout plus one rosbag2 MCAP per sequence.",
        ["stt-synthdrive --out data/synthdrive --train 40 --val 8 --height 128 --width 256",
         "stt-synthdrive --out /tmp/sd --train 2 --val 1 --frames 12 --no-bags --seed 3",
         "python -m stt_train.synthdrive --out data/sd_clean --nuisance 0   # no nuisances"],
        "The same seed and settings always give the same dataset, byte for byte.")
    parser.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=20, help="training sequences")
    parser.add_argument("--val", type=int, default=4, help="validation sequences (held out: own random streams)")
    parser.add_argument("--test", type=int, default=0, help="test sequences")
    d = SynthDriveConfig()
    parser.add_argument("--height", type=int, default=d.height)
    parser.add_argument("--width", type=int, default=d.width)
    parser.add_argument("--frames", type=int, default=d.frames, help="frames per sequence")
    parser.add_argument("--fps", type=float, default=d.fps)
    parser.add_argument("--hfov", type=float, default=d.hfov_deg, help="horizontal field of view, degrees")
    parser.add_argument("--supersample", type=int, default=d.supersample, help="anti-aliasing factor (1 = off)")
    parser.add_argument("--nuisance", type=float, default=d.nuisance,
                        help="nuisance strength (noise, flicker, blur, occluders); 0 = clean")
    parser.add_argument("--no-bags", action="store_true", help="do not write the rosbag2 MCAP files")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    cfg = SynthDriveConfig(args.height, args.width, args.frames, args.fps, args.hfov, args.supersample,
                           args.nuisance)
    try:
        cfg.validate()
        splits = {k: v for k, v in (("train", args.train), ("val", args.val), ("test", args.test)) if v > 0}
        if not splits:
            raise ValueError("no sequences requested: give --train, --val or --test > 0")
        t0 = time.perf_counter()
        out = write_dataset(args.out, cfg, args.seed, splits, bags=not args.no_bags, overwrite=args.overwrite)
    except (ValueError, FileExistsError, OSError) as exc:
        print(f"stt-synthdrive: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {sum(splits.values())} sequences x {cfg.frames} frames to {out} in "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
