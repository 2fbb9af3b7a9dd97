//! Subcommands that talk to a running deployment over HTTP, for the firm's IT.

pub mod calendar;
