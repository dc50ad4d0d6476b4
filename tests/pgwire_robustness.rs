//! Hostile and broken input to `strata serve`'s Postgres listener: a
//! malformed startup packet, garbage in the middle of a session, a 100 MB
//! query string, syntax errors. Each gets a clean error and the server keeps
//! serving others (checked with a fresh connection after each).

#[path = "clients/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use harness::Server;
use tokio_postgres::error::SqlState;

/// A fresh connection still works.
fn still_serving(s: &Server) {
    assert_eq!(s.psql_ok(&["SELECT 1"]).trim(), "1");
}

fn raw(s: &Server) -> TcpStream {
    let t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    t
}

fn startup_packet(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = 196608i32.to_be_bytes().to_vec(); // protocol 3.0
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    p.extend(body);
    p
}

/// Read backend messages until `stop` is seen or the server closes; returns (type, body) pairs.
fn read_messages(t: &mut TcpStream, stop: u8) -> Vec<(u8, Vec<u8>)> {
    let mut out = vec![];
    loop {
        let mut head = [0u8; 5];
        if t.read_exact(&mut head).is_err() {
            return out;
        }
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        if t.read_exact(&mut body).is_err() {
            return out;
        }
        let ty = head[0];
        out.push((ty, body));
        if ty == stop {
            return out;
        }
    }
}

/// The fields of an ErrorResponse body: (severity, code, message).
fn error_fields(body: &[u8]) -> (String, String, String) {
    let (mut sev, mut code, mut msg) = (String::new(), String::new(), String::new());
    for f in body.split(|b| *b == 0) {
        if f.is_empty() {
            continue;
        }
        let v = String::from_utf8_lossy(&f[1..]).to_string();
        match f[0] {
            b'S' => sev = v,
            b'C' => code = v,
            b'M' => msg = v,
            _ => {}
        }
    }
    (sev, code, msg)
}

/// After an error the server hangs up: reads see end of stream.
fn closed(t: &mut TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(t.read(&mut b), Ok(0))
}

#[test]
fn malformed_startup_packets_get_an_error() {
    let s = Server::start();
    // An unknown protocol version.
    let mut t = raw(&s);
    let mut p = startup_packet(&[("user", "strata")]);
    p[4..8].copy_from_slice(&0x0009_0000i32.to_be_bytes());
    t.write_all(&p).unwrap();
    let msgs = read_messages(&mut t, b'E');
    let (ty, body) = msgs.last().expect("a reply");
    assert_eq!(*ty, b'E', "{msgs:?}");
    let (sev, code, msg) = error_fields(body);
    assert_eq!(sev, "FATAL", "{msg}");
    assert!(!code.is_empty(), "{msg}");
    assert!(closed(&mut t));
    still_serving(&s);

    // A startup packet claiming to be huge.
    let mut t = raw(&s);
    t.write_all(&0x7fff_0000i32.to_be_bytes()).unwrap();
    t.write_all(&196608i32.to_be_bytes()).unwrap();
    t.write_all(b"user\0strata\0\0").unwrap();
    let msgs = read_messages(&mut t, b'E');
    assert!(msgs.iter().any(|(ty, _)| *ty == b'E'), "{msgs:?}");
    still_serving(&s);

    // Pure noise, then hang up.
    let mut t = raw(&s);
    t.write_all(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 1, 2, 3])
        .unwrap();
    drop(t);
    // A truncated startup packet, then hang up.
    let mut t = raw(&s);
    t.write_all(&[0, 0, 0, 6, 0, 3]).unwrap();
    drop(t);
    still_serving(&s);
}

