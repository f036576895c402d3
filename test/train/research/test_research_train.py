"""Research training switches (python -m stt_train.research.train): the no-past control and the temporal loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from stt_ros.config import ConfigError
from stt_train.config import load_experiment
from stt_train.research.controls import no_past_all_frames, no_past_clip
from stt_train.research.temporal_loss import temporal_loss
from stt_train.research.train import load, main, run_research
from stt_train.train import initial_model, run

CONFIGS = Path(__file__).resolve().parents[3] / "stt_train" / "configs"
SMALL = CONFIGS / "synthdrive_stt_bise18.yaml"


@pytest.fixture(scope="module")
def per_frame_weights(tiny_run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A per-frame BiSe18 trained for 2 iterations: the frozen network of the runs below."""
    out = tmp_path_factory.mktemp("base")
    run(load_experiment(CONFIGS / "synthdrive_bise18.yaml", tiny_run(out, **{"train.iters": 2})), progress=False)
    return out / "final.safetensors"


def test_no_past_control_trains_the_transformer_on_the_target_frame_alone(tiny_run, per_frame_weights: Path,
                                                                          tmp_path: Path, capsys) -> None:
    clip = torch.rand(2, 3, 3, 8, 8)
    assert all(torch.equal(no_past_clip(clip)[:, i], clip[:, 2]) for i in range(3))
    init = f"train.init_weights={per_frame_weights}"
    frozen = [init, "train.freeze_per_frame=true"]
    cfg = load_experiment(SMALL, tiny_run(tmp_path / "stt", **{"train.iters": 3}) + frozen)
    start = initial_model(cfg).state_dict()
    run(cfg, progress=False)
    trained = load_file(tmp_path / "stt/final.safetensors")
    # the control, through the research trainer's CLI
    assert main(["--config", str(SMALL), "--no-progress", "--set",
                 *tiny_run(tmp_path / "cur", **{"train.iters": 3}), *frozen, "research.memory=current"]) == 0
    assert "trained 3 iterations" in capsys.readouterr().out
    control = load_file(tmp_path / "cur/final.safetensors")
    segnet = [k for k in start if k.startswith("segnet.") and k in trained]
    stt = [k for k in start if k.startswith("stt.")]
    assert all(torch.equal(control[k], start[k]) for k in segnet)
    assert sum(not torch.equal(control[k], trained[k]) for k in stt) > len(stt) // 2
    # the run's config.yaml records the switch: the research trainer reads it back, stt-train refuses it
    saved = yaml.safe_load((tmp_path / "cur/config.yaml").read_text())
    assert saved["research"] == {"memory": "current", "temporal_weight": 0.0} and "memory" not in saved["train"]
    assert load(tmp_path / "cur/config.yaml")[1].memory == "current"
    with pytest.raises(ConfigError, match="section 'research'"):
        load_experiment(tmp_path / "cur/config.yaml")
    # the keys where they lived before are read as the research keys
    assert load(SMALL, ["train.memory=current"])[1].memory == "current"
    with pytest.raises(ConfigError, match="same switch"):
        load(SMALL, ["train.memory=current", "research.memory=current"])
    with pytest.raises(ConfigError, match="past or current"):
        load(SMALL, ["research.memory=previous"])
    with pytest.raises(ConfigError, match="no temporal memory"):
        load(CONFIGS / "synthdrive_bise18.yaml", ["research.memory=current"])
    with pytest.raises(ConfigError, match="memroy.*research"):
        load(SMALL, ["research.memroy=current"])


