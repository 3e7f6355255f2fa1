// bunga review page for garden staff: one key per photo. The curator's token stays in this tab's
// sessionStorage and travels only in the Authorization header (never in a URL).
"use strict";

const TEXT = {
  id: {
    title: "Tinjauan foto pengunjung", token: "Token kurator", signin: "Masuk", filterBand: "Tampilkan",
    allBands: "Semua (belum pasti dulu)", bandPossible: "Belum pasti", bandNotRecognised: "Tidak dikenali",
    bandNotFlower: "Bukan bunga", bandSure: "Pasti", notFlower: "Bukan bunga (N)", reject: "Tolak (R)",
    otherFlowers: "Bunga lain, tidak ada di katalog (O)", otherFlowersName: "Bunga lain",
    keysHint: "Angka 1-9: pilih spesies lain. Enter: terima usulan.", empty: "Tidak ada foto yang menunggu keputusan.",
    accept: "Terima", nothingProposed: "Tidak ada usulan: pilih spesies (1-9)", model: "Model",
    votes: "Suara pengunjung", dontKnow: "tidak tahu", left: "tersisa", saved: "Tersimpan", wrongToken: "Token salah",
    switchTo: "Switch to English", addSpecies: "Tambah spesies ke katalog", spId: "Kode spesies (huruf kecil, _)",
    spNama: "Nama (Bahasa Indonesia)", spName: "Nama (Inggris)", spLatin: "Nama Latin", spFamili: "Famili",
    spDeskripsi: "Deskripsi (Bahasa Indonesia)", spDescription: "Deskripsi (Inggris)", spPhoto: "Foto rujukan",
    spSave: "Simpan spesies", spSaved: "Spesies tersimpan", searchSpecies: "Cari spesies lain di katalog",
    visitorSaid: "Halaman pengunjung mengklaim", notFlowerProposed: "Bukan bunga",
    plant: "Foto dari tanaman yang sama: {n}. Satu label memberi label semuanya; N dan R hanya untuk foto ini.",
  },
  en: {
    title: "Review visitors' photos", token: "Curator token", signin: "Sign in", filterBand: "Show",
    allBands: "All (doubtful first)", bandPossible: "Not sure", bandNotRecognised: "Not recognised",
    bandNotFlower: "Not a flower", bandSure: "Sure", notFlower: "Not a flower (N)", reject: "Reject (R)",
    otherFlowers: "Another species, not in the catalogue (O)", otherFlowersName: "Another species",
    keysHint: "Keys 1-9: pick another species. Enter: accept the proposal.", empty: "No photo is waiting for a decision.",
    accept: "Accept", nothingProposed: "Nothing proposed: pick a species (1-9)", model: "Model",
    votes: "Visitors' votes", dontKnow: "don't know", left: "left", saved: "Saved", wrongToken: "Wrong token",
    switchTo: "Ganti ke Bahasa Indonesia", addSpecies: "Add a species to the catalogue",
    spId: "Species id (lower case, _)", spNama: "Name (Bahasa Indonesia)", spName: "Name (English)", spLatin: "Latin name", spFamili: "Family",
    spDeskripsi: "Description (Bahasa Indonesia)", spDescription: "Description (English)", spPhoto: "Reference photo",
    spSave: "Save species", spSaved: "Species saved", searchSpecies: "Search the rest of the catalogue",
    visitorSaid: "The visitor's page claims", notFlowerProposed: "Not a flower",
    plant: "Photos of the same plant: {n}. One label labels them all; N and R apply to this photo only.",
  },
};
let lang = localStorage.getItem("bunga-lang") === "en" ? "en" : "id";
let queue = [];
let species = [];
let photoUrl = null;
const $ = (id) => document.getElementById(id);
const t = (key) => TEXT[lang][key] || key;
const token = () => sessionStorage.getItem("bunga-curator") || "";

