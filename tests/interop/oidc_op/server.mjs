// A real OpenID Provider (panva/oidc-provider, OpenID Certified) for jitprov's interop tests.
//
// TEST ONLY: in-memory storage, no passwords, http on loopback.
//
// Usage:  node server.mjs <config.json> [port]      (port also from $OIDC_OP_PORT; default 0 = any)
//
// config.json:
//   {
//     "clients": [ <oidc-provider client metadata>, ... ],
//     "accounts_file": "/abs/path/accounts.json",     // { "<sub>": { "email": ..., ... }, ... }
//     "acr_values": ["urn:example:mfa", ...]           // optional: the acr values supported
//   }
//
// The accounts file is re-read on every account lookup, so a test can change a user's claims
// between logins. Prints exactly one line "READY <issuer>" on stdout once listening; everything
// else goes to stderr.
//
// Interactions (no browser, no HTML):
//   GET  /interaction/<uid>  -> 200 JSON {"uid", "prompt": "login"|"consent", "reasons", ...}
//   POST /interaction/<uid>  (application/x-www-form-urlencoded)
//        prompt=login&login=<sub>   log in as <sub>; an unknown <sub> ends the flow with
//                                   error=access_denied at the client's redirect_uri
//                                   (&acr=<value>&amr=<m1,m2>: how the user authenticated,
//                                   returned as the ID token's acr and amr claims)
//        prompt=consent             grant everything that was requested
//        prompt=abort               end the flow with error=access_denied
//   Each POST answers 303 to the authorization endpoint's resume URL, as a browser form would.
//
// Logout (RP-Initiated Logout 1.0 and Back-Channel Logout 1.0 are enabled):
//   GET  /session/end?...      -> 200 JSON {"prompt": "logout", "action", "xsrf"} (with an OP
//                                 session) instead of the confirmation page
//   POST <action> xsrf=<xsrf>&logout=yes
//                              ends the OP session; first POSTs a logout token to every
//                              client of the session that registered backchannel_logout_uri
//                              (and waits for the answers), then 303 to the
//                              post_logout_redirect_uri (with state) or to a JSON success page.
//   Back-channel outcomes are logged on stderr: "backchannel.success <client>" or
//   "backchannel.error <client> <message>".

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

function fail(message) {
  process.stderr.write(`oidc_op: ${message}\n`);
  process.exit(2);
}

const configPath = process.argv[2];
if (!configPath) fail('usage: node server.mjs <config.json> [port]');

let config;
try {
  config = JSON.parse(readFileSync(configPath, 'utf8'));
} catch (err) {
  fail(`cannot read config ${configPath}: ${err.message}`);
}
const accountsFile = config.accounts_file;
if (typeof accountsFile !== 'string') fail('config.accounts_file (a path) is required');
const clients = config.clients ?? [];
if (!Array.isArray(clients)) fail('config.clients must be a list');

