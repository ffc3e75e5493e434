"""Entry point: `python dataset_scripts/build_demo_corpus.py --help`. The command lives in
`hilbert_app.cli.build_demo_corpus` (also installed as `hilbert-build-demo-corpus`)."""

import sys

from hilbert_app.cli.build_demo_corpus import main

if __name__ == "__main__":
    sys.exit(main())
