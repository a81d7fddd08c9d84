// jitprov admin console: small progressive enhancements; every page works without them.
// Served from /static (CSP script-src 'self'): no inline script anywhere in the console.
(function () {
  "use strict";

  // The one-time admin link carries its code in the URL fragment, which the browser never
  // sends to the server: copy it into the sign-in form, then drop it from the address bar.
  function fillFromFragment() {
    var input = document.querySelector("[data-from-fragment]");
    if (!input || !window.location.hash || window.location.hash.length < 2) return;
    input.value = decodeURIComponent(window.location.hash.slice(1));
    if (window.history && window.history.replaceState) {
      window.history.replaceState(null, "", window.location.pathname + window.location.search);
    }
    var form = input.form;
    var button = form && form.querySelector("button[type=submit]");
    if (button) button.focus();
  }

  // A <select data-autosubmit> submits its form on change; its fallback button is hidden.
  function autosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      var form = select.form;
      if (!form) return;
      form.querySelectorAll(".js-hide").forEach(function (el) { el.hidden = true; });
      select.addEventListener("change", function () { form.submit(); });
    });
  }

  // <form data-confirm="..."> asks before a destructive action.
  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  }

  function ready() {
    fillFromFragment();
    autosubmit();
    confirmations();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
