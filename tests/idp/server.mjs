#!/usr/bin/env node
// The test rig's identity provider: npm `oidc-provider` (OpenID Certified) as it ships,
// configured only as a deployment must be (client, resource server and scopes, claims,
// lifetimes, users), under one of the provider profiles of ./profiles.mjs. Started by
// crates/snowgate-rig/src/idp.rs; it can also be run by hand (`node tests/idp/server.mjs --help`).
//
// Flags (all optional except --cert and --key):
//   --port N              TCP port on 127.0.0.1 (default 0: any free port). Issuer: https://127.0.0.1:PORT
//   --public-port N       the port clients reach it at, when it sits behind a proxy (a load
//                         balancer, or the rig's fault proxy): the issuer uses N instead of PORT
//   --cert FILE           PEM certificate chain to serve (the rig CA's leaf for 127.0.0.1)
//   --key FILE            PEM private key of that certificate
//   --profile NAME        strict (default), entra, okta, auth0, keycloak or google: which
//                         provider's documented behaviour to reproduce (see profiles.mjs)
//   --access-ttl S        access-token lifetime in seconds, for every access token (default 300)
//   --id-ttl S            ID-token lifetime in seconds (default 3600)
//   --refresh-ttl S       refresh-token lifetime in seconds (default 86400)
//   --refresh-grace S     okta: how long a rotated refresh token stays usable (default 30)
//   --auth0-no-offline-access
//                         auth0: the Snowflake API's "Allow Offline Access" is off
//   --audience URI        the Snowflake API: its resource indicator / audience / Application ID
//                         URI, depending on the profile (default https://snowflake.rig.test)
//   --roles A,B,C         Snowflake roles that may be asked for as `session:role:<ROLE>` scopes
//                         (default ANALYST,ENGINEER,READONLY)
//   --keys-file FILE      JSON holding the signing keys and cookie keys. Read if it exists,
//                         otherwise generated (one RSA-2048 key, RS256) and written there, so a
//                         restart with the same file keeps the keys. Without it keys live in memory.
//   --state-file FILE     mirror of the provider's storage (sessions, grants, codes, refresh
//                         tokens), written after every change, read at start. Without it, memory only.
// Or, instead of flags, one JSON argument with the same names in camelCase:
//   node server.mjs '{"port":4000,"cert":"c.pem","key":"k.pem","accessTtl":5,"roles":["ANALYST"]}'
//
// When it listens it prints one line on stdout: `IDP READY <issuer>`, the issuer being
// https://127.0.0.1:PORT plus the profile's issuer path (entra: /<tenant>/v2.0, okta:
// /oauth2/default, keycloak: /realms/acme).
// SIGTERM (and SIGINT) close the listener and all connections, flush the state file and exit 0.
//
// The client: `snowgate-desktop`, a native public client (no secret, token_endpoint_auth_method
// none), redirect URI http://127.0.0.1/callback (any port, RFC 8252), grant types
// authorization_code, refresh_token and the device code grant; PKCE S256 is required.
//
// Users: alice (groups analysts), bob (managers), carol (analysts, managers), mallory (none),
// dana (analysts and 200 project groups). Each profile names them as its provider does (sub,
// email, group names, paths or object IDs). Any password works; an unknown user name is refused
// on the login page (HTTP 401, the form again with `<p class="error">unknown user ...`).
//
// Scopes: openid, profile, email, groups (where the provider has such a scope), offline_access
// (not at google), and one role scope per configured role (`session:role:<ROLE>`, at entra
// prefixed with the Application ID URI). What each profile does with them, and which claims
// its tokens carry, is in profiles.mjs.
//
// The device flow's authorization response carries no `interval` (oidc-provider sends none);
// clients wait their default unless configured otherwise. Tokens follow oidc-provider's
// defaults unless the profile says otherwise: the browser flow drops offline_access without
// prompt=consent, refresh tokens of this public client rotate, and a used refresh token
// presented again revokes the whole grant.
//
// Rig-only endpoints (not part of OpenID Connect):
//   POST /rig/rotate-keys  generates a new RSA key, makes it the signing key, keeps the old ones
//                          in the JWKS, and answers {"kid": NEW, "kids": [all, current first]}.
//                          SIGUSR2 does the same. Kept in --keys-file when given.
//   GET  /rig/keys         {"kid": current, "kids": [...]}.
//   GET  /rig/profile      the profile's facts for the rig: {name, solo, token_audience,
//                          scope_claim, user_claim, role_scope_prefix, docs}.
//
// Errors: token endpoint errors are OAuth JSON; the provider hides the reason behind generic
// descriptions ("grant request is invalid"), so every error is also logged on stderr as
// `IDP ERROR <event> <error>: <description> (<detail>)`. HTML error pages carry
// `<p class="error">error: description</p>`.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import { parseArgs } from 'node:util';

