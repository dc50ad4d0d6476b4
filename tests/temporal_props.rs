//! SQL-level property test of the temporal surface: random histories written
//! with INSERT (with and without `_valid_from` / `_valid_to`), UPDATE and
//! DELETE `FOR PORTION OF VALID_TIME` / `FOR ALL VALID_TIME`, ERASE, and
//! transactions pinned with `BEGIN READ WRITE WITH (SYSTEM_TIME = …)`, with
//! flushes in between; then random coordinates read with `FOR SYSTEM_TIME` /
//! `FOR VALID_TIME` (`AS OF`, `FROM … TO`, `BETWEEN … AND`, `ALL`) must give
//! exactly the rectangles of the brute-force reference model
//! (`strata_storage::reference`). A failure prints a shrunk, minimal SQL script
//! that reproduces it.
//!
//! `STRATA_SQL_PROP_CASES` sets the number of histories (default 2,000); each
//! is probed at `PROBES` coordinates, so the default run checks 2,000 random
//! histories and 20,000 (history, coordinate) cases. Reads at past system
//! times now plan a sort and merge of version pieces, which made the old
//! default of 10,000 take about 11 minutes in a debug build; run it with
//! `STRATA_SQL_PROP_CASES=10000` before changing the read path.

use std::fmt::Write as _;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestCaseError, TestRunner};
use strata::{Config, Db};
use strata_storage::reference::{canonical, RefKind, RefModel, RefRect};
use strata_storage::{Coordinate, TimeSelector, OPEN};

const DAY: i64 = 86_400_000_000;
/// 2020-01-01T00:00:00Z: day 0 of every history.
const EPOCH: i64 = 1_577_836_800_000_000;
/// The test clock starts at day 10 and steps a day per transaction, so
/// system times and the valid times drawn below (days 0..40) interleave.
const CLOCK_START_DAY: i64 = 10;
const PROBES: usize = 10;
const IDS: i64 = 3;

#[derive(Clone, Debug)]
enum Portion {
    All,
    FromTo(i64, i64),
}

#[derive(Clone, Debug)]
enum Stmt {
    Insert {
        id: i64,
        v: i64,
        vf: Option<i64>,
        vt: Option<i64>,
    },
    Update {
        id: i64,
        v: i64,
        portion: Portion,
    },
    Delete {
        id: i64,
        portion: Portion,
    },
    Erase {
        id: i64,
    },
}

#[derive(Clone, Debug)]
enum Step {
    /// One statement in its own transaction.
    Auto(Stmt),
    /// `BEGIN READ WRITE WITH (SYSTEM_TIME = last + k days)`, the statements, `COMMIT`.
    Pinned(i64, Vec<Stmt>),
    Flush,
    /// `CHECKPOINT`: flush, then compact everything (pieces flags must
    /// survive the rewrite).
    Checkpoint,
}

#[derive(Clone, Debug)]
enum Sel {
    AsOf(i64),
    FromTo(i64, i64),
    Between(i64, i64),
    All,
}

fn ts(day: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(EPOCH + day * DAY).unwrap();
    format!("TIMESTAMP '{}'", t.format("%Y-%m-%d %H:%M:%S"))
}

fn us(day: i64) -> i64 {
    EPOCH + day * DAY
}

fn portion_sql(p: &Portion) -> String {
    match p {
        Portion::All => "FOR ALL VALID_TIME".into(),
        Portion::FromTo(a, b) => format!("FOR PORTION OF VALID_TIME FROM {} TO {}", ts(*a), ts(*b)),
    }
}

fn stmt_sql(s: &Stmt) -> String {
    match s {
        Stmt::Insert { id, v, vf, vt } => {
            let mut cols = "_id, v".to_string();
            let mut vals = format!("{id}, {v}");
            if let Some(f) = vf {
                cols += ", _valid_from";
                vals += &format!(", {}", ts(*f));
            }
            if let Some(t) = vt {
                cols += ", _valid_to";
                vals += &format!(", {}", ts(*t));
            }
            format!("INSERT INTO t ({cols}) VALUES ({vals})")
        }
        Stmt::Update { id, v, portion } => {
            format!(
                "UPDATE t {} SET v = {v} WHERE _id = {id}",
                portion_sql(portion)
            )
        }
        Stmt::Delete { id, portion } => {
            format!("DELETE FROM t {} WHERE _id = {id}", portion_sql(portion))
        }
        Stmt::Erase { id } => format!("ERASE FROM t WHERE _id = {id}"),
    }
}

