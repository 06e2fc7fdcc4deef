//! tingxie-loadtest: load, scale-from-zero and reports for tingxie. See `README.md`.

pub mod charts;
pub mod cli;
pub mod client;
pub mod coldstart;
pub mod corpus;
pub mod load;
pub mod prom;
pub mod report;
pub mod schedule;
pub mod server;
pub mod stats;
pub mod target;
