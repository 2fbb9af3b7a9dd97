//! Token buckets shared by every host instance, e.g. to respect an upstream's quota.

use std::time::Duration;

use crate::StoreError;
use crate::bindings::bitbylaw::plugin::rate_limit as wit;
use crate::kv::millis;

pub use wit::{Bucket, Decision};

/// Takes `tokens` from bucket `name`, waiting at most `max_wait` for them.
pub fn take(
    name: &str,
    bucket: Bucket,
    tokens: u32,
    max_wait: Duration,
) -> Result<Decision, StoreError> {
    wit::take(name, bucket, tokens, millis(max_wait))
}
