"""Video segmentation datasets: clips of T previous frames + a labelled target frame.

Semi-supervised, as in the paper: only the target (last) frame of a clip carries a label.
Every dataset yields, for ``dataset[i]`` (or ``dataset[(i, aug_seed)]`` from
:class:`stt_train.sampler.ClipSampler`), a dict with ``frames`` float32 (N, 3, H, W) normalised,
``label`` int64 (H, W) with 255 = ignore, and ``index``. Datasets with ground-truth flow (SynthDrive)
built with ``with_flow=True`` add ``flow`` float32 (N - 1, 2, H, W), the backward flow of each frame
but the first to the frame before it (pixels; x then y), and ``flow_valid`` bool (N - 1, H, W).

Layouts
-------
Cityscapes video (``CityscapesVideo``)::

    <root>/leftImg8bit_sequence/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png   all 30 frames
    <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png             frame 19 of each
                                                                                      snippet (20th)

``<seq>`` and ``<frame>`` are 6-digit numbers; the previous frames of a target are frame - k * stride
(k = 1..T) of the same snippet. labelIds map to the 19 trainIds (255 = ignore) with cityscapesscripts'
label table; a ``..._gtFine_labelTrainIds.png`` next to it is used instead when
``label_type="trainIds"``.

SynthDrive (``SynthDriveVideo``): the same layout written by :mod:`stt_train.synthdrive`, every frame
labelled (``_gtFine_labelTrainIds.png``) and with exact backward flow under ``flow/``. Every frame
with T * stride predecessors in its sequence is a target.

CamVid video (``CamVidVideo``), the 11-class SegNet annotations plus the 30 Hz frames extracted
from the CamVid videos (``0001TP``, ``0006R0``, ``0016E5``, ``Seq05VD``)::

    <root>/<split>/<seq>_<frame>.png            labelled frames (SegNet layout; split = train/val/test)
    <root>/<split>annot/<seq>_<frame>.png       uint8 class index 0..10 (sky, building, pole, road,
                                                sidewalk, tree, sign, fence, car, pedestrian,
                                                bicyclist); 11 = void -> 255
    <root>/frames/<seq>/<seq>_<frame>.png       every video frame, numbered as the labelled ones
                                                (e.g. 0001TP_006690.png, Seq05VD_f00030.png)

Labelled frames are 30 frames apart (1 Hz), so previous frames come from ``frames/``. A missing
frame is an error naming the file (checked when the dataset is built).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from stt_train.augment import ClipAugment

CITYSCAPES_STEM = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})$")
CAMVID_STEM = re.compile(r"^(?P<seq>[^_]+)_(?P<prefix>[A-Za-z]*)(?P<frame>\d+)$")
CAMVID_VOID = 11


class DatasetError(ValueError):
    """A dataset folder does not have the expected layout; the message names the file or folder."""


def cityscapes_label_lut() -> np.ndarray:
    """(256,) uint8: Cityscapes labelId -> trainId (255 = ignore), from cityscapesscripts."""
    from cityscapesscripts.helpers.labels import labels

    lut = np.full(256, 255, np.uint8)
    for lab in labels:
        if 0 <= lab.id < 256:
            lut[lab.id] = lab.trainId if 0 <= lab.trainId < 255 else 255
    return lut


def camvid_label_lut() -> np.ndarray:
    lut = np.full(256, 255, np.uint8)
    lut[:CAMVID_VOID] = np.arange(CAMVID_VOID)
    return lut


@dataclass
class ClipSpec:
    """One training/evaluation item: frame files oldest first (the last is the target) and the
    target's label file."""

    frames: list[Path]
    label: Path
    sequence: str
    frame_index: int


@dataclass
class SequenceSpec:
    """A whole video for streaming evaluation: frames in order, label file per frame (None where
    unlabelled) and ground-truth backward flow per frame (None where unknown)."""

    name: str
    frames: list[Path]
    labels: list[Path | None]
    flows: list[Path | None]


