// Provider profiles of the rig's identity provider.
//
// The rig runs npm `oidc-provider` as it ships. A "stock" setup configures only what a
// deployment must: the client, the resource server and its scopes, the claims, the lifetimes
// and the users. Real providers differ from that in ways Snowgate must survive, so each
// difference lives here, in a named profile that reproduces one provider's DOCUMENTED
// behaviour (the links are next to each rule) and enforces it: a request the provider would
// refuse is refused, a parameter it ignores is ignored.
//
// A profile has:
//   name, docs            the provider and the documentation it follows
//   issuerPath            the path of the issuer URL (the provider is mounted there)
//   solo                  whether Snowflake tokens come from this provider (solo mode)
//   roleScope(role)       the scope name a client asks for to get `session:role:<ROLE>`
//   tokenAudience         the `aud` of Snowflake access tokens (Snowflake's
//                         EXTERNAL_OAUTH_AUDIENCE_LIST)
//   scopeClaim            the claim that carries the role scopes (Snowflake's
//                         EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE: `scp` or `scope`)
//   userClaim             the claim that names the Snowflake user (TOKEN_USER_MAPPING_CLAIM)
//   claims(id)            the user's claims as this provider releases them
//   claimsConfig          oidc-provider's scope -> claims map
//   conformIdTokenClaims  oidc-provider's default (true) puts only `sub` into ID tokens issued
//                         with an access token; providers that put the profile and group
//                         claims into every ID token set it to false
//   refreshGrace          seconds a rotated refresh token stays usable (0: reuse at once is
//                         theft and revokes the grant, oidc-provider's rule; Infinity: the
//                         provider does not invalidate used refresh tokens)
//   offlineWithoutConsentPrompt
//                         offline_access gives a refresh token without prompt=consent (the
//                         stock rule, OpenID Connect Core 1.0 §11, drops it in the browser flow)
//   alwaysRefreshToken    a refresh token comes with every code or device grant
//   screen(endpoint, params)
//                         the provider's front door for /auth, /device/auth and /token: may
//                         rewrite params (a parameter the provider ignores is removed) or
//                         return { error, error_description } (a request it refuses)
//   resourceIndicators(config)
//                         oidc-provider's features.resourceIndicators for this provider
//   extraParams, customizeJwt(payload, issuer, ctx)

import * as crypto from 'node:crypto';

// ---------------------------------------------------------------------------------------------
// Users (the same people at every provider; each provider names them its own way)

export const USERS = {
  alice: { name: 'Alice Analyst', groups: ['analysts'] },
  bob: { name: 'Bob Manager', groups: ['managers'] },
  carol: { name: 'Carol Both', groups: ['analysts', 'managers'] },
  mallory: { name: 'Mallory Nobody', groups: [] },
  // An analyst whose email the provider has not verified (email_verified: false).
  erin: { name: 'Erin Unverified', groups: ['analysts'], emailVerified: false },
  // A member of more groups than fit into an Entra ID token (its limit is 200).
  dana: {
    name: 'Dana Many-Groups',
    groups: ['analysts', ...Array.from({ length: 200 }, (_, i) => `project-${String(i).padStart(3, '0')}`)],
  },
};

