// bunga web page: photo and measurement tabs, Bahasa Indonesia by default, English toggle.
// No framework, no CDN, no inline script (the page's CSP forbids it).
"use strict";

const TEXT = {
  id: {
    title: "Kenali bunga di Kebun Raya ITERA", tabPhoto: "Foto", tabMeasure: "Ukuran", modes: "Cara mengenali",
    choosePhoto: "Ambil atau pilih foto bunga", identify: "Kenali", working: "Sedang mengenali…",
    unknown: "Bunga tidak dikenali",
    unknownHint: "Model melihat bunga, tetapi tidak mirip spesies yang pernah diajarkan kepadanya. Mungkin mirip (hanya saran):",
    notFlower: "Foto ini tidak tampak seperti bunga",
    notFlowerHint: "Model tidak melihat bunga di foto ini. Coba foto bunganya dari dekat, dengan cahaya cukup.",
    confidence: "keyakinan", feedbackQuestion: "Apakah jawabannya benar?", yes: "Ya, benar",
    correctLabel: "Bukan, ini adalah:", dontKnow: "Saya tidak tahu", send: "Kirim",
    privacy: "Foto hanya disimpan jika Anda menekan Kirim, untuk melatih model berikutnya.",
    thanks: "Terima kasih! Masukan Anda tersimpan.", sepalLength: "Panjang sepal (cm)", sepalWidth: "Lebar sepal (cm)",
    petalLength: "Panjang petal (cm)", petalWidth: "Lebar petal (cm)", model: "model",
    footer: "Kebun Raya ITERA · Institut Teknologi Sumatera", error: "Gagal", switchTo: "Switch to English",
    family: "Famili", referencePhoto: "Foto contoh", photoCredit: "Foto", source: "sumber",
    possible: "Belum pasti. Mungkin salah satu dari ini (tebakan):", possibleFamily: "Kemungkinan famili",
    onPhone: "dihitung di ponsel", onServer: "dihitung di server", keepOffline: "Simpan agar bisa dipakai tanpa sinyal",
    offlineReady: "Siap dipakai tanpa sinyal", offlineFailed: "Tidak bisa disimpan untuk dipakai tanpa sinyal",
    noSignal: "Tidak ada sinyal, dan model belum disimpan di ponsel ini.",
    queued: "Tidak ada sinyal: masukan disimpan di ponsel dan dikirim saat ada sinyal.", queuedSent: "Masukan tertunda terkirim",
    mostLikely: "paling mungkin", alsoPossible: "mungkin juga", details: "Rincian (peluang menurut model)",
    addAnother: "Tambahkan foto lain dari tanaman ini", fromPhotos: "Jawaban dari {used} foto tanaman ini",
    fromPhotosSkipped: "Jawaban dari {used} dari {count} foto (yang bukan bunga tidak dipakai)", remove: "Hapus foto",
  },
  en: {
    title: "Identify flowers at Kebun Raya ITERA", tabPhoto: "Photo", tabMeasure: "Measurements",
    modes: "How to identify", choosePhoto: "Take or choose a photo of a flower", identify: "Identify",
    working: "Identifying…", unknown: "Flower not recognised",
    unknownHint: "The model sees a flower, but not one like the species it was taught. It may resemble (suggestions only):",
    notFlower: "This photo does not look like a flower",
    notFlowerHint: "The model does not see a flower in this photo. Try a close-up of the flower in good light.",
    confidence: "confidence",
    feedbackQuestion: "Is the answer right?", yes: "Yes, it is", correctLabel: "No, it is:",
    dontKnow: "I don't know", send: "Send",
    privacy: "The photo is stored only if you press Send, to train the next model.",
    thanks: "Thank you! Your feedback was stored.", sepalLength: "Sepal length (cm)", sepalWidth: "Sepal width (cm)",
    petalLength: "Petal length (cm)", petalWidth: "Petal width (cm)", model: "model",
    footer: "Kebun Raya ITERA · Institut Teknologi Sumatera", error: "Failed", switchTo: "Ganti ke Bahasa Indonesia",
    family: "Family", referencePhoto: "Reference photo", photoCredit: "Photo", source: "source",
    possible: "Not sure. It may be one of these (a guess):", possibleFamily: "Probably in the family",
    onPhone: "computed on this phone", onServer: "computed on the server", keepOffline: "Keep for use without signal",
    offlineReady: "Ready to use without signal", offlineFailed: "Could not be kept for use without signal",
    noSignal: "No signal, and the model is not kept on this phone yet.",
    queued: "No signal: your feedback is kept on this phone and sent when there is signal.", queuedSent: "Queued feedback sent",
    mostLikely: "most likely", alsoPossible: "also possible", details: "Details (the model's probabilities)",
    addAnother: "Add another photo of this plant", fromPhotos: "Answer from {used} photos of this plant",
    fromPhotosSkipped: "Answer from {used} of {count} photos (those that are not a flower were left out)",
    remove: "Remove photo",
  },
};

