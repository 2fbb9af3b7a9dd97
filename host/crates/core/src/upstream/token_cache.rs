//! Upstream tokens, shared by every plugin and host instance of a tenant.
//!
//! A token is cached in the tenant's store under the account and a subject
//! (a mailbox for Google, nothing for Advoware) and fetched by one caller at a
//! time. Single flight has two levels: a mutex in this process, so concurrent
//! calls here wait for one fetch, and a lease in the store, so several host
//! instances do not all ask the issuer at once. Whoever waits re-reads the
//! cache. A refused token request is remembered for [`FAILURE_HOLD`], so a
//! wrong password costs one request per hold, not one per waiting call.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::Recent;
use crate::metrics::{Metrics, UpstreamLabel};
use crate::store::{Scope, Store, StoreError};

/// How often a caller waiting for another instance's fetch looks at the cache.
const WAIT_POLL: Duration = Duration::from_millis(20);

/// How long a refused token request answers for the calls after it.
pub const FAILURE_HOLD: Duration = Duration::from_secs(5);

/// How long this process reuses the token it last read without asking the store.
/// Saves a store round trip per call (a quarter of the Advoware proxy's
/// throughput on Redis); a token another instance replaced in the meantime
/// costs one 401 and the kind's retry, never an extra token request.
const MEMO_TTL: Duration = Duration::from_secs(1);

/// The lease outlives the fetch by this much, so a slow store does not let a second one start.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// A subject (a mailbox, say) no call used this long leaves the in-process
/// map when another comes: a plugin acting as ever new mailboxes must not
/// grow the host's memory without end (the store's entries expire by themselves).
const SUBJECT_IDLE: Duration = Duration::from_secs(15 * 60);

/// A token the issuer handed out, and how long to cache it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub token: String,
    pub ttl: Duration,
}

/// How long to reuse a token the issuer says lives `lifetime` (when it says),
/// at most `configured`: a tenth of its life (at most a minute) is kept as a
/// margin for clock skew and slow calls.
pub fn reuse_time(configured: Duration, lifetime: Option<Duration>) -> Duration {
    let Some(lifetime) = lifetime else {
        return configured;
    };
    let margin = (lifetime / 10).min(Duration::from_secs(60));
    configured
        .min(lifetime.saturating_sub(margin))
        .max(Duration::from_millis(1))
}

/// Why a fetch brought no token.
#[derive(Debug, Clone)]
pub enum TokenFailure<E> {
    /// The issuer said no (credentials, rights): held for [`FAILURE_HOLD`] and
    /// answered to the calls that wait meanwhile.
    Refused(E),
    /// Anything else (connection, 5xx, an answer without a token): the next call tries again.
    Failed(E),
}

/// What a kind's error must be able to say for the cache.
pub trait TokenError: Clone + Send + Sync + 'static {
    /// No token before the call's deadline.
    fn timeout() -> Self;
    /// The store holding the tokens could not be reached.
    fn unavailable(error: StoreError) -> Self;
}

/// One account's tokens. `E` is the kind's error type.
pub struct TokenCache<E> {
    label: UpstreamLabel,
    store: Store,
    scope: Scope,
    metrics: Metrics,
    subjects: Mutex<HashMap<String, Arc<Subject<E>>>>,
    /// See [`SUBJECT_IDLE`].
    idle: Duration,
}

/// The in-process state of one subject's token.
struct Subject<E> {
    key: String,
    lease_key: String,
    local: tokio::sync::Mutex<()>,
    /// The last refusal by the issuer, answered again for [`FAILURE_HOLD`].
    refused: Recent<E>,
    /// The token last read or stored here, reused for [`MEMO_TTL`].
    memo: Recent<String>,
    /// When a call last asked for this subject.
    used: Mutex<Instant>,
}

