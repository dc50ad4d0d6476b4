//! Temporal coordinates: which part of the bitemporal plane a read selects,
//! and the rectangle predicate every read path applies.

use crate::time::{Micros, OPEN};

/// A selection on one time axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSelector {
    /// Rectangles whose period contains the instant: `from <= t < to`.
    AsOf(Micros),
    /// Rectangles whose period overlaps `[from, to)`. `BETWEEN a AND b` is
    /// `Range { from: a, to: b + 1µs }`. An empty range (`from >= to`) selects nothing.
    Range { from: Micros, to: Micros },
    /// Every rectangle.
    All,
}

impl TimeSelector {
    /// Does a period `[from, to)` match?
    #[inline]
    pub fn matches(&self, from: Micros, to: Micros) -> bool {
        match *self {
            TimeSelector::AsOf(t) => from <= t && t < to,
            TimeSelector::Range { from: a, to: b } => a < b && from < b && a < to,
            TimeSelector::All => true,
        }
    }

    /// Could any period with `from` in `[from_min, ..]` and `to` up to `to_max` match?
    pub fn may_match(&self, from_min: Micros, to_max: Micros) -> bool {
        match *self {
            TimeSelector::AsOf(t) => from_min <= t && t < to_max,
            TimeSelector::Range { from: a, to: b } => a < b && from_min < b && a < to_max,
            TimeSelector::All => true,
        }
    }
}

/// A point or region of the bitemporal plane to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coordinate {
    pub system: TimeSelector,
    pub valid: TimeSelector,
}

impl Coordinate {
    /// The current state as of system time `s`, valid at `v`.
    pub fn as_of(s: Micros, v: Micros) -> Coordinate {
        Coordinate {
            system: TimeSelector::AsOf(s),
            valid: TimeSelector::AsOf(v),
        }
    }

    pub fn all() -> Coordinate {
        Coordinate {
            system: TimeSelector::All,
            valid: TimeSelector::All,
        }
    }

    #[inline]
    pub fn matches(&self, vf: Micros, vt: Micros, sf: Micros, st: Micros) -> bool {
        self.system.matches(sf, st) && self.valid.matches(vf, vt)
    }

    /// Does a stored row show at this coordinate? A read as of a system
    /// time `s` shows the rows whose **view** holds `s`: `view_from <= s <
    /// _system_to`, the state as it was known at `s`, each version whole
    /// (docs/architecture.md). Every other read shows the decomposition:
    /// the rows that are not view-only, by `[_system_from, _system_to)`.
    #[inline]
    pub fn shows(
        &self,
        vf: Micros,
        vt: Micros,
        sf: Micros,
        st: Micros,
        view_from: Micros,
        view_only: bool,
    ) -> bool {
        let system = match self.system {
            TimeSelector::AsOf(s) => view_from <= s && s < st,
            _ => !view_only && self.system.matches(sf, st),
        };
        system && self.valid.matches(vf, vt)
    }
}

/// `OPEN` shown as an exclusive-end upper bound that never ends.
pub fn is_open(t: Micros) -> bool {
    t == OPEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        assert!(TimeSelector::AsOf(5).matches(5, 6));
        assert!(!TimeSelector::AsOf(6).matches(5, 6));
        assert!(TimeSelector::Range { from: 0, to: 6 }.matches(5, OPEN));
        assert!(!TimeSelector::Range { from: 6, to: 6 }.matches(0, OPEN));
        assert!(!TimeSelector::Range { from: 0, to: 5 }.matches(5, OPEN));
    }
}
