//! The engine: everything between a principal's question and the data. For now the
//! gate every tool call passes through; the investigation loop builds on it.

pub mod gate;

pub use gate::{CallError, Gate, GateOutcome, OfferedTool};