impl<E: TokenError> TokenCache<E> {
    /// Tokens of the account `label` names, kept in `scope` of the tenant's store
    /// under `token:<account>:<subject>`.
    pub fn new(label: UpstreamLabel, store: Store, scope: Scope, metrics: Metrics) -> Self {
        Self {
            label,
            store,
            scope,
            metrics,
            subjects: Mutex::new(HashMap::new()),
            idle: SUBJECT_IDLE,
        }
    }

    /// With another idle time for subjects (tests).
    pub fn with_idle_subjects(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// How many subjects this process keeps state for.
    pub fn subjects_kept(&self) -> usize {
        crate::sync::lock(&self.subjects).len()
    }

    /// A valid token for `subject`: the cached one, or one fetched by `fetch`
    /// once for all waiting callers (here and on other host instances). `fetch`
    /// gets the time it may take.
    pub async fn get<F, Fut>(&self, subject: &str, deadline: Instant, fetch: F) -> Result<String, E>
    where
        F: FnOnce(Duration) -> Fut,
        Fut: Future<Output = Result<Issued, TokenFailure<E>>>,
    {
        let slot = self.subject(subject)?;
        if let Some(token) = self.cached(&slot).await? {
            return Ok(token);
        }
        let _local = tokio::time::timeout_at(deadline, slot.local.lock())
            .await
            .map_err(|_| E::timeout())?;
        if let Some(token) = self.cached(&slot).await? {
            return Ok(token);
        }
        if let Some(refusal) = slot.refused.get() {
            return Err(refusal);
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        let lease_id = uuid::Uuid::new_v4().simple().to_string();
        loop {
            let acquired = self
                .store
                .lock_acquire(&slot.lease_key, &lease_id, timeout + LEASE_MARGIN)
                .await
                .map_err(E::unavailable)?;
            if acquired {
                let lease = Lease(Some((self.store.clone(), slot.lease_key.clone(), lease_id)));
                // Another instance may have stored one between our read and the lease.
                let result = match self.cached(&slot).await {
                    Ok(Some(token)) => Ok(token),
                    Ok(None) => self.fetch(&slot, deadline, fetch).await,
                    Err(error) => Err(error),
                };
                lease.release().await;
                return result;
            }
            if Instant::now() + WAIT_POLL >= deadline {
                return Err(E::timeout());
            }
            tokio::time::sleep(WAIT_POLL).await;
            if let Some(token) = self.cached(&slot).await? {
                return Ok(token);
            }
        }
    }

    /// Drops `token` of `subject` if it is still the cached one (the upstream refused it).
    pub async fn invalidate(&self, subject: &str, token: &str) -> Result<(), E> {
        let slot = self.subject(subject)?;
        slot.memo.forget(token);
        self.store
            .delete_if_equal(&slot.key, token)
            .await
            .map_err(E::unavailable)?;
        Ok(())
    }

    fn subject(&self, subject: &str) -> Result<Arc<Subject<E>>, E> {
        let mut subjects = crate::sync::lock(&self.subjects);
        if let Some(slot) = subjects.get(subject) {
            *crate::sync::lock(&slot.used) = Instant::now();
            return Ok(slot.clone());
        }
        // A new subject: the ones no call holds and none used lately go.
        let idle = self.idle;
        subjects.retain(|_, slot| {
            Arc::strong_count(slot) > 1 || crate::sync::lock(&slot.used).elapsed() < idle
        });
        let name = format!("token:{}:{subject}", self.label.account);
        let slot = Arc::new(Subject {
            key: self.scope.kv(&name).map_err(E::unavailable)?,
            lease_key: self.scope.lock(&name).map_err(E::unavailable)?,
            local: tokio::sync::Mutex::new(()),
            refused: Recent::new(FAILURE_HOLD),
            memo: Recent::new(MEMO_TTL),
            used: Mutex::new(Instant::now()),
        });
        subjects.insert(subject.to_owned(), slot.clone());
        Ok(slot)
    }

    async fn cached(&self, slot: &Subject<E>) -> Result<Option<String>, E> {
        if let Some(token) = slot.memo.get() {
            return Ok(Some(token));
        }
        let bytes = self.store.get(&slot.key).await.map_err(E::unavailable)?;
        let token = bytes
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|token| !token.is_empty());
        if let Some(token) = &token {
            slot.memo.set(token.clone());
        }
        Ok(token)
    }

    async fn fetch<F, Fut>(
        &self,
        slot: &Subject<E>,
        deadline: Instant,
        fetch: F,
    ) -> Result<String, E>
    where
        F: FnOnce(Duration) -> Fut,
        Fut: Future<Output = Result<Issued, TokenFailure<E>>>,
    {
        let timeout = deadline.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return Err(E::timeout());
        }
        let issued = match fetch(timeout).await {
            Ok(issued) => issued,
            Err(TokenFailure::Refused(error)) => {
                self.metrics.upstream_token(&self.label, "refused");
                slot.refused.set(error.clone());
                return Err(error);
            }
            Err(TokenFailure::Failed(error)) => {
                self.metrics.upstream_token(&self.label, "failed");
                return Err(error);
            }
        };
        self.metrics.upstream_token(&self.label, "ok");
        let ttl = issued.ttl.max(Duration::from_millis(1));
        self.store
            .set(&slot.key, issued.token.as_bytes(), Some(ttl))
            .await
            .map_err(E::unavailable)?;
        slot.memo.set(issued.token.clone());
        tracing::debug!(
            tenant = %self.label.tenant,
            kind = %self.label.kind,
            account = %self.label.account,
            cached_for_s = ttl.as_secs(),
            "new upstream token cached"
        );
        Ok(issued.token)
    }
}

