// Identification on the phone: the served photo graph run by onnxruntime-web (its WebAssembly build,
// one thread, served by bunga itself from /static/ort/, built by `make web`). The graph is fetched
// once, checked against its sha256 (the ETag) and run on photos decoded and resized in the browser.
"use strict";

const bungaOnDevice = (() => {
  const ORT = "/static/ort/";
  const QUALITY = "medium";
  let session = null;
  let model = null;

  function loadRuntime() {
    if (window.ort) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = `${ORT}ort.wasm.min.js`;
      script.onload = () => resolve();
      script.onerror = () => reject(new Error("the on-phone runtime is not built into this server (make web)"));
      document.head.append(script);
    });
  }

  async function sha256Hex(bytes) {
    const digest = await crypto.subtle.digest("SHA-256", bytes);
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // Fetch the served graph, verify it, open a session; { version, sha256, size }.
  async function load() {
    await loadRuntime();
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmPaths = ORT;
    const response = await fetch("/models/photos/model.onnx");
    if (!response.ok) throw new Error(`no photo model to run on the phone (${response.status})`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    const expected = (response.headers.get("ETag") || "").replaceAll('"', "");
    const sha256 = await sha256Hex(bytes);
    if (sha256 !== expected) throw new Error("the downloaded model does not match its sha256: not used");
    const opened = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    const dims = opened.inputMetadata?.[0]?.shape || [];
    session = opened;
    model = { version: response.headers.get("X-Model-Version"), sha256, size: Number(dims[2]) || 224 };
    return model;
  }

  // n preprocessed photos (Float32Array, n x 3 x S x S) -> the graph's outputs as plain arrays.
  async function scoreTensor(data, n) {
    if (!session) throw new Error("call load() first");
    const size = model.size;
    const input = new ort.Tensor("float32", data, [n, 3, size, size]);
    const found = await session.run({ input }, ["probabilities", "similarity", "imagenet"]);
    const rows = (t) => Array.from({ length: n }, (_, i) => Array.from(t.data.slice(i * t.dims[1], (i + 1) * t.dims[1])));
    return { probabilities: rows(found.probabilities), similarity: rows(found.similarity), imagenet: rows(found.imagenet) };
  }

  // The server's preprocessing in the browser: short side to S (the browser's own resampling), a
  // centred S x S square, (x - 127) / 128, channels first.
  function fit(bitmap, size) {
    const scale = size / Math.min(bitmap.width, bitmap.height);
    return [Math.max(size, Math.round(bitmap.width * scale)), Math.max(size, Math.round(bitmap.height * scale))];
  }

  function preprocess(bitmap, size) {
    const [w, h] = fit(bitmap, size);
    const canvas = new OffscreenCanvas(size, size);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.imageSmoothingEnabled = true;
    context.imageSmoothingQuality = "high";
    context.drawImage(bitmap, -Math.floor((w - size) / 2), -Math.floor((h - size) / 2), w, h);
    const pixels = context.getImageData(0, 0, size, size).data;
    const out = new Float32Array(3 * size * size);
    for (let i = 0, plane = size * size; i < plane; i += 1) {
      for (let c = 0; c < 3; c += 1) out[c * plane + i] = (pixels[i * 4 + c] - 127) / 128;
    }
    return out;
  }

  async function scoreImage(blob) {
    if (!model) throw new Error("call load() first");
    // Like the server: a JPEG is first reduced by the largest power of two (at most 8) that keeps its
    // short side >= S (Pillow decodes it at that scale), then resized; the browser does both while
    // decoding, so a 12 MP photo is never held at full size as a tensor.
    const probe = await createImageBitmap(blob, { imageOrientation: "from-image" });
    let reduce = 1;
    if (blob.type === "image/jpeg") {
      while (reduce < 8 && Math.min(probe.width, probe.height) / (reduce * 2) >= model.size) reduce *= 2;
    }
    const drafted = reduce > 1
      ? await createImageBitmap(probe, {
        resizeWidth: Math.ceil(probe.width / reduce), resizeHeight: Math.ceil(probe.height / reduce), resizeQuality: "high",
      })
      : probe;
    const [w, h] = fit(drafted, model.size);
    const bitmap = await createImageBitmap(drafted, { resizeWidth: w, resizeHeight: h, resizeQuality: QUALITY });
    if (drafted !== probe) drafted.close();
    probe.close();
    const tensor = preprocess(bitmap, model.size);
    bitmap.close();
    return scoreTensor(tensor, 1);
  }

  // --- the server's answer rules (bunga.predict, bunga.models.not_flower, bunga.models.bands) ---------
  function interp(x, xp, fp) { // numpy.interp
    const n = xp.length;
    if (x < xp[0]) return fp[0];
    if (x >= xp[n - 1]) return fp[n - 1];
    let j = 0;
    while (j + 1 < n && xp[j + 1] <= x) j += 1;
    return fp[j] + ((x - xp[j]) * (fp[j + 1] - fp[j])) / (xp[j + 1] - xp[j]);
  }

  function pValue(score, reference, floor) {
    const levels = reference.map((_, i) => i / (reference.length - 1));
    return Math.min(1, Math.max(floor, 1 - interp(score, reference, levels)));
  }

  function notFlowerScore(imagenet, similarity, rule, floor) {
    const outside = 1 - rule.imagenet_classes.reduce((sum, c) => sum + imagenet[c], 0);
    if (!rule.centroid_reference.length) return outside;
    const distance = 1 - Math.max(...similarity);
    const s = -Math.log(pValue(outside, rule.imagenet_reference, floor) * pValue(distance, rule.centroid_reference, floor));
    return 1 - Math.exp(-s) * (1 + s);
  }

  // One photo's outputs -> the answer /predict/image gives (same fields; ``computed: "phone"``).
  function answer(probabilities, similarity, imagenet, rules, catalog = {}) {
    const rule = rules.not_flower;
    const flowerScore = rule ? notFlowerScore(imagenet, similarity, rule, rules.p_floor) : 0;
    const notFlower = rule ? flowerScore > rule.threshold : false;
    const order = probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).map(([, i]) => i);
    const topProb = probabilities[order[0]];
    let abstainScore = 0;
    let recognised = !notFlower;
    if (rules.abstention) {
      const best = rules.abstention.method === "max_prob" ? topProb : Math.max(...similarity);
      abstainScore = 1 - best;
      recognised = abstainScore <= rules.abstention.threshold && !notFlower;
    }
    let band = "sure";
    if (notFlower) band = "not_a_flower";
    else if (!recognised) band = "not_recognised";
    else if (rules.sure_threshold !== null && topProb < rules.sure_threshold) band = "possible";
    const species = (i) => rules.classes[i];
    const candidates = band === "possible"
      ? order.slice(0, rules.candidates.max).filter((i, n) => n === 0 || probabilities[i] >= rules.candidates.min_probability).map(species)
      : [];
    const families = new Set(candidates.map((c) => (catalog[c] || {}).famili || ""));
    const family = families.size === 1 ? [...families][0] : "";
    return {
      index: 0,
      recognised,
      outcome: recognised ? "species" : notFlower ? "not_a_flower" : "unknown_species",
      species: recognised ? species(order[0]) : null,
      top: order.slice(0, 3).map((i) => ({
        species: species(i),
        probability: Math.round(probabilities[i] * 1e6) / 1e6,
        info: catalog[species(i)] || { id: species(i), nama: species(i).replaceAll("_", " ") },
        reference: (rules.references || {})[species(i)] || null,
      })),
      band,
      candidates,
      family: family && family !== "-" ? family : null,
      abstain_score: abstainScore,
      not_flower_score: flowerScore,
      model_name: rules.model_name,
      model_version: rules.model_version,
      computed: "phone",
    };
  }

  return { load, scoreTensor, scoreImage, preprocess, answer, sha256Hex };
})();
