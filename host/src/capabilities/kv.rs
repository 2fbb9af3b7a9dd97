//! `kv`: key-value state in the tenant's and plugin's scope of the store.

use std::time::Duration;

use super::HostState;
use super::{IntoWit, WitStoreError};
use bitbylaw_bindings::kv::Host;

/// Largest value a plugin may store; bigger belongs in a real document store.
const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;

impl Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, WitStoreError> {
        let key = self.plugin.scope.kv(&key).wit()?;
        self.plugin.store.get(&key).await.wit()
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), WitStoreError> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(WitStoreError::Invalid(format!(
                "value larger than {MAX_VALUE_BYTES} bytes"
            )));
        }
        if ttl_ms == Some(0) {
            return Err(WitStoreError::Invalid("ttl-ms must be at least 1".into()));
        }
        let key = self.plugin.scope.kv(&key).wit()?;
        let ttl = ttl_ms.map(Duration::from_millis);
        self.plugin
            .store
            .kv_set(&self.plugin.quota, &key, &value, ttl)
            .await
            .wit()
    }

    async fn delete(&mut self, key: String) -> Result<bool, WitStoreError> {
        let key = self.plugin.scope.kv(&key).wit()?;
        self.plugin
            .store
            .kv_delete(&self.plugin.quota, &key)
            .await
            .wit()
    }

    async fn incr(&mut self, key: String, delta: i64) -> Result<i64, WitStoreError> {
        let key = self.plugin.scope.kv(&key).wit()?;
        self.plugin
            .store
            .kv_incr(&self.plugin.quota, &key, delta)
            .await
            .wit()
    }

    async fn set_add(
        &mut self,
        key: String,
        members: Vec<String>,
    ) -> Result<Vec<String>, WitStoreError> {
        let key = self.plugin.scope.kv(&key).wit()?;
        self.plugin
            .store
            .kv_set_add(&self.plugin.quota, &key, &members)
            .await
            .wit()
    }

    async fn set_remove(
        &mut self,
        key: String,
        members: Vec<String>,
    ) -> Result<u32, WitStoreError> {
        let key = self.plugin.scope.kv(&key).wit()?;
        self.plugin
            .store
            .kv_set_remove(&self.plugin.quota, &key, &members)
            .await
            .wit()
    }

    async fn set_members(&mut self, key: String) -> Result<Vec<String>, WitStoreError> {
        let key = self.plugin.scope.kv(&key).wit()?;
        self.plugin.store.set_members(&key).await.wit()
    }
}
