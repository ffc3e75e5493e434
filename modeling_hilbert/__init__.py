"""HILBERT: document-level audio-text representations and classification of long recordings.

Importing this package registers HILBERT with the transformers Auto classes, so that
`AutoConfig`, `AutoModel`, `AutoModelForSequenceClassification`, `AutoProcessor` and `pipeline(PIPELINE_TASK)`
resolve `model_type="hilbert"` locally, and marks the classes for `register_for_auto_class`, so that
`save_pretrained` / `push_to_hub` write the code files and the `auto_map` that let anyone load a checkpoint with
`trust_remote_code=True` without this package.

Start-up cost: the model, processor and pipeline modules need `transformers.modeling_utils` and
`transformers.processing_utils` (most of what `import modeling_hilbert` used to cost, 11.5 s against 6.2 s for
`import torch, transformers`; benchmarks/bench_import.py). So only the config is imported here; the other classes
are imported, and registered with the Auto classes, on first use: when a `HilbertConfig` is created (every Auto
class and `pipeline` build the config before they look the model up) or when one of them is read from this package
(`modeling_hilbert.HilbertModel`, `from modeling_hilbert import HilbertProcessor`). One path makes no config first:
`AutoProcessor.from_pretrained(folder)` without `trust_remote_code=True` looks the processor up by its class name,
so import `HilbertProcessor` (or call `modeling_hilbert.register_auto_classes()`) before it; otherwise transformers
asks for `trust_remote_code=True`, which loads the folder's own copy of the code.
"""

from __future__ import annotations

import sys

from transformers import AutoConfig

from .configuration_hilbert import HilbertConfig

__version__ = "0.1.0"

# name -> submodule that defines it (imported on first access, `__getattr__` below)
_LAZY = {
    "HilbertModel": "modeling_hilbert",
    "HilbertForSequenceClassification": "modeling_hilbert",
    "HilbertPreTrainedModel": "modeling_hilbert",
    "HilbertModelOutput": "modeling_hilbert",
    "HilbertSequenceClassifierOutput": "modeling_hilbert",
    "HilbertProcessor": "processing_hilbert",
    "HilbertDocumentClassificationPipeline": "pipeline_hilbert",
    "PIPELINE_TASK": "pipeline_hilbert",
    "default_repo_name": "pipeline_hilbert",
}
_registered = False

AutoConfig.register(HilbertConfig.model_type, HilbertConfig, exist_ok=True)
HilbertConfig.register_for_auto_class()


def register_auto_classes() -> None:
    """Import the model, processor and pipeline and register them with the transformers Auto classes (once)."""
    global _registered
    if _registered:
        return
    _registered = True  # first: the imports below create no HilbertConfig, but a re-entrant call must not recurse
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoProcessor
    from transformers.pipelines import PIPELINE_REGISTRY

    from .modeling_hilbert import HilbertForSequenceClassification, HilbertModel
    from .pipeline_hilbert import PIPELINE_TASK, HilbertDocumentClassificationPipeline
    from .processing_hilbert import HilbertProcessor

    AutoModel.register(HilbertConfig, HilbertModel, exist_ok=True)
    AutoModelForSequenceClassification.register(HilbertConfig, HilbertForSequenceClassification, exist_ok=True)
    HilbertModel.register_for_auto_class("AutoModel")
    HilbertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
    AutoProcessor.register(HilbertConfig, HilbertProcessor, exist_ok=True)
    HilbertProcessor.register_for_auto_class("AutoProcessor")
    # `pipeline("hilbert-document-classification", model=...)`; checkpoints name it in config.custom_pipelines and
    # ship pipeline_hilbert.py, so that `trust_remote_code=True` finds it without this package.
    PIPELINE_REGISTRY.register_pipeline(
        PIPELINE_TASK,
        pipeline_class=HilbertDocumentClassificationPipeline,
        pt_model=AutoModelForSequenceClassification,
        type="multimodal",
    )


# The config calls this when its first instance is made (only in this package: a config loaded as remote code from
# the Hub has no hook and registers nothing).
sys.modules[HilbertConfig.__module__]._on_first_config = register_auto_classes


def __getattr__(name: str):
    if name in _LAZY:
        register_auto_classes()  # imports every module of _LAZY
        value = getattr(sys.modules[f"{__name__}.{_LAZY[name]}"], name)
        globals()[name] = value  # next time a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "HilbertConfig",
    "HilbertModel",
    "HilbertForSequenceClassification",
    "HilbertPreTrainedModel",
    "HilbertModelOutput",
    "HilbertSequenceClassifierOutput",
    "HilbertProcessor",
    "HilbertDocumentClassificationPipeline",
    "default_repo_name",
    "register_auto_classes",
    "__version__",
]
