"""python -m stt_train.research.train: ``stt-train`` with the experiment switches of a ``research`` section.

The same options, configs and outputs as ``stt-train``, plus (YAML section ``research:``, or
``--set research.<key>=<value>``)::

    research:
      memory: past          # past | current: the no-past control (stt_train.research.controls), every clip's
                            # previous frames replaced by its target frame; evaluate it with
                            # python -m stt_train.research.evaluate --memory current
      temporal_weight: 0.0  # weight of an ETC-style temporal loss (stt_train.research.temporal_loss) between
                            # consecutive frames' outputs along SynthDrive's exact flow; 0 = the paper's loss

With ``temporal_weight > 0`` the whole clip runs as streaming would (frame k attending to the
frames before it), its target frame's cross-entropy plus the weighted temporal loss in place of
the auxiliary heads' losses (logged as ``loss_temporal``). The run's ``config.yaml`` records the
section; ``stt-train`` refuses it. ``train.memory`` / ``train.temporal_weight`` (where these keys
lived before) are read here as the research keys.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stt_ros.config import ConfigError, read_yaml_file
from stt_ros.model.zoo import VideoSegModel
from stt_train.config import MOVED_TO_RESEARCH, ExperimentConfig, _section, apply_overrides, check_types, from_dict
from stt_train.research.controls import no_past_all_frames, no_past_clip
from stt_train.research.temporal_loss import temporal_loss
from stt_train.train import Objective, build_parser, cli, run

SECTIONS = ("model", "data", "train", "research")


@dataclass
class ResearchConfig:
    memory: str = "past"  # past | current (the no-past control)
    temporal_weight: float = 0.0  # weight of the ETC-style temporal loss; 0 = off

    @property
    def temporal(self) -> bool:
        return self.temporal_weight > 0

    def validate(self) -> None:
        check_types(self, "research")
        if self.memory not in ("past", "current"):
            raise ConfigError(f"research.memory={self.memory!r}: choose past or current")
        if self.temporal_weight < 0:
            raise ConfigError(f"research.temporal_weight={self.temporal_weight} must be >= 0")

    def check(self, cfg: ExperimentConfig) -> None:
        """Checks against the experiment the switches apply to."""
        if self.memory == "current" and not cfg.model.temporal:
            raise ConfigError(f"research.memory=current: {cfg.model.model} has no temporal memory to replace")
        if not self.temporal:
            return
        why = "research.temporal_weight > 0 (a loss along the ground-truth flow between the clip's frames)"
        if cfg.data.dataset != "synthdrive" or cfg.data.stride != 1:
            raise ConfigError(f"{why} needs data.dataset=synthdrive, the dataset with exact flow, and "
                              f"data.stride=1 (got {cfg.data.dataset}, stride {cfg.data.stride})")
        if cfg.clip_prev_frames(True) < 1:
            raise ConfigError(f"{why} needs clips of at least 2 frames: set train.prev_frames >= 1")
        if cfg.train.aux_weight > 0 and not cfg.train.freeze_per_frame:
            raise ConfigError(f"{why} runs the whole clip through the network, which gives no auxiliary "
                              f"head outputs: set train.aux_weight=0, or train.freeze_per_frame=true")


class AllFramesForward(nn.Module):
    """What DDP wraps for the temporal loss: a clip -> (logits of every frame (B, N, C, H, W),), each
    frame attending to the frames before it, or with ``no_past`` to copies of itself."""

    def __init__(self, model: VideoSegModel, no_past: bool) -> None:
        super().__init__()
        self.model = model
        self.no_past = no_past

    def forward(self, clip: Tensor) -> tuple[Tensor]:
        if self.no_past:
            return (no_past_all_frames(self.model, clip),)
        return (self.model.forward_clip(clip, all_frames=True),)


class ResearchObjective(Objective):
    """The paper's objective with the research switches: the no-past control's clips and the temporal loss."""

    def __init__(self, cfg: ExperimentConfig, research: ResearchConfig) -> None:
        super().__init__(cfg)
        self.research = research
        self.with_flow = research.temporal
        self.aux_name = "loss_temporal" if research.temporal else "loss_aux"

    @property
    def prev_frames(self) -> int:
        """A per-frame model too trains on clips for the temporal loss."""
        return self.cfg.clip_prev_frames(self.cfg.model.temporal or self.research.temporal)

    def network(self, model: VideoSegModel) -> nn.Module:
        if self.research.temporal:
            return AllFramesForward(model, no_past=self.research.memory == "current")
        return super().network(model)

    def inputs(self, clip: Tensor) -> Tensor:
        # (with the temporal loss, AllFramesForward gives each frame its own memory)
        return no_past_clip(clip) if self.research.memory == "current" and not self.research.temporal else clip

    def losses(self, outs: tuple[Tensor, ...], batch: dict[str, Any], device: torch.device
               ) -> tuple[Tensor, Tensor, Tensor]:
        if not self.research.temporal:
            return super().losses(outs, batch, device)
        label = batch["label"].to(device, non_blocking=True)
        main = self.loss_fn(outs[0][:, -1], label)
        # in place of the auxiliary losses: the whole clip gives no auxiliary outputs (ResearchConfig.check)
        aux = temporal_loss(outs[0], batch["flow"].to(device), batch["flow_valid"].to(device))
        return main + self.research.temporal_weight * aux, main, aux

    def config(self) -> dict[str, Any]:
        return {**super().config(), "research": dataclasses.asdict(self.research)}


def load(path: str | Path, overrides: list[str] = ()) -> tuple[ExperimentConfig, ResearchConfig]:
    """The experiment YAML at ``path`` with ``overrides`` (``section.key=value``, research.* included)."""
    data = read_yaml_file(path, "training config") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping with sections model, data, train (and research)")
    data = apply_overrides(data, list(overrides), SECTIONS)
    research = data.pop("research", None) or {}
    train = data.get("train") or {}
    for key in MOVED_TO_RESEARCH:  # where these switches lived before
        if key in train:
            if key in research:
                raise ConfigError(f"train.{key} and research.{key} are the same switch; set research.{key} only")
            research[key] = train.pop(key)
    cfg = from_dict(data)
    rc = _section(ResearchConfig, research, "research")
    rc.check(cfg)
    return cfg, rc


def run_research(cfg: ExperimentConfig, research: ResearchConfig, **kwargs: Any) -> dict[str, Any]:
    """:func:`stt_train.train.run` with the research switches (same keyword arguments)."""
    return run(cfg, objective=ResearchObjective(cfg, research), **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(
        "python -m stt_train.research.train", "stt-train with the research switches (research.memory, "
        "research.temporal_weight; see the module docstring).",
        ["python -m stt_train.research.train --config stt_train/configs/synthdrive_stt_bise18_frozen.yaml \\\n"
         "      --set train.init_weights=runs/bise/final.safetensors research.memory=current  # no-past control",
         "python -m stt_train.research.train --config stt_train/configs/synthdrive_stt_bise18_frozen.yaml \\\n"
         "      --set train.init_weights=runs/bise/final.safetensors research.temporal_weight=10.0"])

    def load_objective(path: str, overrides: list[str]) -> tuple[ExperimentConfig, Objective]:
        cfg, research = load(path, overrides)
        return cfg, ResearchObjective(cfg, research)

    return cli(argv, parser, load_objective)


if __name__ == "__main__":
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
    sys.exit(main())