fn sel_sql(axis: &str, s: &Sel) -> String {
    match s {
        Sel::AsOf(d) => format!("FOR {axis} AS OF {}", ts(*d)),
        Sel::FromTo(a, b) => format!("FOR {axis} FROM {} TO {}", ts(*a), ts(*b)),
        Sel::Between(a, b) => format!("FOR {axis} BETWEEN {} AND {}", ts(*a), ts(*b)),
        Sel::All => format!("FOR ALL {axis}"),
    }
}

fn selector(s: &Sel) -> TimeSelector {
    match s {
        Sel::AsOf(d) => TimeSelector::AsOf(us(*d)),
        Sel::FromTo(a, b) => TimeSelector::Range {
            from: us(*a),
            to: us(*b),
        },
        // BETWEEN's end is inclusive: [a, b] = [a, b + 1µs).
        Sel::Between(a, b) => TimeSelector::Range {
            from: us(*a),
            to: us(*b) + 1,
        },
        Sel::All => TimeSelector::All,
    }
}

fn query_sql(sys: &Sel, valid: &Sel) -> String {
    format!(
        "SELECT _id, v, _valid_from, _valid_to, _system_from, _system_to FROM t {} {}",
        sel_sql("SYSTEM_TIME", sys),
        sel_sql("VALID_TIME", valid)
    )
}

// ------------------------------------------------------------------ strategies

fn portion() -> impl Strategy<Value = Portion> {
    prop_oneof![
        1 => Just(Portion::All),
        4 => (0i64..40, 1i64..20).prop_map(|(a, len)| Portion::FromTo(a, a + len)),
    ]
}

