//! Property tests ("fuzzing on stable") for every parser that sees outside bytes: STS response
//! bodies, Alipay answers, settings, JWTs, the public router's paths, queries and headers, and
//! the V1 signer.
//!
//! A binary of its own, apart from `tests/api`, so it can be run long (`scripts/fuzz.sh`) without
//! the service tests. Each property runs `PROPTEST_CASES` inputs (proptest reads the variable; 256
//! by default, the router property a quarter of that because every case is a whole request),
//! stops early once it has run `FUZZ_SECONDS` seconds when that is set, and prints one line to
//! standard error, which `cargo test -- --nocapture` shows:
//!
//! ```text
//! fuzz: sts_response_arbitrary_bytes: 256 inputs in 0.1s
//! ```
//!
//! A failure found here stays as a plain `#[test]` holding the literal input, in
//! `regressions.rs`: proptest's own regression files are turned off so the suite stays readable.
// The 80-line rule is for the service's own functions; a scenario test reads top to bottom.
#![allow(clippy::too_many_lines)]

mod alipay_answer;
mod config;
mod jwt;
mod regressions;
mod router;
mod signature;
mod sts_response;

use std::cell::Cell;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};
use serde_json::Value;

/// Cases per `TestRunner` run: a time bound is checked between runs.
const CHUNK: u32 = 256;

/// The number of cases a property runs: `PROPTEST_CASES`, or proptest's default of 256.
fn default_cases() -> u32 {
    Config::default().cases
}

/// The per-property time bound, from `FUZZ_SECONDS`; none when unset.
fn time_bound() -> Option<Duration> {
    // The test harness's own knob, not a setting of the service.
    #[allow(clippy::disallowed_methods)]
    let seconds = std::env::var("FUZZ_SECONDS").ok()?;
    seconds.trim().parse().ok().map(Duration::from_secs_f64)
}

/// Runs `test` on `cases` inputs drawn from `strategy` (shrinking a failure to a minimal input)
/// and prints how many inputs it ran.
fn check_n<S>(name: &str, cases: u32, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: Debug,
{
    let started = Instant::now();
    let bound = time_bound();
    let inputs = Cell::new(0_u64);
    let mut done = 0;
    let mut stopped_early = false;
    while done < cases {
        if bound.is_some_and(|bound| started.elapsed() >= bound) {
            stopped_early = true;
            break;
        }
        let chunk = CHUNK.min(cases - done);
        let mut runner = TestRunner::new(Config {
            cases: chunk,
            // Failures are kept as named tests in `regressions.rs` instead.
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&strategy, |value| {
            inputs.set(inputs.get() + 1);
            test(value)
        });
        if let Err(failure) = result {
            eprintln!("fuzz: {name}: FAILED after {} inputs", inputs.get());
            panic!("{name}: {failure}");
        }
        done += chunk;
    }
    eprintln!(
        "fuzz: {name}: {} inputs in {:.1}s{}",
        inputs.get(),
        started.elapsed().as_secs_f64(),
        if stopped_early {
            " (stopped at FUZZ_SECONDS)"
        } else {
            ""
        }
    );
}

/// [`check_n`] with the default number of cases.
fn check<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: Debug,
{
    check_n(name, default_cases(), strategy, test);
}

/// Object keys: mostly names the parsers look for, in both spellings, and some noise.
fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "Credentials", "AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration",
            "RequestId", "requestId", "Code", "code", "Message", "message",
            "alg", "kid", "crit", "typ", "exp", "nbf", "iat", "iss", "aud", "sub",
        ])
        .prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
}

/// Any JSON value, nested a few levels, with numbers at the edges of what JSON can carry.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}
