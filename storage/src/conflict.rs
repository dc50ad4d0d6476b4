//! Write-write conflicts: first committer wins. A transaction that says
//! which snapshot its writes were computed from (`TxRequest::read_at`: an
//! UPDATE or DELETE read the rows it rewrites at that system time) is
//! refused if a transaction that committed after that snapshot, on this
//! node or any other (their log records are applied here before the check),
//! wrote one of the same entities. So concurrent `UPDATE … SET n = n + 1`
//! never lose an update: the later committer gets SQLSTATE 40001 and
//! retries on the new state.
//!
//! The check needs, per entity, the system time of its last write. Only
//! recent writes are kept (`CAP` entities); writes older than the
//! **horizon** are forgotten, and a transaction whose snapshot is older than
//! the horizon cannot be checked and is refused (retrying takes a new
//! snapshot). Entities are keyed by table and entity hash: two entities
//! whose keys collide can only cause a needless refusal, never a lost update.

use std::collections::{HashMap, VecDeque};

use crate::entity::hash_column;
use crate::log::{Op, OpKind};
use crate::schema::ID;
use crate::time::{fmt_micros, Micros};

/// Entities whose last write is remembered.
const CAP: usize = 1 << 18;

/// The key of entity `iid` of `table`.
fn key(table_hash: u64, iid: u64) -> u64 {
    table_hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ iid
}

/// The keys of the entities `ops` write.
pub(crate) fn write_keys(ops: &[Op]) -> Vec<u64> {
    let mut out = Vec::new();
    for op in ops {
        if !matches!(op.kind, OpKind::Put | OpKind::Delete | OpKind::Erase) {
            continue;
        }
        let Some(ids) = op.batch.column_by_name(ID) else {
            continue;
        };
        let th = xxhash_rust::xxh3::xxh3_64(op.table.as_bytes());
        out.extend(hash_column(ids.as_ref()).into_iter().map(|h| key(th, h)));
    }
    out
}

/// The recent writes of committed transactions.
#[derive(Debug, Default)]
pub(crate) struct WriteHistory {
    /// Per entity key, the system time of its last write.
    last: HashMap<u64, Micros>,
    /// Write sets in commit order, to forget the oldest first.
    order: VecDeque<(Micros, Vec<u64>)>,
    entries: usize,
    /// Writes at or before this time may have been forgotten.
    horizon: Micros,
}

impl WriteHistory {
    /// Remember what a transaction committed at `t` wrote.
    pub(crate) fn record_ops(&mut self, t: Micros, ops: &[Op]) {
        if ops.iter().any(|o| o.kind == OpKind::Load) {
            // A bulk load's entities are in its segments, not in the event:
            // snapshots from before it can no longer be checked.
            self.forget_until(t);
            return;
        }
        let rows: usize = ops
            .iter()
            .filter(|o| matches!(o.kind, OpKind::Put | OpKind::Delete | OpKind::Erase))
            .map(|o| o.batch.num_rows())
            .sum();
        if rows > CAP {
            // Not worth hashing: `record` would forget it at once.
            self.forget_until(t);
            return;
        }
        self.record(t, write_keys(ops));
    }

    /// Forget everything written up to `t`.
    pub(crate) fn forget_until(&mut self, t: Micros) {
        self.last.clear();
        self.order.clear();
        self.entries = 0;
        self.horizon = self.horizon.max(t);
    }

    /// Remember that a transaction committed at `t` wrote `keys`.
    pub(crate) fn record(&mut self, t: Micros, keys: Vec<u64>) {
        if keys.is_empty() {
            return;
        }
        if keys.len() > CAP {
            // A bulk load: too many to remember. Nothing older can matter
            // to a snapshot at or after `t`, and older ones are refused.
            self.forget_until(t);
            return;
        }
        for &k in &keys {
            self.last.insert(k, t);
        }
        self.entries += keys.len();
        self.order.push_back((t, keys));
        while self.entries > CAP {
            let Some((old, keys)) = self.order.pop_front() else {
                break;
            };
            self.entries -= keys.len();
            for k in keys {
                if self.last.get(&k) == Some(&old) {
                    self.last.remove(&k);
                }
            }
            self.horizon = self.horizon.max(old);
        }
    }

    /// Why a transaction that read at `read_at` may not write `keys`, given
    /// the history plus `extra` (writes accepted earlier in the same group
    /// commit, not applied yet); `None` if it may.
    pub(crate) fn conflict(
        &self,
        read_at: Micros,
        keys: &[u64],
        extra: &HashMap<u64, Micros>,
    ) -> Option<String> {
        if read_at < self.horizon {
            return Some(format!(
                "could not serialize access: the transaction read at {}, before the oldest writes this node still checks against ({}); retry the transaction",
                fmt_micros(read_at),
                fmt_micros(self.horizon)
            ));
        }
        for k in keys {
            let t = match (self.last.get(k), extra.get(k)) {
                (Some(a), Some(b)) => (*a).max(*b),
                (Some(a), None) => *a,
                (None, Some(b)) => *b,
                (None, None) => continue,
            };
            if t > read_at {
                return Some(format!(
                    "could not serialize access due to concurrent update: a row this transaction writes was changed by a transaction that committed at {}, after this one read it (at {}); retry the transaction",
                    fmt_micros(t),
                    fmt_micros(read_at)
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_writes_conflict_earlier_ones_do_not() {
        let mut h = WriteHistory::default();
        h.record(10, vec![1, 2]);
        h.record(20, vec![2, 3]);
        let none = HashMap::new();
        assert!(h.conflict(20, &[1, 2, 3], &none).is_none());
        assert!(h.conflict(15, &[1], &none).is_none());
        assert!(h.conflict(15, &[2], &none).is_some());
        assert!(h.conflict(5, &[4], &none).is_none());
        // Writes accepted earlier in the same group count too.
        let extra: HashMap<u64, Micros> = [(4, 30)].into_iter().collect();
        assert!(h.conflict(25, &[4], &extra).is_some());
    }

    #[test]
    fn forgotten_writes_refuse_older_snapshots() {
        let mut h = WriteHistory::default();
        h.record(10, vec![1]);
        h.record(20, (0..CAP as u64 + 1).collect());
        let none = HashMap::new();
        assert!(
            h.conflict(15, &[7], &none).is_some(),
            "older than the horizon"
        );
        assert!(h.conflict(20, &[1], &none).is_none());
        // Filling the history forgets the oldest write sets first.
        let mut h = WriteHistory::default();
        h.record(10, vec![u64::MAX]);
        for t in 0..4u64 {
            h.record(
                20 + t as i64,
                (t * (CAP as u64 / 4)..(t + 1) * (CAP as u64 / 4)).collect(),
            );
        }
        assert!(
            h.conflict(9, &[u64::MAX], &none).is_some(),
            "older than the horizon"
        );
        assert!(h.conflict(20, &[1], &none).is_none());
    }
}
