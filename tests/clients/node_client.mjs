// A real Node.js snowflake-sdk program for the rig's tests.
//
// Run with `node tests/clients/node_client.mjs --url http://127.0.0.1:PORT --account A --user U
// (--password P | --authenticator oauth --token T; or RIG_SF_PASSWORD / RIG_SF_TOKEN in the
// environment, kept off the command line) [--role R] [--database D] [--schema S]
// [--warehouse W] [--query-tag T] --scenario NAME [--rows N] [--sql SQL]`.
//
// It asserts nothing: it prints one JSON object on stdout saying what happened. Exit code 0 when
// the scenario ran and reported, even when Snowflake (or the gateway) refused something: driver
// errors are reported as {"ok": false, "error": {"code", "sqlState", "message", "name"}}.
// Non-zero only for harness bugs.
//
// Scenarios: smoke (connect, select 1, destroy), binds (positional and numbered binds, an array
// bind insert, typed values back), big_select (N rows, default 100000, streamed; count and
// checksum), destroy (connect, query, destroy; report the connection's state), query (--sql).

import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// node_modules lives at the repository's root; resolve the sdk from there.
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', '..', 'package.json'));
const snowflake = require('snowflake-sdk');

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) {
      out[key] = true;
    } else {
      out[key] = next;
      i++;
    }
  }
  return out;
}

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function driverError(e) {
  return {
    name: e?.name ?? null,
    code: e?.code ?? null,
    sqlState: e?.sqlState ?? null,
    message: e?.message ?? String(e),
  };
}

function connect(args) {
  const opts = {
    accessUrl: args.url,
    account: args.account,
    application: 'SnowgateRig',
    clientSessionKeepAlive: false,
  };
  if (args.user) opts.username = args.user;
  if (args.password !== undefined) opts.password = String(args.password);
  if (args.authenticator) opts.authenticator = String(args.authenticator).toUpperCase();
  if (args.token) opts.token = args.token;
  if (args.role) opts.role = args.role;
  if (args.database) opts.database = args.database;
  if (args.schema) opts.schema = args.schema;
  if (args.warehouse) opts.warehouse = args.warehouse;
  if (args['query-tag']) opts.queryTag = args['query-tag'];
  const conn = snowflake.createConnection(opts);
  return new Promise((resolve, reject) => {
    conn.connect((err, c) => (err ? reject(err) : resolve(c)));
  });
}

function exec(conn, sqlText, binds) {
  return new Promise((resolve, reject) => {
    conn.execute({
      sqlText,
      binds,
      complete: (err, stmt, rows) => (err ? reject(err) : resolve({ stmt, rows })),
    });
  });
}

function destroy(conn) {
  return new Promise((resolve, reject) => {
    conn.destroy((err) => (err ? reject(err) : resolve()));
  });
}

function plain(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === 'bigint') return v.toString();
  if (Buffer.isBuffer(v)) return v.toString('hex').toUpperCase();
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'object') {
    if (typeof v.toJSON === 'function') return v.toJSON();
    return v;
  }
  return v;
}

function plainRows(rows) {
  return (rows || []).map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, plain(v)])));
}