let lang = localStorage.getItem("bunga-lang") === "en" ? "en" : "id";
let lastPhoto = null;
let lastAnswer = null;
let plantPhotos = []; // photos of the plant being identified (the first, then any added), at most MAX_PLANT_PHOTOS
const MAX_PLANT_PHOTOS = 5;
let speciesClasses = [];
const $ = (id) => document.getElementById(id);
const t = (key) => TEXT[lang][key] || key;

function applyLanguage() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll("[data-i18n-aria]").forEach((el) => el.setAttribute("aria-label", t(el.dataset.i18nAria)));
  $("lang").textContent = lang === "id" ? "EN" : "ID";
  $("lang").setAttribute("aria-label", t("switchTo"));
  fillCorrections();
  if (lastAnswer) renderPhoto(lastAnswer);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  Object.entries(attrs).forEach(([k, v]) => (k === "class" ? (node.className = v) : node.setAttribute(k, v)));
  children.forEach((c) => node.append(c));
  return node;
}

function status(id, message, isError = false) {
  $(id).textContent = message;
  $(id).classList.toggle("error", isError);
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ");
  } catch (_) { /* not JSON */ }
  return `${t("error")} (${response.status})`;
}

function reference(candidate) {
  // The model's typical training photo of the species, with its credit when the licence asks for one.
  const ref = candidate.reference;
  if (!ref) return null;
  const img = el("img", { src: ref.url, alt: `${t("referencePhoto")}: ${displayName(candidate.info)}`, loading: "lazy" });
  const figure = el("figure", { class: "reference" }, img);
  if (ref.licence || ref.link) {
    const caption = el("figcaption", {}, `${t("photoCredit")}: ${ref.licence || ""}`.trim());
    if (ref.link && /^https?:\/\//.test(ref.link)) {
      caption.append(" ", el("a", { href: ref.link, rel: "noopener noreferrer", target: "_blank" }, t("source")));
    }
    figure.append(caption);
  }
  return figure;
}

// The species' common name in the page's language (English where the catalogue has one).
const displayName = (info) => (lang === "en" && info.name ? info.name : info.nama);

function speciesCard(candidate, top, word = null) {
  // One species: its name (large when it is the sure answer), what the catalogue says, its reference
  // photo. No percentage: the words say how sure the answer is; the figures are under "details".
  const info = candidate.info;
  const heading = el(top ? "h2" : "h3", { class: top ? "answer-name" : "" }, displayName(info));
  const card = el("article", { class: top ? "card top" : "card" });
  const figure = reference(candidate);
  if (figure) card.append(figure);
  if (word) card.append(el("p", { class: "likelihood" }, word));
  card.append(heading);
  if (info.latin && info.latin !== "-") card.append(el("p", { class: "latin" }, info.latin));
  if (info.famili && info.famili !== "-") card.append(el("p", {}, `${t("family")}: ${info.famili}`));
  const text = lang === "id" ? info.deskripsi : info.description || info.deskripsi;
  if (text) card.append(el("p", {}, text));
  return card;
}

function details(candidates) {
  // The model's probabilities, on request only.
  const list = el("ul", {});
  candidates.forEach((c) => {
    const pct = Math.round(c.probability * 100);
    const meter = el("meter", { min: "0", max: "100", value: String(pct), "aria-label": `${t("confidence")} ${pct}%` });
    list.append(el("li", {}, `${displayName(c.info)} `, meter, ` ${pct}%`));
  });
  return el("details", { class: "details" }, el("summary", {}, t("details")), list);
}