def test_temporal_loss_on_known_cases() -> None:
    g = torch.Generator().manual_seed(0)
    frame = torch.randn(1, 3, 8, 12, generator=g) * 3
    static = frame[:, None].expand(1, 3, 3, 8, 12)
    zero = torch.zeros(1, 2, 2, 8, 12)
    valid = torch.ones(1, 2, 8, 12, dtype=torch.bool)
    assert temporal_loss(static, zero, valid).item() < 1e-10  # a static scene is perfectly consistent
    moving = torch.stack([torch.roll(frame, 2 * k, -1) for k in range(3)], 1)  # 2 px right per frame
    right = zero.clone()
    right[:, :, 0] = -2
    assert temporal_loss(moving, right, valid).item() < 1e-6  # followed by the flow: consistent
    assert temporal_loss(moving, zero, valid).item() > 0.1  # the wrong flow sees flicker
    # a disagreement only where the flow is not valid does not count
    flicker = static.clone()
    flicker[:, 2, :, :, :4] += 5
    masked = valid.clone()
    masked[:, 1, :, :4] = False
    assert temporal_loss(flicker, zero, masked).item() < 1e-10
    # the value: one pair of two frames that disagree on every pixel counts 2 per pixel (one-hot probabilities)
    hard = torch.full((1, 2, 2, 4, 4), -50.0)
    hard[:, 0, 0], hard[:, 1, 1] = 50.0, 50.0
    assert temporal_loss(hard, torch.zeros(1, 1, 2, 4, 4), torch.ones(1, 1, 4, 4, dtype=torch.bool)).item() == \
        pytest.approx(2.0)
    # per image first: a batch is the mean of its images, however many valid pixels each has
    both = torch.cat([moving, flicker])
    flows, masks = torch.cat([right, zero]), torch.cat([valid, masked])
    flows[1], masks[1] = zero[0], valid[0]
    one = temporal_loss(moving, right, valid) / 2 + temporal_loss(flicker, zero, valid) / 2
    assert temporal_loss(both, flows, masks).item() == pytest.approx(one.item(), rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 frames"):
        temporal_loss(static[:, :1], zero[:, :0], valid[:, :0])


def test_temporal_weight_trains_along_the_flow(tiny_run, per_frame_weights: Path, tmp_path: Path) -> None:
    init = f"train.init_weights={per_frame_weights}"
    cfg, research = load(SMALL, tiny_run(tmp_path / "stt", **{"train.iters": 3})
                         + [init, "train.freeze_per_frame=true", "research.temporal_weight=10.0"])
    res = run_research(cfg, research, progress=False)
    logged = [json.loads(line) for line in (tmp_path / "stt/log.jsonl").read_text().splitlines()]
    assert all(row["loss_temporal"] > 0 and "loss_aux" not in row for row in logged)
    assert all(row["loss"] == pytest.approx(row["loss_main"] + 10 * row["loss_temporal"], rel=1e-4) for row in logged)
    assert len(res["losses"]) == 3
    # a per-frame network can train with it too (clips of key_frames + 1 frames), without auxiliary heads
    per_frame, pf_research = load(CONFIGS / "synthdrive_bise18.yaml", tiny_run(
        tmp_path / "pf", **{"train.iters": 2, "research.temporal_weight": 1.0, "train.aux_weight": 0}))
    from stt_train.research.train import ResearchObjective

    assert ResearchObjective(per_frame, pf_research).prev_frames == 2 and per_frame.prev_frames == 0
    run_research(per_frame, pf_research, progress=False)
    assert (tmp_path / "pf/final.safetensors").is_file()
    # the no-past control: each frame of the clip attends to copies of itself, as no_past_clip gives the target
    from stt_ros.weights import load_weights

    model = initial_model(cfg)
    load_weights(model, tmp_path / "stt/final.safetensors")
    model.eval()
    clip = torch.randn(1, 3, 3, 64, 128)
    with torch.no_grad():
        own = no_past_all_frames(model, clip)
        past = model.forward_clip(clip, all_frames=True)
        for k in range(3):
            alone = model.forward_clip(clip[:, k:k + 1].expand(-1, 3, -1, -1, -1))
            torch.testing.assert_close(own[:, k], alone.logits, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(own[:, 2], model.forward_clip(no_past_clip(clip)).logits, rtol=1e-3, atol=1e-3)
        assert not torch.allclose(own[:, 2], past[:, 2], atol=1e-3)  # the trained transformer uses the past
    run_research(*load(SMALL, tiny_run(tmp_path / "cur", **{"train.iters": 2})
                       + [init, "train.freeze_per_frame=true", "research.temporal_weight=10.0",
                          "research.memory=current"]), progress=False)
    assert (tmp_path / "cur/final.safetensors").is_file()
    for extra, match in ((["research.temporal_weight=1.0", "data.dataset=cityscapes"], "synthdrive"),
                         (["research.temporal_weight=1.0", "data.stride=2"], "stride=1"),
                         (["research.temporal_weight=1.0"], "aux_weight=0"),
                         (["research.temporal_weight=1.0", "train.aux_weight=0", "train.prev_frames=0"], "at least 2"),
                         (["research.temporal_weight=-1.0"], ">= 0")):
        with pytest.raises(ConfigError, match=match):
            load(SMALL, extra)
