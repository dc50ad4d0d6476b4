//! The reference model of bitemporal resolution: per entity a list of events,
//! resolved by brute force exactly as docs/architecture.md defines it. Tests
//! compare the engine against it; it is not used on any read path.

use std::collections::BTreeMap;

use crate::temporal::{Coordinate, TimeSelector};
use crate::time::{Micros, OPEN};

#[derive(Debug, Clone, PartialEq)]
pub enum RefKind<V> {
    Put(V),
    Delete,
}

#[derive(Debug, Clone)]
struct RefEvent<V> {
    sys: Micros,
    vf: Micros,
    vt: Micros,
    kind: RefKind<V>,
}

/// One resolved rectangle: a value over `[vf, vt) × [sf, st)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefRect<K, V> {
    pub id: K,
    pub value: V,
    pub vf: Micros,
    pub vt: Micros,
    pub sf: Micros,
    pub st: Micros,
}

#[derive(Debug, Clone, Default)]
pub struct RefModel<K: Ord, V> {
    entities: BTreeMap<K, Vec<RefEvent<V>>>,
}

impl<K: Ord + Clone, V: Clone + Ord> RefModel<K, V> {
    pub fn new() -> Self {
        RefModel {
            entities: BTreeMap::new(),
        }
    }

    /// Record an event; events must arrive in commit order.
    pub fn event(&mut self, id: K, sys: Micros, vf: Micros, vt: Micros, kind: RefKind<V>) {
        assert!(vf < vt, "empty valid period");
        self.entities
            .entry(id)
            .or_default()
            .push(RefEvent { sys, vf, vt, kind });
    }

    pub fn erase(&mut self, id: &K) {
        self.entities.remove(id);
    }

    /// Every rectangle of every entity.
    pub fn rectangles(&self) -> Vec<RefRect<K, V>> {
        let mut out = Vec::new();
        for (id, events) in &self.entities {
            // claims: disjoint valid intervals → system time of the earliest newer event claiming them.
            let mut claims: Vec<(Micros, Micros, Micros)> = Vec::new();
            for e in events.iter().rev() {
                // Split [vf, vt) by existing claims.
                let mut cuts = vec![e.vf, e.vt];
                for &(a, b, _) in &claims {
                    for x in [a, b] {
                        if x > e.vf && x < e.vt {
                            cuts.push(x);
                        }
                    }
                }
                cuts.sort();
                cuts.dedup();
                for w in cuts.windows(2) {
                    let (a, b) = (w[0], w[1]);
                    let st = claims
                        .iter()
                        .find(|&&(ca, cb, _)| ca <= a && b <= cb)
                        .map(|c| c.2)
                        .unwrap_or(OPEN);
                    if let RefKind::Put(v) = &e.kind {
                        if e.sys < st {
                            out.push(RefRect {
                                id: id.clone(),
                                value: v.clone(),
                                vf: a,
                                vt: b,
                                sf: e.sys,
                                st,
                            });
                        }
                    }
                }
                // This (older) event now claims its interval.
                let mut next = Vec::new();
                for &(a, b, s) in &claims {
                    if a < e.vf {
                        next.push((a, b.min(e.vf), s));
                    }
                    if b > e.vt {
                        next.push((a.max(e.vt), b, s));
                    }
                }
                next.push((e.vf, e.vt, e.sys));
                claims = next;
            }
        }
        out
    }

    /// Rectangles visible at a coordinate.
    pub fn visible(&self, coord: &Coordinate) -> Vec<RefRect<K, V>> {
        self.rectangles()
            .into_iter()
            .filter(|r| coord.matches(r.vf, r.vt, r.sf, r.st))
            .collect()
    }

    /// What a query at `coord` returns when the last transaction committed
    /// at `latest`: as of a system time `s`, the state as it was known at
    /// `s` (see [`RefModel::view`]), the valid-time selector applied to its
    /// rows; otherwise (system-time ranges, all system time) the visible
    /// rectangles of the decomposition. (At `s >= latest` the view is the
    /// present's open rectangles.)
    pub fn read(&self, coord: &Coordinate, _latest: Micros) -> Vec<RefRect<K, V>> {
        match coord.system {
            TimeSelector::AsOf(s) => self
                .view(s)
                .into_iter()
                .filter(|r| coord.valid.matches(r.vf, r.vt))
                .collect(),
            _ => self.visible(coord),
        }
    }