def read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DatasetError(f"cannot read image {path} (missing or corrupt)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_label(path: Path, lut: np.ndarray | None) -> np.ndarray:
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise DatasetError(f"cannot read label {path} (missing or corrupt)")
    if lab.ndim != 2 or lab.dtype != np.uint8:
        raise DatasetError(f"label {path} must be a single-channel 8-bit PNG of class ids, got {lab.dtype} "
                           f"{lab.shape}")
    return lut[lab] if lut is not None else lab


class ClipDataset(Dataset):
    """Base class: ``self.clips`` (list of :class:`ClipSpec`), label lookup table, augmentation."""

    num_classes: int = 19
    clips: list[ClipSpec]
    label_lut: np.ndarray | None
    with_flow: bool = False

    def __init__(self, augment: ClipAugment | None = None, mean=(0.485, 0.456, 0.406),
                 std=(0.229, 0.224, 0.225)) -> None:
        self.augment = augment
        self.mean = np.asarray(mean, np.float32) * 255
        self.std = np.asarray(std, np.float32) * 255

    def __len__(self) -> int:
        return len(self.clips)

    def load(self, i: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Raw frames (RGB uint8, oldest first) and the target's trainId label."""
        spec = self.clips[i]
        frames = [read_rgb(p) for p in spec.frames]
        label = read_label(spec.label, self.label_lut)
        for p, f in zip(spec.frames, frames, strict=True):
            if f.shape[:2] != label.shape:
                raise DatasetError(f"frame {p} is {f.shape[1]}x{f.shape[0]} but label {spec.label} is "
                                   f"{label.shape[1]}x{label.shape[0]}")
        return frames, label

    def load_flows(self, i: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(flow, valid) of each clip frame but the first, to the frame before it."""
        raise DatasetError(f"{type(self).__name__} has no ground-truth optical flow")

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        i, seed = key if isinstance(key, tuple) else (key, None)
        frames, label = self.load(int(i))
        flows = self.load_flows(int(i)) if self.with_flow else None
        if self.augment is not None:
            rng = np.random.default_rng(seed if seed is not None else [int(i)])
            if flows is None:
                frames, label = self.augment(frames, label, rng)
            else:
                frames, label, flows = self.augment(frames, label, rng, flows)
        clip = np.stack(frames).astype(np.float32)
        clip = (clip - self.mean) / self.std
        item = {"frames": torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous(),
                "label": torch.from_numpy(label.astype(np.int64)), "index": torch.tensor(int(i))}
        if flows is not None:
            item["flow"] = torch.from_numpy(np.stack([f for f, _ in flows]).astype(np.float32)).permute(0, 3, 1, 2)
            item["flow_valid"] = torch.from_numpy(np.stack([v for _, v in flows]).astype(bool))
        return item


def _missing(path: Path, why: str) -> DatasetError:
    return DatasetError(f"missing frame {path}: {why}")


class CityscapesVideo(ClipDataset):
    """Cityscapes video: the annotated frame of each snippet plus its T previous frames.

    ``prev_frames`` T (0 = per-frame), ``stride`` frames between clip frames. Construction checks
    every frame file exists and raises :class:`DatasetError` naming the first one missing.
    """

    num_classes = 19
    label_suffix = {"labelIds": "_gtFine_labelIds.png", "trainIds": "_gtFine_labelTrainIds.png"}
    #: SynthDrive labels every frame; frames without T * stride predecessors are skipped instead of errors
    skip_incomplete = False

    def __init__(self, root: str | Path, split: str = "train", prev_frames: int = 0, stride: int = 1,
                 label_type: str = "labelIds", augment: ClipAugment | None = None, **norm) -> None:
        super().__init__(augment, **norm)
        if label_type not in self.label_suffix:
            raise ValueError(f"label_type={label_type!r}: choose labelIds or trainIds")
        if prev_frames < 0 or stride < 1:
            raise ValueError(f"prev_frames={prev_frames} must be >= 0 and stride={stride} >= 1")
        self.root, self.split = Path(root), split
        self.prev_frames, self.stride, self.label_type = prev_frames, stride, label_type
        self.label_lut = cityscapes_label_lut() if label_type == "labelIds" else None
        gt_dir = self.root / "gtFine" / split
        self.img_dir = self.root / "leftImg8bit_sequence" / split
        if not gt_dir.is_dir():
            raise DatasetError(f"{gt_dir} does not exist: expected <root>/gtFine/<split>/<city>/ with "
                               f"*{self.label_suffix[label_type]} files (Cityscapes layout)")
        if not self.img_dir.is_dir():
            raise DatasetError(f"{self.img_dir} does not exist: expected the video frames of "
                               f"leftImg8bit_sequence_trainvaltest.zip under <root>/leftImg8bit_sequence/<split>/")
        suffix = self.label_suffix[label_type]
        labels = sorted(gt_dir.glob(f"*/*{suffix}"))
        if not labels:
            raise DatasetError(f"no *{suffix} files under {gt_dir}/<city>/")
        self.clips = []
        for lab in labels:
            m = CITYSCAPES_STEM.match(lab.name[: -len(suffix)])
            if not m:
                raise DatasetError(f"label file {lab} is not named <city>_<6 digits>_<6 digits>{suffix}")
            city, seq, frame = m["city"], m["seq"], int(m["frame"])
            idx = [frame - k * stride for k in range(prev_frames, -1, -1)]
            paths = [self.frame_path(city, seq, i) for i in idx]
            missing = [(p, i) for p, i in zip(paths, idx, strict=True) if i < 0 or not p.is_file()]
            if missing:
                if self.skip_incomplete:
                    continue
                p, i = missing[0]
                raise _missing(p, f"frame {i} is needed as a clip frame of {lab.name} (prev_frames={prev_frames}, "
                                  f"stride={stride}); leftImg8bit_sequence must hold the whole 30-frame snippet, "
                                  f"or reduce prev_frames/stride")
            self.clips.append(ClipSpec(paths, lab, f"{city}_{seq}", frame))
        if not self.clips:
            raise DatasetError(f"no clip of {prev_frames + 1} frames (stride {stride}) fits the sequences under "
                               f"{self.img_dir}")

    def frame_path(self, city: str, seq: str, frame: int) -> Path:
        return self.img_dir / city / f"{city}_{seq}_{frame:06d}_leftImg8bit.png"

    def sequences(self, frames: int | None = None) -> list[SequenceSpec]:
        """Evaluation videos: per annotated frame, the ``frames`` frames ending at it (default: the
        clip), every one but the target unlabelled."""
        n = (self.prev_frames + 1) if frames is None else frames
        out = []
        for c in self.clips:
            city, seq = c.sequence.rsplit("_", 1)
            idx = [c.frame_index - k * self.stride for k in range(n - 1, -1, -1)]
            paths = [self.frame_path(city, seq, i) for i in idx]
            for p in paths:
                if not p.is_file():
                    raise _missing(p, f"needed for evaluating {c.label.name} over {n} frames")
            out.append(SequenceSpec(f"{c.sequence}_{c.frame_index:06d}", paths, [None] * (n - 1) + [c.label],
                                    [None] * n))
        return out


class SynthDriveVideo(CityscapesVideo):
    """SynthDrive (see :mod:`stt_train.synthdrive`): every frame labelled, exact flow available."""

    skip_incomplete = True

    def __init__(self, root: str | Path, split: str = "train", prev_frames: int = 0, stride: int = 1,
                 augment: ClipAugment | None = None, with_flow: bool = False, **norm) -> None:
        super().__init__(root, split, prev_frames, stride, "trainIds", augment, **norm)
        if with_flow and stride != 1:
            raise DatasetError(f"SynthDrive's flow is between consecutive frames; with_flow needs stride 1, not "
                               f"{stride}")
        self.with_flow = with_flow

    def flow_path(self, spec: ClipSpec, frame: int) -> Path:
        city, seq = spec.sequence.rsplit("_", 1)
        return self.root / "flow" / self.split / city / f"{city}_{seq}_{frame:06d}_flowBackward.png"

    def load_flows(self, i: int) -> list[tuple[np.ndarray, np.ndarray]]:
        from stt_train.synthdrive import read_flow_png

        spec = self.clips[i]
        out = []
        for k in range(len(spec.frames) - 1, 0, -1):
            path = self.flow_path(spec, spec.frame_index - k + 1)
            if not path.is_file():
                raise DatasetError(f"missing flow {path}: the backward flow of a clip frame of {spec.label.name} "
                                   f"(regenerate the dataset with stt-synthdrive)")
            try:
                out.append(read_flow_png(path))
            except ValueError as exc:
                raise DatasetError(str(exc)) from None
        return out

    def sequences(self, frames: int | None = None) -> list[SequenceSpec]:
        """Whole sequences (every frame labelled, ground-truth flow from frame 1 on); ``frames``
        limits each to its first ``frames`` frames."""
        by_seq: dict[str, list[int]] = {}
        gt_dir = self.root / "gtFine" / self.split
        suffix = self.label_suffix["trainIds"]
        for lab in sorted(gt_dir.glob(f"*/*{suffix}")):
            m = CITYSCAPES_STEM.match(lab.name[: -len(suffix)])
            if m:
                by_seq.setdefault(f"{m['city']}_{m['seq']}", []).append(int(m["frame"]))
        out = []
        for name, idx in sorted(by_seq.items()):
            city, seq = name.rsplit("_", 1)
            idx = sorted(idx)[: frames or None]
            if idx != list(range(idx[0], idx[0] + len(idx))):
                raise DatasetError(f"sequence {name} under {gt_dir} has gaps in its frame numbers")
            paths = [self.frame_path(city, seq, i) for i in idx]
            for p in paths:
                if not p.is_file():
                    raise _missing(p, f"sequence {name} is labelled there but the image is absent")
            labels = [gt_dir / city / f"{city}_{seq}_{i:06d}{suffix}" for i in idx]
            flows = [None] + [self.root / "flow" / self.split / city / f"{city}_{seq}_{i:06d}_flowBackward.png"
                              for i in idx[1:]]
            flows = [f if f is not None and f.is_file() else None for f in flows]
            out.append(SequenceSpec(name, paths, labels, flows))
        return out


class CamVidVideo(ClipDataset):
    """CamVid 11 classes: labelled frames (1 Hz) plus T previous 30 Hz frames from ``frames/``."""

    num_classes = 11

    def __init__(self, root: str | Path, split: str = "train", prev_frames: int = 0, stride: int = 1,
                 augment: ClipAugment | None = None, **norm) -> None:
        super().__init__(augment, **norm)
        self.root, self.split, self.prev_frames, self.stride = Path(root), split, prev_frames, stride
        self.label_lut = camvid_label_lut()
        img_dir, ann_dir = self.root / split, self.root / f"{split}annot"
        for d in (img_dir, ann_dir):
            if not d.is_dir():
                raise DatasetError(f"{d} does not exist: expected the SegNet CamVid layout <root>/<split>/ and "
                                   f"<root>/<split>annot/ (see stt_train.datasets)")
        labels = sorted(ann_dir.glob("*.png"))
        if not labels:
            raise DatasetError(f"no label PNGs in {ann_dir}")
        self.clips = []
        for lab in labels:
            m = CAMVID_STEM.match(lab.stem)
            if not m:
                raise DatasetError(f"label {lab} is not named <sequence>_<frame number>.png (e.g. 0001TP_006690.png)")
            target = img_dir / lab.name
            if not target.is_file():
                raise _missing(target, f"the labelled frame of {lab}")
            frame = int(m["frame"])
            paths = []
            for k in range(prev_frames, 0, -1):
                p = self.frame_path(m["seq"], m["prefix"], frame - k * stride, len(m["frame"]))
                if frame - k * stride < 0 or not p.is_file():
                    raise _missing(p, f"previous frame {k} (stride {stride}) of {lab.name}; extract every "
                                      f"frame of the CamVid videos into <root>/frames/<sequence>/")
                paths.append(p)
            self.clips.append(ClipSpec(paths + [target], lab, m["seq"], frame))

    def frame_path(self, seq: str, prefix: str, frame: int, digits: int) -> Path:
        return self.root / "frames" / seq / f"{seq}_{prefix}{frame:0{digits}d}.png"

    def sequences(self, frames: int | None = None) -> list[SequenceSpec]:
        n = (self.prev_frames + 1) if frames is None else frames
        out = []
        for c in self.clips:
            m = CAMVID_STEM.match(c.label.stem)
            paths = [self.frame_path(m["seq"], m["prefix"], c.frame_index - k * self.stride, len(m["frame"]))
                     for k in range(n - 1, 0, -1)] + [c.frames[-1]]
            for p in paths:
                if not p.is_file():
                    raise _missing(p, f"needed for evaluating {c.label.name} over {n} frames")
            out.append(SequenceSpec(c.label.stem, paths, [None] * (n - 1) + [c.label], [None] * n))
        return out


DATASETS = {"cityscapes": CityscapesVideo, "camvid": CamVidVideo, "synthdrive": SynthDriveVideo}


def build_dataset(name: str, root: str | Path, split: str, prev_frames: int, stride: int = 1,
                  augment: ClipAugment | None = None, mean=(0.485, 0.456, 0.406),
                  std=(0.229, 0.224, 0.225), with_flow: bool = False) -> ClipDataset:
    """The dataset ``name`` (cityscapes, camvid, synthdrive); ``with_flow`` (SynthDrive only) adds the
    clips' ground-truth flow."""
    if name not in DATASETS:
        raise ValueError(f"dataset {name!r}: choose one of {', '.join(DATASETS)}")
    extra = {}
    if with_flow:
        if name != "synthdrive":
            raise DatasetError(f"dataset {name!r} has no ground-truth optical flow; only synthdrive does")
        extra["with_flow"] = True
    return DATASETS[name](root, split, prev_frames=prev_frames, stride=stride, augment=augment, mean=mean, std=std,
                          **extra)


def collate(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}
