"""Loading a state dict key by key, reporting every key that could not be loaded.

``torch.nn.Module.load_state_dict`` raises on any shape mismatch (even with ``strict=False``) and
with ``strict=False`` lets missing or unexpected keys go by unless the caller inspects the result;
here every key whose name and shape match is loaded and all the others are returned in a
:class:`LoadReport`, so the caller decides what is fatal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

#: Module keys that may be absent from a checkpoint without being reported as missing: BatchNorm
#: ``num_batches_tracked`` buffers are not stored in older checkpoints (e.g. torchvision's ImageNet
#: ResNets) and do not affect inference.
OPTIONAL_SUFFIXES: tuple[str, ...] = ("num_batches_tracked",)


@dataclass
class LoadReport:
    """Outcome of :func:`load_state_dict_report`.

    ``loaded``: keys copied into the module; ``missing``: module keys absent from the state dict;
    ``unexpected``: state-dict keys the module does not have; ``mismatched``: (name, module shape,
    state-dict shape) for keys present in both with different shapes (not loaded).
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when nothing is missing, unexpected or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 10, allow_unexpected: bool = False) -> str:
        """One line per kind of problem, each listing at most ``limit`` names."""
        lines = []
        if self.missing:
            lines.append(f"missing keys ({len(self.missing)}): {_truncate(self.missing, limit)}")
        if self.unexpected and not allow_unexpected:
            lines.append(f"unexpected keys ({len(self.unexpected)}): {_truncate(self.unexpected, limit)}")
        if self.mismatched:
            items = [f"{n} (expected {tuple(e)}, got {tuple(g)})" for n, e, g in self.mismatched]
            lines.append(f"shape mismatches ({len(items)}): {_truncate(items, limit)}")
        return "\n".join(lines)

    def raise_if_incomplete(self, allow_unexpected: bool = False, limit: int = 10) -> None:
        """Raise ``ValueError`` naming the offending keys (at most ``limit`` of each kind) if any key
        is missing, mismatched or (unless ``allow_unexpected``) unexpected."""
        msg = self.summary(limit=limit, allow_unexpected=allow_unexpected)
        if msg:
            raise ValueError(f"state dict does not match the module ({len(self.loaded)} keys loaded):\n{msg}")


def _truncate(names: list[str], limit: int) -> str:
    shown = ", ".join(names[:limit])
    if len(names) > limit:
        shown += f", ... and {len(names) - limit} more"
    return shown


def _ignored(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name.startswith(p) for p in prefixes)


def load_state_dict_report(module: nn.Module, state_dict: Mapping[str, torch.Tensor],
                           ignore_prefixes: Iterable[str] = (),
                           optional_suffixes: Iterable[str] = OPTIONAL_SUFFIXES, dry_run: bool = False) -> LoadReport:
    """Load every key of ``state_dict`` whose name and shape match ``module``; report the others.

    Keys (of the module or of the state dict) starting with one of ``ignore_prefixes`` are neither
    loaded nor reported. Module keys ending with one of ``optional_suffixes`` are not reported when
    absent from the state dict (they keep their current value). Nothing is raised: see
    :meth:`LoadReport.raise_if_incomplete`. ``dry_run`` reports without loading anything.
    """
    prefixes = tuple(ignore_prefixes)
    suffixes = tuple(optional_suffixes)
    own = {k: v for k, v in module.state_dict().items() if not _ignored(k, prefixes)}
    report = LoadReport()
    to_load: dict[str, torch.Tensor] = {}
    for name, value in state_dict.items():
        if _ignored(name, prefixes):
            continue
        if name not in own:
            report.unexpected.append(name)
            continue
        value = torch.as_tensor(value)
        expected = tuple(own[name].shape)
        got = tuple(value.shape)
        if expected != got:
            report.mismatched.append((name, expected, got))
            continue
        to_load[name] = value
    report.missing = [k for k in own if k not in state_dict and not k.endswith(suffixes)]
    report.loaded = list(to_load)
    if dry_run:
        return report
    result = module.load_state_dict(to_load, strict=False)
    if result.unexpected_keys:  # cannot happen: every key above is one of the module's own
        raise RuntimeError(f"internal error, unexpected keys {result.unexpected_keys}")
    return report
