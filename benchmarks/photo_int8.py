"""An int8 backbone, by measurement: onnxruntime static quantization (QDQ, per-channel int8 weights,
uint8 activations; MinMax and Percentile calibration on 64 photos of the shipped sample) of the very
backbone graph bunga builds, against float32 in the same run: photos/s at batch 1 and 32 (serving
session settings, median of 15 after 3 warm-up calls) and how far its outputs move on the other
sample photos (cosine of the embeddings, agreement of the ImageNet top-1 class).
Run: python -m benchmarks.photo_int8"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, WORK, block, save


def _speed(session: Any, batch: int) -> float:
    x = np.random.default_rng(0).normal(0, 0.6, (batch, 3, 224, 224)).astype(np.float32)
    return batch / block(lambda: session.run(["embedding"], {"input": x}), repeat=15)


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

    reference = serving_session(fp32, None)
    out: dict[str, Any] = {
        "float32": {"batch1_photos_per_s": _speed(reference, 1), "batch32_photos_per_s": _speed(reference, 32)},
        "calibration_photos": len(calibration),
        "held_photos": len(held),
        "int8": {},
    }
    e32, i32 = reference.run(["embedding", "imagenet"], {"input": x_held})
    for method in ("MinMax", "Percentile"):
        path = folder / f"int8-{method}.onnx"
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
        session = serving_session(path, None)
        e8, i8 = session.run(["embedding", "imagenet"], {"input": x_held})
        cosine = (e32 * e8).sum(axis=1) / np.linalg.norm(e8, axis=1)
        result = {
            "batch1_photos_per_s": _speed(session, 1),
            "batch32_photos_per_s": _speed(session, 32),
            "embedding_cosine_median": float(np.median(cosine)),
            "embedding_cosine_min": float(cosine.min()),
            "imagenet_top1_agreement": float((i32.argmax(axis=1) == i8.argmax(axis=1)).mean()),
            "size_mb": path.stat().st_size / 1e6,
        }
        result["batch1_speedup"] = result["batch1_photos_per_s"] / out["float32"]["batch1_photos_per_s"]
        out["int8"][method] = result
        print(method, result)
    out["cpu_int8_instructions"] = _int8_instructions()
    save("photo_int8", out)
    return out


if __name__ == "__main__":
    main()
    sys.exit(0)
