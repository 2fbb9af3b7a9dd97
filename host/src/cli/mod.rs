//! Subcommands beside `serve`: `calendar` talks to a running deployment over
//! HTTP, for the firm's IT; `plugin` works on a component file and `dev`
//! serves one while it is written, for plugin authors.

pub mod calendar;
pub mod dev;
pub mod plugin;
