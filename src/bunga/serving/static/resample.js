// The server's photo preprocessing (bunga.imaging), redone in the browser on the decoded pixels so that
// the phone feeds its graph what the server would: Pillow's JPEG draft (a power-of-two reduction while
// the short side stays >= S; approximated here by a box average of the full decode), then
// Image.resize(..., BILINEAR, reducing_gap=3.0) with Pillow's own arithmetic (an integer box reduction
// first when shrinking 6x or more; a triangle filter widened by the scale; weights in fixed point with
// 22 fractional bits; the horizontal pass rounded to 8 bits before the vertical one), a centred S x S
// crop and (x - 127) / 128, channels first. Browsers' own resizing (canvas, createImageBitmap) filters
// differently and moved answers near a band's edge.
"use strict";

const bungaResample = (() => {
  const BITS = 22; // Pillow's PRECISION_BITS for 8-bit images
  const ONE = 2 ** BITS;

  // Where each output pixel reads from and with which fixed-point weights (Pillow's precompute_coeffs).
  function coefficients(inSize, in0, in1, outSize) {
    const scale = Math.fround(Math.fround(in1) - Math.fround(in0)) / outSize;
    const filterScale = Math.max(scale, 1);
    const support = filterScale; // the triangle reaches 1 input pixel, widened when shrinking
    const ksize = Math.ceil(support) * 2 + 1;
    const bounds = new Int32Array(outSize * 2);
    const weights = new Int32Array(outSize * ksize);
    const raw = new Float64Array(ksize);
    const inverse = 1 / filterScale;
    for (let o = 0; o < outSize; o += 1) {
      const center = Math.fround(in0) + (o + 0.5) * scale;
      const first = Math.max(0, Math.trunc(center - support + 0.5));
      const count = Math.min(inSize, Math.trunc(center + support + 0.5)) - first;
      let total = 0;
      for (let i = 0; i < count; i += 1) {
        const distance = Math.abs((i + first - center + 0.5) * inverse);
        raw[i] = distance < 1 ? 1 - distance : 0;
        total += raw[i];
      }
      for (let i = 0; i < count; i += 1) {
        const w = total !== 0 ? raw[i] / total : raw[i];
        weights[o * ksize + i] = Math.trunc((w < 0 ? -0.5 : 0.5) + w * ONE);
      }
      bounds[o * 2] = first;
      bounds[o * 2 + 1] = count;
    }
    return { bounds, weights, ksize };
  }

  const clip = (sum) => Math.min(255, Math.max(0, sum >> BITS));

  // One output pixel at `to`: the weighted sum of output `o`'s source pixels, `step` bytes apart from
  // `at` (4 along a row, a row's length down a column), rounded to 8 bits as Pillow does.
  function weigh(src, at, step, o, { bounds, weights, ksize }, out, to) {
    const count = bounds[o * 2 + 1];
    let r = ONE / 2;
    let g = ONE / 2;
    let b = ONE / 2;
    for (let i = 0, k = o * ksize; i < count; i += 1, k += 1, at += step) {
      r += src[at] * weights[k];
      g += src[at + 1] * weights[k];
      b += src[at + 2] * weights[k];
    }
    out[to] = clip(r);
    out[to + 1] = clip(g);
    out[to + 2] = clip(b);
    out[to + 3] = 255;
  }

  // One pass along x (rows first..first+rows of `src`) or along y, RGBA in and out (alpha ignored).
  function horizontal(src, width, first, rows, outWidth, coeffs) {
    const out = new Uint8ClampedArray(outWidth * rows * 4);
    for (let y = 0; y < rows; y += 1) {
      const row = (y + first) * width * 4;
      for (let o = 0; o < outWidth; o += 1) {
        weigh(src, row + coeffs.bounds[o * 2] * 4, 4, o, coeffs, out, (y * outWidth + o) * 4);
      }
    }
    return out;
  }

  function vertical(src, width, outHeight, coeffs) {
    const out = new Uint8ClampedArray(width * outHeight * 4);
    for (let o = 0; o < outHeight; o += 1) {
      const top = coeffs.bounds[o * 2] * width * 4;
      for (let x = 0; x < width; x += 1) weigh(src, top + x * 4, width * 4, o, coeffs, out, (o * width + x) * 4);
    }
    return out;
  }

  // Pillow's Image.reduce((fx, fy)): the rounded mean of each fx x fy block (the last, partial blocks
  // of a row or column average the pixels they have), in Pillow's fixed point.
  const multiplierOf = (n) => Math.trunc(Math.fround(2 ** 32 / Math.fround(256 * n)));

  function reduce(src, width, height, fx, fy) {
    const outWidth = Math.ceil(width / fx);
    const outHeight = Math.ceil(height / fy);
    const out = new Uint8ClampedArray(outWidth * outHeight * 4);
    const full = multiplierOf(fx * fy);
    const shift = 2 ** 24;
    for (let oy = 0; oy < outHeight; oy += 1) {
      const rows = Math.min(fy, height - oy * fy);
      for (let ox = 0; ox < outWidth; ox += 1) {
        const cols = Math.min(fx, width - ox * fx);
        const n = rows * cols;
        const multiplier = n === fx * fy ? full : multiplierOf(n);
        const half = n >> 1;
        let r = half;
        let g = half;
        let b = half;
        for (let y = 0; y < rows; y += 1) {
          let at = ((oy * fy + y) * width + ox * fx) * 4;
          for (let x = 0; x < cols; x += 1, at += 4) {
            r += src[at];
            g += src[at + 1];
            b += src[at + 2];
          }
        }
        const to = (oy * outWidth + ox) * 4;
        out[to] = Math.floor((r * multiplier) / shift);
        out[to + 1] = Math.floor((g * multiplier) / shift);
        out[to + 2] = Math.floor((b * multiplier) / shift);
        out[to + 3] = 255;
      }
    }
    return { pixels: out, width: outWidth, height: outHeight };
  }

  // Image.resize((outWidth, outHeight), BILINEAR, reducing_gap=3.0) of RGBA pixels.
  function resize(pixels, width, height, outWidth, outHeight) {
    if (outWidth === width && outHeight === height) return pixels;
    let box = [0, 0, width, height];
    const fx = Math.trunc(width / outWidth / 3) || 1;
    const fy = Math.trunc(height / outHeight / 3) || 1;
    let src = pixels;
    let w = width;
    let h = height;
    if (fx > 1 || fy > 1) {
      ({ pixels: src, width: w, height: h } = reduce(pixels, width, height, fx, fy));
      box = [0, 0, width / fx, height / fy];
    }
    const needX = outWidth !== w || box[0] !== 0 || box[2] !== outWidth;
    const needY = outHeight !== h || box[1] !== 0 || box[3] !== outHeight;
    const down = coefficients(h, box[1], box[3], outHeight);
    const first = down.bounds[0];
    const last = down.bounds[outHeight * 2 - 2] + down.bounds[outHeight * 2 - 1];
    if (needX) {
      src = horizontal(src, w, first, last - first, outWidth, coefficients(w, box[0], box[2], outWidth));
      w = outWidth;
      for (let o = 0; o < outHeight; o += 1) down.bounds[o * 2] -= first;
    }
    return needY ? vertical(src, w, outHeight, down) : src;
  }

  // Pillow's JPEG draft: the largest power of two (<= 8) that keeps the short side >= size, applied
  // as the mean of each block (libjpeg scales in the DCT domain: close, not equal).
  function draft(pixels, width, height, size) {
    let factor = 1;
    while (factor < 8 && Math.floor(Math.min(width, height) / (factor * 2)) >= size) factor *= 2;
    return factor > 1 ? reduce(pixels, width, height, factor, factor) : { pixels, width, height };
  }

  // Python's round(): halves go to the even neighbour.
  function roundEven(x) {
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  // Decoded RGBA pixels -> the graph's input (3 x size x size, float32), as bunga.imaging.to_tensor.
  function tensor(pixels, width, height, size) {
    const scale = size / Math.min(width, height);
    const outWidth = Math.max(size, roundEven(width * scale));
    const outHeight = Math.max(size, roundEven(height * scale));
    const resized = resize(pixels, width, height, outWidth, outHeight);
    const left = Math.floor((outWidth - size) / 2);
    const top = Math.floor((outHeight - size) / 2);
    const plane = size * size;
    const out = new Float32Array(3 * plane);
    for (let y = 0; y < size; y += 1) {
      for (let x = 0; x < size; x += 1) {
        const at = ((y + top) * outWidth + x + left) * 4;
        for (let c = 0; c < 3; c += 1) out[c * plane + y * size + x] = (resized[at + c] - 127) / 128;
      }
    }
    return out;
  }

  return { resize, reduce, draft, tensor };
})();
