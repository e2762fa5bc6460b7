// Storage for the rig's identity provider: an oidc-provider adapter over one in-memory table
// that can be mirrored to a JSON file.
//
// It behaves like oidc-provider's own MemoryAdapter (same indexes: session uid, device user
// code, and the members of each grant so that a grant can be revoked as a whole), with two
// differences the rig needs:
//   * the whole table can be written to a file after every change (`--state-file`), so the IdP
//     can be killed and started again with its sessions, grants and refresh tokens intact
//     (outage tests);
//   * the same table survives the provider being rebuilt in-process (key rotation builds a new
//     Provider with the new key set and points it at the same store).
// Values are cloned on the way in and out, so nothing outside can change a stored payload
// without going through the adapter. Entries expire exactly at their TTL (the provider runs
// with clockTolerance 0).

import * as fs from 'node:fs';
import * as path from 'node:path';

const GRANTABLE = new Set([
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'DeviceCode',
  'BackchannelAuthenticationRequest',
  'PreAuthorizedCode',
]);

const clone = (value) => (value === undefined ? undefined : structuredClone(value));

export class Store {
  // file: where to mirror the table, or undefined for memory only.
  constructor(file) {
    this.file = file;
    this.table = new Map(); // key -> { v: value, exp: epoch ms | null }
    if (file && fs.existsSync(file)) {
      const saved = JSON.parse(fs.readFileSync(file, 'utf8'));
      for (const [key, entry] of Object.entries(saved.entries ?? {})) {
        this.table.set(key, entry);
      }
      this.prune();
    }
  }

  get(key) {
    const entry = this.table.get(key);
    if (!entry) return undefined;
    if (entry.exp !== null && entry.exp <= Date.now()) {
      this.table.delete(key);
      return undefined;
    }
    return clone(entry.v);
  }

  // ttlMs: undefined for no expiry.
  set(key, value, ttlMs) {
    this.table.set(key, {
      v: clone(value),
      exp: typeof ttlMs === 'number' ? Date.now() + ttlMs : null,
    });
  }

  delete(key) {
    this.table.delete(key);
  }

  prune() {
    const now = Date.now();
    for (const [key, entry] of this.table) {
      if (entry.exp !== null && entry.exp <= now) this.table.delete(key);
    }
  }

  // Writes the table to the file (atomically: a temporary file, then rename). Synchronous on
  // purpose: the rig may SIGKILL the IdP at any moment, and every finished request must be on
  // disk by then.
  flush() {
    if (!this.file) return;
    this.prune();
    const tmp = path.join(path.dirname(this.file), `.${path.basename(this.file)}.tmp`);
    fs.writeFileSync(tmp, JSON.stringify({ entries: Object.fromEntries(this.table) }));
    fs.renameSync(tmp, this.file);
  }
}

const grantKeyFor = (id) => `grant:${id}`;
const sessionUidKeyFor = (uid) => `sessionUid:${uid}`;
const userCodeKeyFor = (code) => `userCode:${code}`;

// Grant members are kept as { tokenKey: expiresAt epoch ms | null }.
function getGrantMembers(store, grantId) {
  return store.get(grantKeyFor(grantId)) ?? {};
}

function setGrantMembers(store, grantId, members) {
  const now = Date.now();
  for (const [key, expiresAt] of Object.entries(members)) {
    if (expiresAt !== null && expiresAt <= now) delete members[key];
  }
  const keys = Object.values(members);
  if (keys.length === 0) {
    store.delete(grantKeyFor(grantId));
    return;
  }
  const finite = keys.every((e) => e !== null);
  store.set(grantKeyFor(grantId), members, finite ? Math.max(...keys) - now : undefined);
}

function removeSecondaryIndexes(store, id, payload) {
  if (payload.uid && store.get(sessionUidKeyFor(payload.uid)) === id) {
    store.delete(sessionUidKeyFor(payload.uid));
  }
  if (payload.userCode && store.get(userCodeKeyFor(payload.userCode)) === id) {
    store.delete(userCodeKeyFor(payload.userCode));
  }
}

function removeIndexes(store, model, id, key, payload) {
  removeSecondaryIndexes(store, id, payload);
  if (GRANTABLE.has(model) && payload.grantId) {
    const members = getGrantMembers(store, payload.grantId);
    delete members[key];
    setGrantMembers(store, payload.grantId, members);
  }
}

// A provider profile may keep a rotated refresh token usable for a while (`refreshGrace`,
// seconds; Infinity: until it expires). oidc-provider has no option for that: it treats any
// used refresh token presented again as reuse. So the adapter shows a token consumed within
// the grace period as not yet consumed, which is how Okta's rotation grace period and the
// non-revoking refresh tokens of Entra ID and Keycloak behave.
export class RigAdapter {
  constructor(model, store, { refreshGrace = 0 } = {}) {
    this.model = model;
    this.store = store;
    this.refreshGrace = model === 'RefreshToken' ? refreshGrace : 0;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const { store } = this;
    const key = this.key(id);
    const ttlMs = typeof expiresIn === 'number' ? expiresIn * 1000 : undefined;
    const previous = store.get(key);
    if (previous) removeIndexes(store, this.model, id, key, previous);

    if (this.model === 'Session') store.set(sessionUidKeyFor(payload.uid), id, ttlMs);

    const { grantId, userCode } = payload;
    if (GRANTABLE.has(this.model) && grantId) {
      const members = getGrantMembers(store, grantId);
      members[key] = ttlMs === undefined ? null : Date.now() + ttlMs;
      setGrantMembers(store, grantId, members);
    }
    if (userCode) store.set(userCodeKeyFor(userCode), id, ttlMs);

    store.set(key, payload, ttlMs);
    store.flush();
  }

  async find(id) {
    const payload = this.store.get(this.key(id));
    if (payload?.consumed && this.refreshGrace > 0
      && Date.now() / 1000 - payload.consumed < this.refreshGrace) {
      delete payload.consumed;
    }
    return payload;
  }

  async findByUid(uid) {
    const id = this.store.get(sessionUidKeyFor(uid));
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = this.store.get(userCodeKeyFor(userCode));
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const key = this.key(id);
    const entry = this.store.table.get(key);
    if (!entry) return;
    entry.v.consumed = Math.floor(Date.now() / 1000);
    this.store.flush();
  }

  async destroy(id) {
    const key = this.key(id);
    const payload = this.store.get(key);
    this.store.delete(key);
    if (payload) removeIndexes(this.store, this.model, id, key, payload);
    this.store.flush();
  }

  async revokeByGrantId(grantId) {
    const { store } = this;
    const members = getGrantMembers(store, grantId);
    for (const tokenKey of Object.keys(members)) {
      const payload = store.get(tokenKey);
      store.delete(tokenKey);
      if (payload) {
        const id = payload.jti ?? tokenKey.slice(tokenKey.indexOf(':') + 1);
        removeSecondaryIndexes(store, id, payload);
      }
    }
    store.delete(grantKeyFor(grantId));
    store.flush();
  }
}