fn stmt() -> impl Strategy<Value = Stmt> {
    let id = 1..=IDS;
    prop_oneof![
        4 => (id.clone(), 0i64..100, proptest::option::weighted(0.6, 0i64..40), proptest::option::weighted(0.4, 1i64..30))
            .prop_map(|(id, v, vf, len)| {
                // An explicit _valid_to is drawn after _valid_from when both are given.
                let vt = match (vf, len) {
                    (Some(f), Some(l)) => Some(f + l),
                    (None, Some(l)) => Some(CLOCK_START_DAY + 5 + l),
                    _ => None,
                };
                Stmt::Insert { id, v, vf, vt }
            }),
        3 => (id.clone(), 100i64..200, portion()).prop_map(|(id, v, portion)| Stmt::Update { id, v, portion }),
        2 => (id.clone(), portion()).prop_map(|(id, portion)| Stmt::Delete { id, portion }),
        1 => id.prop_map(|id| Stmt::Erase { id }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => stmt().prop_map(Step::Auto),
        2 => (1i64..4, proptest::collection::vec(stmt(), 1..3)).prop_map(|(k, s)| Step::Pinned(k, s)),
        1 => Just(Step::Flush),
        1 => Just(Step::Checkpoint),
    ]
}

fn sel() -> impl Strategy<Value = Sel> {
    prop_oneof![
        3 => (0i64..60).prop_map(Sel::AsOf),
        2 => (0i64..50, 0i64..20).prop_map(|(a, l)| Sel::FromTo(a, a + l)),
        1 => (0i64..50, 0i64..20).prop_map(|(a, l)| Sel::Between(a, a + l)),
        1 => Just(Sel::All),
    ]
}

// ------------------------------------------------------------------ the model

type Model = RefModel<i64, i64>;
type Rect = RefRect<i64, i64>;

/// Apply one statement, committed at system time `t` after `last`, to the model.
fn model_apply(m: &mut Model, s: &Stmt, last: i64, t: i64) {
    let portion_sel = |p: &Portion| match p {
        Portion::All => TimeSelector::All,
        Portion::FromTo(a, b) => TimeSelector::Range {
            from: us(*a),
            to: us(*b),
        },
    };
    match s {
        Stmt::Insert { id, v, vf, vt } => {
            let f = vf.map(us).unwrap_or(t);
            let to = vt.map(us).unwrap_or(OPEN);
            m.event(*id, t, f, to, RefKind::Put(*v));
        }
        Stmt::Update { id, portion, .. } | Stmt::Delete { id, portion } => {
            let sel = portion_sel(portion);
            let (pa, pb) = match sel {
                TimeSelector::Range { from, to } => (from, to),
                _ => (i64::MIN, OPEN),
            };
            let coord = Coordinate {
                system: TimeSelector::AsOf(last),
                valid: sel,
            };
            let rects: Vec<Rect> = m
                .visible(&coord)
                .into_iter()
                .filter(|r| r.id == *id)
                .collect();
            for r in rects {
                let (a, b) = (r.vf.max(pa), r.vt.min(pb));
                let kind = match s {
                    Stmt::Update { v, .. } => RefKind::Put(*v),
                    _ => RefKind::Delete,
                };
                m.event(*id, t, a, b, kind);
            }
        }
        Stmt::Erase { id } => m.erase(id),
    }
}

/// Does the statement write anything (and so commit and use up a clock reading)?
fn model_writes(m: &Model, s: &Stmt, last: i64) -> bool {
    match s {
        Stmt::Insert { .. } => true,
        Stmt::Update { id, portion, .. } | Stmt::Delete { id, portion } => {
            let sel = match portion {
                Portion::All => TimeSelector::All,
                Portion::FromTo(a, b) => TimeSelector::Range {
                    from: us(*a),
                    to: us(*b),
                },
            };
            m.visible(&Coordinate {
                system: TimeSelector::AsOf(last),
                valid: sel,
            })
            .iter()
            .any(|r| r.id == *id)
        }
        Stmt::Erase { id } => m.visible(&Coordinate::all()).iter().any(|r| r.id == *id),
    }
}

/// Is the INSERT's valid period empty at system time `t` (refused by the engine)?
fn insert_refused(s: &Stmt, t: i64) -> bool {
    match s {
        Stmt::Insert { vf, vt, .. } => vf.map(us).unwrap_or(t) >= vt.map(us).unwrap_or(OPEN),
        _ => false,
    }
}

// ------------------------------------------------------------------ one case

struct Case {
    script: String,
}

async fn read(db: &Db, sql: &str) -> Result<Vec<Rect>, String> {
    let batches = db.sql(sql).await.map_err(|e| format!("{sql}: {e}"))?;
    let mut out = Vec::new();
    for b in batches {
        let id = b.column(0).as_primitive::<Int64Type>();
        let v = b.column(1).as_primitive::<Int64Type>();
        let t = |i: usize| {
            b.column(i)
                .as_primitive::<TimestampMicrosecondType>()
                .clone()
        };
        let (vf, vt, sf, st) = (t(2), t(3), t(4), t(5));
        for r in 0..b.num_rows() {
            let bound = |a: &datafusion::arrow::array::TimestampMicrosecondArray, open: i64| {
                if a.is_null(r) {
                    open
                } else {
                    a.value(r)
                }
            };
            out.push(Rect {
                id: id.value(r),
                value: v.value(r),
                vf: bound(&vf, i64::MIN),
                vt: bound(&vt, OPEN),
                sf: bound(&sf, i64::MIN),
                st: bound(&st, OPEN),
            });
        }
    }
    Ok(out)
}

async fn run_case(steps: &[Step], probes: &[(Sel, Sel)]) -> Result<(), String> {
    let db = Db::open(Config::memory().with_test_clock(us(CLOCK_START_DAY), DAY))
        .await
        .map_err(|e| e.to_string())?;
    let engine = db.database().engine().clone();
    let mut model = Model::new();
    let mut case = Case {
        script: String::from(
            "-- strata sql --test-clock 2020-01-11T00:00:00Z,1d\nCREATE TABLE t (_id BIGINT, v BIGINT);\n",
        ),
    };
    db.sql("CREATE TABLE t (_id BIGINT, v BIGINT)")
        .await
        .map_err(|e| e.to_string())?;
    let fail =
        |case: &Case, msg: String| Err(format!("{msg}\n-- minimal reproduction:\n{}", case.script));
    for step in steps {
        match step {
            Step::Flush => {
                case.script += "-- (flush: Db::flush)\n";
                db.flush().await.map_err(|e| e.to_string())?;
            }
            Step::Checkpoint => {
                case.script += "CHECKPOINT;\n";
                db.sql("CHECKPOINT").await.map_err(|e| e.to_string())?;
            }
            Step::Auto(s) => {
                let last = engine.latest_system_time();
                let t = engine.provisional_system_time(None);
                let sql = stmt_sql(s);
                writeln!(case.script, "{sql};").unwrap();
                let writes = model_writes(&model, s, last);
                let refused = insert_refused(s, t);
                match db.sql(&sql).await {
                    Ok(_) if refused => {
                        return fail(
                            &case,
                            format!("`{sql}` should be refused (empty valid period)"),
                        )
                    }
                    Ok(_) => {
                        if writes {
                            let got = engine.latest_system_time();
                            if got != t {
                                return fail(
                                    &case,
                                    format!("`{sql}` committed at {got}, expected {t}"),
                                );
                            }
                            model_apply(&mut model, s, last, t);
                        }
                    }
                    Err(_) if refused => {}
                    Err(e) => return fail(&case, format!("`{sql}` failed: {e}")),
                }
            }
            Step::Pinned(k, stmts) => {
                let last = engine.latest_system_time();
                let t = last.max(us(0)) + k * DAY;
                let mut sql = format!("BEGIN READ WRITE WITH (SYSTEM_TIME = {}); ", {
                    let d = chrono::DateTime::from_timestamp_micros(t).unwrap();
                    format!("TIMESTAMP '{}'", d.format("%Y-%m-%d %H:%M:%S%.6f"))
                });
                // Statements inside see the transaction's own writes; model
                // them on a scratch copy in order, then commit all or nothing.
                let mut scratch = model.clone();
                let mut any = false;
                let mut refused = false;
                for s in stmts {
                    let writes = model_writes(&scratch, s, t);
                    refused |= insert_refused(s, t);
                    if writes && !refused {
                        // Inside the transaction, reads are at the pinned time.
                        model_apply(&mut scratch, s, t, t);
                        any = true;
                    }
                    sql += &stmt_sql(s);
                    sql += "; ";
                }
                sql += "COMMIT";
                writeln!(case.script, "{sql};").unwrap();
                let mut session = db.session();
                let r = session.execute(&sql, &[]).await;
                match r {
                    Ok(_) if refused => return fail(&case, format!("`{sql}` should be refused")),
                    Ok(_) => {
                        if any {
                            let got = engine.latest_system_time();
                            if got != t {
                                return fail(
                                    &case,
                                    format!("pinned transaction committed at {got}, expected {t}"),
                                );
                            }
                            model = scratch;
                        }
                    }
                    Err(_) if refused => {
                        // The failed statement aborts the transaction; end it.
                        let _ = session.execute("ROLLBACK", &[]).await;
                    }
                    Err(e) => return fail(&case, format!("`{sql}` failed: {e}")),
                }
            }
        }
    }
    let latest = engine.latest_system_time();
    for (sys, valid) in probes {
        let sql = query_sql(sys, valid);
        let coord = Coordinate {
            system: selector(sys),
            valid: selector(valid),
        };
        // At a past system time a version's pieces read as one row.
        let want = canonical(model.read(&coord, latest));
        let got = match read(&db, &sql).await {
            Ok(g) => canonical(g),
            Err(e) => return fail(&case, format!("query failed: {e}")),
        };
        if got != want {
            let show = |v: &[Rect]| {
                v.iter()
                    .map(|r| {
                        let d = |t: i64| {
                            if t == OPEN || t == i64::MIN {
                                "NULL".to_string()
                            } else {
                                chrono::DateTime::from_timestamp_micros(t)
                                    .unwrap()
                                    .format("%Y-%m-%d")
                                    .to_string()
                            }
                        };
                        format!(
                            "  {} {} valid [{}, {}) system [{}, {})",
                            r.id,
                            r.value,
                            d(r.vf),
                            d(r.vt),
                            d(r.sf),
                            d(r.st)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            return fail(
                &case,
                format!(
                    "{sql}\nexpected (model):\n{}\ngot (engine):\n{}",
                    show(&want),
                    show(&got)
                ),
            )
            .map_err(|e| format!("{e}{sql};\n"));
        }
    }
    Ok(())
}

#[test]
fn temporal_sql_matches_the_reference_model() {
    let cases: u32 = std::env::var("STRATA_SQL_PROP_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(PtConfig {
        cases,
        failure_persistence: None,
        ..PtConfig::default()
    });
    let strategy = (
        proptest::collection::vec(step(), 1..10),
        proptest::collection::vec((sel(), sel()), PROBES),
    );
    let result = runner.run(&strategy, |(steps, probes)| {
        rt.block_on(run_case(&steps, &probes))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    println!("{cases} histories × {PROBES} coordinates checked against the reference model");
}
