//! SQL cursors: `DECLARE c CURSOR [WITH HOLD] FOR <query>`, `FETCH`,
//! `MOVE`, `CLOSE`. Any query can be read through one; a `SUBSCRIBE` can
//! only be read this way or through `COPY … TO STDOUT`, because its result
//! never ends (docs/sql.md "SUBSCRIBE").
//!
//! Cursors are forward-only. A cursor declared without `WITH HOLD` lives
//! until its transaction ends, as in Postgres. `FETCH n` on a subscription
//! waits for the first change, then returns what else is ready, at most n
//! rows; `FETCH n c WITH (TIMEOUT = '1s')` waits at most that long and may
//! return no rows.

use std::collections::VecDeque;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use super::conn::{err, E};

/// An open cursor.
pub(super) struct OpenCursor {
    pub schema: SchemaRef,
    pub stream: SendableRecordBatchStream,
    /// Rows read from the stream and not fetched yet.
    pub pending: VecDeque<RecordBatch>,
    /// `WITH HOLD`: survives the end of its transaction.
    pub hold: bool,
    /// A subscription: its stream never ends.
    pub endless: bool,
    /// The stream ended.
    pub done: bool,
}

/// How many rows a FETCH or MOVE wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Count {
    All,
    N(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CursorStmt {
    Declare {
        name: String,
        hold: bool,
        query: String,
    },
    Fetch {
        name: String,
        count: Count,
        /// MOVE: skip the rows instead of returning them.
        skip: bool,
        /// `WITH (TIMEOUT = …)`: how long to wait for the first row.
        timeout: Option<Duration>,
    },
    /// `CLOSE name`; None: `CLOSE ALL`.
    Close(Option<String>),
}

/// A word or quoted name of a cursor statement, with where it ends.
#[derive(Debug)]
struct Tok {
    text: String,
    quoted: bool,
    end: usize,
}

fn tokens(sql: &str, limit: usize) -> Vec<Tok> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() && out.len() < limit {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'"' {
            let mut s = String::new();
            let mut j = i + 1;
            while j < b.len() {
                if b[j] == b'"' {
                    if b.get(j + 1) == Some(&b'"') {
                        s.push('"');
                        j += 2;
                        continue;
                    }
                    break;
                }
                let ch = sql[j..].chars().next().expect("in bounds");
                s.push(ch);
                j += ch.len_utf8();
            }
            out.push(Tok {
                text: s,
                quoted: true,
                end: (j + 1).min(b.len()),
            });
            i = j + 1;
        } else if c == b'\'' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'\'' {
                j += 1;
            }
            out.push(Tok {
                text: sql[i..(j + 1).min(b.len())].to_string(),
                quoted: false,
                end: (j + 1).min(b.len()),
            });
            i = j + 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'+' || c >= 0x80 {
            let mut j = i;
            while j < b.len()
                && (b[j].is_ascii_alphanumeric()
                    || b[j] == b'_'
                    || b[j] == b'$'
                    || b[j] >= 0x80
                    || (j == i && (b[j] == b'-' || b[j] == b'+')))
            {
                j += 1;
            }
            out.push(Tok {
                text: sql[i..j].to_string(),
                quoted: false,
                end: j,
            });
            i = j;
        } else {
            out.push(Tok {
                text: (c as char).to_string(),
                quoted: false,
                end: i + 1,
            });
            i += 1;
        }
    }
    out
}

fn is(t: Option<&Tok>, w: &str) -> bool {
    t.is_some_and(|t| !t.quoted && t.text.eq_ignore_ascii_case(w))
}

fn name_of(t: &Tok) -> String {
    if t.quoted {
        t.text.clone()
    } else {
        t.text.to_ascii_lowercase()
    }
}

fn syntax(msg: String) -> E {
    err("42601", msg)
}

/// The first word of `sql` (letters only), without allocating.
fn first_word(sql: &str) -> &str {
    let t = sql.trim_start();
    let end = t
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(t.len());
    &t[..end]
}

/// Is `sql` a SUBSCRIBE (whose result never ends)?
pub(super) fn is_subscribe(sql: &str) -> bool {
    first_word(sql).eq_ignore_ascii_case("SUBSCRIBE")
}

/// Is `sql` a FETCH (its rows are tagged `FETCH n`)?
pub(super) fn is_fetch(sql: &str) -> bool {
    first_word(sql).eq_ignore_ascii_case("FETCH")
}

/// A cursor statement, or None if `sql` is not one.
pub(super) fn parse(sql: &str) -> Option<Result<CursorStmt, E>> {
    let w = first_word(sql);
    if w.eq_ignore_ascii_case("DECLARE") {
        Some(parse_declare(sql))
    } else if w.eq_ignore_ascii_case("FETCH") {
        Some(parse_fetch(sql, false))
    } else if w.eq_ignore_ascii_case("MOVE") {
        Some(parse_fetch(sql, true))
    } else if w.eq_ignore_ascii_case("CLOSE") {
        Some(parse_close(sql))
    } else {
        None
    }
}

