"""Saving and loading weights (the I/O half of the model layer).

Checkpoints are safetensors files; their metadata carries the model's config so a file built for
another architecture is refused with a message naming both. A .pth/.pt file (e.g. an ImageNet
ResNet from torchvision) is read with ``torch.load(weights_only=True)``: nothing is unpickled
beyond plain tensors. Every write goes to a temporary file renamed into place, so an interrupted
save never leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stt_ros.model.loading import LoadReport, load_state_dict_report

FORMAT = "stt_ros/1"
#: Config fields that describe the network's parameters (a checkpoint must agree on these).
ARCH_FIELDS = ("model", "num_classes", "attn_dim", "attn_heads", "attn_affinity")


class WeightsError(ValueError):
    """A weights file is missing, unreadable, or does not fit the model; the message says why."""


def atomic_write(path: str | os.PathLike[str], write: Any) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_weights(model: nn.Module, path: str | os.PathLike[str], config: Mapping[str, Any] | None = None,
                 metadata: Mapping[str, str] | None = None) -> None:
    """Write ``model``'s state dict as safetensors, with ``config`` (a dict) in the metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, **(metadata or {})}
    if config is not None:
        meta["config"] = json.dumps(dict(config), sort_keys=True)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_state_dict(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors and metadata from a .safetensors file, or tensors from a .pth/.pt file
    (``weights_only=True``; a ``state_dict``/``model`` entry is unwrapped)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
                return {k: fh.get_tensor(k) for k in fh.keys()}, meta  # noqa: SIM118 (not iterable)
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{path} is not a readable safetensors file (corrupt or truncated?): {exc}") from exc
    if path.suffix in (".pth", ".pt"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for bad pickles; all mean "not loadable"
            raise WeightsError(f"{path} could not be read as plain tensors with weights_only=True "
                               f"(corrupt, or it pickles code; convert it to .safetensors): {exc}") from exc
        for key in ("state_dict", "model"):
            if isinstance(obj, dict) and isinstance(obj.get(key), dict):
                obj = obj[key]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise WeightsError(f"{path} does not hold a state dict of tensors")
        return dict(obj), {}
    raise WeightsError(f"{path}: unsupported weights format {path.suffix!r}; use .safetensors (or .pth/.pt)")


def checkpoint_config(meta: Mapping[str, str], source: str | os.PathLike[str] = "checkpoint") -> dict[str, Any] | None:
    """The config stored in a checkpoint's metadata, if any (``source`` names the file in errors)."""
    if "config" not in meta:
        return None
    try:
        saved = json.loads(meta["config"])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise WeightsError(f"{source}: metadata 'config' is not valid JSON: {exc}") from None
    if not isinstance(saved, dict):
        raise WeightsError(f"{source}: metadata 'config' must be a JSON object, not {type(saved).__name__}")
    return saved


def check_values(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor], module: nn.Module) -> None:
    """WeightsError naming the keys whose values cannot be right: NaN or infinite numbers (a corrupt
    or diverged checkpoint), or integer/bool data for one of ``module``'s floating-point tensors
    (or the reverse)."""
    own = module.state_dict()
    bad_kind = [k for k, v in tensors.items()
                if k in own and own[k].is_floating_point() != torch.as_tensor(v).is_floating_point()]
    non_finite = [k for k, v in tensors.items()
                  if torch.as_tensor(v).is_floating_point() and not bool(torch.isfinite(v).all())]
    problems = []
    if bad_kind:
        problems.append(f"integer/float kind differs from the model's for {len(bad_kind)} key(s): "
                        + ", ".join(bad_kind[:10]))
    if non_finite:
        problems.append(f"NaN or infinite values in {len(non_finite)} tensor(s): " + ", ".join(non_finite[:10]))
    if problems:
        raise WeightsError(f"{path} holds unusable values (corrupt, or saved from a diverged run); nothing was "
                           f"loaded.\n" + "\n".join(problems))


def load_weights(model: nn.Module, path: str | os.PathLike[str], config: Mapping[str, Any] | None = None,
                 strict: bool = True, ignore_prefixes: tuple[str, ...] = ()) -> LoadReport:
    """Load a checkpoint into ``model``.

    If ``config`` is given and the checkpoint stores one, the architecture fields must agree.
    With ``strict`` (the default) any missing, unexpected or shape-mismatched key is an error
    naming the keys and **nothing is loaded**; otherwise matching keys load and the report lists
    the rest.
    """
    tensors, meta = read_state_dict(path)
    saved = checkpoint_config(meta, path)
    if config is not None and saved is not None:
        diff = [f"{k}: checkpoint {saved.get(k)!r}, config {config.get(k)!r}"
                for k in ARCH_FIELDS if k in saved and saved.get(k) != config.get(k)]
        if diff:
            raise WeightsError(f"{path} was saved for a different model: " + "; ".join(diff))
    check_values(path, tensors, model)
    report = load_state_dict_report(model, tensors, ignore_prefixes=ignore_prefixes, dry_run=strict)
    if strict:
        if not report.complete:
            raise WeightsError(f"{path} does not fit the model; nothing was loaded.\n{report.summary()}")
        report = load_state_dict_report(model, tensors, ignore_prefixes=ignore_prefixes)
    return report


def load_backbone(backbone: nn.Module, path: str | os.PathLike[str]) -> LoadReport:
    """Load an ImageNet ResNet checkpoint (torchvision key names) into a backbone.

    The classifier (``fc.*``) is accepted; any other missing, unexpected or mismatched key is an
    error naming it, and nothing is loaded.
    """
    tensors, _ = read_state_dict(path)
    check_values(path, tensors, backbone)
    report = load_state_dict_report(backbone, tensors, dry_run=True)
    if not report.complete:
        raise WeightsError(f"{path} is not a checkpoint of this backbone; nothing was loaded.\n{report.summary()}")
    return load_state_dict_report(backbone, tensors)
