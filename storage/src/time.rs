//! Time on both axes: UTC microseconds since the Unix epoch, with `OPEN` (i64::MAX)
//! standing for an open upper bound (∞). Also the clock that stamps transactions.

use parking_lot::Mutex;

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

/// The stored value of an open upper bound (`_valid_to` / `_system_to` = ∞).
pub const OPEN: Micros = i64::MAX;

/// Where system time comes from. The engine takes
/// `max(clock.now(), previous + 1µs)` for each transaction.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_us(&self) -> Micros;
    /// What the next `now_us` would be, without using a reading up (an open
    /// transaction's provisional system time, for its own reads).
    fn peek_us(&self) -> Micros {
        self.now_us()
    }
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> Micros {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("system clock before 1970");
        d.as_micros() as Micros
    }
}

/// A deterministic clock for tests: the first reading is `start`, and every
/// reading after that advances by `step`.
#[derive(Debug)]
pub struct TestClock {
    next: Mutex<Micros>,
    step_us: Micros,
}

impl TestClock {
    pub fn new(start_us: Micros, step_us: Micros) -> Self {
        TestClock {
            next: Mutex::new(start_us),
            step_us,
        }
    }
}

impl Clock for TestClock {
    fn now_us(&self) -> Micros {
        let mut n = self.next.lock();
        let v = *n;
        *n = n.saturating_add(self.step_us);
        v
    }
    fn peek_us(&self) -> Micros {
        *self.next.lock()
    }
}

/// Format micros as an RFC 3339 UTC timestamp (for messages).
pub fn fmt_micros(us: Micros) -> String {
    if us == OPEN {
        return "∞".to_string();
    }
    match chrono::DateTime::from_timestamp_micros(us) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => format!("{us}µs"),
    }
}
