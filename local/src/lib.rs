//! The local runner's parts, shared with the end-to-end tests: tools, the stack, provisioning,
//! the tick generator, the quote fetcher, the event-source poller and the SFTP drop.

pub mod bench;
pub mod cdr;
pub mod faults;
pub mod generator;
pub mod kinesis;
pub mod market;
pub mod meter;
pub mod poller;
pub mod progress;
pub mod provision;
pub mod replay;
pub mod services;
pub mod sftp;
pub mod stack;
pub mod tools;
