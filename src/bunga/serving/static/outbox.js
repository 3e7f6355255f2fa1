// Feedback given without signal: kept in IndexedDB and sent when the phone is online again (on the
// next visit, when the page sees the network come back, or by Background Sync in the service worker).
// Each item carries the idempotency key it was first sent with, so a retry is recorded once and
// charged to the inbox's quota once; a 429 stops the queue until its Retry-After has passed.
"use strict";

const bungaOutbox = (() => {
  const DB = "bunga";
  const STORE = "feedback";
  const ANSWERS = "answers"; // answers computed on the phone, for the prediction log (no photo)
  const MAX_SIDE = 1600; // the upload stays useful for training, never the model's 224 px input
  let waitUntil = 0;

  function open() {
    return new Promise((resolve, reject) => {
      const request = indexedDB.open(DB, 2);
      request.onupgradeneeded = () => {
        const db = request.result;
        if (!db.objectStoreNames.contains(STORE)) db.createObjectStore(STORE, { keyPath: "key" });
        if (!db.objectStoreNames.contains(ANSWERS)) db.createObjectStore(ANSWERS, { autoIncrement: true });
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }

  async function run(mode, work, name = STORE) {
    const db = await open();
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction(name, mode);
        const result = work(tx.objectStore(name));
        tx.oncomplete = () => resolve(result.result);
        tx.onerror = () => reject(tx.error);
      });
    } finally {
      db.close();
    }
  }

  const add = (item) => run("readwrite", (store) => store.put(item));
  const all = () => run("readonly", (store) => store.getAll());
  const remove = (key) => run("readwrite", (store) => store.delete(key));
  const count = () => run("readonly", (store) => store.count());
  const logAnswer = (record) => run("readwrite", (store) => store.add(record), ANSWERS);
  const answersWaiting = () => run("readonly", (store) => store.count(), ANSWERS);

  // The answers computed without signal, to the prediction log in batches of at most 256.
  async function flushAnswers() {
    const keys = await run("readonly", (store) => store.getAllKeys(null, 256), ANSWERS);
    if (!keys.length) return 0;
    const records = await run("readonly", (store) => store.getAll(null, 256), ANSWERS);
    const response = await fetch("/predictions/phone", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ records }),
    });
    if (response.status === 429 || response.status >= 500) return 0;
    await run("readwrite", (store) => store.delete(IDBKeyRange.bound(keys[0], keys[keys.length - 1])), ANSWERS);
    return records.length;
  }

  // The photo as taken, or at most MAX_SIDE px on its long side (JPEG) when larger.
  async function forUpload(photo) {
    const bitmap = await createImageBitmap(photo);
    const scale = MAX_SIDE / Math.max(bitmap.width, bitmap.height);
    if (scale >= 1) {
      bitmap.close();
      return photo;
    }
    const canvas = new OffscreenCanvas(Math.round(bitmap.width * scale), Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    return canvas.convertToBlob({ type: "image/jpeg", quality: 0.9 });
  }

  function send(item) {
    const form = new FormData();
    // photos of one plant: every photo, citing the observation id the server gave them
    (item.photos || [item.photo]).forEach((photo, i) => form.append("file", photo, `photo${i}.jpg`));
    for (const field of ["label", "predicted", "band", "observation_id"]) if (item[field]) form.append(field, item[field]);
    return fetch("/feedback", { method: "POST", body: form, headers: { "Idempotency-Key": item.key } });
  }

  // Send what is queued, oldest first; how many feedback items were delivered (or refused for good).
  async function flush() {
    if (Date.now() < waitUntil) return 0;
    try {
      await flushAnswers();
    } catch (_) { /* still no signal: the answers wait too */ }
    const items = (await all()).sort((a, b) => a.at - b.at);
    let done = 0;
    for (const item of items) {
      let response;
      try {
        response = await send(item);
      } catch (_) {
        return done; // still no signal
      }
      if (response.status === 429) {
        waitUntil = Date.now() + 1000 * (Number(response.headers.get("Retry-After")) || 60);
        return done;
      }
      if (response.status >= 500) return done; // the server's trouble: try again later
      await remove(item.key); // stored (2xx), or refused for good (4xx): never sent again
      done += 1;
    }
    return done;
  }

  return { add, all, count, flush, forUpload, send, logAnswer, answersWaiting };
})();
