//! Where a firm's Advoware is: from the settings, or from Advoware's configurator
//! (`GET <discovery_url>?Kanzlei=<firm>`), whose `connectorUrl` wins over `relayUrl`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use tokio::time::Instant;

use super::settings::base_url;
use super::{AdvowareError, Endpoints, Settings};
use crate::capabilities::http::{Egress, FetchError};

/// Discovered URLs are asked again after this long, so a moved relay is found.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

pub enum EndpointSource {
    Fixed(Arc<Endpoints>),
    Discovered(tokio::sync::Mutex<Option<(Arc<Endpoints>, Instant)>>),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    #[serde(default)]
    relay_url: Option<String>,
    #[serde(default)]
    connector_url: Option<String>,
    #[serde(default)]
    security_gateway: Option<String>,
}

impl EndpointSource {
    pub fn new(settings: &Settings) -> Self {
        match (&settings.api_url, &settings.security_gateway) {
            (Some(api), Some(gateway)) => match endpoints(api, gateway, &settings.api_path) {
                Ok(fixed) => Self::Fixed(Arc::new(fixed)),
                // Checked with the settings; discovery would report it per call.
                Err(_) => Self::Discovered(tokio::sync::Mutex::new(None)),
            },
            _ => Self::Discovered(tokio::sync::Mutex::new(None)),
        }
    }

    pub async fn get(
        &self,
        settings: &Settings,
        egress: &Egress,
        deadline: Instant,
    ) -> Result<Arc<Endpoints>, AdvowareError> {
        let cache = match self {
            Self::Fixed(endpoints) => return Ok(endpoints.clone()),
            Self::Discovered(cache) => cache,
        };
        // Held across the request: concurrent callers wait for one discovery.
        let mut cached = tokio::time::timeout_at(deadline, cache.lock())
            .await
            .map_err(|_| AdvowareError::Timeout)?;
        if let Some((endpoints, at)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(endpoints.clone());
        }
        let found = Arc::new(discover(settings, egress, deadline).await?);
        tracing::info!(
            kanzlei = %settings.kanzlei,
            api_base = %found.api_base,
            token_url = %found.token_url,
            "Advoware endpoints discovered"
        );
        *cached = Some((found.clone(), Instant::now()));
        Ok(found)
    }
}

fn endpoints(api_url: &Url, gateway: &Url, api_path: &str) -> Result<Endpoints, String> {
    Ok(Endpoints {
        api_base: api_url
            .join(api_path)
            .map_err(|e| format!("API base: {e}"))?,
        token_url: gateway
            .join("api/v1/Token")
            .map_err(|e| format!("token URL: {e}"))?,
    })
}

async fn discover(
    settings: &Settings,
    egress: &Egress,
    deadline: Instant,
) -> Result<Endpoints, AdvowareError> {
    let failed = |m: String| AdvowareError::Connection(format!("Advoware configurator: {m}"));
    let Some(mut url) = settings.discovery_url.clone() else {
        return Err(failed("no discovery_url configured".into()));
    };
    url.query_pairs_mut()
        .append_pair("Kanzlei", &settings.kanzlei);
    let timeout = settings
        .timeout
        .min(deadline.saturating_duration_since(Instant::now()));
    let answer = egress
        .fetch(egress.client().get(url), timeout)
        .await
        .map_err(|error| match error {
            FetchError::Timeout => AdvowareError::Timeout,
            FetchError::TooLarge(n) => AdvowareError::TooLarge(n),
            FetchError::Invalid(m) | FetchError::Connection(m) => failed(m),
        })?;
    if answer.status != 200 {
        return Err(failed(format!(
            "answered {} for Kanzlei `{}`",
            answer.status, settings.kanzlei
        )));
    }
    let parsed: Answer = serde_json::from_slice(&answer.body)
        .map_err(|e| failed(format!("unexpected answer: {e}")))?;
    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let api_text = settings
        .api_url
        .as_ref()
        .map(|url| url.to_string())
        .or_else(|| non_empty(parsed.connector_url))
        .or_else(|| non_empty(parsed.relay_url))
        .ok_or_else(|| failed("answer names neither connectorUrl nor relayUrl".into()))?;
    let gateway_text = settings
        .security_gateway
        .as_ref()
        .map(|url| url.to_string())
        .or_else(|| non_empty(parsed.security_gateway))
        .ok_or_else(|| failed("answer names no securityGateway".into()))?;
    let api = base_url("relayUrl", &api_text).map_err(|(_, m)| failed(m))?;
    let gateway = base_url("securityGateway", &gateway_text).map_err(|(_, m)| failed(m))?;
    endpoints(&api, &gateway, &settings.api_path).map_err(failed)
}
