// Passkeys (WebAuthn) for jitprov: enrol and sign in. Served from our origin (our CSP allows
// no inline script). Options come from the server as WebAuthn L3 JSON; binary fields are
// base64url, converted here so older browsers without parse*FromJSON work too.
"use strict";
(function () {
  function toBytes(b64url) {
    const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    const raw = atob(b64 + "===".slice((b64.length + 3) % 4));
    return Uint8Array.from(raw, function (c) { return c.charCodeAt(0); });
  }
  function toB64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let raw = "";
    for (let i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function creationOptions(o) {
    o.challenge = toBytes(o.challenge);
    o.user.id = toBytes(o.user.id);
    o.excludeCredentials = (o.excludeCredentials || []).map(function (c) {
      return Object.assign({}, c, { id: toBytes(c.id) });
    });
    return o;
  }
  function requestOptions(o) {
    o.challenge = toBytes(o.challenge);
    o.allowCredentials = (o.allowCredentials || []).map(function (c) {
      return Object.assign({}, c, { id: toBytes(c.id) });
    });
    return o;
  }
  function credentialJSON(cred) {
    const r = cred.response;
    const response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    }
    if (r.authenticatorData) {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      if (r.userHandle) response.userHandle = toB64url(r.userHandle);
    }
    return {
      id: cred.id, rawId: toB64url(cred.rawId), type: cred.type, response: response,
      clientExtensionResults: cred.getClientExtensionResults ? cred.getClientExtensionResults() : {},
      authenticatorAttachment: cred.authenticatorAttachment || undefined
    };
  }
  async function post(url, body) {
    const res = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(body || {})
    });
    const data = await res.json().catch(function () { return {}; });
    if (!res.ok) {
      const failure = new Error(data.message || ("HTTP " + res.status));
      failure.code = data.error;
      throw failure;
    }
    return data;
  }
  // the page's words, in its language (data-msg-* on #passkey-status), English without them
  const english = {
    create: "Follow your browser's prompt to create a passkey…",
    use: "Follow your browser's prompt to use your passkey…",
    added: "Passkey added:",
    unsupported: "This browser does not support passkeys.",
    cancelled: "The passkey prompt was closed or timed out. Try again."
  };
  function msg(key) {
    const el = document.getElementById("passkey-status");
    const own = el && el.dataset["msg" + key.charAt(0).toUpperCase() + key.slice(1)];
    return own || english[key];
  }
  // what an error code means for the reader, in the page's language; the server's detail
  // (English, for the administrator) follows in brackets
  function adviceFor(code) {
    const el = document.getElementById("passkey-status");
    try {
      const all = JSON.parse((el && el.dataset.advice) || "{}");
      return Object.prototype.hasOwnProperty.call(all, code) ? all[code] : "";
    } catch (e) { return ""; }
  }
  function status(text, failed) {
    const el = document.getElementById("passkey-status");
    if (el) { el.textContent = text; el.className = failed ? "error" : ""; }
  }
  async function enrol(button) {
    const nameField = document.getElementById("passkey-name");
    status(msg("create"));
    const options = await post("/passkeys/register/options", {});
    const cred = await navigator.credentials.create({ publicKey: creationOptions(options) });
    const saved = await post("/passkeys/register", {
      credential: credentialJSON(cred), name: nameField ? nameField.value : ""
    });
    status(msg("added") + " " + saved.name);
    const after = button.dataset.after;
    window.location.assign(after ? after + encodeURIComponent(saved.id) : saved.redirect);
  }
  async function signIn(button) {
    const endpoint = button.dataset.endpoint;
    status(msg("use"));
    const options = await post(endpoint + "/options", {});
    const cred = await navigator.credentials.get({ publicKey: requestOptions(options) });
    const result = await post(endpoint, {
      credential: credentialJSON(cred), return_to: button.dataset.returnTo || "/"
    });
    window.location.assign(result.redirect);
  }
  const actions = { "enrol": enrol, "sign-in": signIn };
  document.querySelectorAll("[data-passkey-action]").forEach(function (button) {
    button.addEventListener("click", function () {
      button.disabled = true;
      actions[button.dataset.passkeyAction](button).catch(function (err) {
        if (err && err.name === "NotAllowedError") { status(msg("cancelled"), true); return; }
        const detail = err && err.message ? err.message : String(err);
        const advice = err && err.code ? adviceFor(err.code) : "";
        status(advice ? advice + " (" + detail + ")" : detail, true);
      }).finally(function () { button.disabled = false; });
    });
  });
  if (!window.PublicKeyCredential) status(msg("unsupported"), true);
})();
