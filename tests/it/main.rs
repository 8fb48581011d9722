//! Integration tests: the real pipeline against the embedded fake API on ephemeral loopback
//! ports, plus the binary's exit codes.

mod cli;
mod export;
mod faults;
mod fixtures;
mod limits;
mod resume;
mod support;
mod sync;
