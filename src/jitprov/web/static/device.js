// Shared device: counts down to the idle lock and to the shift end, then reloads /device;
// the server, which keeps the session's last activity (requests to apps count), decides
// whether the lock screen shows. Served from our origin (our CSP allows no inline script).
"use strict";
(function () {
  const main = document.getElementById("device-session");
  if (!main) return;
  const loaded = Date.now();
  const idleMs = (parseInt(main.dataset.idleSeconds, 10) || 300) * 1000;
  const shiftEnd = main.dataset.shiftEnd ? Date.parse(main.dataset.shiftEnd) : NaN;
  const idleOut = document.getElementById("idle-remaining");
  const shiftOut = document.getElementById("shift-remaining");
  function clock(ms) {
    const total = Math.max(0, Math.ceil(ms / 1000));
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    const mm = (h > 0 && m < 10 ? "0" : "") + m, ss = (s < 10 ? "0" : "") + s;
    return (h > 0 ? h + ":" : "") + mm + ":" + ss;
  }
  function tick() {
    const now = Date.now();
    const idleLeft = loaded + idleMs - now;
    if (idleOut) {
      idleOut.textContent = clock(idleLeft);
      idleOut.parentElement.classList.toggle("soon", idleLeft <= 60000);
    }
    if (shiftOut && !isNaN(shiftEnd)) {
      shiftOut.textContent = clock(shiftEnd - now);
      shiftOut.parentElement.classList.toggle("soon", shiftEnd - now <= 15 * 60000);
    }
    if (idleLeft <= -1000 || (!isNaN(shiftEnd) && now >= shiftEnd + 1000)) {
      window.location.assign("/device");
      return;
    }
    setTimeout(tick, 1000 - (now % 1000) + 5);
  }
  tick();
})();
