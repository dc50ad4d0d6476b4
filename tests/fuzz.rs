//! Fuzzing a running `strata serve` with bad input, on the stable toolchain.
//!
//! Two kinds of input, interleaved:
//! * SQL text: statements from a seed corpus (temporal clauses included),
//!   mutated by token edits (delete, duplicate, swap, replace with a keyword,
//!   operator or extreme literal, splice from another statement) and byte
//!   edits, plus generated deep nesting and long operator chains. Each is
//!   sent over one tokio-postgres connection, by the simple or the extended
//!   protocol, and must get an answer or an SQL error within a timeout; the
//!   connection must keep working.
//! * Postgres wire sessions over raw TCP: a valid startup and messages
//!   (simple and extended query, Sync, Terminate), then mutated (lengths,
//!   type bytes, single bytes, truncation, inserted garbage, duplicated
//!   frames). The server must answer and close the connection within a
//!   timeout once the client stops sending.
//!
//! After each batch the server process must be alive and a fresh
//! connection must answer `SELECT 1`.
//!
//! `STRATA_FUZZ_SECONDS` bounds the run (default 60), `STRATA_FUZZ_SEED`
//! picks the inputs (default a fixed seed, so CI is repeatable; `random`
//! for a new one; the seed is printed at the start and a failing input is
//! printed with it), `STRATA_FUZZ_VERBOSE=1` prints every input before it
//! is sent (to find one that hurt the server without failing itself).

#[path = "clients/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use harness::Server;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How long one SQL input may take (the server's statement_timeout is 5 s).
const SQL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to close a wire session after the client
/// stops sending.
const WIRE_TIMEOUT: Duration = Duration::from_secs(15);
const BATCH: usize = 40;

const SETUP: &[&str] = &[
    "INSERT INTO t1 (_id, a, b, s) VALUES (1, 10, -5, 'x'), (2, NULL, 0, ''), (3, 9223372036854775807, 7, 'long text'), (4, -9223372036854775808, 7, NULL)",
    "INSERT INTO t2 (_id, k, v, _valid_from, _valid_to) VALUES (1, 1, 'one', TIMESTAMP '2020-01-01', TIMESTAMP '2021-01-01'), (2, 2, 'two', TIMESTAMP '2020-06-01', NULL)",
    "UPDATE t2 FOR PORTION OF VALID_TIME FROM TIMESTAMP '2020-03-01' TO TIMESTAMP '2020-04-01' SET v = 'mid' WHERE _id = 1",
];

