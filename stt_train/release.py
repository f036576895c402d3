"""Package a trained checkpoint for shipping: fp16 storage (half the size) plus a config YAML.

Floating-point parameters are stored as float16; BatchNorm running statistics stay float32 (they
are few, and a variance can exceed float16's range); integer buffers are kept. Loading converts
back to the model's dtype (``stt_ros.weights.load_weights`` copies into the model's tensors).
The YAML next to it is a flat :class:`stt_ros.config.STTConfig` (what ``stt_ros.config.load_config``
and the node read) whose ``weights`` points at the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stt_ros.config import STTConfig
from stt_ros.weights import WeightsError, atomic_write, checkpoint_config, read_state_dict
from stt_train.cli import command_parser

KEEP_FP32 = ("running_mean", "running_var")


def release(src: str | Path, dst: str | Path, yaml_path: str | Path | None = None, half: bool = True,
            note: str = "") -> dict[str, float]:
    """Write ``dst`` (and ``yaml_path``); returns sizes in MB."""
    import yaml
    from safetensors.torch import save_file

    tensors, meta = read_state_dict(src)
    cfg = checkpoint_config(meta)
    if cfg is None:
        raise WeightsError(f"{src} stores no config in its metadata; it was not written by stt-train")
    out = {}
    for k, v in tensors.items():
        if half and v.is_floating_point() and not k.endswith(KEEP_FP32):
            v = v.half()
        out[k] = v.contiguous()
    meta = dict(meta)
    meta["storage"] = "float16" if half else "float32"
    if note:
        meta["note"] = note
    atomic_write(dst, lambda tmp: save_file(out, tmp, metadata=meta))
    if yaml_path is not None:
        model_cfg = STTConfig.from_dict(cfg).replace(weights=str(dst))
        header = f"# {Path(dst).name}: {note}\n" if note else ""
        text = header + yaml.safe_dump(model_cfg.to_dict(), sort_keys=False)
        atomic_write(yaml_path, lambda tmp: Path(tmp).write_text(text))
    size = lambda p: Path(p).stat().st_size / 1e6  # noqa: E731
    return {"source_mb": size(src), "released_mb": size(dst)}


def main(argv: list[str] | None = None) -> int:
    parser = command_parser(
        "python -m stt_train.release", __doc__.split("\n\n")[0],
        ["python -m stt_train.release runs/synthdrive_stt_bise18/final.safetensors "
         "models/stt_bise18_synthdrive.safetensors --yaml models/stt_bise18_synthdrive.yaml"])
    parser.add_argument("src", help="checkpoint written by stt-train (final.safetensors or iter_*.safetensors)")
    parser.add_argument("dst", help="output .safetensors")
    parser.add_argument("--yaml", help="also write the model config YAML here")
    parser.add_argument("--fp32", action="store_true", help="keep float32 storage")
    parser.add_argument("--note", default="", help="one line stored in the metadata and the YAML header")
    args = parser.parse_args(argv)
    try:
        sizes = release(args.src, args.dst, args.yaml, not args.fp32, args.note)
    except (WeightsError, ValueError, OSError) as exc:
        print(f"release: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(sizes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
