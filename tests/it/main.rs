//! Integration tests: the real pipeline against the embedded fake API on ephemeral loopback
//! ports, plus the binary's exit codes.

mod bad_responses;
mod cli;
mod disk;
mod export;
mod faults;
mod fixtures;
mod limits;
mod resume;
mod support;
mod sync;
