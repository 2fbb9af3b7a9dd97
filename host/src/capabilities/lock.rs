//! `lock`: leases with a random token; only the token's holder can extend or release.

use std::time::Duration;

use super::HostState;
use super::{IntoWit, WitStoreError};
use bitbylaw_bindings::lock::Host;

fn ttl(ttl_ms: u64) -> Result<Duration, WitStoreError> {
    if ttl_ms == 0 {
        return Err(WitStoreError::Invalid("ttl-ms must be at least 1".into()));
    }
    Ok(Duration::from_millis(ttl_ms))
}

impl Host for HostState {
    async fn acquire(
        &mut self,
        name: String,
        ttl_ms: u64,
    ) -> Result<Option<String>, WitStoreError> {
        let ttl = ttl(ttl_ms)?;
        let key = self.plugin.scope.lock(&name).wit()?;
        let token = uuid::Uuid::new_v4().simple().to_string();
        let acquired = self
            .plugin
            .store
            .lock_acquire(&key, &token, ttl)
            .await
            .wit()?;
        Ok(acquired.then_some(token))
    }

    async fn extend(
        &mut self,
        name: String,
        token: String,
        ttl_ms: u64,
    ) -> Result<bool, WitStoreError> {
        let ttl = ttl(ttl_ms)?;
        let key = self.plugin.scope.lock(&name).wit()?;
        self.plugin.store.lock_extend(&key, &token, ttl).await.wit()
    }

    async fn release(&mut self, name: String, token: String) -> Result<bool, WitStoreError> {
        let key = self.plugin.scope.lock(&name).wit()?;
        self.plugin.store.lock_release(&key, &token).await.wit()
    }
}
