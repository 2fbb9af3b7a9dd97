//! A webhook inbox: which records a webhook announced have a sync on its way.
//!
//! The shape every webhook plugin needs (EspoCRM parties, WordPress leads, 3CX
//! calls): a delivery's ids are *admitted* to the inbox in one atomic step, so
//! twenty batches at once on any number of host instances let each id through
//! once; the admitted ones are *announced* as events in one `emit-all`; the
//! event's handler *finishes* the id when its work is done (or given up), so a
//! later change is let through again; and a schedule *sweeps* ids a receipt that
//! died left behind. One inbox per kind of delivery (`Inbox::new("create")`);
//! its keys are the plugin's own (`pending:<name>`, `again:<name>`, …).
//!
//! A change that arrives while its record's work runs must not be lost: the
//! work may have read the record before the change. Such an id is also put in
//! the `again` set, and [`Inbox::finish`] looks there and, if flagged, takes
//! the id up again with a fresh event. Both sides order their steps so that no
//! interleaving loses a change (the worst case is one run more, which then
//! changes nothing):
//! - receipt: `pending += ids`; for the ids already there: `again += them`,
//!   then `pending += them` again: those new now were let go in between, and
//!   get their event here;
//! - finish: `pending -= id`, then `again -= id`; if it was flagged:
//!   `pending += id`, and a new event if that was new.
//!
//! A host killed between admitting ids and announcing them would leave them
//! pending with no event on its way, and the sender's retry would find them
//! not new. So announced ids are also recorded, and [`Inbox::sweep`] (call it
//! from a schedule, every minute) gives back the ids that stood pending but
//! unannounced at two sweeps in a row: a receipt takes milliseconds, so those
//! were left by a receipt that died.
//!
//! An id can also stay pending *with* its event gone: its last attempt was
//! given up while the store failed to let go of it, or its event was trimmed
//! off an overfull stream. Later deliveries for it would be swallowed for
//! good. So [`Inbox::stuck`] watches announced ids too and gives back those
//! pending longer than a bound (above the time a record's retries take).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::sync::Failure;
use crate::{Error, Event, StoreError, events, kv};

/// How the work on one id from its event ended ([`Inbox::work`]).
#[derive(Debug)]
pub enum Worked<T> {
    /// Done: the id was let go of (and announced again if a change came meanwhile).
    Done(T),
    /// Not done: a retryable or busy failure keeps the id (its event comes
    /// again); a permanent one let it go.
    Failed(Failure),
    /// Busy all along on its last attempt: not failing, another sync of the
    /// record ran. The id was taken up again with a fresh event.
    Requeued,
}

/// One kind of delivery's inbox.
#[derive(Debug, Clone)]
pub struct Inbox {
    name: String,
}

