"""Evaluation: mIoU agrees with cityscapesscripts; TC on hand-made cases; stt-eval and stt-ablate end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from stt_ros.config import ConfigError, STTConfig
from stt_ros.metrics import ConfusionMatrix, TCAccumulator, mean_iou, pair_agreement
from stt_ros.model.zoo import build_model
from stt_ros.weights import save_weights
from stt_train.datasets import cityscapes_label_lut
from stt_train.evaluate import main as eval_main
from stt_train.evaluate import markdown
from stt_train.synthdrive import train_to_label_id


def test_miou_agrees_with_cityscapesscripts_on_random_predictions(tmp_path: Path) -> None:
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as cs
    from cityscapesscripts.helpers.labels import labels

    rng = np.random.default_rng(0)
    to_train, to_id = cityscapes_label_lut(), train_to_label_id()
    ids = np.array([lab.id for lab in labels if lab.id >= 0])
    preds, gts, ours = [], [], ConfusionMatrix(19)
    for i in range(3):
        gt = rng.choice(ids, (40, 60)).astype(np.uint8)  # every labelId, ignored ones included
        gt[:10] = 26  # a big car region, so IoUs spread
        pred = rng.integers(0, 19, (40, 60)).astype(np.uint8)  # trainIds, as our models predict
        pred[:8] = 13
        gp, pp = tmp_path / f"x_{i:06d}_gtFine_labelIds.png", tmp_path / f"x_{i:06d}_pred.png"
        cv2.imwrite(str(gp), gt)
        cv2.imwrite(str(pp), to_id[pred])  # cityscapesscripts reads labelIds
        preds.append(str(pp))
        gts.append(str(gp))
        ours.update(pred, to_train[gt])
    args = cs.args
    args.quiet, args.JSONOutput, args.evalInstLevelScore, args.evalPixelAccuracy = True, False, False, False
    result = cs.evaluateImgLists(preds, gts, args)
    theirs = result["classScores"]
    names = [lab.name for lab in sorted((lab for lab in labels if 0 <= lab.trainId < 255), key=lambda x: x.trainId)]
    iou = ours.iou()
    for k, name in enumerate(names):
        assert iou[k] == pytest.approx(theirs[name], abs=1e-12), name
    assert ours.miou() == pytest.approx(result["averageScoreClasses"], abs=1e-12)


def test_tc_is_100_for_a_static_scene_and_drops_with_flicker() -> None:
    rng = np.random.default_rng(1)
    mask = rng.integers(0, 5, (24, 32)).astype(np.uint8)
    zero = np.zeros((24, 32, 2), np.float32)
    static, flicker = TCAccumulator(19), TCAccumulator(19)
    for t in range(6):
        static.add(pair_agreement(mask, mask, zero, 19))
        cur = mask.copy()
        if t % 2:
            cur[:8] = 7  # a region that flickers between its class and class 7
        prev = mask.copy()
        if (t - 1) % 2 == 1:
            prev[:8] = 7
        flicker.add(pair_agreement(prev, cur, zero, 19))
    assert static.value() == 1.0 and static.pairs == 6
    assert flicker.value() < 0.8


def test_tc_hand_made_cases_with_known_answers() -> None:
    prev = np.zeros((4, 4), np.uint8)
    cur = prev.copy()
    cur[0] = 1  # 4 of 16 pixels change class
    zero = np.zeros((4, 4, 2), np.float32)
    a = pair_agreement(prev, cur, zero, 19)
    # class 0: intersection 12, union 16; class 1: intersection 0, union 4
    assert a.intersection[:2].tolist() == [12, 0] and a.union[:2].tolist() == [16, 4]
    assert a.miou == pytest.approx((12 / 16 + 0) / 2) and a.pixel_agreement == pytest.approx(12 / 16)
    # the same change explained by motion: the scene moved one row up, flow points one row down
    moved_prev = np.zeros((4, 4), np.uint8)
    moved_prev[1] = 1
    down = zero.copy()
    down[..., 1] = 1
    b = pair_agreement(moved_prev, cur, down, 19)
    assert b.miou == 1.0 and b.union.sum() == 12  # the last row's source is outside: not compared
    # a validity mask (occlusion) removes pixels from the comparison
    valid = np.ones((4, 4), bool)
    valid[0] = False
    c = pair_agreement(prev, cur, zero, 19, valid)
    assert c.miou == 1.0 and c.union.sum() == 12
    # accumulated over pairs: intersections and unions summed, then averaged over classes
    tc = TCAccumulator(19)
    tc.add(a)
    tc.add(b)
    assert tc.value() == pytest.approx(((12 + 8) / (16 + 8) + (0 + 4) / (4 + 4)) / 2)
    per_class = tc.per_class()  # classes never predicted have no TC (not 0, not 1)
    assert per_class[:2] == pytest.approx([20 / 24, 4 / 8]) and np.isnan(per_class[2:]).all()
    assert mean_iou(np.diag([5, 0, 3])) == 1.0


def test_stt_eval_cli_writes_json_and_markdown(mini_synthdrive: Path, random_stt_weights: Path, tmp_path: Path,
                                               capsys) -> None:
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    assert eval_main(["--weights", str(random_stt_weights), "--dataset", "synthdrive", "--root", str(mini_synthdrive),
                      "--split", "val", "--json", str(out_json), "--markdown", str(out_md), "--no-progress"]) == 0
    res = json.loads(out_json.read_text())
    assert res["flow"] == "gt" and res["frames"] == 6 and res["labelled_frames"] == 6 and res["tc_pairs"] == 5
    assert 0 <= res["miou"] <= 100 and 0 <= res["tc"] <= 100 and res["fps"] > 0
    assert len(res["per_class_iou"]) == len(res["per_class_tc"]) == 19 and "traffic sign" in res["per_class_iou"]
    assert out_md.read_text() == markdown(res) and "| stt_bise18 |" in capsys.readouterr().out
    # DIS flow instead of the ground truth, and no TC at all
    assert eval_main(["--weights", str(random_stt_weights), "--dataset", "synthdrive", "--root", str(mini_synthdrive),
                      "--flow", "dis", "--json", str(out_json), "--no-progress"]) == 0
    assert json.loads(out_json.read_text())["flow"] == "dis"
    assert eval_main(["--weights", str(random_stt_weights), "--dataset", "synthdrive", "--root", str(mini_synthdrive),
                      "--flow", "raft:/nonexistent.pth", "--no-progress"]) == 2
    assert "torchvision" in capsys.readouterr().err  # RAFT needs torchvision, which is not installed here
    assert eval_main(["--weights", str(tmp_path / "missing.safetensors"), "--dataset", "synthdrive", "--root",
                      str(mini_synthdrive), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_stt_ablate_prints_the_seed_tables(mini_synthdrive: Path, random_stt_weights: Path, capsys) -> None:
    from stt_train.ablate import main as ablate_main

    assert ablate_main(["--weights", str(random_stt_weights), "--dataset", "synthdrive", "--root",
                        str(mini_synthdrive), "--frames", "3", "--axes", "key,query", "--dense", "--no-progress"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, s in enumerate(lines) if s.startswith("Key selection"))
    rows = [s.split("\t") for s in lines[header + 2:header + 10]]
    # the slides' key sizes for T = 7 (rows 1..7), then the dense row: 7 frames x the 8x16 map
    assert [int(r[4]) for r in rows] == [527, 639, 735, 279, 679, 663, 695, 7 * 8 * 16]
    assert "Query selection" in out and "r = 1 of the slides is skipped" in out


@pytest.mark.parametrize("dataset", ["cityscapes", "camvid"])
def test_evaluation_clips_of_cityscapes_and_camvid(dataset: str, request, tmp_path: Path) -> None:
    from stt_train.evaluate import eval_dataset, evaluate_sequences

    root = request.getfixturevalue(dataset)
    classes = 19 if dataset == "cityscapes" else 11
    cfg = STTConfig(model="stt_bise18", num_classes=classes, input_height=32, input_width=64, key_frames=2,
                    key_window_end=2)
    save_weights(build_model(cfg).eval(), tmp_path / "w.safetensors", config=cfg.to_dict())
    cfg = cfg.replace(weights=str(tmp_path / "w.safetensors"))
    ds, seqs = eval_dataset(dataset, str(root), "train", cfg)  # T + 1 = 3 frames ending at each labelled one
    assert len(seqs) == 2 and all(len(s.frames) == 3 and s.labels[-1] is not None for s in seqs)
    res = evaluate_sequences(cfg, seqs, ds, "dis", progress=False)
    assert res["labelled_frames"] == 2 and res["tc_pairs"] == 4 and len(res["per_class_iou"]) == classes


def test_etc_tc_protocol_is_etc_accumulator_over_the_same_predictions(mini_synthdrive: Path, random_stt_weights: Path,
                                                                      tmp_path: Path, capsys) -> None:
    """stt-eval --tc-protocol etc: ETC's TC of the streamed predictions, with the forward flow of frame t
    estimated as the flow estimator's backward(prev=frame t+1, cur=frame t); ground-truth flow is refused."""
    from stt_ros.metrics import ETCAccumulator, make_flow
    from stt_ros.runtime import StreamingSegmenter, create_backend
    from stt_train.datasets import read_rgb
    from stt_train.evaluate import eval_dataset, evaluate_sequences, model_config_from_weights

    out = tmp_path / "etc.json"
    args = ["--weights", str(random_stt_weights), "--dataset", "synthdrive", "--root", str(mini_synthdrive),
            "--split", "val", "--no-progress"]
    assert eval_main([*args, "--tc-protocol", "etc", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["tc_protocol"] == "etc" and res["flow"] == "dis" and res["tc_pairs"] == 5  # etc's default flow
    assert "| etc |" in capsys.readouterr().out

    cfg = model_config_from_weights(str(random_stt_weights), {}).replace(
        weights=str(random_stt_weights), backend="torch", device="cpu")
    ds, seqs = eval_dataset("synthdrive", str(mini_synthdrive), "val", cfg)
    seg = StreamingSegmenter(create_backend(cfg))
    flow = make_flow("dis")
    frames = [read_rgb(p) for p in seqs[0].frames]
    preds = [seg.process(f).mask for f in frames]
    direct = ETCAccumulator(cfg.num_classes)
    for t in range(len(frames) - 1):
        direct.update(preds[t], preds[t + 1], flow.backward(frames[t + 1], frames[t]))
    assert res["per_sequence"][0]["tc_intersection"] == direct.intersection.tolist()
    assert res["per_sequence"][0]["tc_union"] == direct.union.tolist()
    assert res["tc"] == pytest.approx(100 * direct.value(), abs=1e-9)
    assert list(res["per_class_tc"].values()) == pytest.approx(list(100 * direct.per_class()), abs=1e-9)
    # the default protocol of the same predictions is another number (over the classes that occur)
    assert json.loads((tmp_path / "etc.json").read_text())["tc"] != evaluate_sequences(
        cfg, seqs, ds, "dis", progress=False)["tc"]

    assert eval_main([*args, "--tc-protocol", "etc", "--flow", "gt"]) == 2
    err = capsys.readouterr().err
    assert "forward flow" in err and "--flow dis" in err
    with pytest.raises(ConfigError, match="forward flow"):
        evaluate_sequences(cfg, seqs, ds, "gt", progress=False, tc_protocol="etc")
    with pytest.raises(ConfigError, match="stt_ros or etc"):
        evaluate_sequences(cfg, seqs, ds, "dis", progress=False, tc_protocol="vspw")
