"""Exploratory: other feature variants for the photo head on ../shared/data/tf_flowers (torch eager,
about 10 minutes on 2 cores; not part of `make bench`). Run: python benchmarks/photo_variants.py.
Measured on 2026-11-26: base 0.921, avg+max pooling 0.926, flip TTA 0.922, 260 px 0.924 (5-fold macro-F1).
Also measured, with `bunga.models.finetune` (see benchmarks/photo_quality.py), and not kept: fine-tuning
with 2 or 4 cached random crops per photo besides its mirror image, 0.934 and 0.933 against 0.934
without; averaging the frozen and the fine-tuned models' probabilities, 0.928 against 0.934 for the
fine-tuned model alone; fine-tuning the last 5 blocks (a first trial, without the calibration slice): 0.965 and 0.921
on the first two folds against 0.960 and 0.936 for the last block alone, at 5x its training time."""

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bunga.models.backbone import load_classifier

torch.set_num_threads(2)
root = Path(__file__).resolve().parents[2] / "shared" / "data" / "tf_flowers"
paths = sorted(root.glob("*/*.jpg"))
y = np.array([p.parent.name for p in paths])
net = load_classifier()


def prep(img, size, crop=True):
    w, h = img.size
    if crop:
        s = size / min(w, h)
        img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.Resampling.BILINEAR)
        left, top = (img.size[0] - size) // 2, (img.size[1] - size) // 2
        img = img.crop((left, top, left + size, top + size))
    else:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    a = (np.asarray(img, dtype=np.float32) - 127) / 128
    return a.transpose(2, 0, 1)


imgs = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in paths]


def feats(size, crop, flip=False):
    out_avg, out_max = [], []
    for i in range(0, len(imgs), 32):
        x = torch.from_numpy(np.stack([prep(im, size, crop) for im in imgs[i : i + 32]]))
        if flip:
            x = torch.flip(x, dims=[3])
        with torch.no_grad():
            f = net.extract_features(x)
        out_avg.append(f.mean((2, 3)).numpy())
        out_max.append(f.amax((2, 3)).numpy())
    return np.concatenate(out_avg), np.concatenate(out_max)


def l2(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def score(X, C=8.0, std=False):
    clf = (
        make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=3000, class_weight="balanced"))
        if std
        else LogisticRegression(C=C, max_iter=3000, class_weight="balanced")
    )
    s = []
    for seed in (0,):
        p = cross_val_predict(clf, X, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed))
        s.append(f1_score(y, p, average="macro"))
    return np.mean(s)


t = time.time()
a224, m224 = feats(224, True)
print("feats224", time.time() - t, flush=True)
print("base l2 C8", score(l2(a224)), flush=True)
print("std C0.1", score(a224, 0.1, True), "std C1", score(a224, 1, True), flush=True)
print("avg+max l2", score(np.hstack([l2(a224), l2(m224)])), flush=True)
af, mf = feats(224, True, flip=True)
print("flip avg", score(l2(a224 + af)), flush=True)
a260, m260 = feats(260, True)
print("260", score(l2(a260)), flush=True)
asq, msq = feats(224, False)
print("squash", score(l2(asq)), "crop+squash", score(l2(l2(a224) + l2(asq))), flush=True)
print("260+224", score(l2(l2(a224) + l2(a260))), flush=True)
a288, _ = feats(288, True)
print("288", score(l2(a288)), "224+288", score(l2(l2(a224) + l2(a288))), flush=True)
