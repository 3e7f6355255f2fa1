"""The browser's copy of the server's photo preprocessing (static/resample.js), run by Node against
Pillow itself: the same resized pixels byte for byte and the same graph input, on random photos that
take every path (upscale, small and large shrink with Pillow's box reduction first, odd sizes)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bunga.imaging import to_tensor

RESAMPLE = Path(__file__).resolve().parents[2] / "src" / "bunga" / "serving" / "static" / "resample.js"
HARNESS = """
const fs = require("fs");
const R = eval(fs.readFileSync(process.argv[2], "utf8") + "; bungaResample");
for (const job of JSON.parse(fs.readFileSync(process.argv[3], "utf8"))) {
  const pixels = new Uint8ClampedArray(fs.readFileSync(job.input));
  const out = job.size
    ? new Uint8Array(R.tensor(pixels, job.width, job.height, job.size).buffer)
    : R.resize(pixels, job.width, job.height, job.outWidth, job.outHeight);
  fs.writeFileSync(job.output, Buffer.from(out.buffer, out.byteOffset, out.byteLength));
}
"""
# (width, height) -> (out width, out height): upscales, gentle and strong shrinks (>= 6x: reduce first)
SIZES = [((160, 120), (224, 168)), ((333, 250), (298, 224)), ((1000, 750), (299, 224)), ((2001, 1499), (224, 168)),
         ((97, 301), (224, 695)), ((4000, 3000), (299, 224)), ((250, 250), (250, 224))]  # fmt: skip


def _photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth colour fields with noise: resampling differences show up as changed pixels."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // max(1, width - 1)), (y * 255 // max(1, height - 1)), (x + y) % 256], axis=-1)
    noisy = base + rng.integers(-40, 41, size=base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is needed to run the page's script")
def test_the_browser_resizes_like_pillow(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    jobs, expected = [], []
    for n, ((width, height), (out_w, out_h)) in enumerate(SIZES):
        image = _photo(rng, width, height)
        source = tmp_path / f"in{n}.rgba"
        source.write_bytes(np.asarray(image.convert("RGBA")).tobytes())
        resized = image.resize((out_w, out_h), Image.Resampling.BILINEAR, reducing_gap=3.0)
        jobs.append({"input": str(source), "width": width, "height": height, "outWidth": out_w, "outHeight": out_h,
                     "output": str(tmp_path / f"out{n}.rgba")})  # fmt: skip
        expected.append(np.asarray(resized.convert("RGBA")))
        jobs.append({"input": str(source), "width": width, "height": height, "size": 224,
                     "output": str(tmp_path / f"tensor{n}.f32")})  # fmt: skip
        expected.append(to_tensor(image, 224))
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    (tmp_path / "harness.js").write_text(HARNESS)
    subprocess.run(["node", str(tmp_path / "harness.js"), str(RESAMPLE), str(tmp_path / "jobs.json")], check=True)
    for job, want in zip(jobs, expected, strict=True):
        raw = Path(job["output"]).read_bytes()
        if "size" in job:
            got = np.frombuffer(raw, dtype=np.float32).reshape(want.shape)
            assert np.array_equal(got, want), (job, float(np.abs(got - want).max()))
        else:
            got = np.frombuffer(raw, dtype=np.uint8).reshape(want.shape)
            changed = np.argwhere(got[..., :3] != want[..., :3])
            assert not len(changed), (job, len(changed), changed[:5].tolist())
