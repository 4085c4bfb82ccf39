//! investigator: a chat-ops bot that investigates production problems for squads,
//! reading their data sources read-only, guarded and audited.

pub mod access;
pub mod api;
pub mod app;
pub mod chat;
pub mod config;
pub mod demo;
pub mod engine;
pub mod evidence;
pub mod guard;
pub mod llm;
pub mod sources;
pub mod store;