function suggestions(candidates) {
  // Not recognised: the closest species as plain suggestions, never with a confidence bar.
  const list = el("ul", { class: "suggestions" });
  candidates.forEach((c) => {
    const latin = c.info.latin && c.info.latin !== "-" ? ` (${c.info.latin})` : "";
    const item = el("li", {}, `${displayName(c.info)}${latin}`);
    const figure = reference(c);
    if (figure) item.prepend(figure);
    list.append(item);
  });
  return list;
}

function renderPhoto(answer, fresh = false) {
  const box = $("photo-result");
  box.replaceChildren();
  const result = answer.results[0];
  if (result.band === "possible") {
    // A guess: the candidates in order, in words ("most likely", "also possible"), never one name
    // stated as the answer and never a percentage in front.
    box.append(el("p", { class: "possible", role: "status" }, t("possible")));
    if (result.family) box.append(el("p", { class: "family" }, `${t("possibleFamily")} ${result.family}`));
    const shown = result.top.filter((c) => result.candidates.includes(c.species));
    const list = el("ol", { class: "candidates" });
    shown.forEach((c, i) => list.append(el("li", {}, speciesCard(c, false, t(i === 0 ? "mostLikely" : "alsoPossible")))));
    box.append(list, details(result.top));
  } else if (result.recognised) {
    box.append(speciesCard(result.top[0], true), details(result.top));
  } else if (result.outcome === "not_a_flower") {
    box.append(el("p", { class: "unknown", role: "alert" }, t("notFlower")), el("p", {}, t("notFlowerHint")));
  } else {
    box.append(el("p", { class: "unknown", role: "alert" }, t("unknown")), el("p", {}, t("unknownHint")));
    box.append(suggestions(result.top));
  }
  if (result.photo_count > 1) {
    const key = result.photos_used < result.photo_count ? "fromPhotosSkipped" : "fromPhotos";
    const text = t(key).replace("{used}", result.photos_used).replace("{count}", result.photo_count);
    box.prepend(el("p", { class: "hint", id: "observation" }, text));
  }
  const where = result.computed === "phone" ? t("onPhone") : t("onServer");
  box.append(el("p", { class: "hint", id: "computed" }, `${t("model")}: ${result.model_name} v${result.model_version}, ${where}`));
  $("feedback-form").hidden = false;
  // not sure yet: another photo of the same plant may settle it (on the server, or on the phone without signal)
  $("more-photos").hidden = result.band === "sure" || plantPhotos.length >= MAX_PLANT_PHOTOS;
  renderThumbs();
  if (fresh) box.scrollIntoView({ block: "start" }); // a phone shows the answer, not only the banner above it
}

// Identification without signal: the graphs and their answer rules kept on the phone (ondevice.js).
// While the page is open and online it checks for a new model now and then (one small request);
// a new graph is downloaded in the background and replaces the kept one only once verified.
const CHECK_EVERY_MS = 15 * 60 * 1000;
let onDevice = null;
let checkedAt = 0;
let keeping = null; // the kept model being loaded: an answer without signal waits for it
function keepOffline(quiet = false) {
  keeping = loadKept(quiet).finally(() => { keeping = null; });
  return keeping;
}

// Answers without signal need the kept model: wait for one being loaded instead of saying it is missing.
async function keptModel() {
  if (!onDevice && keeping) await keeping;
  return onDevice;
}

async function loadKept(quiet) {
  checkedAt = Date.now();
  try {
    if (navigator.storage && navigator.storage.persist) await navigator.storage.persist();
    const species = await fetch("/species").catch(() => null);
    const catalog = Object.fromEntries((species && species.ok ? await species.json() : []).map((s) => [s.id, s]));
    await bungaOnDevice.load("photos", { keepIt: true });
    let measurements = false;
    try {
      await bungaOnDevice.load("measurements", { keepIt: true });
      measurements = true;
    } catch (_) { /* no measurement model served or kept: photos only */ }
    // fetched once online so the service worker keeps them for answers without signal
    const references = Object.values(bungaOnDevice.rules("photos").references || {});
    await Promise.all(references.map((r) => fetch(r.url).catch(() => null)));
    onDevice = { catalog: onDevice && !Object.keys(catalog).length ? onDevice.catalog : catalog, measurements };
    localStorage.setItem("bunga-offline", "1");
    $("keep-offline").hidden = true;
    if (!quiet) status("photo-status", t("offlineReady"));
  } catch (err) {
    if (!quiet) status("photo-status", `${t("offlineFailed")}: ${err.message || err}`, true);
  }
}

