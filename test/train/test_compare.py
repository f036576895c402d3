"""stt-compare: paired bootstrap over sequences of two stt-eval results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from stt_train.compare import CompareError, compare, markdown
from stt_train.compare import main as compare_main

NAMES = ["road", "car", "sky"]


def result(seqs: dict[str, tuple[list[list[int]], list[int], list[int]]]) -> dict:
    """An stt-eval-shaped result from per-sequence (confusion, TC intersection, TC union)."""
    per_sequence = [{"name": name, "frames": 3, "confusion": conf, "tc_intersection": inter, "tc_union": union}
                    for name, (conf, inter, union) in seqs.items()]
    return {"per_class_iou": dict.fromkeys(NAMES, 0.0), "per_sequence": per_sequence}


PERFECT = ([[3, 0, 0], [0, 3, 0], [0, 0, 4]], [5, 5, 5], [5, 5, 5])


def test_hand_made_difference_and_interval() -> None:
    # base: sequence a confuses one road pixel as car; TC 4/5, 5/5, absent sky
    base = result({"a": ([[2, 1, 0], [0, 3, 0], [0, 0, 4]], [4, 5, 0], [5, 5, 0]),
                   "b": ([[3, 0, 0], [0, 2, 1], [0, 0, 4]], [3, 5, 2], [5, 5, 4])})
    other = result({"a": PERFECT, "b": PERFECT})
    cmp = compare(base, other, resamples=300)
    # mIoU of base over both sequences: road 5/6, car 5/7, sky 8/9
    assert cmp["miou"]["base"] == pytest.approx(100 * (5 / 6 + 5 / 7 + 8 / 9) / 3)
    assert cmp["miou"]["other"] == pytest.approx(100.0)
    # TC of base: road 7/10, car 10/10, sky 2/4
    assert cmp["tc"]["base"] == pytest.approx(100 * (0.7 + 1 + 0.5) / 3)
    assert cmp["tc"]["difference"] == pytest.approx(100 - 100 * 2.2 / 3)
    # other is better on every sequence, so on every resample
    for key in ("miou", "tc"):
        lo, hi = cmp[key]["interval"]
        assert 0 < lo <= cmp[key]["difference"] <= hi + 1e-9 and cmp[key]["p_not_better"] == 0.0
    assert cmp["per_class"]["sky"]["tc"] == [pytest.approx(50.0), pytest.approx(100.0)]


def test_identical_results_differ_by_nothing_and_mixed_ones_straddle_zero() -> None:
    base = result({"a": ([[2, 1, 0], [0, 3, 0], [0, 0, 4]], [4, 5, 0], [5, 5, 0]), "b": PERFECT})
    same = compare(base, base, resamples=200)
    assert same["tc"]["difference"] == 0 and same["tc"]["interval"] == [0.0, 0.0]
    assert same["tc"]["p_not_better"] == 1.0
    # other is worse on a, better on b: the interval must include zero
    other = result({"a": ([[1, 2, 0], [0, 3, 0], [0, 0, 4]], [3, 5, 0], [5, 5, 0]),
                    "b": ([[3, 0, 0], [0, 3, 0], [0, 0, 4]], [5, 5, 5], [5, 5, 5])})
    worse_b = result({"a": PERFECT, "b": ([[2, 1, 0], [0, 3, 0], [0, 0, 4]], [2, 5, 5], [5, 5, 5])})
    mixed = compare(worse_b, other, resamples=500)
    lo, hi = mixed["tc"]["interval"]
    assert lo < 0 < hi and 0 < mixed["tc"]["p_not_better"] < 1
    # the same seed draws the same resamples
    assert compare(worse_b, other, resamples=500) == mixed
    assert compare(worse_b, other, resamples=500, seed=1)["tc"]["p_not_better"] != mixed["tc"]["p_not_better"]


def test_results_of_different_sequences_are_refused() -> None:
    a = result({"a": PERFECT, "b": PERFECT})
    with pytest.raises(CompareError, match=r"different sequences.*only in base: \['b'\].*only in other: \['c'\]"):
        compare(a, result({"a": PERFECT, "c": PERFECT}))
    # sequences of another split may carry the same names
    with pytest.raises(CompareError, match="split 'val' but other is split 'test'"):
        compare({**a, "split": "val"}, {**a, "split": "test"})
    shorter = result({"a": PERFECT, "b": PERFECT})
    shorter["per_sequence"][1]["frames"] = 2
    with pytest.raises(CompareError, match=r"\['b'\] have different frame counts"):
        compare(a, shorter)
    with pytest.raises(CompareError, match="no per-sequence results"):
        compare(a, {"miou": 50.0, "tc": 70.0, "per_class_iou": {}})
    with pytest.raises(CompareError, match="resamples"):
        compare(a, a, resamples=0)


def test_etc_protocol_averages_tc_over_all_classes_and_mixed_protocols_are_refused() -> None:
    # sky never occurs in a TC pair: the stt_ros protocol leaves it out, ETC's counts it as 0
    base = result({"a": ([[2, 1, 0], [0, 3, 0], [0, 0, 4]], [4, 5, 0], [5, 5, 0]), "b": PERFECT})
    etc_base = {**base, "tc_protocol": "etc"}
    etc_other = {**result({"a": PERFECT, "b": PERFECT}), "tc_protocol": "etc"}
    cmp = compare(etc_base, etc_other, resamples=50)
    assert cmp["tc_protocol"] == "etc"
    assert cmp["tc"]["base"] == pytest.approx(100 * (9 / 10 + 10 / 10 + 5 / 5) / 3, abs=1e-6)
    assert compare(base, base, resamples=5)["tc"]["base"] == pytest.approx(100 * (9 / 10 + 1 + 1) / 3)
    no_sky = result({"a": ([[2, 1, 0], [0, 3, 0], [0, 0, 4]], [4, 5, 0], [5, 5, 0])})
    assert compare(no_sky, no_sky, resamples=5)["tc"]["base"] == pytest.approx(100 * (4 / 5 + 1) / 2)
    assert compare({**no_sky, "tc_protocol": "etc"}, {**no_sky, "tc_protocol": "etc"},
                   resamples=5)["tc"]["base"] == pytest.approx(100 * (4 / 5 + 1 + 0) / 3, abs=1e-6)
    assert "TC (%, etc protocol)" in markdown(cmp)
    with pytest.raises(CompareError, match="stt_ros protocol but other in etc"):
        compare(base, etc_other)
    with pytest.raises(CompareError, match="etc protocol but other run 2 in stt_ros"):
        compare([etc_base], [etc_other, base])
    with pytest.raises(CompareError, match="unknown tc_protocol"):
        compare({**base, "tc_protocol": "vspw"}, base)


def test_cli_prints_markdown_writes_json_and_reports_bad_files(tmp_path: Path, capsys) -> None:
    base = result({"a": ([[2, 1, 0], [0, 3, 0], [0, 0, 4]], [4, 5, 0], [5, 5, 0]), "b": PERFECT})
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "other.json").write_text(json.dumps(result({"a": PERFECT, "b": PERFECT})))
    assert compare_main([str(tmp_path / "base.json"), str(tmp_path / "other.json"), "--labels", "BiSe18", "STT",
                         "--resamples", "100", "--json", str(tmp_path / "cmp.json")]) == 0
    out = capsys.readouterr().out
    assert "| metric | BiSe18 | STT | difference |" in out and "| road |" in out
    assert "| TC (%, stt_ros protocol) |" in out
    assert json.loads((tmp_path / "cmp.json").read_text())["sequences"] == 2
    (tmp_path / "old.json").write_text(json.dumps({"miou": 60.0, "tc": 70.0}))
    assert compare_main([str(tmp_path / "base.json"), str(tmp_path / "old.json")]) == 2
    assert "old.json has no per-sequence results" in capsys.readouterr().err
    assert compare_main([str(tmp_path / "base.json"), str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


BASE_A = ([[2, 1, 0], [0, 3, 0], [0, 0, 4]], [4, 5, 0], [5, 5, 0])
BASE_B = ([[3, 0, 0], [0, 2, 1], [0, 0, 4]], [3, 5, 2], [5, 5, 4])


def test_several_runs_per_side_average_their_metrics_and_resample_runs() -> None:
    base = result({"a": BASE_A, "b": BASE_B})
    perfect = result({"a": PERFECT, "b": PERFECT})
    # one run per side: the same as passing the results themselves
    assert compare([base], [perfect], resamples=200) == compare(base, perfect, resamples=200)
    # other: one run as good as base, one perfect; a side's metric is the mean of its runs' metrics
    cmp = compare([base, base], [base, perfect], resamples=2000)
    single = compare(base, perfect, resamples=10)
    assert cmp["runs"] == [2, 2]
    for key in ("miou", "tc"):
        assert cmp[key]["base_runs"] == [pytest.approx(single[key]["base"])] * 2
        assert cmp[key]["other_runs"] == [pytest.approx(single[key]["base"]), pytest.approx(100.0)]
        assert cmp[key]["other"] == pytest.approx((single[key]["base"] + 100) / 2)
        assert cmp[key]["difference"] == pytest.approx(single[key]["difference"] / 2)
        # every sequence favours the perfect run, so only drawing the other side's runs can give <= 0:
        # both draws hit the equal run a quarter of the time
        assert cmp[key]["p_not_better"] == pytest.approx(0.25, abs=0.04)
        assert cmp[key]["interval"][0] == pytest.approx(0.0, abs=1e-9)
    # per-class values are averaged over runs: sky TC is 50 % (base) and 100 % (perfect)
    assert cmp["per_class"]["sky"]["tc"] == [pytest.approx(50.0), pytest.approx(75.0)]
    # a run that covers other sequences is refused, and named
    with pytest.raises(CompareError, match=r"only in base: \[.b.\], only in other run 2: \['c'\]"):
        compare([base], [perfect, result({"a": PERFECT, "c": PERFECT})])
    with pytest.raises(CompareError, match="base has no results"):
        compare([], [perfect])


def test_cli_takes_several_runs_per_side(tmp_path: Path, capsys) -> None:
    files = {}
    for name, res in (("b0", result({"a": BASE_A, "b": BASE_B})), ("b1", result({"a": BASE_B, "b": BASE_A})),
                      ("s0", result({"a": PERFECT, "b": BASE_B})), ("s1", result({"a": PERFECT, "b": PERFECT}))):
        files[name] = str(tmp_path / f"{name}.json")
        Path(files[name]).write_text(json.dumps(res))
    assert compare_main(["--base", files["b0"], files["b1"], "--other", files["s0"], files["s1"], "--labels",
                         "BiSe18", "STT", "--resamples", "100", "--json", str(tmp_path / "cmp.json")]) == 0
    out = capsys.readouterr().out
    assert "2 runs of BiSe18 and 2 of STT" in out and "| run | BiSe18 mIoU / TC | STT mIoU / TC |" in out
    assert "| 2 |" in out and "100.00 / 100.00 |" in out
    assert json.loads((tmp_path / "cmp.json").read_text())["runs"] == [2, 2]
    b0, s0 = files["b0"], files["s0"]
    for bad in ([b0], [b0, s0, files["s1"]], [b0, s0, "--base", files["b1"]], ["--base", b0]):
        with pytest.raises(SystemExit) as exc:
            compare_main(bad)
        assert exc.value.code == 2
    assert "--other" in capsys.readouterr().err


def test_stt_eval_json_holds_sequences_that_add_up(mini_synthdrive: Path, tmp_path: Path) -> None:
    """The per-sequence accumulators stt-eval writes sum to its own mIoU and TC."""
    from stt_ros.config import STTConfig
    from stt_ros.metrics import consistency, mean_iou
    from stt_ros.model.zoo import build_model
    from stt_ros.weights import save_weights
    from stt_train.evaluate import main as eval_main

    cfg = STTConfig(model="bise18", input_height=64, input_width=128)
    save_weights(build_model(cfg).eval(), tmp_path / "w.safetensors", config=cfg.to_dict())
    assert eval_main(["--weights", str(tmp_path / "w.safetensors"), "--dataset", "synthdrive", "--root",
                      str(mini_synthdrive), "--split", "train", "--json", str(tmp_path / "r.json"),
                      "--no-progress"]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    seqs = res["per_sequence"]
    assert len(seqs) == res["sequences"] >= 2 and sum(s["frames"] for s in seqs) == res["frames"]
    conf = np.sum([s["confusion"] for s in seqs], 0)
    inter, union = np.sum([s["tc_intersection"] for s in seqs], 0), np.sum([s["tc_union"] for s in seqs], 0)
    assert 100 * mean_iou(conf) == pytest.approx(res["miou"], abs=1e-9)
    assert 100 * consistency(inter, union) == pytest.approx(res["tc"], abs=1e-9)
    cmp = compare(res, res, resamples=50)
    assert cmp["miou"]["base"] == pytest.approx(res["miou"]) and cmp["tc"]["difference"] == 0