function status(message, isError = false) {
  $("status").textContent = message;
  $("status").classList.toggle("error", isError);
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${token()}` };
  return fetch(path, { ...options, headers });
}

function applyLanguage() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  $("lang").textContent = lang === "id" ? "EN" : "ID";
  $("lang").setAttribute("aria-label", t("switchTo"));
  show();
}

function name(id) {
  if (id === "other_flowers") return t("otherFlowersName");
  const entry = species.find((s) => s.id === id);
  return entry ? entry.nama : (id || "").replaceAll("_", " ");
}

function choice(s, index) {
  const item = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "secondary";
  button.dataset.species = s.id;
  button.textContent = `${index !== null && index < 9 ? `${index + 1}. ` : ""}${s.nama}`;
  button.addEventListener("click", () => decide("label", s.id));
  if (s.photo) {
    const img = document.createElement("img");
    img.src = s.photo;
    img.alt = "";
    img.loading = "lazy";
    img.addEventListener("error", () => img.remove()); // a species without a reference photo yet
    item.append(img);
  }
  item.append(button);
  return item;
}

// Photo species first, each with a key and a thumbnail: the served model's, then those curators added
// (the next model learns them). The rest of the catalogue (measurement-only species and others) is
// found by typing in the search box.
let others = [];
async function loadSpecies() {
  const [model, catalog] = await Promise.all([fetch("/model"), fetch("/species")]);
  const classes = model.ok ? ((await model.json()).models.photos || { classes: [] }).classes : [];
  const served = classes.filter((id) => id !== "other_flowers"); // the pool has its own key (O)
  const entries = catalog.ok ? await catalog.json() : [];
  const byId = Object.fromEntries(entries.map((s) => [s.id, s]));
  const added = entries.filter((s) => s.added && !served.includes(s.id));
  species = [...served.map((id) => byId[id] || { id, nama: id }), ...added]
    .map((s) => ({ ...s, photo: `/species/${s.id}/photo` }));
  others = entries.filter((s) => !species.some((p) => p.id === s.id)).sort((a, b) => a.nama.localeCompare(b.nama));
  $("species").replaceChildren(...species.map((s, i) => choice(s, i)));
  searchSpecies();
}

function searchSpecies() {
  const typed = $("species-search").value.trim().toLowerCase();
  const found = typed ? others.filter((s) => `${s.id} ${s.nama} ${s.latin || ""}`.toLowerCase().includes(typed)) : [];
  $("species-more").replaceChildren(...found.slice(0, 20).map((s) => choice(s, null)));
}

async function loadQueue() {
  const band = $("band-filter").value;
  const response = await api(`/review/queue${band ? `?band=${encodeURIComponent(band)}` : ""}`);
  if (response.status === 401 || response.status === 403) {
    sessionStorage.removeItem("bunga-curator");
    $("signin").hidden = false;
    $("review").hidden = true;
    status(t("wrongToken"), true);
    return;
  }
  queue = response.ok ? await response.json() : [];
  $("signin").hidden = true;
  $("review").hidden = false;
  await show();
}

async function show() {
  const current = queue[0];
  $("item").hidden = !current;
  $("empty").hidden = Boolean(current);
  $("progress").textContent = `${queue.length} ${t("left")}`;
  if (!current) return;
  const bands = { sure: "bandSure", possible: "bandPossible", not_recognised: "bandNotRecognised", not_a_flower: "bandNotFlower" };
  const bandName = (b) => t(bands[b] || b);
  // the server's own answer when the photo arrived; the visitor's page's claim beside it, marked as such
  const said = current.species ? name(current.species) : "";
  const answer = current.band ? `${t("model")}: ${[said, `(${bandName(current.band)})`].filter(Boolean).join(" ")}` : "";
  $("answer").textContent = answer;
  const claim = [current.claimed_species ? name(current.claimed_species) : "", current.claimed_band ? `(${bandName(current.claimed_band)})` : ""];
  $("claimed").textContent = claim.some(Boolean) ? `${t("visitorSaid")}: ${claim.filter(Boolean).join(" ")}` : "";
  const voteName = (label) => (label === "not_a_flower" ? t("notFlowerProposed") : label ? name(label) : t("dontKnow"));
  const votes = Object.entries(current.votes).map(([label, n]) => `${voteName(label)} × ${n}`);
  $("votes").textContent = votes.length ? `${t("votes")}: ${votes.join(", ")}` : "";
  $("proposed").textContent = current.proposed ? voteName(current.proposed) : t("nothingProposed");
  $("accept").textContent = `${t("accept")} (Enter)`;
  $("accept").disabled = !current.proposed;
  $("item").dataset.sha = current.sha256;
  showPlant(current);
  const response = await api(`/review/photos/${current.sha256}`);
  if (response.ok && queue[0] === current) {
    if (photoUrl) URL.revokeObjectURL(photoUrl);
    photoUrl = URL.createObjectURL(await response.blob());
    $("photo").src = photoUrl;
  }
}

// The photos of one plant wait together: shown beside the current one, labelled together.
// The thumbnails are fetched first and shown in one step, and only by the newest call: a decision
// made while they load never leaves a half-drawn or doubled row.
let plantUrls = [];
let plantDrawing = 0;
async function showPlant(current) {
  const drawing = ++plantDrawing;
  plantUrls.forEach((u) => URL.revokeObjectURL(u));
  plantUrls = [];
  const shas = plantOf(current);
  $("plant").hidden = shas.length < 2;
  $("plant-photos").replaceChildren();
  if (shas.length < 2) return;
  $("plant-hint").textContent = t("plant").replace("{n}", shas.length);
  const items = [];
  const urls = [];
  for (const sha of shas) {
    const response = await api(`/review/photos/${sha}`);
    if (!response.ok) continue;
    urls.push(URL.createObjectURL(await response.blob()));
    const item = document.createElement("li");
    item.append(Object.assign(document.createElement("img"), { src: urls.at(-1), alt: "" }));
    items.push(item);
  }
  if (drawing !== plantDrawing || queue[0] !== current) {
    urls.forEach((u) => URL.revokeObjectURL(u));
    return;
  }
  plantUrls = urls;
  $("plant-photos").replaceChildren(...items);
}

// The queued photos of the current photo's plant (itself first); just itself when it came alone.
function plantOf(current) {
  const together = (current.observation_photos || []).filter((sha) => queue.some((q) => q.sha256 === sha));
  return together.length > 1 ? [current.sha256, ...together.filter((sha) => sha !== current.sha256)] : [current.sha256];
}

// Keys are queued: a curator may press the next key while the last decision is being saved, and each
// decision applies to the photo at the head of the queue when its turn comes.
let chain = Promise.resolve();
function decide(decision, label = null) {
  chain = chain.then(() => decideNow(decision, label)).catch((err) => status(String(err), true));
  return chain;
}

async function decideNow(decision, label) {
  const current = queue[0];
  if (!current) return;
  if (decision === "accept") {
    [decision, label] = current.proposed === "not_a_flower" ? ["not_a_flower", null] : ["label", current.proposed];
  }
  if (decision === "label" && !label) return;
  // a species labels every queued photo of the plant; "not a flower" and "reject" this photo only
  const shas = decision === "label" ? plantOf(current) : [current.sha256];
  for (const sha of shas) {
    const response = await api("/review/decisions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sha256: sha, decision, label }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      status(typeof body.detail === "string" ? body.detail : `${response.status}`, true);
      return;
    }
    queue = queue.filter((q) => q.sha256 !== sha);
  }
  status(`${t("saved")}: ${decision === "label" ? name(label) : decision}${shas.length > 1 ? ` × ${shas.length}` : ""}`);
  show(); // the next photo loads in the background; the next key does not wait for it
}

document.addEventListener("keydown", (event) => {
  if ($("review").hidden || ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName)) return;
  const current = queue[0];
  if (!current) return;
  if (event.key === "Enter" || event.key === "a") {
    event.preventDefault();
    decide("accept");
  } else if (event.key === "n") {
    decide("not_a_flower");
  } else if (event.key === "r") {
    decide("reject");
  } else if (event.key === "o") {
    decide("label", "other_flowers");
  } else if (/^[1-9]$/.test(event.key) && species[Number(event.key) - 1]) {
    decide("label", species[Number(event.key) - 1].id);
  }
});

$("signin").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem("bunga-curator", $("token").value.trim());
  $("token").value = "";
  await loadQueue();
});
$("accept").addEventListener("click", () => decide("accept"));
$("not-flower").addEventListener("click", () => decide("not_a_flower"));
$("reject").addEventListener("click", () => decide("reject"));
$("other-flowers").addEventListener("click", () => decide("label", "other_flowers"));
$("band-filter").addEventListener("change", loadQueue);
$("species-search").addEventListener("input", searchSpecies);
$("species-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData($("species-form"));
  if (!$("sp-file").files.length) form.delete("file");
  for (const [key, value] of [...form.entries()]) { // an empty field keeps what the species has
    if (typeof value === "string" && !value.trim()) form.delete(key);
  }
  const response = await api("/review/species", { method: "POST", body: form });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    status(typeof body.detail === "string" ? body.detail : `${response.status}`, true);
    return;
  }
  status(`${t("spSaved")}: ${body.nama} (${body.id})`);
  $("species-form").reset();
  await loadSpecies(); // the new species can be picked at once
});
$("lang").addEventListener("click", () => {
  lang = lang === "id" ? "en" : "id";
  localStorage.setItem("bunga-lang", lang);
  applyLanguage();
});

applyLanguage();
loadSpecies().then(() => (token() ? loadQueue() : null));
