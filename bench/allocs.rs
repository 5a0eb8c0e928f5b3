//! `bench-allocs [REQUESTS]`: heap allocations and bytes per cached `GET /get_sts_token`, the
//! whole service counted (see `bench/alloc_probe.rs` for what is driven and how). Prints one
//! line per figure. `tests/alloc.rs` fails when allocations per request grow past its bound.

#[path = "alloc_probe.rs"]
mod alloc_probe;

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    let requests = std::env::args()
        .nth(1)
        .map_or(Ok(20_000), |n| n.parse())
        .expect("REQUESTS is a number");
    let figures = alloc_probe::measure(GLOBAL, requests);
    println!("requests: {}", figures.requests);
    println!("allocations per request: {:.2}", figures.allocations);
    println!("reallocations per request: {:.2}", figures.reallocations);
    println!("bytes allocated per request: {:.0}", figures.bytes);
}