fn parse_declare(sql: &str) -> Result<CursorStmt, E> {
    const USAGE: &str = "DECLARE <name> [NO SCROLL] CURSOR [WITH HOLD | WITHOUT HOLD] FOR <query>";
    let toks = tokens(sql, 12);
    let name = toks
        .get(1)
        .filter(|t| t.quoted || t.text.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .ok_or_else(|| syntax(format!("DECLARE needs a cursor name: {USAGE}")))?;
    let mut i = 2;
    let mut hold = false;
    loop {
        let t = toks.get(i);
        match t.map(|t| t.text.to_ascii_uppercase()).as_deref() {
            Some("NO") if is(toks.get(i + 1), "SCROLL") => i += 2,
            Some("ASENSITIVE") | Some("INSENSITIVE") => i += 1,
            Some("SCROLL") => {
                return Err(err(
                    "0A000",
                    "SCROLL cursors are not supported: Strata's cursors read forward only (NO SCROLL)",
                ))
            }
            Some("BINARY") => {
                return Err(err(
                    "0A000",
                    "BINARY cursors are not supported: declare the cursor without BINARY (drivers ask for binary results per FETCH)",
                ))
            }
            Some("CURSOR") => {
                i += 1;
                break;
            }
            _ => return Err(syntax(format!("expected CURSOR in DECLARE: {USAGE}"))),
        }
    }
    if is(toks.get(i), "WITH") && is(toks.get(i + 1), "HOLD") {
        hold = true;
        i += 2;
    } else if is(toks.get(i), "WITHOUT") && is(toks.get(i + 1), "HOLD") {
        i += 2;
    }
    if !is(toks.get(i), "FOR") {
        return Err(syntax(format!("expected FOR <query> in DECLARE: {USAGE}")));
    }
    let query = sql[toks[i].end..].trim().trim_end_matches(';').trim_end();
    if query.is_empty() {
        return Err(syntax(format!("DECLARE … FOR needs a query: {USAGE}")));
    }
    Ok(CursorStmt::Declare {
        name: name_of(name),
        hold,
        query: query.to_string(),
    })
}

fn parse_fetch(sql: &str, skip: bool) -> Result<CursorStmt, E> {
    let verb = if skip { "MOVE" } else { "FETCH" };
    let usage = format!(
        "{verb} [NEXT | <count> | ALL | FORWARD [<count> | ALL]] [FROM | IN] <cursor> [WITH (TIMEOUT = '<duration>')]"
    );
    let toks = tokens(sql.trim().trim_end_matches(';'), 64);
    let mut i = 1;
    let mut count = Count::N(1);
    let num = |t: &Tok| -> Option<Result<Count, E>> {
        let n: i64 = t.text.parse().ok()?;
        Some(if n < 0 {
            Err(err(
                "0A000",
                "cursors read forward only: a negative count (backward) is not supported",
            ))
        } else {
            Ok(Count::N(n as u64))
        })
    };
    match toks.get(i).map(|t| t.text.to_ascii_uppercase()).as_deref() {
        Some("NEXT") => i += 1,
        Some("ALL") => {
            count = Count::All;
            i += 1;
        }
        Some("FORWARD") => {
            i += 1;
            if is(toks.get(i), "ALL") {
                count = Count::All;
                i += 1;
            } else if let Some(c) = toks.get(i).and_then(num) {
                count = c?;
                i += 1;
            }
        }
        Some("PRIOR") | Some("FIRST") | Some("LAST") | Some("ABSOLUTE") | Some("RELATIVE")
        | Some("BACKWARD") => {
            return Err(err(
                "0A000",
                format!(
                    "{verb} {}: Strata's cursors read forward only ({usage})",
                    toks[i].text.to_ascii_uppercase()
                ),
            ))
        }
        _ => {
            if let Some(c) = toks.get(i).and_then(num) {
                count = c?;
                i += 1;
            }
        }
    }
    if is(toks.get(i), "FROM") || is(toks.get(i), "IN") {
        i += 1;
    }
    let name = toks
        .get(i)
        .ok_or_else(|| syntax(format!("{verb} needs a cursor name: {usage}")))?;
    i += 1;
    let mut timeout = None;
    if is(toks.get(i), "WITH") {
        // WITH ( TIMEOUT = '1s' )
        let ok = toks.get(i + 1).is_some_and(|t| t.text == "(")
            && is(toks.get(i + 2), "TIMEOUT")
            && toks.get(i + 3).is_some_and(|t| t.text == "=")
            && toks.get(i + 5).is_some_and(|t| t.text == ")");
        let value = toks
            .get(i + 4)
            .filter(|_| ok)
            .ok_or_else(|| syntax(usage.clone()))?;
        let text = value.text.trim_matches('\'');
        timeout = Some(
            crate::config::parse_duration(text, "FETCH … WITH (TIMEOUT)")
                .map_err(|m| err("22023", m))?,
        );
        i += 6;
    }
    if let Some(t) = toks.get(i) {
        return Err(syntax(format!("unexpected {} in {verb}: {usage}", t.text)));
    }
    Ok(CursorStmt::Fetch {
        name: name_of(name),
        count,
        skip,
        timeout,
    })
}

fn parse_close(sql: &str) -> Result<CursorStmt, E> {
    let toks = tokens(sql.trim().trim_end_matches(';'), 4);
    match (toks.get(1), toks.get(2)) {
        (Some(t), None) if is(Some(t), "ALL") => Ok(CursorStmt::Close(None)),
        (Some(t), None) => Ok(CursorStmt::Close(Some(name_of(t)))),
        _ => Err(syntax("CLOSE <cursor> | CLOSE ALL".into())),
    }
}

/// A missing cursor's error.
pub(super) fn missing(name: &str) -> E {
    err("34000", format!("cursor \"{name}\" does not exist"))
}

impl OpenCursor {
    /// Up to `count` rows. A subscription waits for its first row (at most
    /// `timeout`), then takes what follows within a millisecond; a query
    /// reads on until `count` rows or its end. `stop` ends the wait with an
    /// error (a cancel request, the statement timeout).
    pub async fn fetch(
        &mut self,
        count: Count,
        timeout: Option<Duration>,
        stop: impl std::future::Future<Output = E>,
    ) -> Result<Vec<RecordBatch>, E> {
        let want = match count {
            Count::All => u64::MAX,
            Count::N(n) => n,
        };
        let mut out = Vec::new();
        let mut n = 0u64;
        let waited_until = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut stop = std::pin::pin!(stop);
        while n < want {
            let batch = match self.pending.pop_front() {
                Some(b) => b,
                None if self.done => break,
                None => {
                    let next = if self.endless && n > 0 {
                        // A subscription marks catching up with the log by
                        // an empty batch (strata_query's feed stream): FETCH
                        // n returns what is committed, without waiting for
                        // more. (A stop ends the wait too.)
                        tokio::select! {
                            x = self.stream.next() => x,
                            e = &mut stop => return Err(e),
                        }
                    } else {
                        let limit = async {
                            match waited_until {
                                Some(t) => tokio::time::sleep_until(t).await,
                                None => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            x = self.stream.next() => x,
                            e = &mut stop => return Err(e),
                            _ = limit => break,
                        }
                    };
                    match next {
                        None => {
                            self.done = true;
                            break;
                        }
                        Some(Err(e)) => {
                            self.done = true;
                            return Err(err("XX000", format!("the cursor's query failed: {e}")));
                        }
                        Some(Ok(b)) => b,
                    }
                }
            };
            if batch.num_rows() == 0 {
                if self.endless && n > 0 {
                    break;
                }
                continue;
            }
            let take = (want - n).min(batch.num_rows() as u64) as usize;
            if take < batch.num_rows() {
                self.pending
                    .push_front(batch.slice(take, batch.num_rows() - take));
            }
            if take > 0 {
                out.push(batch.slice(0, take));
            }
            n += take as u64;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_parse_as_postgres_writes_them() {
        let d = parse("DECLARE \"My C\" NO SCROLL CURSOR WITH HOLD FOR SUBSCRIBE TO t;")
            .unwrap()
            .unwrap();
        assert_eq!(
            d,
            CursorStmt::Declare {
                name: "My C".into(),
                hold: true,
                query: "SUBSCRIBE TO t".into()
            }
        );
        let d = parse("declare c cursor without hold for select 1")
            .unwrap()
            .unwrap();
        assert!(matches!(d, CursorStmt::Declare { hold: false, .. }));
        let f = |s: &str| parse(s).unwrap().unwrap();
        assert_eq!(
            f("FETCH FORWARD 100 FROM \"c\""),
            CursorStmt::Fetch {
                name: "c".into(),
                count: Count::N(100),
                skip: false,
                timeout: None
            }
        );
        assert!(
            matches!(f("FETCH ALL IN C"), CursorStmt::Fetch { count: Count::All, ref name, .. } if name == "c")
        );
        assert!(matches!(
            f("fetch c"),
            CursorStmt::Fetch {
                count: Count::N(1),
                ..
            }
        ));
        assert!(matches!(
            f("MOVE 5 c"),
            CursorStmt::Fetch {
                count: Count::N(5),
                skip: true,
                ..
            }
        ));
        assert!(matches!(
            f("FETCH 10 c WITH (TIMEOUT = '250ms')"),
            CursorStmt::Fetch { timeout: Some(t), .. } if t == Duration::from_millis(250)
        ));
        assert_eq!(f("CLOSE ALL"), CursorStmt::Close(None));
        assert_eq!(f("close \"X\""), CursorStmt::Close(Some("X".into())));
        for bad in [
            "FETCH BACKWARD 1 FROM c",
            "FETCH -1 c",
            "DECLARE c SCROLL CURSOR FOR SELECT 1",
            "DECLARE c CURSOR",
            "DECLARE c CURSOR FOR",
            "FETCH 10",
            "FETCH 1 c extra",
            "FETCH 1 c WITH (TIMEOUT = 'soon')",
        ] {
            assert!(parse(bad).unwrap().is_err(), "{bad}");
        }
        assert!(parse("SELECT 1").is_none());
        assert!(is_subscribe("  subscribe to t"));
        assert!(is_fetch("fetch 1 c"));
    }
}
