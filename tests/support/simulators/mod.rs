//! Upstream systems as real HTTP servers on port 0, behaving like the real APIs
//! as `../shared/reference/upstreams.md` describes them, auth checks and
//! failure modes included. Their checks are written from the reference, not
//! shared with the code under test, so a mistake is not mirrored.

pub mod advoware;
pub mod espocrm;
pub mod google;
