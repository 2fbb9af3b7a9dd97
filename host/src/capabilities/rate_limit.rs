//! `rate-limit`: token buckets in the store, with an optional bounded wait.

use std::time::Duration;

use tokio::time::Instant;

use super::HostState;
use super::{IntoWit, WitStoreError};
use crate::store::{Bucket, RateDecision, Store, StoreError};
use bitbylaw_bindings::rate_limit::{Bucket as WitBucket, Decision, Host};

impl Host for HostState {
    async fn take(
        &mut self,
        name: String,
        bucket: WitBucket,
        tokens: u32,
        max_wait_ms: u64,
    ) -> Result<Decision, WitStoreError> {
        let key = self.plugin.scope.bucket(&name).wit()?;
        let bucket = Bucket {
            capacity: bucket.capacity,
            refill_per_second: bucket.refill_per_second,
        };
        // Never wait past the call's own deadline: the caller would be gone by then.
        let wait_until =
            (Instant::now() + Duration::from_millis(max_wait_ms)).min(self.call.deadline);
        let decision = take_waiting(&self.plugin.store, &key, bucket, tokens, wait_until)
            .await
            .wit()?;
        Ok(Decision {
            allowed: decision.allowed,
            remaining: decision.remaining,
            retry_after_ms: u64::try_from(decision.retry_after.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// Takes tokens, sleeping for the refill while it comes before `wait_until`.
pub async fn take_waiting(
    store: &Store,
    key: &str,
    bucket: Bucket,
    tokens: u32,
    wait_until: Instant,
) -> Result<RateDecision, StoreError> {
    loop {
        let decision = store.rate_take(key, bucket, tokens).await?;
        if decision.allowed {
            return Ok(decision);
        }
        let Some(ready_at) = Instant::now().checked_add(decision.retry_after) else {
            return Ok(decision);
        };
        if ready_at > wait_until {
            return Ok(decision);
        }
        tokio::time::sleep_until(ready_at).await;
    }
}
