//! Where a firm's Advoware is: from the settings, or from Advoware's configurator
//! (`GET <discovery_url>?Kanzlei=<firm>`), whose `connectorUrl` wins over `relayUrl`.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use tokio::time::Instant;

use super::{Endpoints, Settings};
use bitbylaw_core::upstream::base_url;
use bitbylaw_core::upstream::rest::{Rest, RestError};

/// Discovered URLs are asked again after this long, so a moved relay is found.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// After a failed discovery, callers get the last good answer (or the failure)
/// for this long before the configurator is asked again.
const FAILURE_HOLD: Duration = Duration::from_secs(30);

pub enum EndpointSource {
    Fixed(Arc<Endpoints>),
    Discovered(tokio::sync::Mutex<Discovered>),
}

#[derive(Default)]
pub struct Discovered {
    /// The last good answer and when it came.
    found: Option<(Arc<Endpoints>, Instant)>,
    /// The last failure and when it happened.
    failed: Option<(RestError, Instant)>,
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
    /// Fixed endpoints when both URLs are configured, else discovery.
    pub fn new(settings: &Settings) -> Result<Self, String> {
        Ok(match (&settings.api_url, &settings.security_gateway) {
            (Some(api), Some(gateway)) => {
                Self::Fixed(Arc::new(endpoints(api, gateway, &settings.api_path)?))
            }
            _ => Self::Discovered(tokio::sync::Mutex::new(Discovered::default())),
        })
    }

    pub async fn get(
        &self,
        settings: &Settings,
        rest: &Rest,
        deadline: Instant,
    ) -> Result<Arc<Endpoints>, RestError> {
        let state = match self {
            Self::Fixed(endpoints) => return Ok(endpoints.clone()),
            Self::Discovered(state) => state,
        };
        // Held across the request: concurrent callers wait for one discovery.
        let mut state = tokio::time::timeout_at(deadline, state.lock())
            .await
            .map_err(|_| RestError::Timeout)?;
        let stale = match &state.found {
            Some((endpoints, at)) if at.elapsed() < DISCOVERY_TTL => return Ok(endpoints.clone()),
            Some((endpoints, _)) => Some(endpoints.clone()),
            None => None,
        };
        if let Some((error, at)) = &state.failed
            && at.elapsed() < FAILURE_HOLD
        {
            return stale.ok_or_else(|| error.clone());
        }
        match discover(settings, rest, deadline).await {
            Ok(found) => {
                let found = Arc::new(found);
                tracing::info!(
                    kanzlei = %settings.kanzlei,
                    api_base = %found.api_base,
                    token_url = %found.token_url,
                    "Advoware endpoints discovered"
                );
                state.found = Some((found.clone(), Instant::now()));
                state.failed = None;
                Ok(found)
            }
            Err(error) => {
                tracing::warn!(
                    kanzlei = %settings.kanzlei,
                    %error,
                    using_last_answer = stale.is_some(),
                    "Advoware discovery failed"
                );
                state.failed = Some((error.clone(), Instant::now()));
                // The relay rarely moves: the last answer is better than none.
                stale.ok_or(error)
            }
        }
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
    rest: &Rest,
    deadline: Instant,
) -> Result<Endpoints, RestError> {
    let failed = |m: String| RestError::Connection(format!("Advoware configurator: {m}"));
    let Some(mut url) = settings.discovery_url.clone() else {
        return Err(failed("no discovery_url configured".into()));
    };
    url.query_pairs_mut()
        .append_pair("Kanzlei", &settings.kanzlei);
    let timeout = rest.time_left(deadline);
    let egress = rest.egress();
    let answer = egress
        .fetch(egress.client().get(url), timeout)
        .await
        .map_err(|error| RestError::fetch(error, "Advoware configurator"))?;
    if answer.status != 200 {
        return Err(failed(format!(
            "answered {} for Kanzlei `{}`",
            answer.status, settings.kanzlei
        )));
    }
    let parsed: Answer = serde_json::from_slice(&answer.body)
        .map_err(|e| failed(format!("unexpected answer: {e}")))?;
    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let discovered = |key: &str, text: String| {
        base_url(key, &text).map_err(|e| failed(format!("{key}: {}", e.message)))
    };
    // What the settings give wins; the configurator fills in the rest.
    let api = match &settings.api_url {
        Some(url) => url.clone(),
        None => match (non_empty(parsed.connector_url), non_empty(parsed.relay_url)) {
            (Some(connector), _) => discovered("connectorUrl", connector)?,
            (None, Some(relay)) => discovered("relayUrl", relay)?,
            (None, None) => {
                return Err(failed(
                    "answer names neither connectorUrl nor relayUrl".into(),
                ));
            }
        },
    };
    let gateway = match &settings.security_gateway {
        Some(url) => url.clone(),
        None => match non_empty(parsed.security_gateway) {
            Some(gateway) => discovered("securityGateway", gateway)?,
            None => return Err(failed("answer names no securityGateway".into())),
        },
    };
    endpoints(&api, &gateway, &settings.api_path).map_err(failed)
}