import Provider, { errors as oidcErrors } from 'oidc-provider';

import { buildProfile, USERS } from './profiles.mjs';
import { RigAdapter, Store } from './store.mjs';

// ---------------------------------------------------------------------------------------------
// Configuration

// The help text is this file's header, down to the SIGTERM line.
const HELP = (() => {
  const header = fs.readFileSync(new URL(import.meta.url), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('//'))
    .map((l) => l.replace(/^\/\/ ?/, ''));
  return header.slice(0, header.findIndex((l) => l.startsWith('SIGTERM')) + 1).join('\n');
})();

function readConfig(argv) {
  let raw;
  if (argv.length === 1 && argv[0].trim().startsWith('{')) {
    raw = JSON.parse(argv[0]);
  } else {
    const { values } = parseArgs({
      args: argv,
      options: {
        port: { type: 'string' },
        'public-port': { type: 'string' },
        cert: { type: 'string' },
        key: { type: 'string' },
        'access-ttl': { type: 'string' },
        'id-ttl': { type: 'string' },
        'refresh-ttl': { type: 'string' },
        audience: { type: 'string' },
        roles: { type: 'string' },
        'keys-file': { type: 'string' },
        'state-file': { type: 'string' },
        profile: { type: 'string' },
        'refresh-grace': { type: 'string' },
        'auth0-no-offline-access': { type: 'boolean' },
        help: { type: 'boolean' },
      },
      strict: true,
    });
    if (values.help) {
      console.log(HELP);
      process.exit(0);
    }
    raw = {
      port: values.port,
      publicPort: values['public-port'],
      cert: values.cert,
      key: values.key,
      accessTtl: values['access-ttl'],
      idTtl: values['id-ttl'],
      refreshTtl: values['refresh-ttl'],
      audience: values.audience,
      roles: values.roles?.split(',').map((r) => r.trim()).filter(Boolean),
      profile: values.profile,
      refreshGrace: values['refresh-grace'],
      auth0AllowOfflineAccess: values['auth0-no-offline-access'] ? false : undefined,
      keysFile: values['keys-file'],
      stateFile: values['state-file'],
    };
  }
  const seconds = (name, value, fallback) => {
    if (value === undefined || value === null) return fallback;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a whole number of seconds >= 1, got ${value}`);
    return n;
  };
  const config = {
    port: raw.port === undefined ? 0 : Number(raw.port),
    publicPort: raw.publicPort === undefined ? undefined : Number(raw.publicPort),
    cert: raw.cert,
    key: raw.key,
    accessTtl: seconds('access TTL', raw.accessTtl, 300),
    idTtl: seconds('ID token TTL', raw.idTtl, 3600),
    refreshTtl: seconds('refresh token TTL', raw.refreshTtl, 86400),
    audience: raw.audience ?? 'https://snowflake.rig.test',
    roles: raw.roles ?? ['ANALYST', 'ENGINEER', 'READONLY'],
    profile: raw.profile ?? 'strict',
    refreshGrace: raw.refreshGrace === undefined ? undefined : Number(raw.refreshGrace),
    auth0AllowOfflineAccess: raw.auth0AllowOfflineAccess,
    clientId: 'snowgate-desktop',
    keysFile: raw.keysFile,
    stateFile: raw.stateFile,
  };
  if (!config.cert || !config.key) throw new Error('--cert and --key are required (PEM files; the IdP serves HTTPS only)');
  if (!Number.isInteger(config.port) || config.port < 0 || config.port > 65535) throw new Error(`bad --port ${raw.port}`);
  if (config.publicPort !== undefined && (!Number.isInteger(config.publicPort) || config.publicPort < 1 || config.publicPort > 65535)) {
    throw new Error(`bad --public-port ${raw.publicPort}`);
  }
  for (const role of config.roles) {
    if (!/^[A-Za-z0-9_$]+$/.test(role)) throw new Error(`bad role name ${JSON.stringify(role)}`);
  }
  return config;
}

let config;
try {
  config = readConfig(process.argv.slice(2));
} catch (e) {
  console.error(`IDP CONFIG ERROR ${e.message}\n\n${HELP}`);
  process.exit(2);
}

const CLIENT_ID = config.clientId;

let profile;
try {
  profile = buildProfile(config.profile, config, oidcErrors);
} catch (e) {
  console.error(`IDP CONFIG ERROR ${e.message}`);
  process.exit(2);
}

// The issuer's path (e.g. Entra's /<tenant>/v2.0): the provider is mounted there.
const PREFIX = profile.issuerPath ?? '';

// ---------------------------------------------------------------------------------------------
// Users: the people are in profiles.mjs; the account id at the provider is the `sub` the
// profile gives each of them.

const LOGIN_BY_SUB = new Map(Object.keys(USERS).map((login) => [profile.claims(login).sub, login]));
const subOf = (login) => profile.claims(login).sub;

async function findAccount(_ctx, sub) {
  const login = LOGIN_BY_SUB.get(sub);
  if (login === undefined) return undefined;
  return {
    accountId: sub,
    async claims() {
      return profile.claims(login);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Keys

function newSigningKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    ...jwk,
    kid: `rig-${Date.now().toString(36)}-${crypto.randomBytes(4).toString('hex')}`,
    alg: 'RS256',
    use: 'sig',
  };
}

function loadKeys() {
  if (config.keysFile && fs.existsSync(config.keysFile)) {
    const saved = JSON.parse(fs.readFileSync(config.keysFile, 'utf8'));
    if (!Array.isArray(saved.jwks) || saved.jwks.length === 0) throw new Error(`${config.keysFile} holds no keys`);
    return saved;
  }
  const keys = { cookieKeys: [crypto.randomBytes(32).toString('base64url')], jwks: [newSigningKey()] };
  saveKeys(keys);
  return keys;
}

function saveKeys(keys) {
  if (!config.keysFile) return;
  const tmp = `${config.keysFile}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(keys), { mode: 0o600 });
  fs.renameSync(tmp, config.keysFile);
}

