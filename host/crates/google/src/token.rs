//! Access tokens per mailbox: asked from the key's `token_uri` by yup-oauth2
//! (an RS256 JWT assertion with `sub` = the mailbox) and kept in the tenant's
//! store by the shared [`TokenCache`], so all host instances fetch one token
//! per mailbox until shortly before it expires.

use std::time::Duration;

use bitbylaw_core::upstream::{Issued, TokenCache, TokenFailure};
use tokio::time::Instant;
use yup_oauth2::ServiceAccountKey;

use crate::{Connector, GoogleError};

/// The scope every token is asked for: the one domain-wide delegation grants.
pub const SCOPE: &str = "https://www.googleapis.com/auth/calendar";

/// A token is dropped this long before Google's expiry, so no call starts
/// with a token that dies on the way.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5 * 60);

pub(crate) struct Tokens {
    cache: TokenCache<GoogleError>,
    key: ServiceAccountKey,
    connector: Connector,
    /// The account's `timeout_ms`: a token request takes no longer.
    max_time: Duration,
}

impl Tokens {
    pub(crate) fn new(
        cache: TokenCache<GoogleError>,
        key: ServiceAccountKey,
        connector: Connector,
        max_time: Duration,
    ) -> Self {
        Self {
            cache,
            key,
            connector,
            max_time,
        }
    }

    /// A valid token acting as `subject`.
    pub(crate) async fn get(
        &self,
        subject: &str,
        deadline: Instant,
    ) -> Result<String, GoogleError> {
        self.cache
            .get(subject, deadline, |timeout| self.fetch(subject, timeout))
            .await
    }

    /// Forgets `token` of `subject` (Google refused it).
    pub(crate) async fn invalidate(&self, subject: &str, token: &str) -> Result<(), GoogleError> {
        self.cache.invalidate(subject, token).await
    }

    async fn fetch(
        &self,
        subject: &str,
        timeout: Duration,
    ) -> Result<Issued, TokenFailure<GoogleError>> {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, String>(self.connector.clone());
        // One authenticator per fetch: fetches are rare (one per mailbox and
        // hour across the deployment), and its own token memory is not wanted.
        let authenticator = yup_oauth2::ServiceAccountAuthenticator::with_client(
            self.key.clone(),
            yup_oauth2::CustomHyperClientBuilder::from(client),
        )
        .subject(subject)
        .build()
        .await
        .map_err(|e| {
            TokenFailure::Refused(GoogleError::Unauthorized(format!(
                "the service-account key cannot sign token requests: {e}"
            )))
        })?;
        let timeout = timeout.min(self.max_time);
        let token = tokio::time::timeout(timeout, authenticator.force_refreshed_token(&[SCOPE]))
            .await
            .map_err(|_| {
                TokenFailure::Failed(GoogleError::Unavailable(
                    "the token request took too long".into(),
                ))
            })?
            .map_err(token_failure)?;
        let access = token
            .token()
            // It goes into a header as it is; anything else is no token of Google's.
            .filter(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                TokenFailure::Failed(GoogleError::Unavailable(
                    "the token answer held no access token".into(),
                ))
            })?
            .to_owned();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let lives = token
            .expiration_time()
            .and_then(|at| u64::try_from(at.unix_timestamp()).ok())
            .map_or(Duration::from_secs(3600), |at| {
                Duration::from_secs(at.saturating_sub(now))
            });
        Ok(Issued {
            token: access,
            ttl: lives
                .saturating_sub(EXPIRY_MARGIN)
                .max(Duration::from_secs(1)),
        })
    }
}

/// The issuer's "no" (bad key, delegation not granted, wrong scope) is held;
/// anything else is tried again by the next call.
fn token_failure(error: yup_oauth2::Error) -> TokenFailure<GoogleError> {
    match error {
        yup_oauth2::Error::AuthError(refusal) => TokenFailure::Refused(GoogleError::Unauthorized(
            format!("the token request was refused: {refusal}"),
        )),
        other => TokenFailure::Failed(GoogleError::Unavailable(format!(
            "the token request failed: {other}"
        ))),
    }
}
