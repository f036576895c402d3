"""python -m stt_train.research.evaluate --memory current: the no-past control in evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stt_ros.config import STTConfig
from stt_ros.metrics import ConfusionMatrix
from stt_ros.model.zoo import build_model
from stt_train.research.evaluate import main


def test_memory_current_control_attends_to_each_frame_itself(mini_synthdrive: Path, random_stt_weights: Path,
                                                             tmp_path: Path) -> None:
    """--memory current: frame i is predicted from a clip holding min(i, T) copies of itself and itself (what
    research.memory=current trains on), not from the previous frames."""
    import torch

    from stt_ros.runtime.preprocess import Preprocessor, postprocess
    from stt_ros.weights import load_weights
    from stt_train.datasets import read_label, read_rgb
    from stt_train.evaluate import eval_dataset, evaluate_sequences
    from stt_train.research.controls import prime_no_past

    args = ["--weights", str(random_stt_weights), "--dataset", "synthdrive", "--root", str(mini_synthdrive),
            "--split", "val", "--flow", "gt", "--no-progress"]
    assert main([*args, "--memory", "current", "--json", str(tmp_path / "control.json")]) == 0
    control = json.loads((tmp_path / "control.json").read_text())
    assert main([*args, "--json", str(tmp_path / "past.json")]) == 0
    past = json.loads((tmp_path / "past.json").read_text())
    assert control["memory"] == "current" and past["memory"] == "past"

    cfg = STTConfig(model="stt_bise18", input_height=64, input_width=128, key_frames=2, key_window_end=2,
                    weights=str(random_stt_weights))
    ds, seqs = eval_dataset("synthdrive", str(mini_synthdrive), "val", cfg)
    hooked = evaluate_sequences(cfg, seqs, ds, "gt", progress=False, before_frame=prime_no_past)
    assert hooked["per_sequence"] == control["per_sequence"]  # the CLI is the hook
    model = build_model(cfg)
    load_weights(model, random_stt_weights)
    model.eval()
    pre = Preprocessor(cfg.input_height, cfg.input_width, cfg.resize_mode, tuple(round(m * 255) for m in cfg.mean))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) * 255 for v in (cfg.mean, cfg.std))
    cm = ConfusionMatrix(19)
    for i, (path, label_path) in enumerate(zip(seqs[0].frames, seqs[0].labels, strict=True)):
        net_in, geometry = pre(read_rgb(path))
        x = (torch.from_numpy(net_in).permute(2, 0, 1)[None].float() - mean) / std
        clip = x[:, None].expand(1, min(i, cfg.key_frames) + 1, *x.shape[1:])
        with torch.no_grad():
            class_map = model.forward_clip(clip).logits.argmax(1)[0].to(torch.uint8).numpy()
        cm.update(postprocess(class_map, geometry), read_label(label_path, ds.label_lut))
    got = np.array(control["per_sequence"][0]["confusion"])
    assert np.abs(got - cm.matrix).sum() <= 1e-3 * cm.matrix.sum()  # argmax ties aside, the same predictions
    assert not np.array_equal(got, np.array(past["per_sequence"][0]["confusion"]))  # the past does matter here
    with pytest.raises(SystemExit):
        main([*args, "--memory", "previous"])
