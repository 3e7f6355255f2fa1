// Identification on the phone: the served graphs (photos and measurements) run by onnxruntime-web
// (its WebAssembly build, one thread, served by bunga itself from /static/ort/, built by `make web`).
// The page keeps one verified graph per kind, with the rules that turn its outputs into an answer, in
// its own cache: a new graph replaces the kept one only once its bytes match their sha256, so a failed
// or partial download never costs the phone the model it has. The rules (small) name the served
// graph's sha256: checking for a new model is one small request, the graph is fetched only when new.
"use strict";

const bungaOnDevice = (() => {
  const ORT = "/static/ort/";
  const MODELS = "bunga-models"; // one verified graph and its rules per kind
  const held = {}; // kind -> { session, rules, sha256, version, size }

  function loadRuntime() {
    if (self.ort) return Promise.resolve();
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

  const graphKey = (kind) => `/models/${kind}/model.onnx`;
  const rulesKey = (kind, sha256) => `/models/${kind}/rules?sha256=${sha256}`;
  const store = () => (self.caches ? caches.open(MODELS) : Promise.resolve(null)); // none outside HTTPS

  // The kept graph's cached response (its sha256 in X-Sha256), or null.
  async function keptGraph(kind) {
    const cache = await store();
    return (cache && (await cache.match(graphKey(kind)))) || null;
  }

  // The sha256 of the graph this phone keeps, or null.
  async function keptSha(kind) {
    const graph = await keptGraph(kind);
    return graph ? graph.headers.get("X-Sha256") : null;
  }

  // The kept graph (checked again) and its rules, or null.
  async function kept(kind) {
    const graph = await keptGraph(kind);
    if (!graph) return null;
    const sha256 = graph.headers.get("X-Sha256");
    const rules = await (await store()).match(rulesKey(kind, sha256));
    const bytes = new Uint8Array(await graph.arrayBuffer());
    if (!rules || (await sha256Hex(bytes)) !== sha256) return null;
    return { bytes, rules: await rules.json() };
  }

  // Keep a verified graph and its rules: the new rules first, then the graph under its one key (the
  // kept model is replaced, never added to), then the old graph's rules go.
  async function keep(kind, bytes, rules) {
    const cache = await store();
    if (!cache) return;
    const before = await keptSha(kind);
    const json = { headers: { "Content-Type": "application/json" } };
    await cache.put(rulesKey(kind, rules.sha256), new Response(JSON.stringify(rules), json));
    if (bytes) {
      const headers = { "Content-Type": "application/octet-stream", "X-Sha256": rules.sha256 };
      await cache.put(graphKey(kind), new Response(bytes, { headers }));
      if (before && before !== rules.sha256) await cache.delete(rulesKey(kind, before));
    }
  }

  // The served rules and, when they name a graph other than `have`, the graph, verified.
  async function fetchServed(kind, have) {
    const answer = await fetch(`/models/${kind}/rules`, { cache: "no-store" });
    if (!answer.ok) throw new Error(`no ${kind} model to run on the phone (${answer.status})`);
    const rules = await answer.json();
    if (rules.sha256 === have) return { bytes: null, rules };
    const response = await fetch(graphKey(kind), { cache: "no-store" });
    if (!response.ok) throw new Error(`the ${kind} model could not be downloaded (${response.status})`);
    const bytes = new Uint8Array(await response.arrayBuffer());
    if ((await sha256Hex(bytes)) !== rules.sha256) throw new Error("the downloaded model does not match its sha256: not used");
    return { bytes, rules };
  }

  async function open(kind, bytes, rules) {
    await loadRuntime();
    // the page is cross-origin isolated (COOP + COEP): up to 2 threads, on the phone's own cores
    ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(2, navigator.hardwareConcurrency || 1) : 1;
    ort.env.wasm.proxy = false;
    ort.env.wasm.wasmPaths = ORT;
    const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
    const dims = session.inputMetadata?.[0]?.shape || [];
    held[kind] = { session, rules, sha256: rules.sha256, version: rules.model_version, size: Number(dims[2]) || 224 };
  }

  // Make a kind's model ready: the served one when the server answers (downloaded only when it is not
  // the one held, and kept with `keepIt`), else the one kept on this phone. { version, sha256, size,
  // problem }: `problem` says why the served model could not be had (the held or kept one is used).
  async function load(kind = "photos", { keepIt = false } = {}) {
    const have = held[kind] && !keepIt ? held[kind].sha256 : await keptSha(kind);
    let served = null;
    let failure = null;
    try {
      served = await fetchServed(kind, have);
    } catch (err) {
      failure = err;
    }
    if (!served) { // no signal, no such model served, or a download that failed its check
      if (!held[kind]) {
        const own = await kept(kind);
        if (!own) throw failure;
        await open(kind, own.bytes, own.rules);
      }
    } else {
      if (!served.bytes && (!held[kind] || held[kind].sha256 !== served.rules.sha256)) {
        const own = await kept(kind); // the served graph is the one kept here: no download
        if (own && own.rules.sha256 === served.rules.sha256) await open(kind, own.bytes, served.rules);
        else served = await fetchServed(kind, null); // the kept graph is damaged: fetch it again
      }
      if (served.bytes) await open(kind, served.bytes, served.rules);
      held[kind].rules = served.rules; // the same graph may come with a new version or reference photos
      held[kind].version = served.rules.model_version;
      if (keepIt) await keep(kind, served.bytes, served.rules);
    }
    const model = held[kind];
    return { version: model.version, sha256: model.sha256, size: model.size, problem: failure ? String(failure.message || failure) : null };
  }

  const rules = (kind) => (held[kind] ? held[kind].rules : null);

  // An output tensor of n rows -> one plain array per row.
  const perRow = (t, n) => Array.from({ length: n }, (_, i) => Array.from(t.data.slice(i * t.dims[1], (i + 1) * t.dims[1])));

  // n preprocessed photos (Float32Array, n x 3 x S x S) -> the graph's outputs as plain arrays.
  async function scoreTensor(data, n) {
    const model = held.photos;
    if (!model) throw new Error("call load() first");
    const size = model.size;
    const input = new ort.Tensor("float32", data, [n, 3, size, size]);
    const names = ["probabilities", "similarity", "imagenet"];
    if (model.session.outputNames.includes("logits")) names.push("logits"); // graphs with the margin score
    const found = await model.session.run({ input }, names);
    const rows = (name) => (found[name] ? perRow(found[name], n) : Array(n).fill(null));
    return { probabilities: rows("probabilities"), similarity: rows("similarity"), imagenet: rows("imagenet"), logits: rows("logits") };
  }

  // The photo as the server sees it: decoded by the browser (upright, no colour conversion), then
  // Pillow's draft and resize redone on its pixels (resample.js).
  async function scoreImage(blob) {
    const model = held.photos;
    if (!model) throw new Error("call load() first");
    const bitmap = await createImageBitmap(blob, {
      imageOrientation: "from-image", colorSpaceConversion: "none", premultiplyAlpha: "none",
    });
    const { width, height } = bitmap;
    const context = new OffscreenCanvas(width, height).getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    bitmap.close();
    const head = new Uint8Array(await blob.slice(0, 3).arrayBuffer());
    const jpeg = head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff; // Pillow drafts JPEGs only
    let image = { pixels: context.getImageData(0, 0, width, height).data, width, height };
    if (jpeg) image = bungaResample.draft(image.pixels, width, height, model.size);
    return scoreTensor(bungaResample.tensor(image.pixels, image.width, image.height, model.size), 1);
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
  // The value the sure threshold applies to, as the server's bunga.models.bands.sure_values: the margin
  // between the two best named logits (cards that say so), else the top named probability.
  function sureValue(probabilities, logits, order, rules) {
    if (rules.sure_score === "margin" && logits) {
      const named = order.map((i) => logits[i]).sort((a, b) => b - a); // by logit: probabilities tie at 0 and 1
      return named.length > 1 ? named[0] - named[1] : named[0];
    }
    return probabilities[order[0]];
  }

  const ranked = (probabilities) => probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).map(([, i]) => i);
  const poolOf = (rules) => (rules.pool === undefined ? null : rules.pool); // other_flowers: learned, never named

  function answer(probabilities, similarity, imagenet, rules, catalog = {}, logits = null) {
    const rule = rules.not_flower;
    const flowerScore = rule ? notFlowerScore(imagenet, similarity, rule, rules.p_floor) : 0;
    const notFlower = rule ? flowerScore > rule.threshold : false;
    const all = ranked(probabilities);
    const pool = poolOf(rules);
    const order = all.filter((i) => i !== pool);
    let abstainScore = 0;
    let recognised = !notFlower;
    if (rules.abstention) {
      const best = rules.abstention.method === "max_prob" ? probabilities[all[0]] : Math.max(...similarity);
      abstainScore = 1 - best;
      recognised = abstainScore <= rules.abstention.threshold && !notFlower;
    }
    if (all[0] === pool) recognised = false;
    let band = "sure";
    if (notFlower) band = "not_a_flower";
    else if (!recognised) band = "not_recognised";
    else if (rules.sure_threshold !== null && sureValue(probabilities, logits, order, rules) < rules.sure_threshold) band = "possible";
    return present(probabilities, { recognised, notFlower, band, abstainScore, flowerScore }, rules, catalog);
  }

  // Log-probabilities of one photo: from its logits when the graph gives them (exact), else clipped.
  function logProbabilities(probabilities, logits) {
    if (!logits) return probabilities.map((p) => Math.log(Math.min(1, Math.max(1e-30, p))));
    const top = Math.max(...logits);
    const total = Math.log(logits.reduce((sum, z) => sum + Math.exp(z - top), 0));
    return logits.map((z) => z - top - total);
  }

  // Several photos of one plant -> the one answer /predict/observation gives (bunga.predict.observe):
  // photos that are not a flower left out; one left answers alone; two or more combined as the mean
  // of their log-probabilities, judged by the rules' thresholds for that many photos.
  function observe(photos, rules, catalog = {}) {
    const alone = photos.map((o) => answer(o.probabilities, o.similarity, o.imagenet, rules, catalog, o.logits));
    const used = alone.map((a, i) => [a, i]).filter(([a]) => a.band !== "not_a_flower").map(([, i]) => i);
    const counted = (result) => ({ ...result, photo_count: photos.length, photos_used: used.length, photos: alone });
    if (used.length <= 1) return counted(alone[used.length ? used[0] : 0]);
    const logs = used.map((i) => logProbabilities(photos[i].probabilities, photos[i].logits));
    const mean = logs[0].map((_, c) => logs.reduce((sum, row) => sum + row[c], 0) / logs.length);
    const top = Math.max(...mean);
    const exp = mean.map((v) => Math.exp(v - top));
    const total = exp.reduce((a, b) => a + b, 0);
    const probabilities = exp.map((v) => v / total);
    const pool = poolOf(rules);
    const all = ranked(probabilities);
    const abstainScore = 1 - probabilities[all[0]];
    const fit = (rules.observation || {})[used.length <= 2 ? "2" : "3"];
    const poolWon = all[0] === pool;
    const recognised = fit
      ? abstainScore <= fit.abstain_threshold && !poolWon
      : !poolWon && 2 * used.filter((i) => alone[i].recognised).length >= used.length;
    let band = recognised ? "possible" : "not_recognised";
    if (recognised && fit) {
      const named = all.filter((i) => i !== pool).map((i) => mean[i]).sort((a, b) => b - a);
      const margin = named.length > 1 ? named[0] - named[1] : named[0];
      if (margin >= fit.sure_threshold) band = "sure";
    }
    const flowerScore = used.reduce((sum, i) => sum + alone[i].not_flower_score, 0) / used.length;
    return counted(present(probabilities, { recognised, notFlower: false, band, abstainScore, flowerScore }, rules, catalog));
  }

  // An answer's fields from its probabilities and what was decided about them.
  function present(probabilities, { recognised, notFlower, band, abstainScore, flowerScore }, rules, catalog) {
    const pool = poolOf(rules);
    const order = ranked(probabilities).filter((i) => i !== pool);
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

  // --- measurements: the graph takes the four values (cm, float32) in the rules' feature order ------
  function checkMeasurements(row, measureRules) {
    const { above, max } = measureRules.range;
    if (row.length !== measureRules.features.length || !row.every((v) => Number.isFinite(v) && v > above && v <= max)) {
      throw new RangeError(`each measurement is above ${above} and at most ${max} cm`);
    }
  }

  // Rows of measurements -> the probability of every class, per row (as /predict answers).
  async function scoreMeasurements(rows) {
    const model = held.measurements;
    if (!model) throw new Error("call load('measurements') first");
    rows.forEach((row) => checkMeasurements(row, model.rules));
    const input = new ort.Tensor("float32", Float32Array.from(rows.flat()), [rows.length, model.rules.features.length]);
    const found = await model.session.run({ input }, ["probabilities"]);
    return perRow(found.probabilities, rows.length);
  }

  // One row's probabilities -> the prediction /predict gives (same fields; ``computed: "phone"``).
  function answerMeasurements(probabilities, measureRules) {
    const top = probabilities.reduce((best, p, i) => (p > probabilities[best] ? i : best), 0);
    return {
      species: measureRules.classes[top],
      probabilities: Object.fromEntries(measureRules.classes.map((c, i) => [c, Math.round(probabilities[i] * 1e6) / 1e6])),
      model_name: measureRules.model_name,
      model_version: measureRules.model_version,
      computed: "phone",
    };
  }

  return {
    load, rules, scoreTensor, scoreImage, answer, observe, scoreMeasurements, answerMeasurements, sha256Hex,
  };
})();
