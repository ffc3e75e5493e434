"""Entry point: `python train.py --help`. The command lives in `hilbert_app.cli.train` (also installed as
`hilbert-train`)."""

import sys

from hilbert_app.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
