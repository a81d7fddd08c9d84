// The SAML ACS bounce (see docs/decisions.md, "SAML ACS and SameSite"): re-POST the
// identity provider's answer to our own ACS from our own origin, so the browser sends the
// SameSite=Lax cookie that binds the sign-in to it. Served from our origin: our CSP allows
// no inline script.
"use strict";
document.getElementById("saml-bounce").submit();
