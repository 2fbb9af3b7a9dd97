//! Google's quotas, kept by the deployment as a whole: before each call a
//! token is taken from two buckets in the tenant's store, the mailbox's and
//! the account's (Google's per-user and per-project quotas), so N host
//! instances together stay below them. An empty bucket is waited for, up to
//! `quota_wait_ms` and the call's deadline, rather than answered with an error.

use std::time::Duration;

use bitbylaw_core::store::{Bucket, Scope, Store};
use tokio::time::Instant;

use crate::GoogleError;
use crate::settings::Settings;

pub(crate) struct Quotas {
    store: Store,
    scope: Scope,
    /// `quota:<account>:`, the start of both buckets' names.
    prefix: String,
    user: Option<Bucket>,
    project: Option<Bucket>,
    max_wait: Duration,
}

impl Quotas {
    pub(crate) fn new(store: Store, scope: Scope, account: &str, settings: &Settings) -> Self {
        let bucket = |per_minute: u32| {
            (per_minute > 0).then(|| Bucket {
                capacity: settings.burst,
                refill_per_second: f64::from(per_minute) / 60.0,
            })
        };
        Self {
            store,
            scope,
            prefix: format!("quota:{account}:"),
            user: bucket(settings.user_per_minute),
            project: bucket(settings.project_per_minute),
            max_wait: settings.quota_wait,
        }
    }

    /// Takes one call's share of both quotas; returns how long it waited for
    /// room (not counting the store's answers).
    pub(crate) async fn take(
        &self,
        subject: &str,
        deadline: Instant,
    ) -> Result<Duration, GoogleError> {
        let until = deadline.min(Instant::now() + self.max_wait);
        let invalid = |e: bitbylaw_core::store::StoreError| GoogleError::Invalid(e.to_string());
        let mut buckets = Vec::with_capacity(2);
        if let Some(bucket) = self.user {
            let key = self
                .scope
                .bucket(&format!("{}user:{subject}", self.prefix))
                .map_err(invalid)?;
            buckets.push((key, bucket));
        }
        if let Some(bucket) = self.project {
            let key = self
                .scope
                .bucket(&format!("{}project", self.prefix))
                .map_err(invalid)?;
            buckets.push((key, bucket));
        }
        let buckets: Vec<(&str, Bucket)> = buckets
            .iter()
            .map(|(key, bucket)| (key.as_str(), *bucket))
            .collect();
        // Both quotas in one round trip, all or none.
        self.store
            .rate_wait_all(&buckets, until)
            .await
            .map_err(|_| {
                GoogleError::RateLimited(format!(
                    "the account's quota (mailbox {subject}, or the project) has no room within the time this call may wait"
                ))
            })
    }
}
