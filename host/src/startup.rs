//! Starting the host: connect the store, build the runtime and the event bus,
//! load every tenant (a broken one is reported, the others run), start event
//! delivery, then watch the tenant files.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::capabilities::Emitter;
use crate::config::{Config, HostConfig};
use crate::egress::Egress;
use crate::events::{EventBus, MemoryBus, RedisBus};
use crate::host::Host;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::store::{MemoryStore, RedisStore, Store};
use crate::tenants::files::DiskState;
use crate::tenants::{Deployment, Registry};

impl Host {
    /// Connects the store, compiles the plugins and loads every tenant. A broken
    /// host config fails; a broken tenant is logged and reported in
    /// [`Host::broken_tenants`] (errors name file and key), and the others run.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Self>> {
        let Config {
            host: config,
            tenants,
            broken,
        } = config;
        let store = connect_store(&config).await?;
        let runtime = Runtime::new(
            &config.runtime,
            config.base_dir.join(&config.runtime.cache_dir),
        )?;
        let egress = Egress::new(
            std::time::Duration::from_millis(config.egress.max_timeout_ms),
            config.egress.max_response_bytes,
        )
        .context("creating the outbound HTTP client")?;
        let metrics = Metrics::with_plugin_limits(crate::metrics::PluginSeriesLimits {
            per_tenant: config.ops.plugin_series_per_tenant,
            idle: std::time::Duration::from_secs(config.ops.plugin_series_idle_s),
        });
        let prefix = &config.store.key_prefix;
        let events = match &store {
            Store::Redis(redis) => EventBus::Redis(RedisBus::new(
                redis.clone(),
                prefix,
                &config.events,
                metrics.clone(),
            )),
            Store::Memory(_) => EventBus::Memory(MemoryBus::new(
                store.clone(),
                prefix,
                &config.events,
                metrics.clone(),
            )),
        };
        let registry = Arc::new(Registry::new(Deployment::empty()));
        let admin_token = host_secret(&config, config.admin.token.as_ref(), "admin.token")?;
        let ops_token = host_secret(&config, config.ops.token.as_ref(), "ops.token")?;
        let emitter: Arc<dyn Emitter> = Arc::new(events.clone());
        let host = Arc::new(Self {
            config,
            store,
            runtime,
            registry,
            metrics,
            egress,
            events,
            emitter,
            admin_token,
            ops_token,
            loaded: AtomicBool::new(false),
            broken: Mutex::new(BTreeMap::new()),
            watcher: CancellationToken::new(),
            files: Mutex::new(DiskState::default()),
            tenant_locks: Mutex::new(BTreeMap::new()),
            traffic: crate::traffic::Traffic::default(),
        });
        for error in broken {
            let id = crate::config::tenant_id(&error.file);
            host.mark_broken(&id, error.to_string());
        }
        let tenants_dir = host.config.base_dir.join(&host.config.tenants_dir);
        let watching = host.config.reload.poll_ms > 0;
        if watching {
            // Before loading: a file edited while the tenants load is then seen as changed.
            let mut files = host.files();
            files.known = files.scan(&tenants_dir, &host.component_store_dir());
        }
        let mut loaded = Vec::with_capacity(tenants.len());
        for tenant in &tenants {
            match host.assembler().tenant(tenant).await {
                Ok(tenant) => loaded.push(Arc::new(tenant)),
                Err(error) => host.mark_broken(&tenant.id, format!("{error:#}")),
            }
        }
        // In file order: a tenant claiming another's API key or Kong consumer is
        // the broken one, and the others run.
        let mut deployment = Deployment::empty();
        loaded.retain(|tenant| match deployment.try_add(tenant.clone()) {
            Ok(()) => true,
            Err(error) => {
                let file = host.tenant_file(&tenant.id);
                host.mark_broken(&tenant.id, format!("{}: {error}", file.display()));
                false
            }
        });
        host.registry.replace(deployment);
        for tenant in &loaded {
            host.events
                .run_tenant(&host.registry, tenant)
                .await
                .with_context(|| format!("starting event delivery for tenant `{}`", tenant.id))?;
        }
        host.loaded.store(true, Ordering::Release);
        tokio::spawn(crate::traffic::sample_while_alive(Arc::downgrade(&host)));
        crate::heap::release_freed();
        if watching {
            tokio::spawn(crate::reload::watch(
                Arc::downgrade(&host),
                tenants_dir,
                host.component_store_dir(),
                std::time::Duration::from_millis(host.config.reload.poll_ms),
                host.watcher.clone(),
            ));
        }
        Ok(host)
    }
}

/// A secret of the host file, read; errors name the key.
fn host_secret(
    config: &HostConfig,
    reference: Option<&crate::config::SecretRef>,
    key: &str,
) -> anyhow::Result<Option<crate::config::Secret>> {
    reference
        .map(|reference| reference.resolve(&config.base_dir))
        .transpose()
        .map_err(|e| anyhow::anyhow!("key `{key}`: {e}"))
}

async fn connect_store(config: &HostConfig) -> anyhow::Result<Store> {
    let store = &config.store;
    if store.redis_url.is_none() && store.redis_cluster.is_empty() {
        tracing::warn!(
            "state store: in memory (no `store.redis_url`): state is lost on restart and not shared between host instances"
        );
        return Ok(Store::Memory(MemoryStore::new()));
    }
    let password = host_secret(
        config,
        store.redis_password.as_ref(),
        "store.redis_password",
    )?;
    let redis = match &store.redis_url {
        Some(url) => {
            let redis = RedisStore::connect(url, password.as_ref())
                .await
                .with_context(|| format!("connecting to Redis at {url}"))?;
            tracing::info!(%url, "state store: Redis");
            redis
        }
        None => {
            let nodes = &store.redis_cluster;
            let redis = RedisStore::connect_cluster(nodes, password.as_ref())
                .await
                .with_context(|| {
                    format!("connecting to the Redis Cluster at {}", nodes.join(", "))
                })?;
            tracing::info!(nodes = %nodes.join(", "), "state store: Redis Cluster");
            redis
        }
    };
    Ok(Store::Redis(redis))
}
