"""An int8 backbone, by measurement: onnxruntime static quantization (QDQ, per-channel int8 weights,
uint8 activations; MinMax and Percentile calibration on 64 photos of the shipped sample) of the very
backbone graph bunga builds, against float32 in the same run: photos/s at batch 1 and 32 (serving
session settings; the three graphs take turns, ROUNDS rounds, medians), how far its outputs move on
the other sample photos (cosine of the embeddings, agreement of the ImageNet top-1 class) and, where
../shared/data/tf_flowers is present, the photo model's quality on int8 embeddings against float32
ones: 5-fold CV macro-F1 (linear SVM, C=1) and the held-out-species AUROC (as
benchmarks/photo_quality.py). Run: python -m benchmarks.quality.photo_int8"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness.common import ROOT, SHARED_FLOWERS, WORK, block, save
from benchmarks.quality.photo_quality import cv_f1, held_out_species, load

ROUNDS = 5
METHODS = ("MinMax", "Percentile")  # onnxruntime's calibration methods measured


def _speeds(sessions: dict[str, Any], batch: int) -> dict[str, float]:
    """Photos/s of each session at ``batch``: the sessions take turns, medians of the rounds (a
    float32 baseline timed apart from the int8 graphs moved the ratio by a third between runs)."""
    x = np.random.default_rng(0).normal(0, 0.6, (batch, 3, 224, 224)).astype(np.float32)
    rounds: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(ROUNDS):
        for name, session in sessions.items():
            rounds[name].append(batch / block(lambda s=session: s.run(["embedding"], {"input": x}), repeat=5))
    return {name: float(np.median(r)) for name, r in rounds.items()}


def _quality(sessions: dict[str, Any]) -> dict[str, dict[str, float]] | None:
    """Macro-F1 and held-out-species AUROC of the photo head on each session's embeddings of
    tf_flowers, or None without the shared photos."""
    from bunga.imaging import photo_tensor

    if not SHARED_FLOWERS.is_dir():
        return None
    pairs, y = load(SHARED_FLOWERS)
    rows: dict[str, list[np.ndarray]] = {name: [] for name in sessions}
    for at in range(0, len(pairs), 32):
        x = np.stack([photo_tensor(p, 10**9) for p, _ in pairs[at : at + 32]])
        for name, session in sessions.items():
            rows[name].append(session.run(["embedding"], {"input": x})[0])
    classes = sorted(set(y))
    out = {}
    for name, parts in rows.items():
        e = np.concatenate(parts).astype(np.float32)
        open_set = held_out_species(e, y, classes)["max_prob"]
        out[name] = {"f1_macro": float(np.mean(cv_f1(e, y, classes, choose=False))), **open_set}
    return out


def _int8_instructions() -> list[str]:
    """The CPU's int8 dot-product extensions (without them onnxruntime's int8 kernels gain little)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return []
    return sorted({f for f in flags if "vnni" in f or f.startswith("amx")})


def main() -> dict[str, Any]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from bunga.imaging import photo_tensor
    from bunga.models.backbone import TAP_BLOCKS, weights_path
    from bunga.models.lite_graph import build_backbone
    from bunga.predict import serving_session

    folder = WORK / "int8"
    folder.mkdir(parents=True, exist_ok=True)
    fp32, prepared = folder / "fp32.onnx", folder / "prepared.onnx"
    fp32.write_bytes(build_backbone(weights_path(), TAP_BLOCKS))
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    photos = sorted((ROOT / "collected_data" / "foto_contoh").glob("*/*.jpg"))
    calibration = photos[::3][:64]
    held = [p for p in photos if p not in calibration]
    x_cal = np.stack([photo_tensor(p, 10**8) for p in calibration])
    x_held = np.stack([photo_tensor(p, 10**8) for p in held])

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.i = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.i >= len(x_cal):
                return None
            self.i += 1
            return {"input": x_cal[self.i - 1 : self.i]}

    graphs = {method: folder / f"int8-{method}.onnx" for method in METHODS}
    sessions = {"float32": serving_session(fp32, None)}
    for method, path in graphs.items():
        quantize_static(
            str(prepared),
            str(path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, method),
        )
        sessions[method] = serving_session(path, None)
    batch1, batch32 = _speeds(sessions, 1), _speeds(sessions, 32)
    quality = _quality(sessions)
    out: dict[str, Any] = {
        "float32": {"batch1_photos_per_s": batch1["float32"], "batch32_photos_per_s": batch32["float32"]},
        "calibration_photos": len(calibration),
        "held_photos": len(held),
        "rounds": ROUNDS,
        "int8": {},
    }
    if quality is not None:
        out["float32"]["quality"] = quality["float32"]
    e32, i32 = sessions["float32"].run(["embedding", "imagenet"], {"input": x_held})
    for method, path in graphs.items():
        e8, i8 = sessions[method].run(["embedding", "imagenet"], {"input": x_held})
        cosine = (e32 * e8).sum(axis=1) / np.linalg.norm(e8, axis=1)
        result: dict[str, Any] = {
            "batch1_photos_per_s": batch1[method],
            "batch32_photos_per_s": batch32[method],
            "batch1_speedup": batch1[method] / batch1["float32"],
            "embedding_cosine_median": float(np.median(cosine)),
            "embedding_cosine_min": float(cosine.min()),
            "imagenet_top1_agreement": float((i32.argmax(axis=1) == i8.argmax(axis=1)).mean()),
            "size_mb": path.stat().st_size / 1e6,
        }
        if quality is not None:
            q, base = quality[method], quality["float32"]
            result["quality"] = {
                **q,
                "f1_drop": base["f1_macro"] - q["f1_macro"],
                "auroc_drop": base["auroc"] - q["auroc"],
            }
        out["int8"][method] = result
        print(method, result)
    out["cpu_int8_instructions"] = _int8_instructions()
    save("photo_int8", out)
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
