"""Exploratory: other feature variants for the photo head on ../shared/data/tf_flowers (torch eager,
about 10 minutes on 2 cores; not part of `make bench`). Run: python -m research.photo_variants.
Measured on 2026-11-26 (head features only, logistic regression): base 0.921, avg+max pooling 0.926,
flip TTA 0.922, 260 px 0.924 (5-fold macro-F1).
Measured on 2026-11-27 with the pooled output of every block saved once, 5-fold CV on three seeds
(0, 1, 2), logistic regression C=8 unless said:
- head features alone 0.921/0.921/0.925; + pooled outputs of blocks 13-15 (kept) 0.938/0.940/0.941;
  blocks 14-15 only 0.933 (seed 0), blocks 12-15 0.931, blocks 11-15 0.933; square-rooted head
  features 0.929; training on mirrored embeddings too 0.939, with mirror TTA 0.934-0.937.
- heads on the kept embedding: linear SVM C=1 (kept) 0.946/0.940/0.942, C=3 0.943, Crammer-Singer
  0.939; RBF SVM 0.946/0.941/0.941 (no probabilities to export); RBF Nystroem + logistic regression
  0.932-0.934; MLP (256 or 512 hidden) 0.936-0.938.
- fine-tuning the last block with a linear layer over the same multi-layer features: 0.940 and 0.926
  on the first two folds, against 0.950 and 0.940 for the frozen embedding with the SVM; stopped.
Also measured in an earlier release with fine-tuning (since removed: it no longer beats the frozen
default), not kept: fine-tuning 1 block 0.934, 2 blocks 0.935; 2 or 4 cached random crops per photo
0.934 and 0.933; averaging frozen and fine-tuned probabilities 0.928; the last 5 blocks 0.965 and
0.921 on the first two folds against 0.960 and 0.936 for 1 block, at 5x its training time."""

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

from bunga.models.torch_reference import load_classifier

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
