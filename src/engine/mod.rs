//! The engine: everything between a principal's question and the data. The gate
//! every tool call passes through, the IO-free investigation state machine, the
//! driver that runs it, and the report schema.

pub mod driver;
pub mod gate;
pub mod investigation;
pub mod prompt;
pub mod report;
pub mod sessions;
pub mod stored;

pub use driver::{
    Clock, Conversation, Engine, EngineSettings, Event, EventSink, NoEvents, Outcome, SystemClock,
};
pub use gate::{CallError, Gate, GateOutcome, OfferedTool};
pub use investigation::{Budgets, CallOutcome, Investigation, PlannedCall, Setup, Step, ToolRoute};
pub use report::{Confidence, Findings, Report, ReportKind};
pub use sessions::{Lease, Sessions};
pub use stored::{SessionRepo, StoredLease};
