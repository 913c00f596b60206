//! Helpers shared by the Rust integration tests.
#![allow(dead_code)] // each test binary uses only some of the helpers

pub(crate) mod canary;
pub(crate) mod redis_server;
