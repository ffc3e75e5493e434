"""HILBERT's application layer: everything the command-line tools share, above the Hub-shipped library.

    hilbert_app.corpus     build a validated corpus dataset with grouped folds (`build`), the offline demo (`demo`)
    hilbert_app.features   run the frozen encoders once (`extractor`), resumably (`shards`, `extract`); read the
                           cached features and their fingerprint (`store`)
    hilbert_app.training   cross-validated training (`experiment`, `trainer`, `data`), metrics, reports, cards, the
                           experiment behind train.py (`run`, `settings`)
    hilbert_app.cli        the command lines: argument parsing only, then a call into the packages above
    hilbert_app.model_cards  card templates (package data)
    hilbert_app.encoders, .hub, .safe_write, .errors, .console, .whisper_ct2   shared leaves

Imports run downward only: cli -> training -> features -> corpus -> shared leaves -> modeling_hilbert (the library,
which imports nothing of this package). docs/architecture.md has the picture; tests/test_architecture.py checks it.
"""
