"""The exact-flow headroom probe: K = 1 is stt-eval of the model, history follows the flow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stt_ros.config import STTConfig
from stt_ros.model.zoo import build_model
from stt_ros.weights import save_weights
from stt_train.evaluate import main as eval_main
from stt_train.research.headroom import carry_history, main, resize_flow


def test_history_follows_the_flow_and_restarts_where_invalid() -> None:
    prev = np.zeros((4, 6, 2), np.float32)
    prev[:, 2, 1] = 1.0  # class 1 in column 2 of the previous frame
    cur = np.zeros((4, 6, 2), np.float32)
    cur[..., 0] = 1.0
    flow = np.zeros((4, 6, 2), np.float32)
    flow[..., 0] = -1.0  # the scene moved one column right: pixel x came from x - 1
    valid = np.ones((4, 6), np.uint8)
    valid[0] = 0  # the first row was occluded
    hist = carry_history([prev], cur, flow, valid, depth=3)
    assert len(hist) == 2 and hist[0] is cur
    assert hist[1][1:, 3, 1].tolist() == [1.0, 1.0, 1.0] and hist[1][1:, 2, 1].tolist() == [0.0, 0.0, 0.0]
    assert hist[1][0].tolist() == cur[0].tolist()  # restarted from the current frame
    assert len(carry_history(hist, cur, flow, valid, depth=2)) == 2


def test_flow_onto_the_feature_grid_is_averaged_rescaled_and_masked_by_majority() -> None:
    flow = np.zeros((16, 32, 2), np.float32)
    flow[..., 0], flow[..., 1] = 8.0, -4.0  # 8 px right, 4 px up at full size
    flow[:8, :8, 0] = 16.0  # the top-left 2x2 cells of the 1/4 grid move twice as far
    valid = np.ones((16, 32), np.uint8)
    valid[:4, :3] = 0  # 12 of cell (0, 0)'s 16 pixels invalid
    valid[4:8, :1] = 0  # 4 of cell (1, 0)'s 16 pixels invalid
    small, ok = resize_flow(flow, valid, 4, 8)
    assert small.shape == (4, 8, 2) and ok.shape == (4, 8)
    assert small[2:, :, 0].tolist() == [[2.0] * 8] * 2 and np.all(small[..., 1] == -1.0)
    assert small[0, 0, 0] == 4.0 and small[0, 2, 0] == 2.0
    assert ok[0, 0] == 0 and ok[1, 0] == 1 and ok.sum() == 31


def test_depth_one_equals_stt_eval(mini_synthdrive: Path, tmp_path: Path, capsys) -> None:
    import torch

    torch.manual_seed(0)
    cfg = STTConfig(model="bise18", input_height=64, input_width=128)
    weights = tmp_path / "bise.safetensors"
    save_weights(build_model(cfg).eval(), weights, config=cfg.to_dict())
    assert eval_main(["--weights", str(weights), "--dataset", "synthdrive", "--root", str(mini_synthdrive),
                      "--split", "val", "--json", str(tmp_path / "e.json"), "--no-progress"]) == 0
    ref = json.loads((tmp_path / "e.json").read_text())
    assert main(["--weights", str(weights), "--root", str(mini_synthdrive), "--split", "val", "--depths", "1,2",
                 "--json", str(tmp_path / "h.json")]) == 0
    res = json.loads((tmp_path / "h.json").read_text())
    assert res["1"]["miou"] == pytest.approx(ref["miou"], abs=1e-9)
    assert res["1"]["tc"] == pytest.approx(ref["tc"], abs=1e-9)
    assert res["2"]["frames"] == 6 and res["2"]["tc_pairs"] == ref["tc_pairs"] == 5
    assert res["1"]["tc"] < 100 and res["2"]["tc"] != res["1"]["tc"]  # fusing two frames changes the class maps
    assert "| K = 2 |" in capsys.readouterr().out
    # the recursive average: w = 0 is the model itself; every row has the labels' NLL, the model's equal at both grids
    assert main(["--weights", str(weights), "--root", str(mini_synthdrive), "--split", "val", "--depths", "1",
                 "--ema", "0,0.5", "--json", str(tmp_path / "r.json")]) == 0
    rec = json.loads((tmp_path / "r.json").read_text())
    assert list(rec) == ["1", "ema0", "ema0.5"] and "recursive, w = 0.5" in capsys.readouterr().out
    assert all(rec["ema0"][m] == pytest.approx(rec["1"][m], abs=1e-9) for m in ("miou", "tc", "nll"))
    assert rec["ema0.5"]["tc"] != rec["1"]["tc"] and rec["ema0.5"]["nll"] != pytest.approx(rec["1"]["nll"])
    assert rec["1"]["nll"] > 0
    # fusing on the 1/8 feature grid: K = 1 is still the model; fusing there gives other class maps than at full size
    assert main(["--weights", str(weights), "--root", str(mini_synthdrive), "--split", "val", "--depths", "1,2",
                 "--at", "features", "--json", str(tmp_path / "f.json")]) == 0
    feat = json.loads((tmp_path / "f.json").read_text())
    assert feat["1"]["miou"] == pytest.approx(ref["miou"], abs=1e-6)
    assert feat["1"]["tc"] == pytest.approx(ref["tc"], abs=1e-6)
    assert feat["2"]["tc_pairs"] == 5 and feat["2"]["tc"] != res["2"]["tc"]
    assert feat["1"]["nll"] == pytest.approx(res["1"]["nll"], rel=1e-4)
    assert main(["--weights", str(weights), "--root", str(mini_synthdrive), "--depths", "0"]) == 2
    assert main(["--weights", str(weights), "--root", str(mini_synthdrive), "--depths", "a"]) == 2
    assert main(["--weights", str(weights), "--root", str(mini_synthdrive), "--ema", "1"]) == 2
    assert "[0, 1)" in capsys.readouterr().err
    assert main(["--weights", str(weights), "--root", str(mini_synthdrive), "--ema", "x"]) == 2
    assert main(["--weights", str(tmp_path / "none.safetensors"), "--root", str(mini_synthdrive)]) == 2
    assert "does not exist" in capsys.readouterr().err