// A stable GUID for a name (Entra's object IDs, Keycloak's user IDs).
export function guid(kind, name) {
  const h = crypto.createHash('sha256').update(`${kind}:${name}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const email = (id) => `${id}@example.test`;
const emailVerified = (id) => USERS[id].emailVerified !== false;
const ROLE_PREFIX = 'session:role:';

const removeParam = (params, name) => {
  delete params[name];
};

// oidc-provider's resource-indicator settings for a provider with one API (an audience that is
// not asked for through RFC 8707): every request is for that API.
function singleApi(config, audience, scopes, { accessTokenFormat = 'jwt' } = {}) {
  return {
    enabled: true,
    async defaultResource() {
      return audience;
    },
    async useGrantedResource() {
      return true;
    },
    async getResourceServerInfo() {
      return {
        audience,
        scope: scopes.join(' '),
        accessTokenTTL: config.accessTtl,
        accessTokenFormat,
        jwt: { sign: { alg: 'RS256' } },
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------

export function buildProfile(name, config, errors) {
  const roleScopes = (prefix = '') => config.roles.map((r) => `${prefix}${ROLE_PREFIX}${r}`);
  switch (name) {
    // ---------------------------------------------------------------------------------------
    // oidc-provider's own defaults, which follow the specifications to the letter:
    // - OpenID Connect Core 1.0 §11: offline_access is ignored unless the authorization
    //   request carries prompt=consent (https://openid.net/specs/openid-connect-core-1_0.html#OfflineAccess);
    //   the device flow has no prompt, so there offline_access stands.
    // - RFC 8707 resource indicators name the API (https://www.rfc-editor.org/rfc/rfc8707).
    // - ID tokens issued together with an access token carry only `sub` and the protocol
    //   claims (conformIdTokenClaims); the rest is at userinfo.
    // - JWT access tokens (RFC 9068) carry the granted scopes in `scope`.
    // - Refresh tokens of public clients rotate; a used one presented again revokes the grant.
    case 'strict': {
      const scopes = roleScopes();
      return {
        name,
        docs: [
          'https://openid.net/specs/openid-connect-core-1_0.html#OfflineAccess',
          'https://www.rfc-editor.org/rfc/rfc8707',
          'https://www.rfc-editor.org/rfc/rfc9068',
          'https://github.com/panva/node-oidc-provider/blob/v9.x/docs/README.md',
        ],
        solo: true,
        roleScope: (role) => `${ROLE_PREFIX}${role}`,
        tokenAudience: config.audience,
        resourceParam: config.audience,
        scopeClaim: 'scope',
        userClaim: 'sub',
        claims: (id) => ({
          sub: id, name: USERS[id].name, email: email(id), email_verified: emailVerified(id), groups: [...USERS[id].groups],
        }),
        claimsConfig: {
          openid: ['sub'], profile: ['name'], email: ['email', 'email_verified'], groups: ['groups'],
        },
        scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
        conformIdTokenClaims: true,
        refreshGrace: 0,
        resourceIndicators: {
          enabled: true,
          async getResourceServerInfo(_ctx, indicator) {
            if (indicator !== config.audience) {
              throw new errors.InvalidTarget(`unknown resource ${indicator}; this provider knows ${config.audience}`);
            }
            return {
              audience: config.audience,
              scope: scopes.join(' '),
              accessTokenTTL: config.accessTtl,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'RS256' } },
            };
          },
        },
        accessTokenClaims: (id) => ({ email: email(id), groups: [...USERS[id].groups] }),
      };
    }

    // ---------------------------------------------------------------------------------------
    // Microsoft Entra ID, v2.0 endpoints.
    case 'entra': {
      // The API app registration "Snowflake": its Application ID URI prefixes every scope, its
      // application (client) ID is the `aud` of v2.0 access tokens
      // (api.requestedAccessTokenVersion = 2, as Snowflake's guide for Entra recommends).
      const appIdUri = config.audience;
      const apiClientId = guid('app', 'snowflake-api');
      const tenant = guid('tenant', 'example');
      const scopes = roleScopes(`${appIdUri}/`);
      const GROUP_LIMIT = 200;
      return {
        name,
        docs: [
          // v2.0 has no `resource` parameter; scopes are `<App ID URI>/<scope>`; one resource per token:
          'https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow',
          'https://learn.microsoft.com/en-us/entra/identity-platform/scopes-oidc',
          'https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes (AADSTS901002)',
          // access token claims: aud = the API's client ID in v2.0 tokens, scp without the prefix:
          'https://learn.microsoft.com/en-us/entra/identity-platform/access-token-claims-reference',
          // groups as object IDs, and the overage claim past 200 groups in a JWT:
          'https://learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference#groups-overage-claim',
          // offline_access gives a refresh token (no prompt needed); used refresh tokens stay
          // valid until they expire (they are replaced, not revoked):
          'https://learn.microsoft.com/en-us/entra/identity-platform/refresh-tokens',
          'https://docs.snowflake.com/en/user-guide/oauth-azure',
        ],
        solo: true,
        issuerPath: `/${tenant}/v2.0`,
        roleScope: (role) => `${appIdUri}/${ROLE_PREFIX}${role}`,
        tokenAudience: apiClientId,
        resourceParam: null,
        scopeClaim: 'scp',
        userClaim: 'upn',
        tenant,
        claims: (id) => {
          const groups = USERS[id].groups.map((g) => guid('group', g));
          const base = {
            sub: crypto.createHash('sha256').update(`pairwise:${config.clientId}:${id}`).digest('base64url').slice(0, 43),
            oid: guid('user', id),
            tid: tenant,
            name: USERS[id].name,
            preferred_username: email(id),
            email: email(id),
          };
          if (groups.length > GROUP_LIMIT) {
            return {
              ...base,
              _claim_names: { groups: 'src1' },
              _claim_sources: { src1: { endpoint: `https://graph.microsoft.com/v1.0/users/${base.oid}/getMemberObjects` } },
            };
          }
          return { ...base, groups };
        },
        claimsConfig: {
          openid: ['sub', 'oid', 'tid', 'groups'], profile: ['name', 'preferred_username'], email: ['email'],
        },
        scopes: ['openid', 'offline_access', 'profile', 'email'],
        conformIdTokenClaims: false,
        refreshGrace: Infinity,
        offlineWithoutConsentPrompt: true,
        screen(_endpoint, params) {
          if (params.resource !== undefined) {
            return {
              error: 'invalid_request',
              error_description: "AADSTS901002: The 'resource' request parameter isn't supported.",
            };
          }
          return undefined;
        },
        resourceIndicators: {
          enabled: true,
          // The resource is the one whose Application ID URI prefixes the scopes.
          async defaultResource(ctx, _client, oneOf) {
            if (oneOf) return oneOf;
            const scope = ctx.oidc.params?.scope ?? '';
            if (scope.split(' ').some((s) => s.startsWith(`${appIdUri}/`))) return appIdUri;
            return undefined;
          },
          async useGrantedResource() {
            return true;
          },
          async getResourceServerInfo(_ctx, indicator) {
            if (indicator !== appIdUri) {
              throw new errors.InvalidTarget(`AADSTS500011: The resource principal named ${indicator} was not found in the tenant`);
            }
            return {
              audience: apiClientId,
              scope: scopes.join(' '),
              accessTokenTTL: config.accessTtl,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'RS256' } },
            };
          },
        },
        accessTokenClaims: (id, claimsOf) => {
          const c = claimsOf(id);
          const out = {
            oid: c.oid, tid: c.tid, name: c.name, preferred_username: c.preferred_username, upn: c.preferred_username,
          };
          if (c.groups) out.groups = c.groups;
          else out._claim_names = c._claim_names;
          if (c._claim_sources) out._claim_sources = c._claim_sources;
          return out;
        },
        // `scp` holds the scope names without the Application ID URI; there is no `scope`.
        customizeJwt(payload) {
          if (payload.scope !== undefined) {
            payload.scp = payload.scope.split(' ')
              .map((s) => (s.startsWith(`${appIdUri}/`) ? s.slice(appIdUri.length + 1) : s))
              .join(' ');
            delete payload.scope;
          }
          payload.azp = payload.client_id;
          payload.ver = '2.0';
        },
      };
    }

    // ---------------------------------------------------------------------------------------
    // Okta, a custom authorization server (the kind Snowflake's guide uses).
    case 'okta': {
      const audience = config.audience;
      const scopes = roleScopes();
      return {
        name,
        docs: [
          // one audience per authorization server; no resource parameter:
          'https://developer.okta.com/docs/concepts/auth-servers/#custom-authorization-server',
          'https://developer.okta.com/docs/reference/api/oidc/#authorize',
          // access tokens carry `scp` as an array, `sub` = the user's login, `uid`, `cid`:
          'https://developer.okta.com/docs/reference/api/oidc/#access-token-payload',
          // groups claim with a filter:
          'https://developer.okta.com/docs/guides/customize-tokens-groups-claim/main/',
          // offline_access gives a refresh token; rotation with a grace period (default 30 s):
          'https://developer.okta.com/docs/guides/refresh-tokens/main/#refresh-token-rotation',
          'https://docs.snowflake.com/en/user-guide/oauth-okta',
        ],
        solo: true,
        issuerPath: '/oauth2/default',
        roleScope: (role) => `${ROLE_PREFIX}${role}`,
        tokenAudience: audience,
        resourceParam: null,
        scopeClaim: 'scp',
        userClaim: 'sub',
        claims: (id) => ({
          sub: email(id), name: USERS[id].name, email: email(id), email_verified: emailVerified(id),
          preferred_username: email(id), groups: [...USERS[id].groups],
        }),
        claimsConfig: {
          openid: ['sub'], profile: ['name', 'preferred_username'], email: ['email', 'email_verified'], groups: ['groups'],
        },
        scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
        conformIdTokenClaims: false,
        refreshGrace: config.refreshGrace ?? 30,
        offlineWithoutConsentPrompt: true,
        // Okta's /authorize and /token take no `resource`; the authorization server's audience
        // applies to every token it issues.
        screen(_endpoint, params) {
          removeParam(params, 'resource');
          return undefined;
        },
        resourceIndicators: singleApi(config, audience, scopes),
        accessTokenClaims: (id) => ({ uid: guid('user', id), groups: [...USERS[id].groups] }),
        customizeJwt(payload) {
          if (payload.scope !== undefined) {
            payload.scp = payload.scope.split(' ');
            delete payload.scope;
          }
          payload.cid = payload.client_id;
          payload.ver = 1;
        },
      };
    }

    // ---------------------------------------------------------------------------------------
    // Auth0.
    case 'auth0': {
      const audience = config.audience;
      const scopes = roleScopes();
      const ns = 'https://example.com/';
      return {
        name,
        docs: [
          // the API is asked for with `audience`; there is no `resource` parameter:
          'https://auth0.com/docs/secure/tokens/access-tokens/get-access-tokens',
          'https://auth0.com/docs/api/authentication#authorize-application',
          // offline_access gives a refresh token only when the API has "Allow Offline Access":
          'https://auth0.com/docs/secure/tokens/refresh-tokens/get-refresh-tokens',
          // rotation with reuse detection (a reused token revokes the family):
          'https://auth0.com/docs/secure/tokens/refresh-tokens/refresh-token-rotation',
          // custom claims must be namespaced (added by an Action):
          'https://auth0.com/docs/secure/tokens/json-web-tokens/create-custom-claims',
          'https://community.snowflake.com/s/article/How-to-configure-Auth0-as-External-OAuth-provider',
        ],
        solo: true,
        roleScope: (role) => `${ROLE_PREFIX}${role}`,
        tokenAudience: audience,
        resourceParam: null,
        scopeClaim: 'scope',
        userClaim: 'sub',
        claims: (id) => ({
          sub: `auth0|${id}`, name: USERS[id].name, nickname: id, email: email(id), email_verified: emailVerified(id),
          [`${ns}groups`]: [...USERS[id].groups],
        }),
        claimsConfig: {
          openid: ['sub', `${ns}groups`], profile: ['name', 'nickname'], email: ['email', 'email_verified'],
        },
        scopes: ['openid', 'offline_access', 'profile', 'email'],
        conformIdTokenClaims: false,
        refreshGrace: 0,
        offlineWithoutConsentPrompt: true,
        // "Allow Offline Access" of the Snowflake API (Dashboard > APIs > Settings).
        allowOfflineAccess: config.auth0AllowOfflineAccess !== false,
        extraParams: ['audience'],
        // Auth0 ignores `resource`: without `audience` the token is for userinfo only.
        screen(_endpoint, params) {
          removeParam(params, 'resource');
          return undefined;
        },
        resourceIndicators: {
          enabled: true,
          async defaultResource(ctx, _client, oneOf) {
            if (oneOf) return oneOf;
            return ctx.oidc.params?.audience || undefined;
          },
          async useGrantedResource() {
            return true;
          },
          async getResourceServerInfo(_ctx, indicator) {
            if (indicator !== audience) {
              throw new errors.AccessDenied(`Service not found: ${indicator}`);
            }
            return {
              audience,
              scope: scopes.join(' '),
              accessTokenTTL: config.accessTtl,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'RS256' } },
            };
          },
        },
        accessTokenClaims: (id) => ({ [`${ns}groups`]: [...USERS[id].groups] }),
        customizeJwt(payload, issuer, ctx) {
          // With openid, Auth0's access token names its userinfo endpoint as a second audience.
          const granted = ctx?.oidc?.entities?.Grant?.getOIDCScope?.() ?? '';
          if (granted.split(' ').includes('openid')) payload.aud = [payload.aud, `${issuer}/userinfo`];
          payload.azp = payload.client_id;
        },
      };
    }

    // ---------------------------------------------------------------------------------------
    // Keycloak.
    case 'keycloak': {
      const audience = config.audience;
      const scopes = roleScopes();
      return {
        name,
        docs: [
          // no resource indicators; the audience comes from an "Audience" mapper of a client scope:
          'https://www.keycloak.org/docs/latest/server_admin/#_audience',
          // group membership mapper, "Full group path" on by default:
          'https://www.keycloak.org/docs/latest/server_admin/#_protocol-mappers',
          // refresh tokens come with every code grant; "Revoke Refresh Token" is off by
          // default, so a used refresh token stays valid:
          'https://www.keycloak.org/docs/latest/server_admin/#_timeouts',
          'https://www.keycloak.org/docs/latest/server_admin/#_offline-access',
        ],
        solo: true,
        issuerPath: '/realms/acme',
        roleScope: (role) => `${ROLE_PREFIX}${role}`,
        tokenAudience: audience,
        resourceParam: null,
        scopeClaim: 'scope',
        userClaim: 'preferred_username',
        claims: (id) => ({
          sub: guid('user', id), name: USERS[id].name, preferred_username: id, email: email(id), email_verified: emailVerified(id),
          groups: USERS[id].groups.map((g) => `/${g}`),
        }),
        claimsConfig: {
          openid: ['sub'], profile: ['name', 'preferred_username'], email: ['email', 'email_verified'], groups: ['groups'],
        },
        scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
        conformIdTokenClaims: false,
        refreshGrace: Infinity,
        alwaysRefreshToken: true,
        screen(_endpoint, params) {
          removeParam(params, 'resource');
          return undefined;
        },
        resourceIndicators: singleApi(config, audience, scopes),
        accessTokenClaims: (id) => ({
          preferred_username: id, email: email(id), groups: USERS[id].groups.map((g) => `/${g}`),
        }),
        customizeJwt(payload) {
          payload.azp = payload.client_id;
          payload.typ = 'Bearer';
        },
      };
    }

    // ---------------------------------------------------------------------------------------
    // Google (Workspace): an ID-token-only provider for Snowgate's purposes.
    case 'google': {
      return {
        name,
        docs: [
          // no access tokens for custom APIs; refresh tokens through access_type=offline:
          'https://developers.google.com/identity/protocols/oauth2/web-server#offline',
          'https://developers.google.com/identity/openid-connect/openid-connect#authenticationuriparameters',
          // ID token claims (no groups):
          'https://developers.google.com/identity/openid-connect/openid-connect#an-id-tokens-payload',
        ],
        solo: false,
        roleScope: null,
        tokenAudience: null,
        resourceParam: null,
        scopeClaim: null,
        userClaim: 'email',
        claims: (id) => ({
          sub: String(100000000000 + [...id].reduce((a, c) => a * 31 + c.charCodeAt(0), 7) % 899999999999),
          name: USERS[id].name, email: email(id), email_verified: emailVerified(id), hd: 'example.test',
        }),
        claimsConfig: { openid: ['sub', 'hd'], profile: ['name'], email: ['email', 'email_verified'] },
        scopes: ['openid', 'profile', 'email'],
        conformIdTokenClaims: false,
        refreshGrace: Infinity,
        extraParams: ['access_type'],
        screen(endpoint, params) {
          if (params.resource !== undefined) {
            return { error: 'invalid_request', error_description: 'Parameter not allowed for this message type: resource' };
          }
          const asked = (params.scope ?? '').split(' ').filter(Boolean);
          const unknown = asked.filter((s) => !['openid', 'profile', 'email'].includes(s));
          if (endpoint !== 'token' && unknown.length) {
            return { error: 'invalid_scope', error_description: `Some requested scopes were invalid. {invalid=[${unknown.join(', ')}]}` };
          }
          return undefined;
        },
        resourceIndicators: {
          enabled: true,
          async getResourceServerInfo(_ctx, indicator) {
            throw new errors.InvalidTarget(`no access tokens for ${indicator}`);
          },
        },
      };
    }

    default:
      throw new Error(`unknown profile ${JSON.stringify(name)} (known: strict, entra, okta, auth0, keycloak, google)`);
  }
}

export const PROFILE_NAMES = ['strict', 'entra', 'okta', 'auth0', 'keycloak', 'google'];
