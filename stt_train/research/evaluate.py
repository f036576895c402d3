"""python -m stt_train.research.evaluate: ``stt-eval`` plus the no-past control (``--memory current``).

``--memory current`` evaluates a model as ``research.memory: current`` trained it: before each frame
the ring buffer is emptied and filled with that frame alone, as many times as the past would fill
it (:func:`stt_train.research.controls.prime_no_past`), so the transformer attends to the current
frame instead of the previous ones; the fps it reports are then meaningless. The JSON records
``"memory"``. ``--config`` also reads a research run's ``config.yaml`` (its ``research`` section).
"""

from __future__ import annotations

import sys

from stt_train.evaluate import build_parser, run_cli
from stt_train.research.controls import prime_no_past

PROG = "python -m stt_train.research.evaluate"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(PROG)
    parser.epilog += (f"\nexample of the control:\n  {PROG} --weights runs/fzc/final.safetensors --dataset synthdrive "
                      f"--root data/synthdrive --flow gt --memory current")
    parser.add_argument("--memory", choices=("past", "current"), default="past",
                        help="current: the no-past control (research.memory=current), each frame attends to itself "
                             "in place of the previous frames (default past)")
    args = parser.parse_args(argv)

    def load_config(path: str, overrides: list[str]):
        from stt_train.research.train import load

        return load(path, overrides)[0]

    return run_cli(args, PROG, before_frame=prime_no_past if args.memory == "current" else None,
                   record={"memory": args.memory}, load_config=load_config)


if __name__ == "__main__":
    sys.exit(main())
