"""``python -m longmul``: the command line, as ``longmul`` (and how torchrun starts each rank of a
data-parallel run: ``torchrun --nproc-per-node N -m longmul train …``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