const port = Number(process.argv[3] ?? process.env.OIDC_OP_PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad port ${port}`);

function loadAccounts() {
  // Read on every call: tests rewrite the file between logins.
  return JSON.parse(readFileSync(accountsFile, 'utf8'));
}

function findAccountClaims(sub) {
  const accounts = loadAccounts();
  return Object.prototype.hasOwnProperty.call(accounts, sub) ? accounts[sub] : undefined;
}

function signingKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const kid = () => randomBytes(8).toString('hex');
  return [
    { ...rsa, kid: `rs256-${kid()}`, use: 'sig', alg: 'RS256' },
    { ...ec, kid: `es256-${kid()}`, use: 'sig', alg: 'ES256' },
  ];
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function buildProvider(issuer) {
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: signingKeys() },
    cookies: {
      keys: [randomBytes(32).toString('hex')],
      // Not `secure`: oidc-provider only marks cookies secure when the request itself is https.
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    async findAccount(ctx, sub) {
      if (findAccountClaims(sub) === undefined) return undefined;
      return {
        accountId: sub,
        async claims() {
          // Re-read: the claims at the time of the token/userinfo request.
          return { ...(findAccountClaims(sub) ?? {}), sub };
        },
      };
    },
    claims: {
      // amr: released with openid when the login set it (prompt=login&amr=...)
      openid: ['sub', 'amr'],
      email: ['email', 'email_verified'],
      profile: [
        'name', 'given_name', 'family_name', 'middle_name', 'nickname', 'preferred_username',
        'picture', 'locale', 'zoneinfo', 'updated_at',
      ],
      groups: ['groups', 'department'],
    },
    scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
    // config.acr_values: the acr values the OP supports (discovery's acr_values_supported);
    // without any, oidc-provider puts no acr in ID tokens
    acrValues: config.acr_values ?? [],
    // Put the claims of the requested scopes into the ID token too, not only into userinfo.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false }, // replaced by the JSON interactions below
      userinfo: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: {
        enabled: true,
        // JSON instead of the confirmation page: the tests drive it as a browser would.
        async logoutSource(ctx, form) {
          const action = /action="([^"]+)"/.exec(form)?.[1];
          const xsrf = /name="xsrf" value="([^"]+)"/.exec(form)?.[1];
          ctx.type = 'json';
          ctx.body = { prompt: 'logout', action, xsrf };
        },
        async postLogoutSuccessSource(ctx) {
          ctx.type = 'json';
          ctx.body = { signed_out: true, client_id: ctx.oidc.client?.clientId ?? null };
        },
      },
    },
    // TEST ONLY: the RP under test listens on loopback, which oidc-provider's SSRF guard
    // refuses for back-channel logout requests; drop the guarded dispatcher.
    fetch: (url, options) => {
      const { dispatcher, ...rest } = options;
      return globalThis.fetch(url, rest);
    },
    interactions: {
      url: (ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    async renderError(ctx, out) {
      ctx.type = 'json';
      ctx.body = out;
    },
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
      RefreshToken: 3600,
    },
  });

  provider.use(async (ctx, next) => {
    const match = /^\/interaction\/([^/]+)$/.exec(ctx.path);
    if (!match) return next();

    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const { uid, prompt, params, session } = details;
    if (uid !== match[1]) ctx.throw(400, 'interaction uid does not match the interaction cookie');

    if (ctx.method === 'GET') {
      ctx.set('Cache-Control', 'no-store');
      ctx.type = 'json';
      ctx.body = {
        uid,
        prompt: prompt.name,
        reasons: prompt.reasons,
        details: prompt.details,
        client_id: params.client_id,
        login_hint: params.login_hint ?? null,
        acr_values: params.acr_values ?? null,
        scope: params.scope ?? null,
        account_id: session?.accountId ?? null,
      };
      return undefined;
    }
    if (ctx.method !== 'POST') ctx.throw(405);

    const form = await readForm(ctx.req);
    const action = form.get('prompt');
    let result;
    let merge = false;
    if (action === 'abort') {
      result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
    } else if (action !== prompt.name) {
      ctx.throw(400, `expected prompt=${prompt.name}, got prompt=${action}`);
    } else if (action === 'login') {
      const login = form.get('login') ?? '';
      result = findAccountClaims(login) === undefined
        ? { error: 'access_denied', error_description: 'unknown account' }
        : {
          login: {
            accountId: login,
            // how the user "signed in": acr=<value>, amr=<comma-separated methods>
            ...(form.get('acr') ? { acr: form.get('acr') } : {}),
            ...(form.get('amr') ? { amr: form.get('amr').split(',') } : {}),
          },
        };
    } else if (action === 'consent') {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const missing = prompt.details;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      if (missing.missingResourceScopes) {
        for (const [indicator, scope] of Object.entries(missing.missingResourceScopes)) {
          grant.addResourceScope(indicator, scope.join(' '));
        }
      }
      result = { consent: { grantId: await grant.save() } };
      merge = true;
    } else {
      ctx.throw(501, `prompt ${prompt.name} is not supported`);
    }

    const location = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: merge,
    });
    ctx.status = 303;
    ctx.redirect(location);
    return undefined;
  });

  provider.on('backchannel.success', (ctx, client) => {
    process.stderr.write(`backchannel.success ${client.clientId}\n`);
  });
  provider.on('backchannel.error', (ctx, err, client) => {
    process.stderr.write(`backchannel.error ${client.clientId} ${err.message}\n`);
  });

  return provider;
}

const server = createServer((req, res) => {
  res.statusCode = 503;
  res.end('starting');
});

server.on('error', (err) => fail(`listen failed: ${err.message}`));
server.listen(port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = buildProvider(issuer);
  const handler = provider.callback();
  server.removeAllListeners('request');
  server.on('request', handler);
  process.stdout.write(`READY ${issuer}\n`);
});

// Stop when the test process that started us goes away (we get re-parented), or is told to.
const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid) process.exit(0);
}, 1000).unref();
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
