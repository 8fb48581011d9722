//! The embedded fake API: a deterministic dataset served over real HTTP on loopback, with the
//! documented quirks, fault and latency knobs, and counters. Tests, `demo` and benchmarks run
//! against it; `playment-export fake-api` serves it standalone.

mod dataset;
mod server;

pub use dataset::{Dataset, DatasetSpec};
pub use server::{Counters, FakeApi, FakeConfig, FaultKind, Faults, Quirk};
