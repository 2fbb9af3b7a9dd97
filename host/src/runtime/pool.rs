//! Warm instances of one plugin component for one tenant.
//!
//! Instantiating costs tens of microseconds and a first call more; a warm call
//! costs a few. So instances are kept and reused, each serving one call at a
//! time, and thrown away after their call budget, after any trap or deadline
//! hit, or once their memory grew past the recycle threshold. In `fresh` mode
//! every call gets a new instance and nothing survives between calls.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use wasmtime::Store;

use super::idle::{IdleBudget, IdleList};
use crate::capabilities::wit_handler as wit;
use crate::capabilities::{HostState, PluginContext};
use crate::capabilities::{PluginBindings, PluginBindingsPre};
use crate::config::{InstanceMode, PluginLimits};

/// Why a call into a plugin failed. The ingress turns these into 504/500/503.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the plugin did not finish within {0:?}")]
    Deadline(Duration),
    #[error("the plugin exceeded its memory limit of {0} MiB")]
    OutOfMemory(u64),
    #[error("the plugin trapped: {0}")]
    Trap(String),
    #[error("no instance of the plugin could be started: {0}")]
    Instantiate(String),
}

/// Why an instantiation failed: no free slot (worth evicting an idle instance
/// elsewhere), or anything else.
enum Instantiation {
    NoSlot(String),
    Failed(CallError),
}

/// One call into a plugin's `handler` export.
pub enum Call {
    Describe,
    Http(wit::Request),
    /// An event, and the most attempts its subscription gives it.
    Event(wit::Event, u32),
    Schedule(wit::Tick),
}

/// The plugin's answer to a [`Call`] of the same kind.
pub enum Reply {
    Describe(wit::Description),
    Http(wit::Response),
    Event(Result<(), wit::HandlerError>),
    Schedule(Result<(), wit::HandlerError>),
}

pub struct InstancePool {
    pre: PluginBindingsPre<HostState>,
    context: Arc<PluginContext>,
    limits: PluginLimits,
    idle: Arc<Idle>,
}

/// A pool's idle instances, which the runtime's [`IdleBudget`] may evict.
struct Idle {
    instances: Mutex<Vec<Instance>>,
    budget: Arc<IdleBudget>,
}

impl IdleList for Idle {
    fn len(&self) -> usize {
        bitbylaw_core::sync::lock(&self.instances).len()
    }

    fn evict_one(&self) -> bool {
        let evicted = bitbylaw_core::sync::lock(&self.instances).pop();
        let found = evicted.is_some();
        if found {
            self.budget.release();
        }
        // Dropped outside the lock: freeing the slot does not hold up the pool.
        drop(evicted);
        found
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        let idle = bitbylaw_core::sync::lock(&self.instances).len();
        for _ in 0..idle {
            self.budget.release();
        }
    }
}

/// How often an instantiation that finds no free slot evicts an idle instance
/// elsewhere and tries again.
const EVICTION_TRIES: usize = 8;

struct Instance {
    store: Store<HostState>,
    bindings: PluginBindings,
    calls: u32,
}

impl InstancePool {
    pub fn new(
        pre: PluginBindingsPre<HostState>,
        context: Arc<PluginContext>,
        limits: PluginLimits,
        budget: Arc<IdleBudget>,
    ) -> Self {
        let idle = Arc::new(Idle {
            instances: Mutex::new(Vec::new()),
            budget: budget.clone(),
        });
        let list: Arc<dyn IdleList> = idle.clone();
        budget.register(Arc::downgrade(&list));
        Self {
            pre,
            context,
            limits,
            idle,
        }
    }

    pub fn context(&self) -> &Arc<PluginContext> {
        &self.context
    }

    pub fn limits(&self) -> &PluginLimits {
        &self.limits
    }

    /// Warm instances waiting for a call.
    pub fn idle_count(&self) -> usize {
        self.lock_idle().len()
    }

    /// Runs one call on a warm or new instance, within the plugin's deadline.
    pub async fn call(&self, request_id: &str, call: Call) -> Result<Reply, CallError> {
        let deadline_after = Duration::from_millis(self.limits.deadline_ms);
        let deadline = Instant::now() + deadline_after;
        let mut instance = match self.checkout() {
            Some(instance) => instance,
            None => tokio::time::timeout_at(deadline, self.instantiate())
                .await
                .map_err(|_| self.deadline_hit(deadline_after))??,
        };
        // In place: a warm instance's request id buffer is reused.
        let context = &mut instance.store.data_mut().call;
        context.request_id.clear();
        context.request_id.push_str(request_id);
        context.deadline = deadline;
        context.max_attempts = match &call {
            Call::Event(_, max_attempts) => Some(*max_attempts),
            _ => None,
        };
        // Yield to the scheduler at every epoch tick, so the deadline below can fire.
        instance.store.set_epoch_deadline(1);

        // `describe` at load time warms the instance but does not spend its budget.
        let counts = !matches!(call, Call::Describe);
        let outcome = tokio::time::timeout_at(deadline, invoke(&mut instance, call)).await;
        match outcome {
            // The future was dropped mid-call; the instance goes with it.
            Err(_elapsed) => Err(self.deadline_hit(deadline_after)),
            Ok(Err(error)) => Err(self.failed(&instance, error)),
            Ok(Ok(reply)) => {
                instance.calls += u32::from(counts);
                self.checkin(instance);
                Ok(reply)
            }
        }
    }