impl Inbox {
    /// The inbox `name` (e.g. the webhook's action); its keys in the plugin's store start so.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
        }
    }

    fn key(&self, set: &str) -> String {
        format!("{set}:{}", self.name)
    }

    /// Marks distinct `ids` pending; returns those whose event is to be
    /// emitted now (the others are flagged to be taken up again).
    pub fn admit(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let mut fresh = kv::set_add(&self.key("pending"), ids)?;
        if fresh.len() < ids.len() {
            let admitted: HashSet<&String> = fresh.iter().collect();
            let busy: Vec<String> = ids
                .iter()
                .filter(|id| !admitted.contains(id))
                .cloned()
                .collect();
            kv::set_add(&self.key("again"), &busy)?;
            fresh.extend(kv::set_add(&self.key("pending"), &busy)?);
        }
        Ok(fresh)
    }

    /// One event per id on `topic`, all or none (`payload` makes each), then
    /// the ids recorded as announced. If it fails, take the ids back with
    /// [`Inbox::forget`] so that the sender's retry finds them new.
    pub fn announce<T: Serialize>(
        &self,
        topic: &str,
        ids: &[String],
        payload: impl Fn(&str) -> T,
    ) -> Result<(), Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let payloads: Vec<T> = ids.iter().map(|id| payload(id)).collect();
        events::emit_all_json(topic, &payloads)?;
        kv::set_add(&self.key("announced"), ids)?;
        Ok(())
    }

    /// Runs `work` on `id` from `event` by the inbox's rules, and says how it
    /// ended. On the event's last attempt the id is let go of first, so a
    /// trap or a deadline during the work cannot leave it pending with no
    /// event on its way. Done or failed for good, the id is let go of (and a
    /// change that came meanwhile announced with `announce`); retryable, it
    /// stays pending for the event's next attempt. Busy on the last attempt,
    /// it is admitted and announced again.
    pub fn work<T>(
        &self,
        event: &Event,
        id: &str,
        announce: impl Fn(&[String]) -> Result<(), Error>,
        work: impl FnOnce() -> Result<T, Failure>,
    ) -> Result<Worked<T>, Error> {
        let last = events::is_last_attempt(event);
        let finish = |announce: &dyn Fn(&[String]) -> Result<(), Error>| -> Result<(), Error> {
            if self.finish(id)? {
                announce(&[id.to_owned()])?;
            }
            Ok(())
        };
        if last {
            finish(&announce)?;
        }
        let result = work();
        if let (true, Err(Failure::Busy(_))) = (last, &result) {
            let fresh = self.admit(&[id.to_owned()])?;
            announce(&fresh)?;
            return Ok(Worked::Requeued);
        }
        if !last && matches!(result, Ok(_) | Err(Failure::Permanent(_))) {
            finish(&announce)?;
        }
        Ok(match result {
            Ok(done) => Worked::Done(done),
            Err(failure) => Worked::Failed(failure),
        })
    }

    /// The work on `id` has finished (done, or given up). True when a change
    /// came meanwhile and the id is pending again: the caller announces it.
    pub fn finish(&self, id: &str) -> Result<bool, StoreError> {
        let id = [id.to_owned()];
        kv::set_remove(&self.key("pending"), &id)?;
        kv::set_remove(&self.key("announced"), &id)?;
        if kv::set_remove(&self.key("again"), &id)? == 0 {
            return Ok(false);
        }
        Ok(!kv::set_add(&self.key("pending"), &id)?.is_empty())
    }

    /// The ids a receipt that died left pending without an event: pending and
    /// not announced now and at the sweep before. The caller announces them.
    pub fn sweep(&self) -> Result<Vec<String>, StoreError> {
        let announced: HashSet<String> = kv::set_members(&self.key("announced"))?
            .into_iter()
            .collect();
        let unannounced: Vec<String> = kv::set_members(&self.key("pending"))?
            .into_iter()
            .filter(|id| !announced.contains(id))
            .collect();
        let before: HashSet<String> = kv::set_members(&self.key("unannounced"))?
            .into_iter()
            .collect();
        kv::delete(&self.key("unannounced"))?;
        if !unannounced.is_empty() {
            kv::set_add(&self.key("unannounced"), &unannounced)?;
        }
        Ok(unannounced
            .into_iter()
            .filter(|id| before.contains(id))
            .collect())
    }

    /// Announced ids pending for longer than `bound` (first seen so by a sweep
    /// that long ago); the caller announces them again. `now_ms`: the sweep's
    /// time (the schedule's tick).
    pub fn stuck(&self, bound: Duration, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let pending: HashSet<String> = kv::set_members(&self.key("pending"))?.into_iter().collect();
        let announced: Vec<String> = kv::set_members(&self.key("announced"))?
            .into_iter()
            .filter(|id| pending.contains(id))
            .collect();
        // id → when a sweep first saw it pending and announced (ms). Unreadable: start afresh.
        let mut watch: BTreeMap<String, i64> = kv::get(&self.key("watch"))?
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
            kv::delete(&self.key("watch"))?;
        } else {
            let bytes = serde_json::to_vec(&watch).unwrap_or_default();
            kv::set(&self.key("watch"), &bytes, None)?;
        }
        Ok(stuck)
    }

    /// Takes back `ids` that [`Inbox::admit`] let through but that could not be announced.
    pub fn forget(&self, ids: &[String]) -> Result<u32, StoreError> {
        kv::set_remove(&self.key("pending"), ids)
    }

    /// Whether `id` is pending.
    pub fn is_pending(&self, id: &str) -> Result<bool, StoreError> {
        Ok(kv::set_members(&self.key("pending"))?
            .iter()
            .any(|member| member == id))
    }
}
