//! Domain logic of the streaming platform: pure and synchronous, no I/O.

pub mod candles;
pub mod cdr;
pub mod cdr_generator;
pub mod dead_letter;
pub mod event;
pub mod indicators;
pub mod latest;
pub mod metrics;
pub mod quotes;
pub mod rates;
pub mod simulate;
pub mod tick;
pub mod time;

pub use dead_letter::DeadLetter;
pub use event::{Position, SourceEvent, SourceRecord};
pub use tick::{Tick, TickRejection};
pub use time::Timestamp;