const scenarios = {
  async smoke(args, out) {
    const conn = await connect(args);
    out.connected = true;
    const { rows } = await exec(conn, 'select 1 as one');
    out.rows = plainRows(rows);
    await destroy(conn);
    out.closed = true;
  },

  async query(args, out) {
    const conn = await connect(args);
    out.connected = true;
    const { rows } = await exec(conn, args.sql || 'select 1 as one');
    out.rows = plainRows(rows);
    await destroy(conn);
  },

  async binds(args, out) {
    const table = args.table || 'rig_node_binds';
    const conn = await connect(args);
    out.connected = true;
    const r = {};
    await exec(conn, `create or replace table ${table} (id int, name varchar, amount number(10,2), d date, ts timestamp_ntz, flag boolean)`);
    const ins1 = await exec(conn, `insert into ${table} values (?, ?, ?, ?, ?, ?)`, [1, 'one', 1.5, '2024-01-02', '2024-01-02 03:04:05', true]);
    r.insert_positional = ins1.stmt.getNumUpdatedRows?.() ?? null;
    const ins2 = await exec(conn, `insert into ${table} values (:1, :2, :3, :4, :5, :6)`, [2, 'two', 2.25, '2024-02-03', '2024-02-03 04:05:06', false]);
    r.insert_numbered = ins2.stmt.getNumUpdatedRows?.() ?? null;
    const ins3 = await exec(conn, `insert into ${table} values (?, ?, ?, ?, ?, ?)`, [
      [3, 'three', 3.25, '2024-03-04', '2024-03-04 05:06:07', true],
      [4, 'four', 4.75, '2024-04-05', '2024-04-05 06:07:08', false],
    ]);
    r.insert_array = ins3.stmt.getNumUpdatedRows?.() ?? null;
    const sel = await exec(conn, `select id, name, amount, d, ts, flag from ${table} where id >= ? order by id`, [2]);
    r.select = plainRows(sel.rows);
    const cnt = await exec(conn, `select count(*) as n from ${table}`);
    r.count = plain(cnt.rows[0].N);
    await exec(conn, `drop table ${table}`);
    out.results = r;
    await destroy(conn);
  },

  async big_select(args, out) {
    const n = Number(args.rows || 100000);
    const conn = await connect(args);
    out.connected = true;
    const t0 = Date.now();
    const stmt = conn.execute({
      sqlText: `select seq4() as n, 'row-' || seq4() as label from table(generator(rowcount => ${n})) order by n`,
      streamResult: true,
    });
    let count = 0;
    let sum = 0;
    const h = createHash('sha256');
    await new Promise((resolve, reject) => {
      stmt
        .streamRows()
        .on('error', reject)
        .on('data', (row) => {
          count++;
          sum += Number(row.N);
          h.update(`${row.N}:${row.LABEL}\n`);
        })
        .on('end', resolve);
    });
    out.elapsed_s = (Date.now() - t0) / 1000;
    out.row_count = count;
    out.sum = sum;
    out.checksum = h.digest('hex');
    await destroy(conn);
  },

  async renew(args, out) {
    const conn = await connect(args);
    out.connected = true;
    out.before = plainRows((await exec(conn, 'select 1 as one')).rows);
    await new Promise((r) => setTimeout(r, Number(args.sleep || 6) * 1000));
    try {
      out.after = plainRows((await exec(conn, 'select 2 as two')).rows);
      out.query_after_sleep = true;
    } catch (e) {
      out.query_after_sleep = false;
      out.after_error = driverError(e);
    }
    await destroy(conn);
  },

  async destroy(args, out) {
    const conn = await connect(args);
    out.connected = true;
    const { rows } = await exec(conn, 'select 1 as one');
    out.rows = plainRows(rows);
    await destroy(conn);
    out.destroyed = true;
    out.is_up = conn.isUp();
  },
};

async function main() {
  const args = parseArgs(process.argv.slice(2));
  for (const k of ['url', 'account', 'scenario']) {
    if (!args[k]) {
      process.stderr.write(`missing --${k}\n`);
      return 2;
    }
  }
  // Secrets may come from the environment instead of the command line (which `ps` shows).
  if (args.password === undefined && process.env.RIG_SF_PASSWORD !== undefined) {
    args.password = process.env.RIG_SF_PASSWORD;
  }
  if (args.token === undefined && process.env.RIG_SF_TOKEN) {
    args.token = process.env.RIG_SF_TOKEN;
    args.authenticator = args.authenticator || 'OAUTH';
  }
  const run = scenarios[args.scenario];
  if (!run) {
    process.stderr.write(`unknown scenario ${args.scenario}\n`);
    return 2;
  }
  snowflake.configure({ logLevel: args['log-level'] || 'OFF', additionalLogToConsole: false });
  const out = {
    scenario: args.scenario,
    driver: 'node',
    driver_version: require('snowflake-sdk/package.json').version,
    connected: false,
  };
  const t0 = Date.now();
  try {
    await run(args, out);
    out.ok = true;
  } catch (e) {
    out.ok = false;
    out.error = driverError(e);
  }
  out.elapsed_s_total = (Date.now() - t0) / 1000;
  emit(out);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    emit({ ok: false, harness_error: String(e?.stack || e) });
    process.exit(2);
  },
);
