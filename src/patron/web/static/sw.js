// The wallet's service worker: the wallet keeps working offline with the last card it
// showed (network first, the cache when there is none), and push messages become
// notifications.
"use strict";

const CACHE = "patron-wallet-v1";
const PAGES = ["/wallet", "/wallet/card"];

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys().then((names) => Promise.all(
    names.filter((name) => name !== CACHE).map((name) => caches.delete(name))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  const page = PAGES.includes(url.pathname);
  const asset = url.pathname.startsWith("/static/");
  if (!page && !asset) return;
  event.respondWith(fetch(request).then((response) => {
    if (response.ok && (page || asset)) {
      const copy = response.clone();
      caches.open(CACHE).then((cache) => cache.put(page ? url.pathname : request, copy));
    }
    return response;
  }).catch(() => caches.match(page ? url.pathname : request)
    .then((cached) => cached || Response.error())));
});

self.addEventListener("push", (event) => {
  let message = {};
  try { message = event.data ? event.data.json() : {}; } catch (error) { message = {}; }
  const title = message.title || "Patron";
  event.waitUntil(self.registration.showNotification(title, {
    body: message.body || "", tag: message.tag, data: { url: message.url || "/wallet" },
    icon: "/static/icons/icon-192.png", badge: "/static/icons/icon-192.png" }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = (event.notification.data && event.notification.data.url) || "/wallet";
  event.waitUntil(self.clients.openWindow(target));
});
