//! Per-tenant limits at the edge, so one firm cannot crowd out the others:
//! a request rate (token bucket in the store, shared by all host instances;
//! above it 429) and a cap on plugin calls running at once (above it 503).
//! The rate headers are those of Kong's rate-limiting plugin.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::sync::OwnedSemaphorePermit;

use super::ApiError;
use crate::host::Host;
use crate::tenants::Tenant;

/// `RateLimit-*` headers for a response.
#[derive(Default)]
pub struct RateHeaders(Vec<(HeaderName, HeaderValue)>);

impl RateHeaders {
    pub fn apply(self, headers: &mut HeaderMap) {
        for (name, value) in self.0 {
            headers.insert(name, value);
        }
    }
}

/// Takes one request from the tenant's bucket. When the store cannot answer,
/// the request goes through: an outage of the limiter must not become an outage
/// of every tenant.
pub async fn take_request(host: &Host, tenant: &Tenant) -> Result<RateHeaders, ApiError> {
    let Some(limit) = &tenant.rate else {
        return Ok(RateHeaders::default());
    };
    let bucket = limit.bucket;
    let decision = match host.store().rate_take(&limit.key, bucket, 1).await {
        Ok(decision) => decision,
        Err(error) => {
            tracing::warn!(tenant = %tenant.id, %error, "rate limiter unavailable; request let through");
            return Ok(RateHeaders::default());
        }
    };
    let missing = f64::from(bucket.capacity) - f64::from(decision.remaining);
    let until_full = Duration::from_secs_f64(missing.max(0.0) / bucket.refill_per_second);
    let mut headers = vec![
        header("ratelimit-limit", u64::from(bucket.capacity)),
        header("ratelimit-remaining", u64::from(decision.remaining)),
        header("ratelimit-reset", seconds_up(until_full)),
    ];
    if decision.allowed {
        return Ok(RateHeaders(headers));
    }
    let retry = seconds_up(decision.retry_after).max(1);
    headers.push(header("retry-after", retry));
    Err(ApiError::refuse(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "tenant over its rate of {} requests per second; retry in {retry} s",
            bucket.refill_per_second
        ),
    )
    .with_headers(headers))
}

/// Takes one of the tenant's instance slots, or refuses at once.
pub fn take_instance(tenant: &Tenant) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
    let Some(slots) = &tenant.instances else {
        return Ok(None);
    };
    match slots.clone().try_acquire_owned() {
        Ok(permit) => Ok(Some(permit)),
        Err(_) => {
            let (name, value) = header("retry-after", 1);
            Err(ApiError::refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_busy",
                "all of the tenant's plugin instances are busy; retry shortly",
            )
            .with_header(name, value))
        }
    }
}

fn header(name: &'static str, value: u64) -> (HeaderName, HeaderValue) {
    (HeaderName::from_static(name), HeaderValue::from(value))
}

fn seconds_up(duration: Duration) -> u64 {
    let millis = duration.as_millis();
    u64::try_from(millis.div_ceil(1000)).unwrap_or(u64::MAX)
}
