"""The attention probe: flow targets in a window, the tally, and the CLI on a generated SynthDrive."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stt_ros.config import STTConfig
from stt_ros.model.zoo import build_model
from stt_ros.weights import save_weights
from stt_train.research.correspondence import CorrespondenceTally, main, window_targets


def test_flow_targets_in_the_window_and_what_counts() -> None:
    h, w = 5, 6
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = 0.8  # rounds to one cell right: the point was at x + 1 in the previous frame
    flow[2, 2] = (0.0, -1.2)  # one cell up
    flow[2, 3] = (0.3, 0.2)  # rounds to (0, 0): static
    flow[1, 3] = (2.0, 0.0)  # two cells right: outside a half-width-1 window
    valid = np.ones((h, w), bool)
    valid[3, 4] = False  # occluded in the previous frame
    target, counted, static = window_targets(flow, valid, 1)
    grid = lambda a: a.reshape(h, w)  # noqa: E731
    assert grid(target)[1, 1] == 1 * 3 + 2 and grid(target)[2, 2] == 0 * 3 + 1 and grid(target)[2, 3] == 4
    assert grid(static).sum() == 1 and grid(static)[2, 3]
    inner = np.zeros((h, w), bool)
    inner[1:-1, 1:-1] = True  # windows inside the map
    expected = inner.copy()
    expected[1, 3] = expected[3, 4] = False
    assert (grid(counted) == expected).all()


def test_tally_scores_weight_and_argmax_on_the_target() -> None:
    tally = CorrespondenceTally(window=9)
    nearest = np.zeros((4, 9))
    nearest[:, 5] = 0.6  # most weight one cell to the right
    nearest[:, 4] = 0.4  # the rest on the centre
    target = np.array([5, 5, 4, 4])
    counted = np.array([True, True, True, False])
    static = np.array([False, False, True, True])
    selected = np.array([True, False, True, True])
    tally.add(nearest, np.full(4, 0.5), target, counted, static, selected)
    res = tally.result()
    assert res["chance"] == pytest.approx(1 / 9)
    assert res["all"]["moving"] == {"positions": 2, "weight_on_target": pytest.approx(0.6), "argmax_on_target": 1.0,
                                    "nearest_share": 0.5}
    assert res["all"]["static"]["positions"] == 1 and res["all"]["static"]["weight_on_target"] == pytest.approx(0.4)
    assert res["all"]["static"]["argmax_on_target"] == 0.0
    assert res["selected"]["moving"]["positions"] == 1
    empty = CorrespondenceTally(window=9).result()["all"]["moving"]
    assert empty["positions"] == 0 and empty["weight_on_target"] is None


def save_model(path: Path, **kw) -> Path:
    torch.manual_seed(0)
    cfg = STTConfig(input_height=64, input_width=128, key_frames=2, key_window_start=1, key_window_end=2, **kw)
    save_weights(build_model(cfg), path, config=cfg.to_dict())
    return path


def test_cli_probes_a_checkpoint_and_l2_attention_follows_static_cells(
        mini_synthdrive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = {}
    for affinity in ("dot", "l2"):
        weights = save_model(tmp_path / f"{affinity}.safetensors", attn_affinity=affinity)
        out = tmp_path / f"{affinity}.json"
        assert main(["--weights", str(weights), "--root", str(mini_synthdrive), "--split", "val",
                     "--json", str(out)]) == 0
        assert "weight on flow target" in capsys.readouterr().out
        results[affinity] = res = json.loads(out.read_text())
        assert res["affinity"] == affinity and res["window"] == 9
        for scope in ("all", "selected"):  # at 64x128 (an 8x16 grid) no cell moves a whole cell per frame
            r = res[scope]["static"]
            assert r["positions"] > 0 and res[scope]["moving"]["positions"] == 0
            assert 0.0 <= r["weight_on_target"] <= 1.0 and 0.0 < r["nearest_share"] < 1.0
    # untrained, l2 already prefers the cell whose features match (the same point, for a static cell)
    assert results["l2"]["all"]["static"]["argmax_on_target"] > 0.5
    assert results["l2"]["all"]["static"]["argmax_on_target"] > results["dot"]["all"]["static"]["argmax_on_target"]


def test_cli_refuses_a_per_frame_model_and_a_missing_file(mini_synthdrive: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    weights = save_model(tmp_path / "bise.safetensors", model="bise18")
    assert main(["--weights", str(weights), "--root", str(mini_synthdrive)]) == 2
    assert "per-frame model: it has no attention" in capsys.readouterr().err
    assert main(["--weights", str(tmp_path / "nope.safetensors"), "--root", str(mini_synthdrive)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--weights", str(weights), "--root", str(mini_synthdrive), "--max-sequences", "0"]) == 2
    assert "--max-sequences 0: give at least 1" in capsys.readouterr().err