    /// The state known at system time `s`: the events committed by `s`
    /// resolved alone, their open rectangles, each with `_system_to` the
    /// first later event of its entity that overlaps its valid period (the
    /// transaction that changed it). No piece cut by a later transaction
    /// shows: every version reads whole, as a read at `s` saw it then.
    pub fn view(&self, s: Micros) -> Vec<RefRect<K, V>> {
        let mut known: RefModel<K, V> = RefModel::new();
        for (id, events) in &self.entities {
            let before: Vec<RefEvent<V>> = events.iter().filter(|e| e.sys <= s).cloned().collect();
            if !before.is_empty() {
                known.entities.insert(id.clone(), before);
            }
        }
        let mut out: Vec<RefRect<K, V>> = known
            .rectangles()
            .into_iter()
            .filter(|r| r.st == OPEN)
            .map(|mut r| {
                r.st = self.entities[&r.id]
                    .iter()
                    .filter(|e| e.sys > s && e.vf < r.vt && r.vf < e.vt)
                    .map(|e| e.sys)
                    .min()
                    .unwrap_or(OPEN);
                r
            })
            .collect();
        out.sort();
        out
    }
}

/// The pieces of one version as one rectangle: rectangles of the same
/// entity with the same `sf` and value whose valid periods meet are one,
/// valid over their union, `st` the earliest of theirs. (Meant for the
/// rectangles visible at one system time, which never overlap per entity;
/// the rule reads at a past system time used on files written before view
/// columns.)
pub fn merge_pieces<K: Ord + Clone, V: Ord + Clone>(
    mut rects: Vec<RefRect<K, V>>,
) -> Vec<RefRect<K, V>> {
    rects.sort_by(|a, b| (&a.id, a.sf, a.vf).cmp(&(&b.id, b.sf, b.vf)));
    let mut out: Vec<RefRect<K, V>> = Vec::new();
    for r in rects {
        if let Some(l) = out.last_mut() {
            if l.id == r.id && l.sf == r.sf && l.value == r.value && l.vt == r.vf {
                l.vt = r.vt;
                l.st = l.st.min(r.st);
                continue;
            }
        }
        out.push(r);
    }
    out.sort();
    out
}

/// Merge rectangles that differ only by adjacent valid intervals, so that two
/// equally correct decompositions compare equal.
pub fn canonical<K: Ord + Clone, V: Ord + Clone>(
    mut rects: Vec<RefRect<K, V>>,
) -> Vec<RefRect<K, V>> {
    rects.sort_by(|a, b| {
        (&a.id, &a.value, a.sf, a.st, a.vf).cmp(&(&b.id, &b.value, b.sf, b.st, b.vf))
    });
    let mut out: Vec<RefRect<K, V>> = Vec::new();
    for r in rects {
        if let Some(l) = out.last_mut() {
            if l.id == r.id && l.value == r.value && l.sf == r.sf && l.st == r.st && l.vt == r.vf {
                l.vt = r.vt;
                continue;
            }
        }
        out.push(r);
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN: i64 = 100;
    const FEB: i64 = 200;

    #[test]
    fn worked_example_from_the_design_brief() {
        let mut m: RefModel<i64, &str> = RefModel::new();
        m.event(1, JAN, JAN, OPEN, RefKind::Put("v1"));
        m.event(1, FEB, FEB, OPEN, RefKind::Put("v2"));
        let mut got = m.rectangles();
        got.sort();
        let r = |v, vf, vt, sf, st| RefRect {
            id: 1,
            value: v,
            vf,
            vt,
            sf,
            st,
        };
        let mut want = vec![
            r("v1", JAN, FEB, JAN, OPEN),
            r("v1", FEB, OPEN, JAN, FEB),
            r("v2", FEB, OPEN, FEB, OPEN),
        ];
        want.sort();
        assert_eq!(got, want);
        // v1 is returned once at (S = Jan 15, V = Jan 15).
        assert_eq!(m.visible(&Coordinate::as_of(150, 150)).len(), 1);
    }

    #[test]
    fn past_reads_show_versions_whole() {
        // Put v over [Jan, ∞) at system time 10; at 20 a correction over [Apr, Jul).
        let (jan, apr, jul) = (100, 400, 700);
        let mut m: RefModel<i64, &str> = RefModel::new();
        m.event(1, 10, jan, OPEN, RefKind::Put("v"));
        m.event(1, 20, apr, jul, RefKind::Put("w"));
        let all_valid = |s| Coordinate {
            system: TimeSelector::AsOf(s),
            valid: TimeSelector::All,
        };
        // The raw rectangles at 15 are three pieces of v, cut at dates learned at 20.
        assert_eq!(m.visible(&all_valid(15)).len(), 3);
        // Read at 15: one row, v over [Jan, ∞), known until the first change (20).
        let r = |v, vf, vt, sf, st| RefRect {
            id: 1,
            value: v,
            vf,
            vt,
            sf,
            st,
        };
        assert_eq!(m.read(&all_valid(15), 20), vec![r("v", jan, OPEN, 10, 20)]);
        // The valid-time selector applies to the merged period.
        let at_may = Coordinate::as_of(15, 500);
        assert_eq!(m.read(&at_may, 20), vec![r("v", jan, OPEN, 10, 20)]);
        // At the present nothing merges: v's open pieces and w.
        assert_eq!(m.read(&all_valid(20), 20).len(), 3);
    }
}
