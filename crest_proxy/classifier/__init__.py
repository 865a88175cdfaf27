"""The CREST classifier: loading, int8 quantization, windowing and micro-batching behind one protocol."""

from crest_proxy.classifier.catalog import ModelReport, describe_model
from crest_proxy.classifier.engine import CrestClassifier, ModelInfo
from crest_proxy.classifier.loader import load_classifier
from crest_proxy.classifier.protocol import Classifier
from crest_proxy.classifier.settings import ClassifierSettings
from crest_proxy.classifier.stats import ClassifierStats

__all__ = [
    "Classifier",
    "ClassifierSettings",
    "ClassifierStats",
    "CrestClassifier",
    "ModelInfo",
    "ModelReport",
    "describe_model",
    "load_classifier",
]