    /// A new instance; when the pooling allocator has no free slot, idle
    /// instances elsewhere are dropped to make one.
    async fn instantiate(&self) -> Result<Instance, CallError> {
        let mut tries = 0;
        loop {
            match self.instantiate_once().await {
                Err(Instantiation::NoSlot(error))
                    if tries < EVICTION_TRIES && self.idle.budget.evict_one() =>
                {
                    tries += 1;
                    tracing::debug!(tenant = %self.context.tenant, plugin = %self.context.name, %error, "no free instance slot; evicted an idle instance");
                }
                Err(Instantiation::NoSlot(error)) => return Err(CallError::Instantiate(error)),
                Err(Instantiation::Failed(error)) => return Err(error),
                Ok(instance) => return Ok(instance),
            }
        }
    }

    async fn instantiate_once(&self) -> Result<Instance, Instantiation> {
        let started = Instant::now();
        let memory_limit = self.limits.memory_limit_mb.saturating_mul(1024 * 1024);
        let state = HostState::new(
            self.context.clone(),
            usize::try_from(memory_limit).unwrap_or(usize::MAX),
        );
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.memory);
        store.epoch_deadline_async_yield_and_update(1);
        let bindings = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|error| {
                if store.data().memory.exceeded {
                    self.context
                        .metrics
                        .out_of_memory(&self.context.tenant, &self.context.name);
                    Instantiation::Failed(CallError::OutOfMemory(self.limits.memory_limit_mb))
                } else if error.is::<wasmtime::PoolConcurrencyLimitError>() {
                    Instantiation::NoSlot(format!("{error:#}"))
                } else {
                    Instantiation::Failed(CallError::Instantiate(format!("{error:#}")))
                }
            })?;
        self.context.metrics.instantiated(
            &self.context.tenant,
            &self.context.name,
            started.elapsed(),
        );
        Ok(Instance {
            store,
            bindings,
            calls: 0,
        })
    }

    fn checkout(&self) -> Option<Instance> {
        if self.limits.instance_mode == InstanceMode::Fresh {
            return None;
        }
        let instance = self.lock_idle().pop();
        if instance.is_some() {
            self.idle.budget.release();
        }
        instance
    }

    fn checkin(&self, instance: Instance) {
        let limits = &self.limits;
        let memory_mb = (instance.store.data().memory.current / (1024 * 1024)) as u64;
        let keep = limits.instance_mode == InstanceMode::Pooled
            && instance.calls < limits.max_calls_per_instance
            && memory_mb < limits.recycle_memory_mb;
        if keep {
            let mut idle = self.lock_idle();
            if idle.len() < limits.max_idle_instances && self.idle.budget.reserve() {
                idle.push(instance);
            }
        }
    }

    fn deadline_hit(&self, after: Duration) -> CallError {
        let context = &self.context;
        context.metrics.deadline_hit(&context.tenant, &context.name);
        CallError::Deadline(after)
    }

    fn failed(&self, instance: &Instance, error: wasmtime::Error) -> CallError {
        let context = &self.context;
        context.metrics.guest_trap(&context.tenant, &context.name);
        if instance.store.data().memory.exceeded {
            context
                .metrics
                .out_of_memory(&context.tenant, &context.name);
            CallError::OutOfMemory(self.limits.memory_limit_mb)
        } else {
            CallError::Trap(format!("{error:#}"))
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Instance>> {
        // Only plain pushes and pops happen under this lock; a poisoned one is still usable.
        bitbylaw_core::sync::lock(&self.idle.instances)
    }
}

async fn invoke(instance: &mut Instance, call: Call) -> wasmtime::Result<Reply> {
    let handler = instance.bindings.bitbylaw_plugin_handler();
    let store = &mut instance.store;
    Ok(match call {
        Call::Describe => Reply::Describe(handler.call_describe(store).await?),
        Call::Http(request) => Reply::Http(handler.call_handle_http(store, &request).await?),
        Call::Event(event, _) => Reply::Event(handler.call_handle_event(store, &event).await?),
        Call::Schedule(tick) => Reply::Schedule(handler.call_handle_schedule(store, &tick).await?),
    })
}
