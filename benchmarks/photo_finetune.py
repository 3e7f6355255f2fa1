"""Exploratory: is fine-tuning the last blocks of the backbone better than a frozen backbone with a
linear head, on held-out folds of ../shared/data/tf_flowers? (torch eager, 2 cores; not part of
`make bench`). The frozen layers' outputs are computed once (with their mirror images), so each fold
trains only the top of the network. Run: python -m benchmarks.photo_finetune"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold

from benchmarks.common import SHARED_FLOWERS, WORK
from bunga.imaging import photo_tensor
from bunga.models.backbone import load_classifier

torch.set_num_threads(2)
SPLIT = int(sys.argv[1]) if len(sys.argv) > 1 else 15  # blocks[SPLIT:] + head are trained


def frozen_maps(net: Any, x: torch.Tensor, split: int) -> torch.Tensor:
    """Output of the stem and blocks[:split] (the part that stays frozen)."""
    with torch.no_grad():
        h = net._swish(net._bn0(net._conv_stem(x)))
        for block in net._blocks[:split]:
            h = block(h, drop_connect_rate=0.0)
    return h


class Top(torch.nn.Module):
    """blocks[split:] + conv head + pooling + a new linear layer."""

    def __init__(self, net: Any, split: int, n_classes: int) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(net._blocks[split:])
        self.conv_head, self.bn1, self.act = net._conv_head, net._bn1, net._swish
        self.fc = torch.nn.Linear(1280, n_classes)

    def features(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            h = block(h, drop_connect_rate=0.0)
        return self.act(self.bn1(self.conv_head(h))).mean(dim=(2, 3))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.nn.functional.dropout(self.features(h), 0.2, self.training))


def fine_tune(
    maps: torch.Tensor,
    flips: torch.Tensor,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    split: int,
    epochs: int = 12,
    seed: int = 0,
) -> np.ndarray:
    torch.manual_seed(seed)
    top = Top(load_classifier(), split, int(y.max()) + 1)
    head_params = list(top.fc.parameters())
    body = [p for n, p in top.named_parameters() if not n.startswith("fc.")]
    opt = torch.optim.AdamW([{"params": body, "lr": 1e-4}, {"params": head_params, "lr": 2e-3}], weight_decay=1e-4)
    labels = torch.from_numpy(y)
    rng = np.random.default_rng(seed)
    steps = epochs * ((len(train) + 31) // 32)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[1e-4, 2e-3], total_steps=steps)
    for _ in range(epochs):
        top.train()
        for mod in top.modules():  # batch-norm statistics stay those of ImageNet
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.eval()
        order = rng.permutation(train)
        for i in range(0, len(order), 32):
            idx = order[i : i + 32]
            flip = torch.from_numpy(rng.random(len(idx)) < 0.5)[:, None, None, None]
            batch = torch.where(flip, flips[idx], maps[idx])
            loss = torch.nn.functional.cross_entropy(top(batch), labels[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    top.eval()
    with torch.no_grad():
        logits = top(maps[test]) + top(flips[test])
    return logits.argmax(1).numpy()


def main() -> None:
    paths = sorted(SHARED_FLOWERS.glob("*/*.jpg"))
    names = sorted({p.parent.name for p in paths})
    y = np.array([names.index(p.parent.name) for p in paths])
    net = load_classifier()
    start = time.perf_counter()
    saved = WORK / f"finetune-maps-{SPLIT}.pt"
    if saved.is_file():
        maps, flips, emb = torch.load(saved, weights_only=False)
    else:
        maps_l, flips_l, emb_l = [], [], []
        for i in range(0, len(paths), 32):
            x = torch.from_numpy(np.stack([photo_tensor(p, 10**9) for p in paths[i : i + 32]]))
            maps_l.append(frozen_maps(net, x, SPLIT))
            flips_l.append(frozen_maps(net, torch.flip(x, dims=[3]), SPLIT))
            with torch.no_grad():
                emb_l.append(net.extract_features(x).mean(dim=(2, 3)).numpy())
        maps, flips, emb = torch.cat(maps_l), torch.cat(flips_l), np.concatenate(emb_l)
        WORK.mkdir(parents=True, exist_ok=True)
        torch.save((maps, flips, emb), saved)
    print(f"frozen maps {tuple(maps.shape)} in {time.perf_counter() - start:.0f} s", flush=True)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    base, tuned = [], []
    for fold, (train, test) in enumerate(StratifiedKFold(5, shuffle=True, random_state=0).split(emb, y)):
        head = LogisticRegression(C=8.0, max_iter=3000, class_weight="balanced").fit(emb[train], y[train])
        base.append(f1_score(y[test], head.predict(emb[test]), average="macro"))
        t = time.perf_counter()
        pred = fine_tune(maps, flips, y, train, test, SPLIT)
        tuned.append(f1_score(y[test], pred, average="macro"))
        print(
            f"fold {fold}: frozen+LR {base[-1]:.3f}  fine-tuned {tuned[-1]:.3f} ({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    out = {
        "split": SPLIT,
        "frozen_lr": [float(np.mean(base)), float(np.std(base))],
        "fine_tuned": [float(np.mean(tuned)), float(np.std(tuned))],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
