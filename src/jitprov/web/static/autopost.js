// The demo IdP's answer, posted on to jitprov's callback (our CSP allows no inline script).
"use strict";
document.getElementById("autopost").submit();
