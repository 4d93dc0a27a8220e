//! When the watermark reached each value, and when the commits that carried
//! it landed: how long after a window's end its results reach the target.
//!
//! ```text
//!   source batch ──▶ watermark w reached at t₁      (reached: (w, t₁), w increasing)
//!   commit with watermark w lands at t₂             (landed:  (w, t₂))
//!   latency of window end E = first t₂ with w ≥ E  −  first t₁ with w ≥ E
//! ```
//!
//! Off unless asked for (`strata bench nexmark` asks), so a long run keeps nothing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Watermarks reached and landed, with wall-clock milliseconds.
#[derive(Debug, Default)]
pub struct EmitLog {
    enabled: AtomicBool,
    log: Mutex<Recorded>,
}

/// (watermark, ms since the epoch) pairs, watermarks increasing.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    pub reached: Vec<(i64, i64)>,
    pub landed: Vec<(i64, i64)>,
}

impl EmitLog {
    /// Starts recording.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    pub(super) fn reached(&self, watermark: i64, at_ms: i64) {
        self.push(|log| &mut log.reached, watermark, at_ms);
    }

    pub(super) fn landed(&self, watermark: i64, at_ms: i64) {
        self.push(|log| &mut log.landed, watermark, at_ms);
    }

    fn push(
        &self,
        list: impl Fn(&mut Recorded) -> &mut Vec<(i64, i64)>,
        watermark: i64,
        at_ms: i64,
    ) {
        if !self.enabled.load(Ordering::Relaxed) {
            return;
        }
        let mut log = self.log.lock().expect("not poisoned");
        let list = list(&mut log);
        if list.last().is_none_or(|&(last, _)| watermark > last) {
            list.push((watermark, at_ms));
        }
    }

    pub fn recorded(&self) -> Recorded {
        self.log.lock().expect("not poisoned").clone()
    }
}

impl Recorded {
    /// Milliseconds from the watermark first reaching `end` to the landing of
    /// the first commit whose watermark reached it; `None` if either never happened.
    pub fn latency_ms(&self, end: i64) -> Option<i64> {
        let first = |list: &[(i64, i64)]| list.iter().find(|&&(w, _)| w >= end).map(|&(_, t)| t);
        Some(first(&self.landed)? - first(&self.reached)?)
    }
}
