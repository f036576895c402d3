"""python -m stt_train.synthdrive: the stt-synthdrive CLI."""

import sys

from stt_train.synthdrive.dataset import main

if __name__ == "__main__":
    sys.exit(main())
