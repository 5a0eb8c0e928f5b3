//! What the emulated WeChat and Alipay share: the dev login codes they accept, the bounded
//! memory of codes already used, and the test hook that makes the next answers fail.
//!
//! Pure: time is passed in. A real platform knows when it issued a code (`wx.login()`,
//! `my.getAuthCode()`); the emulator issues none, so "a code lasts five minutes" becomes "a used
//! code is refused for five minutes". After that the same text is accepted again, like a fresh
//! code that happens to be spelled the same (the examples add a nonce to get a new one each time).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use chrono::{DateTime, Utc};

/// How long a used code is refused: the platforms' codes are valid for five minutes
/// (PROTOCOL.md §11.1).
pub(crate) const CODE_MEMORY: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// Used codes remembered at most, per platform; when full, new codes are refused as "busy"
/// rather than a used code forgotten early (which would let a replay through).
pub(crate) const MAX_USED_CODES: usize = 10_000;

const MAX_NAME: usize = 32;
const MAX_NONCE: usize = 64;

/// The user a dev code logs in: `dev:<name>` or `dev:<name>:<nonce>`, where the name is 1–32 and
/// the nonce 1–64 characters of `A-Za-z0-9_-`. Anything else is not a code.
pub(crate) fn dev_user(code: &str) -> Option<&str> {
    let rest = code.strip_prefix("dev:")?;
    let (name, nonce) = match rest.split_once(':') {
        Some((name, nonce)) => (name, Some(nonce)),
        None => (rest, None),
    };
    let well_formed =
        |s: &str, max: usize| (1..=max).contains(&s.len()) && s.bytes().all(allowed_byte);
    (well_formed(name, MAX_NAME) && nonce.is_none_or(|n| well_formed(n, MAX_NONCE))).then_some(name)
}

fn allowed_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// What presenting a code found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Redeemed {
    /// Not used in the last five minutes: it is now.
    Fresh,
    /// Used less than five minutes ago.
    Replayed,
    /// The memory is full of codes used in the last five minutes: refused, not remembered.
    Busy,
}

/// Codes used in the last [`CODE_MEMORY`], at most `capacity` of them.
#[derive(Debug)]
pub(crate) struct UsedCodes {
    capacity: usize,
    used_at: HashMap<String, DateTime<Utc>>,
    /// `used_at`'s entries in the order they were made, so the expired ones are found at the
    /// front without a scan of the whole map.
    order: VecDeque<(DateTime<Utc>, String)>,
}

impl UsedCodes {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            used_at: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Marks `code` used at `now`, unless it was used less than five minutes before.
    pub(crate) fn redeem(&mut self, code: &str, now: DateTime<Utc>) -> Redeemed {
        self.forget_expired(now);
        match self.used_at.get(code) {
            // A wall clock stepped back makes `now - at` negative: still a replay.
            Some(at) if now - *at < CODE_MEMORY => return Redeemed::Replayed,
            // Expired, but not yet reached at the front (the clock stepped back in between).
            Some(_) => {}
            None if self.used_at.len() >= self.capacity => return Redeemed::Busy,
            None => {}
        }
        self.used_at.insert(code.to_owned(), now);
        self.order.push_back((now, code.to_owned()));
        Redeemed::Fresh
    }

    /// Codes remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.used_at.len()
    }

    fn forget_expired(&mut self, now: DateTime<Utc>) {
        while let Some((at, _)) = self.order.front() {
            if now - *at < CODE_MEMORY {
                break;
            }
            let Some((at, code)) = self.order.pop_front() else {
                break;
            };
            // A code used again after it expired has a newer entry further back: keep it.
            if self.used_at.get(&code) == Some(&at) {
                self.used_at.remove(&code);
            }
        }
    }
}

/// "Answer the next `n` requests with this failure": a test hook, like STS's `throttle_next`.
#[derive(Debug)]
pub(crate) struct FailNext<T> {
    next: Mutex<Option<(T, u64)>>,
}

impl<T: Clone> FailNext<T> {
    pub(crate) fn new() -> Self {
        Self {
            next: Mutex::new(None),
        }
    }

    /// Makes the next `n` calls to [`Self::take`] return `failure` (0 clears the hook).
    pub(crate) fn set(&self, n: u64, failure: T) {
        *self.lock() = (n > 0).then_some((failure, n));
    }

