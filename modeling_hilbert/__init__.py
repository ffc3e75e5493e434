"""HILBERT: document-level audio-text representations and classification of long recordings.

Importing this package registers HILBERT with the transformers Auto classes, so that
`AutoConfig`, `AutoModel` and `AutoModelForSequenceClassification` resolve `model_type="hilbert"` locally, and
marks the classes for `register_for_auto_class`, so that `save_pretrained` / `push_to_hub` write the code files
and the `auto_map` that let anyone load a checkpoint with `trust_remote_code=True` without this package.
"""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoProcessor
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_hilbert import HilbertConfig
from .modeling_hilbert import (
    HilbertForSequenceClassification,
    HilbertModel,
    HilbertModelOutput,
    HilbertPreTrainedModel,
    HilbertSequenceClassifierOutput,
)
from .pipeline_hilbert import PIPELINE_TASK, HilbertDocumentClassificationPipeline, default_repo_name
from .processing_hilbert import HilbertProcessor

__version__ = "0.1.0"

AutoConfig.register(HilbertConfig.model_type, HilbertConfig, exist_ok=True)
AutoModel.register(HilbertConfig, HilbertModel, exist_ok=True)
AutoModelForSequenceClassification.register(HilbertConfig, HilbertForSequenceClassification, exist_ok=True)
HilbertConfig.register_for_auto_class()
HilbertModel.register_for_auto_class("AutoModel")
HilbertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
AutoProcessor.register(HilbertConfig, HilbertProcessor, exist_ok=True)
HilbertProcessor.register_for_auto_class("AutoProcessor")
# `pipeline("hilbert-document-classification", model=...)`; checkpoints name it in config.custom_pipelines and ship
# pipeline_hilbert.py, so that `trust_remote_code=True` finds it without this package.
PIPELINE_REGISTRY.register_pipeline(
    PIPELINE_TASK,
    pipeline_class=HilbertDocumentClassificationPipeline,
    pt_model=AutoModelForSequenceClassification,
    type="multimodal",
)

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
    "__version__",
]