function checkForNewModel() {
  if (onDevice && navigator.onLine && Date.now() - checkedAt >= CHECK_EVERY_MS) keepOffline(true);
}

// For the prediction log once online: what was answered, never the photo (its sha256 only).
async function logOnPhone(record) {
  try {
    await bungaOutbox.logAnswer({ ...record, at: Date.now() / 1000 });
    if (!retryTimer) retryTimer = setTimeout(sendQueued, retryDelay);
  } catch (_) { /* IndexedDB unavailable: the answer is shown, not logged */ }
}

async function identifyOnPhone() {
  // the plant's photos (usually one), each scored on the phone, then answered as one observation
  const photos = plantPhotos.length ? plantPhotos : [lastPhoto];
  const rules = bungaOnDevice.rules("photos");
  const scored = [];
  for (const photo of photos) {
    const o = await bungaOnDevice.scoreImage(photo);
    scored.push({ probabilities: o.probabilities[0], similarity: o.similarity[0], imagenet: o.imagenet[0], logits: o.logits[0] });
  }
  const result = bungaOnDevice.observe(scored, rules, onDevice.catalog);
  const shas = [];
  for (const photo of photos) shas.push(await bungaOnDevice.sha256Hex(await photo.arrayBuffer()));
  await logOnPhone({
    kind: "photos",
    photo_sha256: shas[0],
    ...(new Set(shas).size > 1 ? { photos: shas } : {}), // several photos of one plant: one observation record
    model_version: result.model_version,
    predicted: result.recognised ? result.top[0].species : null,
    band: result.band,
    top_probability: Math.min(1, Math.max(0, result.top[0].probability)),
    abstain_score: Math.min(1, Math.max(0, result.abstain_score)),
  });
  return { results: [result] };
}

async function measureOnPhone(row) {
  const rules = bungaOnDevice.rules("measurements");
  const [probabilities] = await bungaOnDevice.scoreMeasurements([row]);
  const prediction = bungaOnDevice.answerMeasurements(probabilities, rules);
  await logOnPhone({
    kind: "measurements",
    measurements: row,
    model_version: prediction.model_version,
    predicted: prediction.species,
    top_probability: Math.min(1, Math.max(0, prediction.probabilities[prediction.species])),
  });
  return prediction;
}

function fillCorrections() {
  const select = $("correct");
  const current = select.value;
  select.replaceChildren(el("option", { value: "" }, t("dontKnow")));
  speciesClasses.forEach((c) => select.append(el("option", { value: c.id }, displayName(c))));
  select.value = current;
}

// The species a visitor may name in a correction: the model's first, then the rest of the catalogue
// (curators' additions included) by name. Kept on the phone, so the list is there without signal too.
const CLASSES_KEY = "bunga-species-list";
async function loadClasses() {
  try {
    const [model, species] = await Promise.all([fetch("/model"), fetch("/species")]);
    if (!model.ok || !species.ok) throw new Error("no list");
    const served = ((await model.json()).models.photos || { classes: [] }).classes;
    const classes = served.filter((id) => id !== "other_flowers"); // the pool is never a visitor's answer
    const catalog = await species.json();
    const byId = Object.fromEntries(catalog.map((s) => [s.id, s]));
    const rest = catalog.filter((s) => !classes.includes(s.id)).sort((a, b) => a.nama.localeCompare(b.nama));
    speciesClasses = [...classes.map((id) => byId[id] || { id, nama: id.replaceAll("_", " ") }), ...rest]
      .map((s) => ({ id: s.id, nama: s.nama, name: s.name || "" }));
    localStorage.setItem(CLASSES_KEY, JSON.stringify(speciesClasses));
  } catch (_) { // no signal: the list kept from the last visit
    try {
      speciesClasses = JSON.parse(localStorage.getItem(CLASSES_KEY) || "[]");
    } catch (__) { speciesClasses = []; }
  }
  fillCorrections();
}

