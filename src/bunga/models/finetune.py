"""Fine-tuning the last blocks of the backbone (opt-in, `bunga train --fine-tune-blocks N`).

The frozen lower part of the network runs once per photo and its mirror image (onnxruntime, cached
by photo sha256 like the embeddings), so retraining only runs the small top part in torch. The whole
network (pretrained lower part + trained top + softmax + centroid similarities) is exported as one
ONNX graph with the same input and outputs as the frozen-backbone model, so serving is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bunga.data.dataset import holdout_mask
from bunga.models.backbone import backbone_id, load_classifier
from bunga.models.export import export_once, onnx_session, torch_to_onnx
from bunga.models.image import EmbeddingCache, Progress, cached_features

N_BLOCKS = 16  # EfficientNet-Lite0's MBConv blocks
MAX_BLOCKS = 5  # the last stage and the one before it (7 x 7 feature maps)
CALIBRATION_SHARE = 0.15  # of the training photos, held out of fine-tuning to set the abstention threshold
Say = Callable[[str], None]


def split_of(blocks: int) -> int:
    """Index of the first trained block when the last ``blocks`` blocks are fine-tuned."""
    if not 1 <= blocks <= MAX_BLOCKS:
        raise ValueError(f"fine-tune between 1 and {MAX_BLOCKS} blocks, not {blocks}")
    return N_BLOCKS - blocks


def _lower(net: Any, split: int) -> Any:
    """A torch module: preprocessed photos -> the frozen part's feature maps."""
    import torch

    class Lower(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.stem, self.bn0, self.act = net._conv_stem, net._bn0, net._swish
            self.blocks = torch.nn.ModuleList(net._blocks[:split])

        def forward(self, x: Any) -> Any:
            h = self.act(self.bn0(self.stem(x)))
            for block in self.blocks:
                h = block(h, drop_connect_rate=0.0)
            return h

    return Lower().eval()


class LowerRunner:
    """The frozen lower part through onnxruntime, exported from torch once per backbone and split."""

    def __init__(self, cache_dir: Path, blocks: int) -> None:
        self.split = split_of(blocks)
        self.id = f"{backbone_id()}-lower{self.split}"
        path = cache_dir / "backbones" / f"{self.id}.onnx"
        export_once(path, lambda: _lower(load_classifier(), self.split), "maps")
        self.session = onnx_session(path)
        shape = self.session.get_outputs()[0].shape
        self.map_shape: tuple[int, int, int] = (int(shape[1]), int(shape[2]), int(shape[3]))

    def maps(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, 224, 224) preprocessed photos -> (N, C, H, W) feature maps."""
        return np.asarray(self.session.run(["maps"], {"input": batch})[0], dtype=np.float32)


def lower_maps(
    photos: Sequence[tuple[Path, str]],
    root: Path,
    runner: LowerRunner,
    batch_size: int,
    max_pixels: int,
    on_progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Feature maps of each photo and of its mirror image; only photos missing from the cache are
    computed. Returns maps, mirrored maps and how many were computed."""
    shape = runner.map_shape
    size = int(np.prod(shape))

    def both(batch: np.ndarray) -> np.ndarray:
        mirrored = np.ascontiguousarray(batch[:, :, :, ::-1])
        return np.concatenate([runner.maps(batch), runner.maps(mirrored)], axis=1).reshape(len(batch), 2 * size)

    cache = EmbeddingCache(root, runner.id, dim=2 * size)
    rows, computed = cached_features(photos, cache, both, batch_size, max_pixels, on_progress)
    return rows[:, :size].reshape(len(photos), *shape), rows[:, size:].reshape(len(photos), *shape), computed


def _top(net: Any, split: int, n_classes: int) -> Any:
    """blocks[split:] + conv head + average pooling + a new linear layer (torch)."""
    import torch

    class Top(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList(net._blocks[split:])
            self.conv_head, self.bn1, self.act = net._conv_head, net._bn1, net._swish
            self.fc = torch.nn.Linear(self.conv_head.out_channels, n_classes)

        def features(self, h: Any) -> Any:
            for block in self.blocks:
                h = block(h, drop_connect_rate=0.0)
            return self.act(self.bn1(self.conv_head(h))).mean(dim=(2, 3))

        def forward(self, h: Any) -> Any:
            return self.fc(torch.nn.functional.dropout(self.features(h), 0.2, self.training))

    return Top()


@dataclass
class FineTuned:
    """A trained top part, its split and the class centroids of its pooled features."""

    top: Any
    split: int
    classes: list[str]
    centroids: np.ndarray  # (C, 1280), unit length

    def scores(self, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and cosine similarity to each class centroid, from lower feature maps."""
        import torch

        with torch.no_grad():
            feats, logits = [], []
            for i in range(0, len(maps), 64):
                f = self.top.features(torch.from_numpy(maps[i : i + 64]))
                feats.append(f.numpy())
                logits.append(self.top.fc(f).numpy())
        z = _unit(np.concatenate(feats)) if feats else np.zeros((0, self.centroids.shape[1]), np.float32)
        raw = np.concatenate(logits) if logits else np.zeros((0, len(self.classes)), np.float32)
        raw = raw - raw.max(axis=1, keepdims=True)
        probs = np.exp(raw)
        probs /= probs.sum(axis=1, keepdims=True)
        return probs, z @ self.centroids.T


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


def train_top(
    maps: np.ndarray,
    flips: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    blocks: int,
    epochs: int,
    seed: int,
    say: Say = lambda _: None,
) -> FineTuned:
    """Train the last ``blocks`` blocks, the conv head and a new linear layer on feature maps (each
    photo seen plain or mirrored at random), class-balanced; batch-norm statistics stay ImageNet's."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    split = split_of(blocks)
    top = _top(load_classifier(), split, len(classes))
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index[label] for label in y])
    counts = np.bincount(labels.numpy(), minlength=len(classes))
    weights = torch.tensor(len(labels) / (len(classes) * np.maximum(counts, 1)), dtype=torch.float32)
    body = [p for name, p in top.named_parameters() if not name.startswith("fc.")]
    lrs = [1e-4, 2e-3]
    optimiser = torch.optim.AdamW([{"params": body}, {"params": top.fc.parameters()}], lr=lrs[0], weight_decay=1e-4)
    batch = 32
    steps = max(1, epochs * -(-len(labels) // batch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lrs, total_steps=steps)
    plain, mirrored = torch.from_numpy(maps), torch.from_numpy(flips)
    for epoch in range(epochs):
        top.train()
        for module in top.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eval()
        order = rng.permutation(len(labels))
        total = 0.0
        for i in range(0, len(order), batch):
            idx = torch.from_numpy(order[i : i + batch])
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)[:, None, None, None]
            inputs = torch.where(flip, mirrored[idx], plain[idx])
            loss = torch.nn.functional.cross_entropy(top(inputs), labels[idx], weight=weights, label_smoothing=0.1)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        say(f"fine-tuning epoch {epoch + 1}/{epochs}: loss {total / len(labels):.3f}")
    top.eval()
    with torch.no_grad():
        z = _unit(np.concatenate([top.features(plain[i : i + 64]).numpy() for i in range(0, len(maps), 64)]))
    centroids = _unit(np.stack([z[y == name].mean(axis=0) for name in classes])).astype(np.float32)
    return FineTuned(top, split, classes, centroids)


class Calibrated(NamedTuple):
    """A fine-tuned top, its abstention threshold (on 1 - max probability) and how it was split."""

    tuned: FineTuned
    threshold: float
    n_fit: int
    n_calibration: int


def train_calibrated(
    maps: np.ndarray,
    flips: np.ndarray,
    y: np.ndarray,
    shas: Sequence[str],
    classes: list[str],
    blocks: int,
    epochs: int,
    seed: int,
    max_refused: float,
    say: Say = lambda _: None,
) -> Calibrated:
    """Fine-tune on the training photos given, minus a calibration slice (stratified, fixed by the
    photos' hashes and ``seed``, never trained on) whose scores set the threshold that refuses at most
    ``max_refused`` of known photos."""
    calibrate = holdout_mask(list(shas), y, CALIBRATION_SHARE, seed + 1)
    fit = ~calibrate
    tuned = train_top(maps[fit], flips[fit], y[fit], classes, blocks, epochs, seed, say)
    probs, _ = tuned.scores(maps[calibrate])
    threshold = float(np.quantile(1.0 - probs.max(axis=1), 1 - max_refused))
    return Calibrated(tuned, threshold, int(fit.sum()), int(calibrate.sum()))


def export_graph(tuned: FineTuned, check_x: np.ndarray, path: Path) -> float:
    """The whole network (pretrained lower part + trained top + softmax + centroid similarities) as
    one ONNX file; returns its largest difference from torch on ``check_x``."""
    import torch

    lower = _lower(load_classifier(), tuned.split)
    centroids = torch.from_numpy(tuned.centroids.T.copy())

    class Whole(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.lower, self.top = lower, tuned.top

        def forward(self, x: Any) -> Any:
            f = self.top.features(self.lower(x))
            probabilities = torch.softmax(self.top.fc(f), dim=1)
            z = f / torch.clamp(torch.linalg.vector_norm(f, dim=1, keepdim=True), min=1e-12)
            return probabilities, z @ centroids

    return torch_to_onnx(Whole().eval(), check_x, ["probabilities", "similarity"], path)
