"""The zoo's model names and what each one is built from, without importing torch.

:mod:`stt_ros.config` validates ``model`` against this table and the exported-graph backends read
whether a model is temporal from it, so neither needs the networks themselves; ``build_model``
in :mod:`stt_ros.model.zoo` turns a name into a network.
"""

from __future__ import annotations

from typing import NamedTuple


class ModelSpec(NamedTuple):
    architecture: str  # "bisenet" | "pspnet"
    backbone: str  # "resnet18" ...
    temporal: bool  # with a Sparse Temporal Transformer


MODEL_SPECS: dict[str, ModelSpec] = {
    "stt_bise18": ModelSpec("bisenet", "resnet18", True),
    "stt_bise34": ModelSpec("bisenet", "resnet34", True),
    "stt_psp18": ModelSpec("pspnet", "resnet18", True),
    "stt_psp101": ModelSpec("pspnet", "resnet101", True),
    "bise18": ModelSpec("bisenet", "resnet18", False),
    "bise34": ModelSpec("bisenet", "resnet34", False),
    "psp18": ModelSpec("pspnet", "resnet18", False),
    "psp50": ModelSpec("pspnet", "resnet50", False),
    "psp101": ModelSpec("pspnet", "resnet101", False),
}
MODEL_NAMES: tuple[str, ...] = tuple(MODEL_SPECS)
