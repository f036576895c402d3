"""What the stt_train command lines share: a parser whose ``--help`` ends with worked examples."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def command_parser(prog: str, description: str, examples: Sequence[str], note: str = "") -> argparse.ArgumentParser:
    """An ArgumentParser for ``prog`` whose epilog lists ``examples`` (one command line each, shown as
    written) and then ``note``."""
    epilog = "examples:\n" + "".join(f"  {example}\n" for example in examples) + note
    return argparse.ArgumentParser(prog=prog, description=description, epilog=epilog.rstrip("\n"),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
