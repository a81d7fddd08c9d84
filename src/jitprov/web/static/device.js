// Shared device: once the tenant's idle limit has passed since this page loaded, reload it;
// the server, which keeps the session's last activity (requests to apps count), decides
// whether the lock screen shows.
"use strict";
(function () {
  const main = document.getElementById("device-session");
  if (!main) return;
  const idleMs = (parseInt(main.dataset.idleSeconds, 10) || 300) * 1000 + 1000;
  setTimeout(function () { window.location.assign("/device"); }, idleMs);
})();
