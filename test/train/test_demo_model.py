"""The shipped demo model (models/stt_bise18_synthdrive.safetensors) still scores what the README says.

The held-out set is regenerated here: SynthDrive's validation split, seed 0, 6 sequences of 30
frames at 128x256 (the README's evaluation set, byte for byte). Evaluation runs the streaming
runtime with ground-truth flow for TC. A regression in the model, runtime or metric code that
costs more than 2 points of mIoU or TC turns this red.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from stt_ros.config import load_config
from stt_ros.model.zoo import build_model
from stt_ros.weights import load_weights, read_state_dict
from stt_train.evaluate import eval_dataset, evaluate_sequences
from stt_train.synthdrive import SynthDriveConfig, write_dataset

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "models" / "stt_bise18_synthdrive.safetensors"
CONFIG = ROOT / "models" / "stt_bise18_synthdrive.yaml"
#: the README's held-out set (stt-synthdrive --out data/synthdrive_heldout --train 0 --val 6 --height 128
#: --width 256 --no-bags)
HELDOUT = SynthDriveConfig(height=128, width=256, frames=30)
ROW = re.compile(r"^\|\s*STT-BiSe18 \(demo model\)\s*\|\s*([\d.]+)\s*\|\s*([\d.]+)\s*\|", re.M)


def readme_figures() -> tuple[float, float]:
    m = ROW.search((ROOT / "README.md").read_text())
    assert m, "README.md has no '| STT-BiSe18 (demo model) | mIoU | TC |' row in its results table"
    return float(m[1]), float(m[2])


def test_demo_model_is_small_fp16_and_loads_as_float32() -> None:
    assert WEIGHTS.stat().st_size <= 30e6
    tensors, meta = read_state_dict(WEIGHTS)
    assert meta["storage"] == "float16" and tensors["segnet.conv_out.conv_out.weight"].dtype == torch.float16
    cfg = load_config(str(CONFIG))
    assert cfg.model == "stt_bise18" and Path(cfg.weights).name == WEIGHTS.name
    model = build_model(cfg)
    load_weights(model, WEIGHTS, config=cfg.to_dict())
    w = model.segnet.conv_out.conv_out.weight
    assert w.dtype == torch.float32 and torch.equal(w, tensors["segnet.conv_out.conv_out.weight"].float())


@pytest.mark.slow
def test_demo_model_matches_the_readme_on_held_out_synthdrive(tmp_path: Path) -> None:
    miou_ref, tc_ref = readme_figures()
    root = write_dataset(tmp_path / "heldout", HELDOUT, seed=0, splits={"val": 6}, bags=False, progress=False)
    cfg = load_config(str(CONFIG)).replace(weights=str(WEIGHTS))
    ds, seqs = eval_dataset("synthdrive", str(root), "val", cfg)
    res = evaluate_sequences(cfg, seqs, ds, "gt", progress=False)
    assert res["frames"] == 180 and res["tc_pairs"] == 174
    assert res["miou"] >= miou_ref - 2, f"mIoU {res['miou']:.1f} < README {miou_ref} - 2"
    assert res["tc"] >= tc_ref - 2, f"TC {res['tc']:.1f} < README {tc_ref} - 2"