// ---------------------------------------------------------------------------------------------
// HTML

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

function page(title, body, attrs = '') {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body ${attrs}>
<h1>${esc(title)}</h1>
${body}
</body></html>`;
}

async function renderError(ctx, out, error) {
  ctx.type = 'html';
  ctx.body = page(
    'Sign-in error',
    `<p class="error">${esc(out.error)}: ${esc(out.error_description ?? '')}</p>`
    + (error?.error_detail ? `<p class="detail">(${esc(error.error_detail)})</p>` : ''),
  );
}

async function userCodeInputSource(ctx, form, _out, err) {
  let msg = '<p>Enter the code shown on your device.</p>';
  if (err && (err.userCode || err.name === 'NoCodeError')) {
    msg = '<p class="error">code_not_found: the code you entered is incorrect</p>';
  } else if (err && err.name === 'AbortedError') {
    msg = '<p class="error">aborted: the sign-in request was interrupted</p>';
  } else if (err) {
    msg = `<p class="error">${esc(err.name)}: ${esc(err.message)}</p>`;
  }
  ctx.body = page('Device sign-in', `${msg}\n${form}\n<button type="submit" form="op.deviceInputForm">Continue</button>`, 'data-page="device-input"');
}

async function userCodeConfirmSource(ctx, form, client, _deviceInfo, userCode) {
  ctx.body = page('Confirm device', `<p>${esc(client.clientName || client.clientId)} shows the code <code>${esc(userCode)}</code>.</p>
${form}
<button type="submit" form="op.deviceConfirmForm">Continue</button>
<button type="submit" form="op.deviceConfirmForm" value="yes" name="abort">Abort</button>`, 'data-page="device-confirm"');
}

async function successSource(ctx) {
  ctx.body = page('Sign-in success', '<p class="success">device sign-in complete; you can close this page</p>', 'data-page="device-success"');
}

function loginPage(uid, params, error) {
  return page('Sign in', `${error ? `<p class="error">${esc(error)}</p>` : ''}
<p>Client <code>${esc(params.client_id)}</code> asks for <code>${esc(params.scope ?? '')}</code>.</p>
<form method="post" action="${PREFIX}/interaction/${esc(uid)}">
<input type="hidden" name="prompt" value="login"/>
<label>User <input type="text" name="login" autofocus autocomplete="username"/></label>
<label>Password <input type="password" name="password" autocomplete="current-password"/></label>
<button type="submit">Sign in</button>
</form>
<form method="post" action="${PREFIX}/interaction/${esc(uid)}/abort"><button type="submit">Cancel</button></form>`,
  `data-prompt="login" data-uid="${esc(uid)}"`);
}

function consentPage(uid, params, details, accountId) {
  const items = [];
  if (details.missingOIDCScope) items.push(`scopes: ${details.missingOIDCScope.join(' ')}`);
  if (details.missingOIDCClaims) items.push(`claims: ${details.missingOIDCClaims.join(' ')}`);
  for (const [resource, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
    items.push(`${resource}: ${scopes.join(' ')}`);
  }
  return page('Authorize', `<p>Signed in as <code>${esc(accountId)}</code>. Client <code>${esc(params.client_id)}</code> asks for:</p>
<ul>${items.map((i) => `<li>${esc(i)}</li>`).join('')}</ul>
<form method="post" action="${PREFIX}/interaction/${esc(uid)}">
<input type="hidden" name="prompt" value="consent"/>
<button type="submit">Allow</button>
</form>
<form method="post" action="${PREFIX}/interaction/${esc(uid)}/abort"><button type="submit">Deny</button></form>`,
  `data-prompt="consent" data-uid="${esc(uid)}"`);
}

// ---------------------------------------------------------------------------------------------
// The provider

const store = new Store(config.stateFile);
let keys;

function logError(event) {
  return (ctx, err) => {
    const detail = err?.error_detail ? ` (${err.error_detail})` : '';
    const route = ctx?.oidc?.route ? ` route=${ctx.oidc.route}` : '';
    console.error(`IDP ERROR ${event}${route} ${err?.error ?? err?.name}: ${err?.error_description ?? err?.message}${detail}`);
    if (event === 'server_error') console.error(err?.stack);
  };
}

// Whether this grant gets refresh tokens, by the profile's rules. `code` is the authorization
// or device code being redeemed; the Grant (with any offline marker the consent step recorded)
// is loaded at the token endpoint.
function refreshTokenAllowed(ctx, client, code) {
  if (!client.grantTypeAllowed('refresh_token')) return false;
  if (profile.alwaysRefreshToken) return true;
  if (profile.name === 'google' && code.kind === 'DeviceCode') return true;
  if (profile.allowOfflineAccess === false) return false;
  if (code.scopes.has('offline_access')) return true;
  if (profile.offlineWithoutConsentPrompt || profile.name === 'google') {
    const grant = ctx.oidc.entities.Grant;
    return !!grant && grant.getOIDCScope().split(' ').includes('offline_access');
  }
  return false;
}

function buildProvider(issuerUrl) {
  const features = {
    devInteractions: { enabled: false },
    deviceFlow: {
      enabled: true, userCodeInputSource, userCodeConfirmSource, successSource,
    },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
    resourceIndicators: profile.resourceIndicators,
  };
  const provider = new Provider(issuerUrl, {
    adapter: (model) => new RigAdapter(model, store, { refreshGrace: profile.refreshGrace }),
    clients: [{
      client_id: CLIENT_ID,
      client_name: 'Snowgate',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      redirect_uris: ['http://127.0.0.1/callback'],
      response_types: ['code'],
      grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    }],
    findAccount,
    claims: profile.claimsConfig,
    scopes: profile.scopes,
    extraParams: profile.extraParams ?? [],
    conformIdTokenClaims: profile.conformIdTokenClaims,
    clockTolerance: 0,
    cookies: { keys: keys.cookieKeys },
    jwks: { keys: keys.jwks },
    pkce: { required: () => true },
    interactions: { url: (_ctx, interaction) => `${PREFIX}/interaction/${interaction.uid}` },
    features,
    async extraTokenClaims(_ctx, token) {
      const login = LOGIN_BY_SUB.get(token.accountId);
      if (!token.resourceServer || !profile.accessTokenClaims || login === undefined) return undefined;
      return profile.accessTokenClaims(login, profile.claims);
    },
    formats: {
      customizers: {
        async jwt(ctx, _token, jwt) {
          if (profile.customizeJwt) profile.customizeJwt(jwt.payload, issuerUrl, ctx);
        },
      },
    },
    ...(profile.name === 'strict' ? {} : {
      async issueRefreshToken(ctx, client, code) {
        return refreshTokenAllowed(ctx, client, code);
      },
      async expiresWithSession(ctx, code) {
        return !refreshTokenAllowed(ctx, ctx.oidc.client, code);
      },
    }),
    ttl: {
      AccessToken: () => config.accessTtl,
      AuthorizationCode: 60,
      DeviceCode: 600,
      IdToken: () => config.idTtl,
      RefreshToken: () => config.refreshTtl,
      Interaction: 600,
      Session: 86400,
      Grant: () => Math.max(config.refreshTtl, 86400),
    },
    renderError,
  });

  for (const event of ['server_error', 'grant.error', 'authorization.error', 'introspection.error',
    'revocation.error', 'userinfo.error', 'device_authorization.error', 'code_verification.error',
    'end_session.error', 'jwks.error', 'discovery.error', 'check_session.error']) {
    provider.on(event, logError(event));
  }
  provider.on('grant.revoked', (_ctx, grantId) => console.log(`IDP grant revoked ${grantId}`));
  return provider;
}

let provider;
let handler;

function installProvider(issuerUrl) {
  provider = buildProvider(issuerUrl);
  handler = provider.callback();
}

// ---------------------------------------------------------------------------------------------
// Interactions (login and consent pages)

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
}

function send(res, status, body, type = 'text/html; charset=utf-8') {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
  res.end(body);
}

async function interaction(req, res, url) {
  const parts = url.pathname.split('/').filter(Boolean); // ['interaction', uid, ('abort')?]
  const action = parts[2];
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (e) {
    console.error(`IDP ERROR interaction ${e.name}: ${e.message} ${e.error_detail ?? ''}`);
    send(res, 400, page('Sign-in error', `<p class="error">${esc(e.error ?? e.name)}: ${esc(e.error_description ?? e.message)} (${esc(e.error_detail ?? 'the sign-in may have expired or its cookie is missing')})</p>`));
    return;
  }
  const {
    uid, prompt, params, session, grantId,
  } = details;

  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') {
      send(res, 200, loginPage(uid, params));
    } else if (prompt.name === 'consent') {
      send(res, 200, consentPage(uid, params, prompt.details, session?.accountId));
    } else {
      send(res, 501, page('Sign-in error', `<p class="error">not_implemented: prompt ${esc(prompt.name)}</p>`));
    }
    return;
  }
  if (req.method !== 'POST') {
    send(res, 405, page('Sign-in error', '<p class="error">method_not_allowed: use POST</p>'));
    return;
  }

  if (action === 'abort') {
    await readForm(req);
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }
  if (action) {
    send(res, 404, page('Sign-in error', '<p class="error">not_found</p>'));
    return;
  }

  const form = await readForm(req);
  if (form.prompt !== prompt.name) {
    send(res, 400, page('Sign-in error', `<p class="error">wrong_prompt: this step is ${esc(prompt.name)}, the form was for ${esc(form.prompt ?? 'nothing')}</p>`));
    return;
  }
  if (prompt.name === 'login') {
    const login = (form.login ?? '').trim();
    if (!Object.hasOwn(USERS, login)) {
      console.error(`IDP login refused: unknown user ${JSON.stringify(login)}`);
      send(res, 401, loginPage(uid, params, `unknown user ${JSON.stringify(login)} (known: ${Object.keys(USERS).join(', ')})`));
      return;
    }
    console.log(`IDP login ${login}`);
    await provider.interactionFinished(req, res, { login: { accountId: subOf(login) } }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'consent') {
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    // The stock provider forgets offline_access asked for without prompt=consent before this
    // step; providers that honour it (or Google's access_type=offline) keep it in the grant.
    if (offlineAsked.has(params.code_challenge)) grant.addOIDCScope('offline_access');
    const result = { consent: { grantId: await grant.save() } };
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
    return;
  }
  send(res, 501, page('Sign-in error', `<p class="error">not_implemented: prompt ${esc(prompt.name)}</p>`));
}

// ---------------------------------------------------------------------------------------------
// Rig-only routes

function keySummary() {
  return { kid: keys.jwks[0].kid, kids: keys.jwks.map((k) => k.kid) };
}

function rotateKeys() {
  keys = { ...keys, jwks: [newSigningKey(), ...keys.jwks] };
  saveKeys(keys);
  installProvider(provider.issuer);
  console.log(`IDP keys rotated, current kid ${keys.jwks[0].kid}`);
  return keySummary();
}

async function rig(req, res, url) {
  const json = (status, body) => send(res, status, JSON.stringify(body), 'application/json');
  if (url.pathname === '/rig/profile' && req.method === 'GET') {
    const prefix = profile.roleScope ? profile.roleScope('X').slice(0, -'session:role:X'.length) : null;
    json(200, {
      name: profile.name,
      solo: profile.solo,
      token_audience: profile.tokenAudience,
      scope_claim: profile.scopeClaim,
      user_claim: profile.userClaim,
      role_scope_prefix: prefix,
      subjects: Object.fromEntries(Object.keys(USERS).map((login) => [login, subOf(login)])),
      docs: profile.docs,
    });
    return;
  }
  if (url.pathname === '/rig/rotate-keys' && req.method === 'POST') {
    await readForm(req);
    json(200, rotateKeys());
  } else if (url.pathname === '/rig/keys' && req.method === 'GET') {
    json(200, keySummary());
  } else {
    json(404, { error: 'not_found', error_description: `no rig route ${req.method} ${url.pathname}` });
  }
}

// ---------------------------------------------------------------------------------------------
// The provider's front door: what the profile's provider does with a request's parameters
// before the OpenID machinery sees them (a parameter it ignores is removed, one it refuses is
// an error). The stock (strict) profile changes nothing.

const FRONT_DOOR = { '/auth': 'authorization', '/device/auth': 'device_authorization', '/token': 'token' };

// PKCE challenges of authorization requests that asked for offline access in the way the
// profile's provider honours without prompt=consent (see the consent step).
const offlineAsked = new Set();

function wantsOffline(params) {
  const scopes = (params.scope ?? '').split(' ');
  if (profile.name === 'google') return params.access_type === 'offline';
  return profile.offlineWithoutConsentPrompt === true && scopes.includes('offline_access');
}

// Returns false when it answered the request itself.
async function frontDoor(req, res, url, endpoint) {
  let params;
  const form = req.method === 'POST';
  if (form) {
    const chunks = [];
    let size = 0;
    for await (const chunk of req) {
      size += chunk.length;
      if (size > 56 * 1024) throw new Error('request entity too large');
      chunks.push(chunk);
    }
    params = Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
  } else {
    params = Object.fromEntries(url.searchParams);
  }
  const refused = profile.screen?.(endpoint, params);
  if (refused) {
    console.error(`IDP ERROR ${endpoint} ${refused.error}: ${refused.error_description} (${profile.name} profile)`);
    const redirect = params.redirect_uri ?? '';
    if (endpoint === 'authorization' && /^http:\/\/127\.0\.0\.1:\d+\/callback$/.test(redirect)) {
      const to = new URL(redirect);
      to.searchParams.set('error', refused.error);
      to.searchParams.set('error_description', refused.error_description);
      if (params.state) to.searchParams.set('state', params.state);
      res.writeHead(303, { location: to.toString(), 'cache-control': 'no-store' });
      res.end();
    } else if (endpoint === 'authorization') {
      send(res, 400, page('Sign-in error', `<p class="error">${esc(refused.error)}: ${esc(refused.error_description)}</p>`));
    } else {
      send(res, 400, JSON.stringify(refused), 'application/json');
    }
    return false;
  }
  if (endpoint === 'authorization' && params.code_challenge && wantsOffline(params)) {
    offlineAsked.add(params.code_challenge);
  }
  const query = new URLSearchParams(params).toString();
  if (form) {
    // oidc-provider reads an already-read body from req.body.
    req.body = query;
  } else {
    req.url = `${url.pathname}${query ? `?${query}` : ''}`;
    if (PREFIX) req.originalUrl = `${PREFIX}${req.url}`;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Server

// Start-up stages go to stderr, so a start that stalls shows how far it got.
console.error('IDP starting: loading signing keys');
try {
  keys = loadKeys();
} catch (e) {
  console.error(`IDP START ERROR reading keys: ${e.message}`);
  process.exit(1);
}

let tlsOptions;
try {
  tlsOptions = { cert: fs.readFileSync(config.cert), key: fs.readFileSync(config.key) };
} catch (e) {
  console.error(`IDP START ERROR reading the TLS certificate or key: ${e.message}`);
  process.exit(1);
}

console.error(`IDP starting: listening on 127.0.0.1:${config.port}`);
const server = https.createServer(tlsOptions, async (req, res) => {
  try {
    if (PREFIX) {
      // The provider is mounted at the issuer's path, as the real one is.
      if (req.url !== PREFIX && !req.url.startsWith(`${PREFIX}/`) && !req.url.startsWith(`${PREFIX}?`)) {
        send(res, 404, JSON.stringify({ error: 'not_found', error_description: `this provider lives under ${PREFIX}` }), 'application/json');
        return;
      }
      req.originalUrl = req.url;
      req.url = req.url.slice(PREFIX.length) || '/';
    }
    const url = new URL(req.url, 'https://127.0.0.1');
    if (FRONT_DOOR[url.pathname] && !(await frontDoor(req, res, url, FRONT_DOOR[url.pathname]))) return;
    if (url.pathname.startsWith('/interaction/')) {
      await interaction(req, res, url);
    } else if (url.pathname.startsWith('/rig/')) {
      await rig(req, res, url);
    } else {
      await handler(req, res);
    }
  } catch (e) {
    console.error(`IDP ERROR request ${req.method} ${req.url}: ${e.stack ?? e}`);
    if (!res.headersSent) send(res, 500, page('Sign-in error', `<p class="error">server_error: ${esc(e.message)}</p>`));
    else res.destroy();
  }
});

server.on('error', (e) => {
  console.error(`IDP START ERROR ${e.code ?? ''} ${e.message}`);
  process.exit(1);
});

server.listen(config.port, '127.0.0.1', () => {
  const { port } = server.address();
  const url = `https://127.0.0.1:${config.publicPort ?? port}`;
  installProvider(`${url}${PREFIX}`);
  console.log(`IDP READY ${url}${PREFIX}`);
});

let stopping = false;
function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.log(`IDP stopping (${signal})`);
  store.flush();
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGUSR2', () => {
  try {
    rotateKeys();
  } catch (e) {
    console.error(`IDP ERROR rotating keys: ${e.message}`);
  }
});
