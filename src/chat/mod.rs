//! Transports. Each renders the engine's events and reports its own way; none
//! holds engine logic.

pub mod render;
pub mod slack;
pub mod terminal;