/// A held lease on the token fetch. Released when done; if the call is dropped
/// first (its deadline passed), released from a task of its own rather than
/// left to block the tenant until it expires.
struct Lease(Option<(Store, String, String)>);

impl Lease {
    async fn release(mut self) {
        if let Some((store, key, id)) = self.0.take() {
            // A lease that cannot be released expires by itself.
            let _ = store.lock_release(&key, &id).await;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some((store, key, id)) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = store.lock_release(&key, &id).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[derive(Debug, Clone)]
    struct Failed;

    impl TokenError for Failed {
        fn timeout() -> Self {
            Failed
        }
        fn unavailable(_: StoreError) -> Self {
            Failed
        }
    }

    /// A plugin acting as ever new mailboxes: subjects unused for the idle
    /// time leave the process's map when a new one comes.
    #[tokio::test]
    async fn subjects_no_call_used_lately_are_let_go() {
        let label = UpstreamLabel {
            tenant: "t".into(),
            kind: "google".into(),
            account: "a".into(),
        };
        let cache: TokenCache<Failed> = TokenCache::new(
            label,
            Store::Memory(MemoryStore::new()),
            Scope::new("test", "t", "@google"),
            Metrics::new(),
        )
        .with_idle_subjects(Duration::ZERO);
        let deadline = Instant::now() + Duration::from_secs(5);
        for n in 0..100 {
            let token = cache
                .get(&format!("user{n}@kanzlei.de"), deadline, |_| async {
                    Ok(Issued {
                        token: "tok".into(),
                        ttl: Duration::from_secs(60),
                    })
                })
                .await;
            assert!(token.is_ok());
        }
        assert_eq!(cache.subjects_kept(), 1, "only the last one is kept");

        let kept: TokenCache<Failed> = TokenCache::new(
            UpstreamLabel {
                tenant: "t".into(),
                kind: "google".into(),
                account: "b".into(),
            },
            Store::Memory(MemoryStore::new()),
            Scope::new("test", "t", "@google"),
            Metrics::new(),
        );
        for n in 0..3 {
            let _ = kept
                .get(&format!("user{n}@kanzlei.de"), deadline, |_| async {
                    Ok(Issued {
                        token: "tok".into(),
                        ttl: Duration::from_secs(60),
                    })
                })
                .await;
        }
        assert_eq!(kept.subjects_kept(), 3, "used lately: kept");
    }
}
