"""The torch implementation of the EfficientNet-Lite0 backbone (the code its weights were trained
with), for checks and benchmarks only: ``make test`` compares the graph bunga builds without torch
(:mod:`bunga.models.lite_graph`) with it, and the benchmarks time the naive path with it. Nothing on
the path of ``make run`` imports this module; it needs the dev extra (torch, efficientnet-lite-pytorch)."""

from __future__ import annotations

from typing import Any

from bunga.errors import BungaError
from bunga.models.backbone import BACKBONE_NAME, TAP_BLOCKS, weights_path

_FIX = "pip install 'bunga[dev]' (torch==2.13.0 and efficientnet-lite-pytorch: the reference implementation)"


def _imports() -> tuple[Any, Any]:
    try:
        import torch
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise BungaError(f"the torch reference needs the dev extra ({err.name} is missing): {_FIX}") from err
    return torch, EfficientNet


def load_classifier(pretrained: bool = True) -> Any:
    """The full ImageNet classifier (1000 classes), in eval mode; random weights if not pretrained.

    ``set_swish()`` is deliberately never called: it replaces ReLU6 and changes the network.
    """
    torch, efficientnet = _imports()
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
    torch, _ = _imports()
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