#[test]
fn garbage_in_the_middle_of_a_session() {
    let s = Server::start();
    let mut t = raw(&s);
    t.write_all(&startup_packet(&[
        ("user", "strata"),
        ("database", "strata"),
    ]))
    .unwrap();
    let msgs = read_messages(&mut t, b'Z');
    assert_eq!(msgs.last().map(|m| m.0), Some(b'Z'), "logged in: {msgs:?}");
    // A simple query works.
    let mut q = vec![b'Q'];
    q.extend_from_slice(&(4 + 9i32).to_be_bytes());
    q.extend_from_slice(b"SELECT 1\0");
    t.write_all(&q).unwrap();
    let msgs = read_messages(&mut t, b'Z');
    assert!(msgs.iter().any(|m| m.0 == b'D'), "{msgs:?}");
    // Now an unknown message type with a bogus length.
    t.write_all(&[b'~', 0, 0, 0, 8, 1, 2, 3, 4]).unwrap();
    let msgs = read_messages(&mut t, b'E');
    let (ty, body) = msgs.last().expect("an error reply");
    assert_eq!(*ty, b'E');
    let (sev, _code, msg) = error_fields(body);
    assert_eq!(sev, "FATAL");
    assert!(msg.contains("invalid frontend message"), "{msg}");
    assert!(closed(&mut t));
    still_serving(&s);

    // A Query message whose length is negative.
    let mut t = raw(&s);
    t.write_all(&startup_packet(&[("user", "strata")])).unwrap();
    read_messages(&mut t, b'Z');
    t.write_all(&[b'Q', 0xff, 0xff, 0xff, 0xf0, b'x']).unwrap();
    let _ = read_messages(&mut t, b'E');
    still_serving(&s);

    // A Query message whose length is shorter than its own length field.
    let mut t = raw(&s);
    t.write_all(&startup_packet(&[("user", "strata")])).unwrap();
    read_messages(&mut t, b'Z');
    t.write_all(&[b'Q', 0, 0, 0, 2, b'x', 0]).unwrap();
    let msgs = read_messages(&mut t, b'E');
    assert_eq!(msgs.last().map(|m| m.0), Some(b'E'), "{msgs:?}");
    still_serving(&s);

    // A client that vanishes mid-message.
    let mut t = raw(&s);
    t.write_all(&startup_packet(&[("user", "strata")])).unwrap();
    read_messages(&mut t, b'Z');
    t.write_all(&[b'Q', 0, 0, 1, 0, b'S', b'E']).unwrap();
    drop(t);
    still_serving(&s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_query_gets_a_clean_error() {
    let s = Server::start();
    let c = s.client().await;
    let mut q = String::with_capacity(100 << 20);
    q.push_str("SELECT length('");
    q.extend(std::iter::repeat_n('x', 100 << 20));
    q.push_str("')");
    let e = c
        .simple_query(&q)
        .await
        .expect_err("a 100 MB query is refused");
    assert_eq!(e.code(), Some(&SqlState::PROGRAM_LIMIT_EXCEEDED), "{e}");
    let msg = e
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(msg.contains("STRATA_PG_MAX_QUERY_BYTES"), "{e:?}");
    // Same for a prepared statement.
    let e = c.prepare(&q).await.expect_err("refused when prepared too");
    assert_eq!(e.code(), Some(&SqlState::PROGRAM_LIMIT_EXCEEDED), "{e}");
    drop(q);
    // The same connection and fresh ones go on.
    let r = c.simple_query("SELECT 7").await.unwrap();
    assert!(
        matches!(&r[1], tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("7"))
    );
    still_serving(&s);

    // A big but allowed query (2 MB) works.
    let big = format!("SELECT length('{}')", "y".repeat(2 << 20));
    let row = c.query_one(&big, &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0) as usize, 2 << 20);
}

#[test]
fn syntax_errors_are_clean_and_the_server_goes_on() {
    let s = Server::start();
    for bad in [
        "SELEC 1",
        "SELECT (",
        "SELECT 'unterminated",
        "SELECT * FROM WHERE",
        "INSERT INTO",
        "CREATE TABLE (",
        "SELECT 1 +",
        "\u{1F600}",
        // A multi-byte character within the first four bytes (the COPY
        // check once sliced through it and panicked).
        "k \u{FFFD}) FROM t2",
        "é",
    ] {
        let o = s.psql(&[bad]);
        assert!(!o.status.success(), "{bad} should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("ERROR"), "{bad}: {err}");
        assert!(!err.contains("panick"), "{bad}: {err}");
        still_serving(&s);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_on_one_connection_do_not_disturb_another() {
    let s = Server::start();
    let a = s.client().await;
    let b = s.client().await;
    a.simple_query("CREATE TABLE t (_id BIGINT, v TEXT)")
        .await
        .unwrap();
    for bad in [
        "SELEC",
        "SELECT nosuch FROM t",
        "INSERT INTO t (v) VALUES ('no id')",
    ] {
        assert!(a.simple_query(bad).await.is_err(), "{bad}");
        b.simple_query("INSERT INTO t (_id, v) VALUES (1, 'x')")
            .await
            .unwrap();
    }
    let e = a.query("SELECT $1::BIGINT", &[&"not a number"]).await;
    assert!(e.is_err());
    let n: i64 = a
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// A raw connection, logged in and ready for a query.
fn logged_in(s: &Server) -> TcpStream {
    let mut t = raw(s);
    t.write_all(&startup_packet(&[("user", "strata")])).unwrap();
    let msgs = read_messages(&mut t, b'Z');
    assert_eq!(msgs.last().map(|m| m.0), Some(b'Z'), "logged in: {msgs:?}");
    t
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// The frame goes unanswered except for FATAL 08P01, and the connection closes.
fn refused_as_malformed(s: &Server, bytes: &[u8]) -> String {
    let mut t = logged_in(s);
    t.write_all(bytes).unwrap();
    let msgs = read_messages(&mut t, b'E');
    assert!(
        !msgs.iter().any(|m| matches!(m.0, b'C' | b'D' | b'T')),
        "nothing may run: {msgs:?}"
    );
    let (ty, body) = msgs.last().expect("an error reply");
    assert_eq!(*ty, b'E', "{msgs:?}");
    let (sev, code, msg) = error_fields(body);
    assert_eq!((sev.as_str(), code.as_str()), ("FATAL", "08P01"), "{msg}");
    assert!(closed(&mut t), "closed after {msg}");
    msg
}

#[test]
fn frames_with_bad_lengths_are_refused_not_executed() {
    let s = Server::start();
    s.psql_ok(&["INSERT INTO frames (_id) VALUES (1)"]);
    let insert = b"INSERT INTO frames (_id) VALUES (2)\0";
    // Length 0 and 3 (less than the length field itself), the statement after it.
    for len in [0i32, 3] {
        let mut q = vec![b'Q'];
        q.extend_from_slice(&len.to_be_bytes());
        q.extend_from_slice(insert);
        let msg = refused_as_malformed(&s, &q);
        assert!(msg.contains("invalid length"), "{msg}");
    }
    // A length that ends inside the query string, and one past its end.
    let mut short = frame(b'Q', insert);
    short[4] -= 5;
    refused_as_malformed(&s, &short);
    let mut long = frame(b'Q', b"INSERT INTO frames (_id) VALUES (3)\0\0\0junk");
    long.extend_from_slice(&frame(b'S', b""));
    let msg = refused_as_malformed(&s, &long);
    assert!(msg.contains("after the end"), "{msg}");
    // Extended protocol: a Parse whose parameter count overstates what follows,
    // an Execute with a truncated row limit, a Describe of an unknown kind.
    let mut parse = b"\0INSERT INTO frames (_id) VALUES (4)\0".to_vec();
    parse.extend_from_slice(&5i16.to_be_bytes());
    let mut bad = frame(b'P', &parse);
    bad.extend_from_slice(&frame(b'S', b""));
    refused_as_malformed(&s, &bad);
    let mut bad = frame(b'P', b"\0INSERT INTO frames (_id) VALUES (5)\0\0\0");
    bad.extend_from_slice(&frame(b'B', b"\0\0\0\0\0\0\0\0"));
    bad.extend_from_slice(&frame(b'E', b"\0\0\0"));
    bad.extend_from_slice(&frame(b'S', b""));
    refused_as_malformed(&s, &bad);
    refused_as_malformed(&s, &frame(b'D', b"Z\0"));
    refused_as_malformed(&s, &frame(b'S', b"x"));
    // None of those inserts happened.
    assert_eq!(
        s.psql_ok(&["SELECT count(*) FROM frames"]).trim(),
        "1",
        "a malformed frame was executed"
    );
    still_serving(&s);
}

/// An Execute's row limit is the client's: a huge one (here a mutated
/// frame's next bytes read as the limit) once made pgwire reserve room for
/// that many rows up front, and the failed allocation aborted the server.
#[test]
fn huge_or_negative_row_limits_are_served_not_allocated() {
    let s = Server::start();
    for limit in [0x5300_0000i32, i32::MAX, -1, 2] {
        let mut t = logged_in(&s);
        let mut bytes = frame(b'P', b"\0SELECT v FROM generate_series(1, 3) AS g(v)\0\0\0");
        bytes.extend_from_slice(&frame(b'B', b"\0\0\0\0\0\0\0\0"));
        let mut exec = b"\0".to_vec();
        exec.extend_from_slice(&limit.to_be_bytes());
        bytes.extend_from_slice(&frame(b'E', &exec));
        bytes.extend_from_slice(&frame(b'S', b""));
        t.write_all(&bytes).unwrap();
        let msgs = read_messages(&mut t, b'Z');
        let rows = msgs.iter().filter(|m| m.0 == b'D').count();
        let (want_rows, end) = if limit == 2 { (2, b's') } else { (3, b'C') };
        assert_eq!(rows, want_rows, "limit {limit}: {msgs:?}");
        assert!(msgs.iter().any(|m| m.0 == end), "limit {limit}: {msgs:?}");
        assert_eq!(
            msgs.last().map(|m| m.0),
            Some(b'Z'),
            "limit {limit}: {msgs:?}"
        );
    }
    still_serving(&s);
}

/// `n` terms joined by `op`.
fn chain(term: &str, op: &str, n: usize) -> String {
    vec![term; n].join(op)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_expressions_get_an_error_or_an_answer_never_a_crash() {
    let s = Server::start();
    let c = s.client().await;
    c.batch_execute("INSERT INTO deep (_id, a) VALUES (1, 7)")
        .await
        .unwrap();
    // 1,000 ORed comparisons and 450 added terms (within the 1,000-level
    // depth limit) are answered.
    let ors = (0..1000)
        .map(|i| format!("a = {i}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let rows = c
        .query(&format!("SELECT _id FROM deep WHERE {ors}"), &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let sum: i64 = c
        .query_one(&format!("SELECT {}", chain("1", "+", 450)), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sum, 450);
    // Far deeper: SQLSTATE 54001, quickly, for each shape.
    let deep_array = format!("SELECT {}1{}", "ARRAY[".repeat(10_000), "]".repeat(10_000));
    let deep_parens = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
    let deep_sub = format!("SELECT {}1{}", "(SELECT ".repeat(2_000), ")".repeat(2_000));
    // Just under the token limit on brackets but past the parser's own
    // (whose retries were exponential in the depth: a hang).
    let near_array = format!("SELECT {}1{}", "ARRAY[".repeat(48), "]".repeat(48));
    let near_fuzzed = format!("SELECT {}1{}", "ARRAY[".repeat(999), "]".repeat(999));
    for sql in [
        near_array,
        near_fuzzed,
        format!("SELECT {}", chain("1", "+", 100_000)),
        format!(
            "SELECT 1 FROM deep WHERE {}",
            chain("a = 1", " OR ", 50_000)
        ),
        format!("SELECT {}", chain("'x'", " || ", 20_000)),
        deep_array,
        deep_parens,
        deep_sub,
    ] {
        let started = std::time::Instant::now();
        let e = c.query(&sql, &[]).await.unwrap_err();
        let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
        assert_eq!(
            db.code(),
            &SqlState::STATEMENT_TOO_COMPLEX,
            "{}: {}",
            &sql[..40],
            db.message()
        );
        assert!(db.message().contains("too complex"), "{}", db.message());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} took {:?}",
            &sql[..40],
            started.elapsed()
        );
    }
    // The connection and the server are fine.
    let one: i64 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    still_serving(&s);
}

/// A query that keeps a core busy for minutes unless stopped.
const FOREVER: &str =
    "SELECT count(*) FROM generate_series(1, 100000000000) AS g(v) WHERE v % 7 = 3";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_cancels_with_57014() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_with(
        &[
            "--data-dir",
            tmp.path().to_str().unwrap(),
            "--statement-timeout",
            "30s",
        ],
        &[],
    );
    let c = s.client().await;
    let shown: String = c
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, "30s", "the server default");
    c.batch_execute("SET statement_timeout = '1s'")
        .await
        .unwrap();
    let shown: String = c
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, "1s");
    let started = std::time::Instant::now();
    let e = c.query(FOREVER, &[]).await.unwrap_err();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(db.code(), &SqlState::QUERY_CANCELED, "{}", db.message());
    assert_eq!(db.message(), "canceling statement due to statement timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    // Integer milliseconds; 0 turns it off; bad values are refused.
    c.batch_execute("SET statement_timeout = 1500")
        .await
        .unwrap();
    let shown: String = c
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, "1500ms");
    let e = c
        .batch_execute("SET statement_timeout = 'soon'")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::INVALID_PARAMETER_VALUE), "{e}");
    c.batch_execute("RESET statement_timeout").await.unwrap();
    let shown: String = c
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, "30s", "RESET goes back to the server default");
    // A short query under the timeout is unaffected.
    let one: i64 = c.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_request_stops_a_running_query() {
    let s = Server::start();
    let c = s.client().await;
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let started = std::time::Instant::now();
    let e = c.query(FOREVER, &[]).await.unwrap_err();
    canceller.await.unwrap();
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
    assert_eq!(db.code(), &SqlState::QUERY_CANCELED, "{}", db.message());
    assert_eq!(db.message(), "canceling statement due to user request");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// CPU seconds the process has used (utime + stime from /proc).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn work_stops_when_the_client_goes_away() {
    let s = Server::start();
    let mut t = logged_in(&s);
    t.write_all(&frame(b'Q', format!("{FOREVER}\0").as_bytes()))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let busy = cpu_seconds(s.child.id());
    drop(t);
    std::thread::sleep(Duration::from_millis(1000));
    let at_close = cpu_seconds(s.child.id());
    std::thread::sleep(Duration::from_secs(3));
    let later = cpu_seconds(s.child.id());
    assert!(busy > 0.5, "the query was running ({busy} s of CPU)");
    assert!(
        later - at_close < 0.5,
        "the server kept working for a client that left: {} s of CPU in 3 s",
        later - at_close
    );
    still_serving(&s);
}

#[test]
fn sigterm_cancels_running_statements_and_exits_promptly() {
    let mut s = Server::start();
    let mut t = logged_in(&s);
    t.write_all(&frame(b'Q', format!("{FOREVER}\0").as_bytes()))
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let started = std::time::Instant::now();
    let status = s.terminate(Duration::from_secs(15));
    let took = started.elapsed();
    assert!(status.is_some(), "still running 15 s after SIGTERM");
    assert!(took < Duration::from_secs(6), "exit took {took:?}");
    // The client was told its statement was cancelled.
    let msgs = read_messages(&mut t, b'E');
    if let Some((b'E', body)) = msgs.last() {
        let (_, code, msg) = error_fields(body);
        assert_eq!(code, "57014", "{msg}");
    }
}