async function identifyPhoto(event) {
  event.preventDefault();
  if (!lastPhoto) return;
  if (!plantPhotos.length) plantPhotos = [lastPhoto];
  const form = new FormData();
  plantPhotos.forEach((photo, i) => form.append("file", photo, photo.name || `photo${i}.jpg`));
  status("photo-status", t("working"));
  $("feedback-form").hidden = true;
  $("correct").value = ""; // a new photo: no correction chosen yet
  status("feedback-status", "");
  let response = null;
  try {
    response = await fetch("/predict/observation?k=3", { method: "POST", body: form });
  } catch (_) { /* no signal: answered on the phone below, when the model is kept here */ }
  if (!response || response.status === 502 || response.status === 504) {
    if (!(await keptModel())) {
      status("photo-status", t("noSignal"), true);
      return;
    }
    lastAnswer = await identifyOnPhone();
    status("photo-status", "");
    renderPhoto(lastAnswer, true);
    return;
  }
  if (!response.ok) {
    status("photo-status", await errorText(response), true);
    return;
  }
  const observation = await response.json(); // one result for the plant's photos (one photo: as /predict/image)
  lastAnswer = { results: [observation] };
  status("photo-status", "");
  renderPhoto(lastAnswer, true);
}

function renderThumbs() {
  const list = $("thumbs");
  list.replaceChildren();
  if (plantPhotos.length < 2) return;
  plantPhotos.forEach((photo, i) => {
    const remove = el("button", { type: "button", "aria-label": t("remove") }, "×");
    remove.addEventListener("click", () => {
      plantPhotos.splice(i, 1);
      lastPhoto = plantPhotos[0];
      identifyPhoto(new Event("submit"));
    });
    list.append(el("li", {}, el("img", { src: URL.createObjectURL(photo), alt: photo.name || "" }), remove));
  });
}

async function sendFeedback(label) {
  const result = lastAnswer && lastAnswer.results[0];
  const cited = result && result.observation_id && plantPhotos.length > 1 ? result.observation_id : "";
  const item = {
    key: crypto.randomUUID(), // the same key on every retry: recorded once
    at: Date.now(),
    photo: await bungaOutbox.forUpload(lastPhoto),
    // several photos of one plant: all of them, citing the server's observation id (one label for all)
    ...(cited ? { observation_id: cited, photos: plantPhotos.slice() } : {}),
    label,
    predicted: result && result.top.length ? result.top[0].species : "",
    band: result && result.band ? result.band : "",
  };
  let response = null;
  try {
    response = await bungaOutbox.send(item);
  } catch (_) { /* no signal: kept on the phone and sent later */ }
  if (!response || response.status >= 500) {
    await bungaOutbox.add(item);
    retryDelay = RETRY_FIRST_MS;
    if (!retryTimer) retryTimer = setTimeout(sendQueued, retryDelay);
    if ("serviceWorker" in navigator) {
      navigator.serviceWorker.ready.then((r) => r.sync && r.sync.register("bunga-feedback")).catch(() => {});
    }
    status("feedback-status", t("queued"));
    $("feedback-form").hidden = true;
  } else if (response.ok) {
    status("feedback-status", t("thanks"));
    $("feedback-form").hidden = true;
  } else {
    status("feedback-status", await errorText(response), true);
  }
}

// What is queued is sent on each visit, when the network comes back, and on a timer while anything
// waits: a server that comes back while the phone's network stayed up fires no "online" event.
const RETRY_FIRST_MS = 5000;
const RETRY_MAX_MS = 5 * 60 * 1000;
let retryDelay = RETRY_FIRST_MS;
let retryTimer = null;
async function sendQueued() {
  clearTimeout(retryTimer);
  retryTimer = null;
  let waiting = 0;
  try {
    const sent = await bungaOutbox.flush();
    if (sent) status("feedback-status", `${t("queuedSent")}: ${sent}`);
    waiting = (await bungaOutbox.count()) + (await bungaOutbox.answersWaiting());
    retryDelay = sent ? RETRY_FIRST_MS : Math.min(RETRY_MAX_MS, retryDelay * 2);
  } catch (_) { /* IndexedDB unavailable (private mode): nothing was queued */ }
  if (waiting) retryTimer = setTimeout(sendQueued, retryDelay);
}

