// The demo IdP's presets: picking a demo user fills the form (our CSP allows no inline script).
"use strict";
(function () {
  const users = JSON.parse(document.getElementById("demo-users").textContent);
  document.getElementById("preset").addEventListener("change", function (ev) {
    const u = users[ev.target.value]; if (!u) return;
    for (const f of ["email", "name", "department"]) document.getElementById(f).value = u[f] || "";
    document.getElementById("groups").value = (u.groups || []).join(", ");
    document.getElementById("email_verified").checked = !!u.email_verified;
    document.getElementById("subject").value = "";
  });
})();
