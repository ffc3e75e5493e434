"""Entry point: `python dataset_scripts/build_dataset.py --help`. The command lives in `hilbert_app.cli.build_dataset`
(also installed as `hilbert-build-dataset`)."""

import sys

from hilbert_app.cli.build_dataset import main

if __name__ == "__main__":
    sys.exit(main())