async function identifyMeasurements(event) {
  event.preventDefault();
  const body = {};
  const fields = ["sepal_length", "sepal_width", "petal_length", "petal_width"];
  fields.forEach((k) => { body[k] = Number($(k).value); });
  status("measure-status", t("working"));
  let response = null;
  try {
    response = await fetch("/predict", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
  } catch (_) { /* no signal: answered on the phone below, when the model is kept here */ }
  let prediction;
  if (!response || response.status === 502 || response.status === 504) {
    if (!(await keptModel()) || !onDevice.measurements) {
      status("measure-status", t("noSignal"), true);
      return;
    }
    try {
      prediction = await measureOnPhone(fields.map((k) => body[k]));
    } catch (err) {
      status("measure-status", `${t("error")}: ${err.message || err}`, true);
      return;
    }
  } else if (!response.ok) {
    status("measure-status", await errorText(response), true);
    return;
  } else {
    prediction = { ...(await response.json()).predictions[0], computed: "server" };
  }
  status("measure-status", "");
  let info = onDevice && onDevice.catalog[prediction.species];
  if (!info) {
    const species = await fetch(`/species/${encodeURIComponent(prediction.species)}`).catch(() => null);
    info = species && species.ok ? await species.json() : { nama: prediction.species };
  }
  const box = $("measure-result");
  box.replaceChildren();
  const ranked = Object.entries(prediction.probabilities).sort((a, b) => b[1] - a[1]);
  box.append(speciesCard({ probability: ranked[0][1], info }, true));
  ranked.slice(1).forEach(([id, p]) => box.append(el("p", {}, `${id}: ${Math.round(p * 100)}%`)));
  const where = prediction.computed === "phone" ? t("onPhone") : t("onServer");
  const version = `${t("model")}: ${prediction.model_name} v${prediction.model_version}, ${where}`;
  box.append(el("p", { class: "hint", id: "measure-computed" }, version));
}

function selectTab(which) {
  ["photo", "measure"].forEach((name) => {
    const on = name === which;
    $(`tab-${name}`).setAttribute("aria-selected", String(on));
    $(`tab-${name}`).tabIndex = on ? 0 : -1;
    $(`panel-${name}`).hidden = !on;
  });
}

document.addEventListener("DOMContentLoaded", () => {
  applyLanguage();
  loadClasses();
  $("keep-offline").addEventListener("click", () => keepOffline());
  if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => {});
  sendQueued();
  window.addEventListener("online", () => {
    sendQueued();
    checkForNewModel();
  });
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") checkForNewModel(); });
  setInterval(checkForNewModel, CHECK_EVERY_MS);
  if (localStorage.getItem("bunga-offline") === "1") keepOffline(true);
  $("lang").addEventListener("click", () => {
    lang = lang === "id" ? "en" : "id";
    localStorage.setItem("bunga-lang", lang);
    applyLanguage();
  });
  $("tab-photo").addEventListener("click", () => selectTab("photo"));
  $("tab-measure").addEventListener("click", () => selectTab("measure"));
  document.querySelector("[role=tablist]").addEventListener("keydown", (e) => {
    if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
      const next = $("tab-photo").getAttribute("aria-selected") === "true" ? "measure" : "photo";
      selectTab(next);
      $(`tab-${next}`).focus();
    }
  });
  $("another").addEventListener("change", () => {
    const added = $("another").files[0];
    $("another").value = "";
    if (!added || plantPhotos.length >= MAX_PLANT_PHOTOS) return;
    plantPhotos.push(added);
    identifyPhoto(new Event("submit"));
  });
  $("photo").addEventListener("change", () => {
    lastPhoto = $("photo").files[0] || null;
    plantPhotos = lastPhoto ? [lastPhoto] : []; // a new plant
    $("more-photos").hidden = true;
    $("identify").disabled = !lastPhoto;
    $("feedback-form").hidden = true; // the last photo's answer and correction do not carry over
    $("correct").value = "";
    if (lastPhoto) {
      $("preview").src = URL.createObjectURL(lastPhoto);
      $("preview").alt = lastPhoto.name || "";
      $("preview").hidden = false;
    }
  });
  $("photo-form").addEventListener("submit", identifyPhoto);
  $("confirm").addEventListener("click", () => {
    // "Yes, right": the species named, or agreement that the photo shows no flower (a vote, never a class)
    const result = lastAnswer && lastAnswer.results[0];
    const agreed = result && result.recognised ? result.top[0].species : "";
    sendFeedback(result && result.outcome === "not_a_flower" ? "not_a_flower" : agreed);
  });
  $("feedback-form").addEventListener("submit", (e) => { e.preventDefault(); sendFeedback($("correct").value); });
  $("measure-form").addEventListener("submit", identifyMeasurements);
});
