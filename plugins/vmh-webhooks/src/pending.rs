//! Which records have a sync on its way, per action.
//!
//! A webhook's ids are added to the action's pending set with `set-add`, which
//! answers the ids that were not in it: only those get an event, in one atomic
//! step, so twenty batches at once on any number of host instances emit each id
//! once. An id leaves the set when its sync has finished (done, or given up to
//! the dead letters), so a later change of the record is synced again.
//!
//! A change that arrives while its record's sync runs must not be lost: the
//! sync may have read the record before the change. Such an id is also put in
//! the action's `again` set, and the sync, when it lets go of the id, looks
//! there and, if flagged, takes the id up again with a fresh event. Both sides
//! order their steps so that no interleaving loses a change (the worst case is
//! one sync more, which then writes nothing):
//! - receipt: `pending += ids`; for the ids already there: `again += them`,
//!   then `pending += them` again: those new now were let go in between, and
//!   get their event here;
//! - finish: `pending -= id`, then `again -= id`; if it was flagged:
//!   `pending += id`, and a new event if that was new.
//!
//! A host killed between admitting ids and announcing them would leave them
//! pending with no event on its way, and EspoCRM's retry of the delivery would
//! find them not new. So announced ids are also put in `announced:<action>`,
//! and a sweep (the schedule `vmh_pending_sweep`, every minute) announces the
//! ids that stood pending but unannounced at two sweeps in a row: a receipt
//! takes milliseconds, so those were left by a receipt that died.
//!
//! An id can also stay pending *with* its event gone: its last attempt was
//! given up while the store failed to let go of it, or its event was trimmed
//! off an overfull stream. Later webhooks for it would be swallowed for good.
//! So the sweep also watches announced ids, and announces again those pending
//! longer than `stuck_after_s` (above the time a record's retries take): at
//! worst one sync more, which finds nothing to change.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use bitbylaw_sdk::{StoreError, kv};

use crate::Action;

fn pending_key(action: Action) -> String {
    format!("pending:{}", action.as_str())
}

fn again_key(action: Action) -> String {
    format!("again:{}", action.as_str())
}

/// Marks distinct `ids` pending; returns those whose event is to be emitted now.
pub fn admit(action: Action, ids: &[String]) -> Result<Vec<String>, StoreError> {
    let mut fresh = kv::set_add(&pending_key(action), ids)?;
    if fresh.len() < ids.len() {
        let admitted: HashSet<&String> = fresh.iter().collect();
        let busy: Vec<String> = ids
            .iter()
            .filter(|id| !admitted.contains(id))
            .cloned()
            .collect();
        kv::set_add(&again_key(action), &busy)?;
        fresh.extend(kv::set_add(&pending_key(action), &busy)?);
    }
    Ok(fresh)
}

/// The sync of `id` has finished. True when a change came meanwhile and the
/// id is pending again: the caller emits its event.
pub fn release(action: Action, id: &str) -> Result<bool, StoreError> {
    let id = [id.to_owned()];
    kv::set_remove(&pending_key(action), &id)?;
    kv::set_remove(&announced_key(action), &id)?;
    if kv::set_remove(&again_key(action), &id)? == 0 {
        return Ok(false);
    }
    Ok(!kv::set_add(&pending_key(action), &id)?.is_empty())
}

fn announced_key(action: Action) -> String {
    format!("announced:{}", action.as_str())
}

fn unannounced_key(action: Action) -> String {
    format!("unannounced:{}", action.as_str())
}

/// Records that `ids` were announced (their events are on the bus).
pub fn announced(action: Action, ids: &[String]) -> Result<(), StoreError> {
    if !ids.is_empty() {
        kv::set_add(&announced_key(action), ids)?;
    }
    Ok(())
}

/// The ids a receipt that died left pending without an event: pending and
/// not announced now and at the sweep before. The caller announces them.
pub fn sweep(action: Action) -> Result<Vec<String>, StoreError> {
    let announced: HashSet<String> = kv::set_members(&announced_key(action))?
        .into_iter()
        .collect();
    let unannounced: Vec<String> = kv::set_members(&pending_key(action))?
        .into_iter()
        .filter(|id| !announced.contains(id))
        .collect();
    let before: HashSet<String> = kv::set_members(&unannounced_key(action))?
        .into_iter()
        .collect();
    kv::delete(&unannounced_key(action))?;
    if !unannounced.is_empty() {
        kv::set_add(&unannounced_key(action), &unannounced)?;
    }
    Ok(unannounced
        .into_iter()
        .filter(|id| before.contains(id))
        .collect())
}

fn watch_key(action: Action) -> String {
    format!("watch:{}", action.as_str())
}

/// Announced ids pending for longer than `bound` (first seen so by a sweep
/// that long ago); the caller announces them again. `now_ms`: the sweep's time.
pub fn stuck(action: Action, bound: Duration, now_ms: i64) -> Result<Vec<String>, StoreError> {
    let pending: HashSet<String> = kv::set_members(&pending_key(action))?.into_iter().collect();
    let announced: Vec<String> = kv::set_members(&announced_key(action))?
        .into_iter()
        .filter(|id| pending.contains(id))
        .collect();
    // id → when a sweep first saw it pending and announced (ms). Unreadable: start afresh.
    let mut watch: BTreeMap<String, i64> = kv::get(&watch_key(action))?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let current: HashSet<&String> = announced.iter().collect();
    watch.retain(|id, _| current.contains(id));
    let bound = i64::try_from(bound.as_millis()).unwrap_or(i64::MAX);
    let mut stuck = Vec::new();
    for id in announced {
        let since = *watch.entry(id.clone()).or_insert(now_ms);
        if now_ms.saturating_sub(since) >= bound {
            watch.insert(id.clone(), now_ms);
            stuck.push(id);
        }
    }
    if watch.is_empty() {
        kv::delete(&watch_key(action))?;
    } else {
        let bytes = serde_json::to_vec(&watch).unwrap_or_default();
        kv::set(&watch_key(action), &bytes, None)?;
    }
    Ok(stuck)
}

/// Takes back `ids` that [`admit`] let through but that could not be announced.
pub fn forget(action: Action, ids: &[String]) -> Result<u32, StoreError> {
    kv::set_remove(&pending_key(action), ids)
}

/// Whether `id` is pending for `action`.
pub fn is_pending(action: Action, id: &str) -> Result<bool, StoreError> {
    Ok(kv::set_members(&pending_key(action))?
        .iter()
        .any(|member| member == id))
}
