// Patron's pages: Alpine components (the CSP build evaluates no inline code, so each
// component is registered here) and the wallet's service worker and push registration.
"use strict";

document.addEventListener("alpine:init", () => {
  const Alpine = window.Alpine;

  // Share the referral link with the phone's share sheet, or copy it.
  Alpine.data("share", () => ({
    done: false,
    share() {
      const link = this.$el.dataset.link;
      if (navigator.share) {
        navigator.share({ url: link, title: document.title }).catch(() => {});
      } else if (navigator.clipboard) {
        navigator.clipboard.writeText(link).then(() => { this.done = true; });
      }
    },
  }));

  // A dialog-like confirmation before a destructive form is sent.
  Alpine.data("confirming", () => ({
    asked: false,
    ask() { this.asked = true; },
    cancel() { this.asked = false; },
  }));

  // Print the receipt.
  Alpine.data("printer", () => ({
    print() { window.print(); },
  }));

  // The register's camera: one frame, sent to the server to decode (as POST /v1/identify
  // "image" takes it).
  Alpine.data("camera", () => ({
    on: false,
    stream: null,
    get supported() { return !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia); },
    async start() {
      try {
        this.stream = await navigator.mediaDevices.getUserMedia({
          video: { facingMode: "environment" }, audio: false });
        this.$refs.video.srcObject = this.stream;
        await this.$refs.video.play();
        this.on = true;
      } catch (error) {
        this.on = false;
      }
    },
    capture() {
      const video = this.$refs.video;
      const canvas = this.$refs.canvas;
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      canvas.getContext("2d").drawImage(video, 0, 0);
      this.$refs.image.value = canvas.toDataURL("image/jpeg", 0.9);
      this.stream.getTracks().forEach((track) => track.stop());
      this.$el.closest("form").requestSubmit();
    },
  }));

  // Web push for the wallet: subscribe with the server's VAPID key, send the subscription.
  Alpine.data("push", () => ({
    state: "idle",
    get supported() { return "serviceWorker" in navigator && "PushManager" in window; },
    async enable() {
      try {
        const key = this.$el.dataset.key;
        const registration = await navigator.serviceWorker.ready;
        const subscription = await registration.pushManager.subscribe({
          userVisibleOnly: true, applicationServerKey: urlBase64(key) });
        const response = await fetch("/wallet/push", {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken() },
          body: JSON.stringify(subscription.toJSON()) });
        this.state = response.ok ? "on" : "failed";
      } catch (error) {
        this.state = "failed";
      }
    },
  }));
});

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

function urlBase64(text) {
  const padded = (text + "===".slice((text.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

// htmx sends the CSRF token with every request it makes.
document.addEventListener("htmx:configRequest", (event) => {
  event.detail.headers["X-CSRF-Token"] = csrfToken();
});

// The wallet works offline: its service worker keeps the last card it showed.
if ("serviceWorker" in navigator && document.body && document.body.dataset.serviceWorker) {
  navigator.serviceWorker.register(document.body.dataset.serviceWorker, { scope: "/wallet" })
    .catch(() => {});
}

function showConnection() {
  document.body.classList.toggle("is-offline", !navigator.onLine);
}
window.addEventListener("online", showConnection);
window.addEventListener("offline", showConnection);
document.addEventListener("DOMContentLoaded", showConnection);
