//! Warm instances kept idle across every tenant and plugin, within one budget.
//!
//! Each idle instance holds a slot of the pooling allocator. Without a global
//! budget, many tenants each keeping a few warm instances take every slot, and
//! then no plugin can start an instance at all: 503 for good. So the total of
//! idle instances is capped (`runtime.max_idle_instances`, by default half the
//! slots, leaving the rest for calls in flight), and when an instantiation
//! finds no free slot, idle instances of other plugins are dropped to make one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// One pool's idle instances, as the budget sees them.
pub(crate) trait IdleList: Send + Sync {
    /// How many are idle now.
    fn len(&self) -> usize;
    /// Drops one idle instance, freeing its slot; false when there was none.
    fn evict_one(&self) -> bool;
}

/// The budget shared by every pool of one runtime.
pub struct IdleBudget {
    max: usize,
    idle: AtomicUsize,
    lists: Mutex<Vec<Weak<dyn IdleList>>>,
}

impl IdleBudget {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            idle: AtomicUsize::new(0),
            lists: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn register(&self, list: Weak<dyn IdleList>) {
        let mut lists = bitbylaw_core::sync::lock(&self.lists);
        lists.retain(|list| list.strong_count() > 0);
        lists.push(list);
    }

    /// Takes room for one more idle instance; false when the budget is spent.
    pub(crate) fn reserve(&self) -> bool {
        self.idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |idle| {
                (idle < self.max).then_some(idle + 1)
            })
            .is_ok()
    }

    /// An idle instance left its list (taken for a call, or dropped).
    pub(crate) fn release(&self) {
        let _ = self
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |idle| {
                Some(idle.saturating_sub(1))
            });
    }

    /// Idle instances across all pools.
    pub fn idle(&self) -> usize {
        self.idle.load(Ordering::Acquire)
    }

    /// Drops an idle instance of the pool that keeps the most, so a starting
    /// instance finds a slot. False when nothing is idle anywhere.
    pub(crate) fn evict_one(&self) -> bool {
        let lists: Vec<Arc<dyn IdleList>> = bitbylaw_core::sync::lock(&self.lists)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let fullest = lists.iter().filter(|l| l.len() > 0).max_by_key(|l| l.len());
        fullest.is_some_and(|list| list.evict_one())
    }
}