const CORPUS: &[&str] = &[
    "SELECT 1",
    "SELECT a, b FROM t1 WHERE a > 0 ORDER BY a DESC LIMIT 2",
    "SELECT count(*), sum(b), avg(a) FROM t1 GROUP BY b HAVING count(*) > 0",
    "SELECT s || 'y', length(s), upper(s) FROM t1 WHERE s IS NOT NULL",
    "SELECT * FROM t1 AS x JOIN t2 AS y ON x._id = y.k",
    "SELECT a FROM t1 WHERE a IN (SELECT k FROM t2) OR b BETWEEN -1 AND 1",
    "SELECT (SELECT max(k) FROM t2 WHERE t2.k <= t1._id) FROM t1",
    "SELECT CASE WHEN a IS NULL THEN 'none' WHEN a > 0 THEN 'pos' ELSE 'neg' END FROM t1",
    "SELECT CAST(b AS TEXT), b::double precision / 3, -b % 4 FROM t1",
    "SELECT row_number() OVER (PARTITION BY b ORDER BY _id) FROM t1",
    "SELECT k FROM t2 UNION ALL SELECT b FROM t1 EXCEPT SELECT 0",
    "WITH c AS (SELECT k, v FROM t2) SELECT v FROM c WHERE k = 1",
    "SELECT * FROM t2 FOR SYSTEM_TIME AS OF TIMESTAMP '2999-01-01'",
    "SELECT * FROM t2 FOR VALID_TIME AS OF DATE '2020-03-15'",
    "SELECT v, _valid_from, _valid_to FROM t2 FOR ALL VALID_TIME ORDER BY _valid_from",
    "SELECT * FROM t2 FOR SYSTEM_TIME FROM TIMESTAMP '2000-01-01' TO NOW() FOR VALID_TIME BETWEEN DATE '2020-01-01' AND DATE '2020-12-31'",
    "SELECT * FROM t2 FOR ALL SYSTEM_TIME FOR ALL VALID_TIME",
    "SELECT _system_from, _system_to FROM t1 FOR ALL SYSTEM_TIME",
    "INSERT INTO t3 (_id, x) VALUES (1, 1.5), (2, NULL)",
    "INSERT INTO t3 (_id, x, _valid_from) VALUES (3, 2.5, DATE '2019-01-01')",
    "UPDATE t3 SET x = x * 2 WHERE _id = 1",
    "UPDATE t3 FOR PORTION OF VALID_TIME FROM DATE '2019-02-01' TO DATE '2019-03-01' SET x = 0 WHERE _id = 3",
    "DELETE FROM t3 FOR PORTION OF VALID_TIME FROM DATE '2019-05-01' TO NULL WHERE _id = 3",
    "DELETE FROM t3 WHERE x IS NULL",
    "ERASE FROM t3 WHERE _id = 2",
    "ASSERT (SELECT count(*) FROM t1) > 0",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "BEGIN READ WRITE WITH (SYSTEM_TIME = TIMESTAMP '2999-01-01')",
    "SHOW TimeZone",
    "SET DateStyle = 'ISO, DMY'",
    "EXPLAIN SELECT a FROM t1 WHERE b = 7",
    "SELECT ARRAY[1, 2, 3], ARRAY['a', NULL]",
    "SELECT ARRAY[ARRAY[ARRAY[1, 2]], ARRAY[ARRAY[3]]], CAST(CAST(1 AS TEXT) AS INT)",
    "SELECT TIMESTAMP '2020-01-01 00:00:00' + INTERVAL '1 day', DATE '9999-12-31'",
    "SELECT 9223372036854775807 + 1",
    "SELECT 1 / 0",
    "SELECT '2020-13-45'::date",
    "SELECT pg_typeof(1), version(), current_user",
    "SELECT table_name FROM information_schema.tables",
    "SELECT relname FROM pg_catalog.pg_class WHERE relkind = 'r'",
    "VALUES (1, 'a'), (2, 'b')",
    "SELECT * FROM generate_series(1, 5) AS g(v) WHERE v % 2 = 0",
];

/// What a token may be replaced with.
const DICT: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "NULL",
    "(",
    ")",
    ",",
    ";",
    "[",
    "]",
    "+",
    "-",
    "*",
    "/",
    "%",
    "||",
    "::",
    "=",
    "<>",
    "<",
    ">=",
    "'",
    "\"",
    "$1",
    "?",
    "0",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "1e-400",
    "'9999-12-31'",
    "'0001-01-01 BC'",
    "'infinity'",
    "''",
    "'\\'",
    "TIMESTAMP",
    "DATE",
    "INTERVAL",
    "ARRAY",
    "CASE",
    "END",
    "FOR",
    "SYSTEM_TIME",
    "VALID_TIME",
    "AS OF",
    "ALL",
    "PORTION OF",
    "BETWEEN",
    "JOIN",
    "ON",
    "UNION",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "OFFSET",
    "t1",
    "t2",
    "t3",
    "_id",
    "_valid_from",
    "_system_to",
    "count(*)",
    "(SELECT 1)",
    "E'\\x00'",
    "U&'\\0000'",
    "$$x$$",
    "--",
    "/*",
    "*/",
    "\u{0}",
    "é",
    "🦀",
];

