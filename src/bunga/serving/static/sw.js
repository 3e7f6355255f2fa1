// bunga's service worker: the page, its scripts, the catalogue, the reference photos and the photo
// model are kept so that a cold start with no signal still identifies photos. Every GET goes to the
// network first (the server's ETags make that a cheap 304 for the model); what is cached is the last
// good answer. The model is cached only after its bytes match its sha256 (the ETag), and under one
// key: the cache holds one model, never one per version, and a broken download never replaces it.
"use strict";

// feedback kept without signal (sent by Background Sync too); the page's sha256 check of a model
importScripts("/static/outbox.js", "/static/ondevice.js");

const CACHE = "bunga-v1";
const SHELL = [
  "/", "/static/app.js", "/static/ondevice.js", "/static/style.css", "/static/favicon.svg",
  "/static/icon-192.png", "/static/outbox.js", "/manifest.webmanifest",
];
const KEPT = [/^\/$/, /^\/static\//, /^\/manifest\.webmanifest$/, /^\/species(\/|$)/, /^\/model$/, /^\/models\/photos\//];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

async function keep(request, response) {
  const cache = await caches.open(CACHE);
  const url = new URL(request.url);
  if (url.pathname === "/models/photos/model.onnx") {
    const body = await response.clone().arrayBuffer();
    const expected = (response.headers.get("ETag") || "").replaceAll('"', "");
    if (!expected || (await bungaOnDevice.sha256Hex(body)) !== expected) return; // keep the model we have
  }
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
