"""Entry point: `python dataset_scripts/extract_features.py --help`. The command lives in
`hilbert_app.cli.extract_features` (also installed as `hilbert-extract-features`)."""

import sys

from hilbert_app.cli.extract_features import main

if __name__ == "__main__":
    sys.exit(main())