/// Split SQL into rough tokens: words, quoted strings, single punctuation.
fn tokens(sql: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for ch in sql.chars() {
        if let Some(q) = quote {
            cur.push(ch);
            if ch == q {
                quote = None;
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if ch == '\'' || ch == '"' {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            cur.push(ch);
            quote = Some(ch);
        } else if ch.is_alphanumeric() || ch == '_' || ch == '.' {
            cur.push(ch);
        } else {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if !ch.is_whitespace() {
                out.push(ch.to_string());
            }
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn pick<'a, T>(rng: &mut StdRng, v: &'a [T]) -> &'a T {
    &v[rng.random_range(0..v.len())]
}

/// One SQL input: a mutated corpus statement, or generated nesting.
fn sql_input(rng: &mut StdRng) -> String {
    match rng.random_range(0..20) {
        0 => {
            // Deep nesting of one shape.
            // Around the parser's nesting limit (50), the expression depth
            // limit (1,000) and far past both.
            let n = [10, 45, 48, 50, 100, 999, 1001, 5_000, 20_000][rng.random_range(0..9)];
            match rng.random_range(0..5) {
                0 => format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
                1 => format!("SELECT {}1{}", "ARRAY[".repeat(n), "]".repeat(n)),
                2 => format!("SELECT {}", vec!["1"; n].join("+")),
                3 => format!(
                    "SELECT 1 FROM t1 WHERE {}",
                    (0..n)
                        .map(|i| format!("a = {i}"))
                        .collect::<Vec<_>>()
                        .join(" OR ")
                ),
                _ => format!(
                    "SELECT {}1{}",
                    "(SELECT ".repeat(n.min(3000)),
                    ")".repeat(n.min(3000))
                ),
            }
        }
        1 => {
            // Random bytes (printable-ish).
            let n = rng.random_range(0..200);
            (0..n)
                .map(|_| rng.random_range(0x20u8..0x7f) as char)
                .collect()
        }
        _ => {
            let mut t = tokens(*pick(rng, CORPUS));
            for _ in 0..rng.random_range(1..5) {
                mutate_tokens(rng, &mut t);
            }
            let mut s = t.join(" ");
            if rng.random_bool(0.15) {
                s = mutate_bytes(rng, s.into_bytes());
            }
            s
        }
    }
}

fn mutate_tokens(rng: &mut StdRng, t: &mut Vec<String>) {
    if t.is_empty() {
        t.push(pick(rng, DICT).to_string());
        return;
    }
    let i = rng.random_range(0..t.len());
    match rng.random_range(0..6) {
        0 => {
            t.remove(i);
        }
        1 => {
            let x = t[i].clone();
            t.insert(i, x);
        }
        2 => {
            let j = rng.random_range(0..t.len());
            t.swap(i, j);
        }
        3 => t[i] = pick(rng, DICT).to_string(),
        4 => t.insert(i, pick(rng, DICT).to_string()),
        _ => {
            // Splice part of another statement in.
            let other = tokens(*pick(rng, CORPUS));
            let a = rng.random_range(0..other.len());
            let b = rng
                .random_range(a..other.len().min(a + 6) + 1)
                .min(other.len());
            for (k, tok) in other[a..b].iter().enumerate() {
                t.insert((i + k).min(t.len()), tok.clone());
            }
        }
    }
}

fn mutate_bytes(rng: &mut StdRng, mut b: Vec<u8>) -> String {
    for _ in 0..rng.random_range(1..4) {
        if b.is_empty() {
            break;
        }
        let i = rng.random_range(0..b.len());
        match rng.random_range(0..3) {
            0 => b[i] = rng.random(),
            1 => {
                b.remove(i);
            }
            _ => b.insert(i, rng.random()),
        }
    }
    String::from_utf8_lossy(&b).replace('\0', " ")
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn startup() -> Vec<u8> {
    let mut body = 196608i32.to_be_bytes().to_vec();
    for s in ["user", "strata", "database", "strata"] {
        body.extend(cstr(s));
    }
    body.push(0);
    let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    p.extend(body);
    p
}

/// A valid session's frames after the startup packet.
fn wire_frames(rng: &mut StdRng) -> Vec<Vec<u8>> {
    let mut frames = vec![];
    for _ in 0..rng.random_range(1..5) {
        let sql = pick(rng, CORPUS);
        if rng.random_bool(0.5) {
            frames.push(frame(b'Q', &cstr(sql)));
        } else {
            let mut parse = cstr("");
            parse.extend(cstr(sql));
            parse.extend_from_slice(&0i16.to_be_bytes());
            frames.push(frame(b'P', &parse));
            let mut bind = cstr("");
            bind.extend(cstr(""));
            bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
            frames.push(frame(b'B', &bind));
            let mut desc = vec![b'P'];
            desc.extend(cstr(""));
            frames.push(frame(b'D', &desc));
            let mut exec = cstr("");
            exec.extend_from_slice(&0i32.to_be_bytes());
            frames.push(frame(b'E', &exec));
            frames.push(frame(b'S', b""));
        }
    }
    if rng.random_bool(0.5) {
        frames.push(frame(b'X', b""));
    }
    frames
}

/// One wire input: startup (sometimes mutated) and mutated frames.
fn wire_input(rng: &mut StdRng) -> Vec<u8> {
    let mut frames = wire_frames(rng);
    let mut start = startup();
    if rng.random_bool(0.1) {
        let i = rng.random_range(0..start.len());
        start[i] = rng.random();
    }
    for _ in 0..rng.random_range(1..4) {
        let f = rng.random_range(0..frames.len());
        let fr = &mut frames[f];
        match rng.random_range(0..8) {
            // The length field: small, off by a little, huge, negative.
            // (A frame cut short or garbage inserted by an earlier edit
            // may be shorter than a header: those edits skip it.)
            0 if fr.len() >= 5 => {
                let len: i32 = *pick(rng, &[0, 1, 3, 4, 5, -1, i32::MAX, 0x0100_0000]);
                fr[1..5].copy_from_slice(&len.to_be_bytes());
            }
            1 if fr.len() >= 5 => {
                let old = i32::from_be_bytes([fr[1], fr[2], fr[3], fr[4]]);
                let len = old.wrapping_add(rng.random_range(-6..7));
                fr[1..5].copy_from_slice(&len.to_be_bytes());
            }
            // The type byte.
            2 if !fr.is_empty() => fr[0] = *pick(rng, b"QPBEDCSHXdcfpF~\0\xff"),
            // One byte of the body.
            3 if fr.len() > 5 => {
                let i = rng.random_range(5..fr.len());
                fr[i] = rng.random();
            }
            // Truncate.
            4 if !fr.is_empty() => {
                let n = rng.random_range(0..fr.len());
                fr.truncate(n);
            }
            // Garbage between frames.
            5 => {
                let g: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                frames.insert(f, g);
            }
            // A frame twice.
            6 => {
                let x = fr.clone();
                frames.insert(f, x);
            }
            _ => {
                frames.remove(f);
                if frames.is_empty() {
                    frames.push(frame(b'S', b""));
                }
            }
        }
    }
    let mut out = start;
    for f in frames {
        out.extend(f);
    }
    out
}

/// Send a wire session, stop sending, and wait for the server to close.
fn run_wire(port: u16, bytes: &[u8]) -> Result<usize, String> {
    let mut t = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    t.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // A server that closes early may reset the rest of the write: fine.
    let _ = t.write_all(bytes);
    let _ = t.shutdown(Shutdown::Write);
    let deadline = Instant::now() + WIRE_TIMEOUT;
    let mut got = 0usize;
    let mut buf = [0u8; 65536];
    loop {
        match t.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Ok(got),
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the server neither answered nor closed within {WIRE_TIMEOUT:?} ({got} bytes read)"
            ));
        }
    }
}

async fn connect(s: &Server) -> tokio_postgres::Client {
    tokio::time::timeout(Duration::from_secs(20), s.client())
        .await
        .expect("connecting timed out")
}

/// A fresh connection answers `SELECT 1` in time, and the process lives.
async fn alive(s: &mut Server, seed: u64, last: &str) {
    if let Ok(Some(st)) = s.child.try_wait() {
        panic!("the server exited ({st}) (STRATA_FUZZ_SEED={seed}); last input:\n{last}");
    }
    let c = connect(s).await;
    let one = tokio::time::timeout(Duration::from_secs(20), c.simple_query("SELECT 1"))
        .await
        .unwrap_or_else(|_| {
            panic!("SELECT 1 on a fresh connection hung (STRATA_FUZZ_SEED={seed}); last:\n{last}")
        });
    assert!(
        one.is_ok(),
        "SELECT 1 failed: {one:?} (STRATA_FUZZ_SEED={seed}); last input:\n{last}"
    );
}

/// The seed CI runs with (see `fuzz_sql_and_wire_input`).
const DEFAULT_SEED: u64 = 20_261_204;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_sql_and_wire_input() {
    let seconds: u64 = std::env::var("STRATA_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    // A fixed seed by default, so CI replays the same inputs (a failure
    // there is a regression, reproducible with the printed seed); set
    // STRATA_FUZZ_SEED=random (or a number) to explore other inputs.
    let seed: u64 = match std::env::var("STRATA_FUZZ_SEED").ok().as_deref() {
        None | Some("") => DEFAULT_SEED,
        Some("random") => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
        Some(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("STRATA_FUZZ_SEED={v:?}: use a number or \"random\"")),
    };
    let verbose = std::env::var("STRATA_FUZZ_VERBOSE").is_ok_and(|v| v == "1");
    eprintln!("fuzz: STRATA_FUZZ_SEED={seed} STRATA_FUZZ_SECONDS={seconds}");
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(
        &[
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--statement-timeout",
            "5s",
        ],
        &[],
    );
    let setup = connect(&s).await;
    for q in SETUP {
        setup
            .batch_execute(q)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    drop(setup);

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let (mut sql_n, mut sql_ok, mut sql_err, mut wire_n, mut batches) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let c = connect(&s).await;
    let mut last = String::new();
    while Instant::now() < deadline {
        for _ in 0..BATCH {
            if rng.random_bool(0.7) {
                let sql = sql_input(&mut rng);
                last = format!("SQL: {sql}");
                if verbose {
                    eprintln!("fuzz input: {}", clip(&last));
                }
                if sql.to_ascii_uppercase().contains("COPY") {
                    continue;
                }
                let extended = rng.random_bool(0.3);
                let r = if extended {
                    tokio::time::timeout(SQL_TIMEOUT, c.query(sql.as_str(), &[]))
                        .await
                        .map(|r| r.map(|_| ()))
                } else {
                    tokio::time::timeout(SQL_TIMEOUT, c.simple_query(&sql))
                        .await
                        .map(|r| r.map(|_| ()))
                };
                sql_n += 1;
                match r {
                    Err(_) => panic!(
                        "no answer within {SQL_TIMEOUT:?} (STRATA_FUZZ_SEED={seed}): {}",
                        clip(&last)
                    ),
                    Ok(Ok(())) => sql_ok += 1,
                    // A panic the server caught is still a bug: bad input
                    // gets a clear error, never a panic.
                    Ok(Err(e))
                        if e.as_db_error().is_some_and(|d| {
                            d.code().code() == "XX000" && d.message().contains("panicked")
                        }) =>
                    {
                        panic!(
                            "the server panicked: {e} (STRATA_FUZZ_SEED={seed}): {}",
                            clip(&last)
                        )
                    }
                    Ok(Err(e)) if e.as_db_error().is_some() => sql_err += 1,
                    // Parameters the client cannot supply ($1 with no value)
                    // are refused by tokio-postgres itself.
                    Ok(Err(e)) if extended && !c.is_closed() => {
                        let _ = e;
                        sql_err += 1
                    }
                    // Query text is a C string on the wire: tokio-postgres
                    // refuses to send one with a NUL in it (raw wire
                    // sessions send such bytes to the server).
                    Ok(Err(e)) if sql.contains('\0') && !c.is_closed() => {
                        let _ = e;
                        sql_err += 1
                    }
                    Ok(Err(e)) => panic!(
                        "the connection broke: {e} (STRATA_FUZZ_SEED={seed}): {}",
                        clip(&last)
                    ),
                }
                assert!(
                    !c.is_closed(),
                    "SQL input closed the connection (STRATA_FUZZ_SEED={seed}): {}",
                    clip(&last)
                );
            } else {
                let bytes = wire_input(&mut rng);
                last = format!("wire: {bytes:?}");
                if verbose {
                    eprintln!("fuzz input: {}", clip(&last));
                }
                wire_n += 1;
                if let Err(e) = run_wire(s.port, &bytes) {
                    panic!("{e} (STRATA_FUZZ_SEED={seed}); input:\n{}", clip(&last));
                }
            }
        }
        batches += 1;
        // Leave any transaction a mutated input opened, restore the tables.
        let _ = c.batch_execute("ROLLBACK").await;
        let _ = c.batch_execute("RESET ALL").await;
        alive(&mut s, seed, &clip(&last)).await;
        if batches % 10 == 0 {
            for q in &SETUP[..2] {
                let _ = c.batch_execute(q).await;
            }
        }
    }
    let took = started.elapsed();
    eprintln!(
        "fuzz: {} inputs in {:.1} s ({sql_n} SQL: {sql_ok} answered, {sql_err} errors; {wire_n} wire sessions; {batches} batches checked) seed {seed}",
        sql_n + wire_n,
        took.as_secs_f64()
    );
    assert!(sql_n + wire_n > 0);
}

fn clip(s: &str) -> String {
    if s.len() > 2000 {
        let mut end = 2000;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &s[..end], s.len())
    } else {
        s.to_string()
    }
}
