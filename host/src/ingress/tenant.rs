//! Who is calling. Behind Kong, the consumer headers Kong sets after key-auth,
//! believed only from trusted proxies; without Kong, the host's own API keys,
//! read from the same places Kong's key-auth reads them.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use ipnet::IpNet;

use crate::config::Routes;
use crate::tenants::{Deployment, Tenant};

/// Headers that carry credentials or Kong's consumer identity; never passed to plugins.
pub const AUTH_HEADERS: [&str; 5] = [
    "apikey",
    "x-api-key",
    "x-consumer-custom-id",
    "x-consumer-username",
    "x-consumer-id",
];

/// The query parameter Kong's key-auth accepts; removed before the plugin sees the query.
pub const API_KEY_QUERY: &str = "apikey";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send an API key in the `apikey` or `X-API-Key` header")]
    Missing,
    #[error("invalid API key")]
    InvalidKey,
    #[error("Kong consumer `{0}` is not mapped to a tenant")]
    UnknownConsumer(String),
}

/// The calling tenant and the routes its credential opens.
pub fn resolve(
    deployment: &Deployment,
    trusted_proxies: &[IpNet],
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(Arc<Tenant>, Routes), AuthError> {
    // A dual-stack listener sees IPv4 peers as `::ffff:a.b.c.d`; match them as IPv4.
    let trusted = peer
        .map(|ip| ip.to_canonical())
        .is_some_and(|ip| trusted_proxies.iter().any(|net| net.contains(&ip)));
    if trusted {
        for header in ["x-consumer-custom-id", "x-consumer-username"] {
            if let Some(consumer) = headers.get(header).and_then(|v| v.to_str().ok()) {
                return deployment
                    .tenant_by_kong_consumer(consumer)
                    .map(|(tenant, routes)| (tenant.clone(), routes.clone()))
                    .ok_or_else(|| AuthError::UnknownConsumer(consumer.to_owned()));
            }
        }
    }
    let key = headers
        .get("apikey")
        .or_else(|| headers.get("x-api-key"))
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_api_key(query));
    match key {
        None => Err(AuthError::Missing),
        Some(key) => deployment
            .tenant_by_api_key(&key)
            .map(|(tenant, routes)| (tenant.clone(), routes.clone()))
            .ok_or(AuthError::InvalidKey),
    }
}

/// The `apikey` query parameter (EspoCRM, WordPress and 3CX put keys there).
pub(super) fn query_api_key(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(name, _)| name == API_KEY_QUERY)
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Deployment {
        let tenant = Tenant {
            id: "firm-a".into(),
            plugins: Default::default(),
            routes: Default::default(),
            api_keys: Vec::new(),
            kong_consumers: vec![crate::tenants::Credential {
                id: "firm-a".into(),
                routes: None,
            }],
            subscriptions: Vec::new(),
            schedules: Vec::new(),
            default_subscription: Default::default(),
            rate: None,
            instances: None,
            quota: crate::store::Quota::new("t", "firm-a", 1 << 20),
        };
        Deployment::new(vec![Arc::new(tenant)]).unwrap()
    }

    fn consumer_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-consumer-custom-id", "firm-a".parse().unwrap());
        headers
    }

    #[test]
    fn an_ipv4_proxy_seen_through_a_dual_stack_socket_is_trusted() {
        let trusted: Vec<IpNet> = vec!["10.0.0.5/32".parse().unwrap()];
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
        let (tenant, _) = resolve(
            &deployment(),
            &trusted,
            Some(mapped),
            &consumer_headers(),
            None,
        )
        .unwrap();
        assert_eq!(tenant.id, "firm-a");

        let other: IpAddr = "::ffff:10.0.0.6".parse().unwrap();
        assert_eq!(
            resolve(
                &deployment(),
                &trusted,
                Some(other),
                &consumer_headers(),
                None
            )
            .err(),
            Some(AuthError::Missing),
            "consumer headers from anyone else are not believed"
        );
    }
}
