//! What every part of the bitbylaw host builds on, and what an upstream kind
//! needs from the host: the state [`store`], outbound HTTP ([`egress`]),
//! [`secret`]s, [`metrics`], and the shape of an upstream account
//! ([`upstream`]: settings, grants, the shared token cache).
//!
//! Nothing here knows about tenant files or plugins, and of the WIT world only
//! the shared REST types ([`upstream::rest`]), so a kind crate
//! (`bitbylaw-advoware`, ...) depends on this crate and the bindings only, and
//! a change to the host does not rebuild it.

pub mod egress;
pub mod metrics;
pub mod secret;
pub mod store;
pub mod sync;
pub mod upstream;