    /// The failure to answer with now, if any is still due.
    pub(crate) fn take(&self) -> Option<T> {
        let mut next = self.lock();
        let (failure, left) = next.as_mut()?;
        let failure = failure.clone();
        *left -= 1;
        if *left == 0 {
            *next = None;
        }
        Some(failure)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(T, u64)>> {
        self.next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_795_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn dev_codes_name_their_user() {
        let nonce64 = "n".repeat(64);
        let with_long_nonce = format!("dev:bob:{nonce64}");
        let name32 = "a".repeat(32);
        let with_long_name = format!("dev:{name32}");
        let cases: [(&str, Option<&str>); 8] = [
            ("dev:alice", Some("alice")),
            ("dev:A_b-9", Some("A_b-9")),
            ("dev:alice:x1", Some("alice")),
            (&with_long_nonce, Some("bob")),
            (&with_long_name, Some(name32.as_str())),
            ("dev:alice:Z-_0", Some("alice")),
            ("dev:al", Some("al")),
            ("dev:a:b", Some("a")),
        ];
        for (code, want) in cases {
            assert_eq!(dev_user(code), want, "{code}");
        }
    }

    #[test]
    fn anything_else_is_not_a_dev_code() {
        let long_name = format!("dev:{}", "a".repeat(33));
        let long_nonce = format!("dev:a:{}", "n".repeat(65));
        let refused: &[&str] = &[
            "",
            "dev:",
            "dev::x",
            "dev:alice:",
            "dev:alice:x:y",
            "dev:al ice",
            "dev:alicé",
            "dev:a.b",
            "DEV:alice",
            " dev:alice",
            "dev:alice\n",
            "061a2b3c4d5e6f",
            &long_name,
            &long_nonce,
        ];
        for code in refused {
            assert_eq!(dev_user(code), None, "{code:?}");
        }
    }

    #[test]
    fn a_code_is_used_once_within_five_minutes_then_forgotten() {
        let mut used = UsedCodes::new(10);
        assert_eq!(used.redeem("dev:a", at(0)), Redeemed::Fresh);
        assert_eq!(used.redeem("dev:a", at(1)), Redeemed::Replayed);
        assert_eq!(used.redeem("dev:a", at(299)), Redeemed::Replayed);
        assert_eq!(used.redeem("dev:a:n", at(299)), Redeemed::Fresh);
        assert_eq!(used.redeem("dev:a", at(300)), Redeemed::Fresh);
        assert_eq!(used.redeem("dev:a", at(301)), Redeemed::Replayed);
        // dev:a:n expired at 599 and is gone; dev:a (used again at 300) is still held.
        assert_eq!(used.redeem("dev:b", at(599)), Redeemed::Fresh);
        assert_eq!(used.len(), 2);
        assert_eq!(used.redeem("dev:a", at(599)), Redeemed::Replayed);
    }

    #[test]
    fn a_full_memory_refuses_new_codes_rather_than_forget_used_ones() {
        let mut used = UsedCodes::new(3);
        for (i, code) in ["dev:a", "dev:b", "dev:c"].into_iter().enumerate() {
            let i = i64::try_from(i).unwrap();
            assert_eq!(used.redeem(code, at(i * 10)), Redeemed::Fresh);
        }
        assert_eq!(used.redeem("dev:d", at(60)), Redeemed::Busy);
        // Every used code is still refused while full.
        assert_eq!(used.redeem("dev:a", at(60)), Redeemed::Replayed);
        assert_eq!(used.len(), 3);
        // dev:a's five minutes are over: its place is free for one new code.
        assert_eq!(used.redeem("dev:d", at(300)), Redeemed::Fresh);
        assert_eq!(used.redeem("dev:e", at(300)), Redeemed::Busy);
        assert_eq!(used.redeem("dev:b", at(300)), Redeemed::Replayed);
        assert_eq!(used.len(), 3);
    }

    #[test]
    fn a_clock_stepping_back_neither_forgets_nor_panics() {
        let mut used = UsedCodes::new(3);
        assert_eq!(used.redeem("dev:a", at(1000)), Redeemed::Fresh);
        assert_eq!(used.redeem("dev:a", at(0)), Redeemed::Replayed);
        assert_eq!(used.redeem("dev:b", at(0)), Redeemed::Fresh);
        // dev:b (used "at 0") sits behind dev:a (at 1000) in the order; it expires all the same.
        assert_eq!(used.redeem("dev:b", at(400)), Redeemed::Fresh);
        assert_eq!(used.redeem("dev:b", at(401)), Redeemed::Replayed);
        assert_eq!(used.redeem("dev:a", at(1300)), Redeemed::Fresh);
        assert_eq!(used.len(), 1);
    }

    #[test]
    fn fail_next_counts_down_and_clears() {
        let hook = FailNext::new();
        assert_eq!(hook.take(), None::<i32>);
        hook.set(2, -1);
        assert_eq!(hook.take(), Some(-1));
        assert_eq!(hook.take(), Some(-1));
        assert_eq!(hook.take(), None);
        hook.set(5, 45011);
        hook.set(0, 45011);
        assert_eq!(hook.take(), None);
    }
}
