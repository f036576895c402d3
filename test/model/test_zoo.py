"""Every zoo model: builds from the config, right shapes, finite outputs, backward pass."""

from __future__ import annotations

import pytest
import torch

from stt_ros.config import STTConfig
from stt_ros.model.zoo import MODEL_NAMES, MODEL_SPECS, build_model

H, W = 64, 128


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zoo_model_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    cfg = STTConfig(model=name, num_classes=11, input_height=H, input_width=W, key_frames=2)
    model = build_model(cfg)
    assert model.temporal == MODEL_SPECS[name].temporal == cfg.temporal
    clip = torch.randn(2, 3, 3, H, W)  # batch 2 (BatchNorm in training), 3 frames
    model.train()
    out = model.forward_clip(clip)
    assert out.logits.shape == (2, 11, H, W)
    assert len(out.aux) >= 1 and all(a.shape == (2, 11, H, W) for a in out.aux)
    loss = out.logits.logsumexp(1).mean() + sum(a.logsumexp(1).mean() for a in out.aux)
    loss.backward()
    assert torch.isfinite(loss)
    head_grad = [p.grad for n, p in model.named_parameters() if n.startswith("segnet.") and "backbone" not in n]
    assert any(g is not None and g.abs().sum() > 0 for g in head_grad)
    assert model.segnet.backbone.conv1.weight.grad.abs().sum() > 0
    if model.stt is not None:
        for proj in (model.stt.q_proj, model.stt.kv_proj, model.stt.out_proj):
            assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        logits = model.forward_clip(clip[:1], all_frames=True)
    assert logits.shape == (1, 3, 11, H, W) and torch.isfinite(logits).all()


def test_temporal_module_changes_the_prediction() -> None:
    torch.manual_seed(0)
    model = build_model(STTConfig(model="stt_bise18", input_height=H, input_width=W)).eval()
    clip = torch.randn(1, 3, 3, H, W)
    with torch.no_grad():
        with_stt = model.forward_clip(clip).logits
        alone = model(clip[:, -1]).logits
        first = model.forward_clip(clip[:, :1]).logits
    assert not torch.allclose(with_stt, alone)
    torch.testing.assert_close(first, model(clip[:, 0]).logits)  # no past frame: per-frame result


def test_config_settings_reach_the_module() -> None:
    cfg = STTConfig(model="stt_psp18", key_frames=4, key_window_start=2, key_window_end=3, key_window_step=1,
                    query_radius=3, query_ratio=0.25, attn_dim=16, attn_heads=4)
    stt = build_model(cfg).stt
    assert stt.half_widths == (2, 3, 3, 3)
    assert (stt.query_radius, stt.query_ratio, stt.heads, stt.head_dim) == (3, 0.25, 4, 4)
    assert stt.channels == 512  # PSPNet's fused feature width
