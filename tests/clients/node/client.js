// node-postgres against strata serve (run by tests/pgwire_clients.rs).
// The port comes in STRATA_PORT; any failed check exits non-zero.
'use strict';
const assert = require('node:assert/strict');
const { Client } = require('pg');

async function main() {
  const c = new Client({ host: '127.0.0.1', port: Number(process.env.STRATA_PORT), user: 'strata', database: 'strata', connectionTimeoutMillis: 10000 });
  await c.connect();
  const ok = (what) => console.log('ok: ' + what);

  await c.query('CREATE TABLE node_types (_id BIGINT, i BIGINT, f DOUBLE PRECISION, n NUMERIC(10,2), b BOOLEAN, t TEXT, by BYTEA, d DATE, ts TIMESTAMP, tstz TIMESTAMPTZ, arr BIGINT[])');
  // node-postgres sends every parameter as text with an unspecified type:
  // the server infers it from the column.
  await c.query(
    'INSERT INTO node_types (_id, i, f, n, b, t, by, d, ts, tstz, arr) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)',
    [1, -42, 2.5, '12.34', true, 'héllo', Buffer.from([0, 1, 255]), '2024-02-29', '2024-01-02 03:04:05.678', new Date(Date.UTC(2024, 0, 2, 3, 4, 5)), [1, 2, 3]],
  );
  const r = await c.query('SELECT i, f, n, b, t, by, d::text AS d, ts::text AS ts, tstz, arr FROM node_types WHERE _id = $1', [1]);
  const row = r.rows[0];
  assert.equal(row.i, '-42'); // int8 comes back as a string in node-postgres
  assert.equal(row.f, 2.5);
  assert.equal(row.n, '12.34');
  assert.equal(row.b, true);
  assert.equal(row.t, 'héllo');
  assert.deepEqual([...row.by], [0, 1, 255]);
  assert.equal(row.d, '2024-02-29');
  // DataFusion casts timestamps to text in ISO form with a 'T' (Postgres: a space).
  assert.equal(row.ts.replace('T', ' '), '2024-01-02 03:04:05.678');
  assert.equal(row.tstz.toISOString(), '2024-01-02T03:04:05.000Z');
  assert.deepEqual(row.arr, ['1', '2', '3']);
  ok('text results of int8, float8, numeric, bool, text, bytea, date, timestamp, timestamptz, int8[]');
  assert.deepEqual(r.fields.map((f) => f.dataTypeID), [20, 701, 1700, 16, 25, 17, 25, 25, 1184, 1016]);
  ok('result column type OIDs');

  // Typed parameter (cast) in an expression; a prepared statement by name.
  const p = await c.query({ name: 'plus', text: 'SELECT $1::int + 1 AS v', values: ['41'] });
  assert.equal(p.rows[0].v, '42'); // Strata computes integers as int8 (a string in node-postgres)
  const p2 = await c.query({ name: 'plus', text: 'SELECT $1::int + 1 AS v', values: ['1'] });
  assert.equal(p2.rows[0].v, '2');
  ok('named prepared statement reused');

  // Rolled-back transaction.
  await c.query('BEGIN');
  await c.query("INSERT INTO node_types (_id, t) VALUES (5, 'gone')");
  await c.query('ROLLBACK');
  assert.equal((await c.query('SELECT count(*)::int AS n FROM node_types WHERE _id = 5')).rows[0].n, 0);
  ok('rolled-back insert is absent');

  // Time travel.
  await c.query('INSERT INTO node_accounts (_id, balance) VALUES (1, 100)');
  await new Promise((res) => setTimeout(res, 50));
  const before = (await c.query('SELECT now()::text AS t')).rows[0].t;
  await new Promise((res) => setTimeout(res, 50));
  await c.query('UPDATE node_accounts SET balance = 90 WHERE _id = 1');
  assert.equal((await c.query('SELECT balance::int AS b FROM node_accounts')).rows[0].b, 90);
  const old = await c.query('SELECT balance::int AS b FROM node_accounts FOR SYSTEM_TIME AS OF $1', [before]);
  assert.equal(old.rows[0].b, 100);
  ok('time travel to before the UPDATE');

  // Catalog introspection.
  const t = await c.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1");
  const names = t.rows.map((x) => x.table_name);
  assert.ok(names.includes('node_types') && names.includes('node_accounts'), JSON.stringify(names));
  const cols = await c.query(
    "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull FROM pg_catalog.pg_attribute a " +
      "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid WHERE c.relname = $1 AND a.attnum > 0 ORDER BY a.attnum",
    ['node_types'],
  );
  assert.deepEqual(cols.rows.slice(0, 4), [
    { attname: '_id', type: 'bigint', attnotnull: true },
    { attname: 'i', type: 'bigint', attnotnull: false },
    { attname: 'f', type: 'double precision', attnotnull: false },
    { attname: 'n', type: 'numeric(10,2)', attnotnull: false },
  ]);
  ok('catalog introspection');
  await c.end();
  console.log('node-postgres: all checks passed');
}

main().catch((e) => {
  console.error('FAILED:', e);
  process.exit(1);
});
