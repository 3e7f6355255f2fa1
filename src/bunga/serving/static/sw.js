// bunga's service worker: the page, its scripts, the catalogue and the reference photos are kept so
// that a cold start with no signal still opens the page. Every GET goes to the network first; what is
// cached is the last good answer. The models are not this worker's: the page keeps one verified graph
// per kind in its own cache ("bunga-models", ondevice.js), which this worker never touches.
"use strict";

importScripts("/static/outbox.js"); // feedback kept without signal, sent by Background Sync too

const CACHE = "bunga-v2";
const MODELS = "bunga-models";
const SHELL = [
  "/", "/static/app.js", "/static/resample.js", "/static/ondevice.js", "/static/style.css", "/static/favicon.svg",
  "/static/icon-192.png", "/static/outbox.js", "/manifest.webmanifest",
];
const KEPT = [/^\/$/, /^\/static\//, /^\/manifest\.webmanifest$/, /^\/species(\/|$)/, /^\/model$/];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE && k !== MODELS).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

async function keep(request, response) {
  const cache = await caches.open(CACHE);
  const url = new URL(request.url);
  await cache.put(url.pathname + url.search, response.clone());
}

async function networkFirst(request) {
  try {
    const response = await fetch(request);
    if (response.ok) await keep(request, response);
    return response;
  } catch (err) {
    const url = new URL(request.url);
    const cached = await caches.match(url.pathname + url.search, { ignoreVary: true });
    if (cached) return cached;
    throw err;
  }
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!KEPT.some((pattern) => pattern.test(url.pathname))) return;
  event.respondWith(networkFirst(event.request));
});

self.addEventListener("sync", (event) => {
  if (event.tag === "bunga-feedback") event.waitUntil(bungaOutbox.flush());
});
