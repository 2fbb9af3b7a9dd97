//! One suite, both backends: the in-memory store must behave like Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bitbylaw::store::{Bucket, MemoryStore, Quota, Store, StoreError};
use bitbylaw_tests::{delete_prefix, wait_for};

/// A store and the key prefix its test owns (removed on drop for Redis).
struct Fixture {
    store: Store,
    prefix: String,
    /// Tenant `t`'s quota, large enough not to matter unless a test says so.
    quota: Quota,
}

impl Fixture {
    fn key(&self, name: &str) -> String {
        format!("{}:{{t}}:p:{name}", self.prefix)
    }

    fn with_quota(mut self, bytes: u64) -> Self {
        self.quota = Quota::new(&self.prefix, "t", bytes);
        self
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if matches!(self.store, Store::Redis(_)) {
            delete_prefix(&self.prefix);
        }
    }
}

async fn fixture(redis: bool) -> Fixture {
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let store = if redis {
        Store::Redis(bitbylaw_tests::redis_target::connect_store().await)
    } else {
        Store::Memory(MemoryStore::new())
    };
    let quota = Quota::new(&prefix, "t", 1 << 30);
    Fixture {
        store,
        prefix,
        quota,
    }
}

async fn kv_roundtrip(f: Fixture) {
    let s = &f.store;
    let key = f.key("a");
    assert_eq!(s.get(&key).await.unwrap(), None);
    s.set(&key, b"one", None).await.unwrap();
    assert_eq!(s.get(&key).await.unwrap().as_deref(), Some(&b"one"[..]));
    s.set(&key, b"two", None).await.unwrap();
    assert_eq!(s.get(&key).await.unwrap().as_deref(), Some(&b"two"[..]));
    assert!(s.delete(&key).await.unwrap());
    assert!(!s.delete(&key).await.unwrap());
    assert_eq!(s.get(&key).await.unwrap(), None);
}

async fn kv_ttl_expires(f: Fixture) {
    let s = &f.store;
    let key = f.key("ttl");
    s.set(&key, b"v", Some(Duration::from_millis(50)))
        .await
        .unwrap();
    assert!(s.get(&key).await.unwrap().is_some());
    wait_for(Duration::from_secs(5), || async {
        s.get(&key).await.unwrap().is_none().then_some(())
    })
    .await;
}

async fn incr_counts_and_refuses_non_integers(f: Fixture) {
    let s = &f.store;
    let key = f.key("n");
    assert_eq!(s.kv_incr(&f.quota, &key, 1).await.unwrap(), 1);
    assert_eq!(s.kv_incr(&f.quota, &key, 41).await.unwrap(), 42);
    assert_eq!(s.kv_incr(&f.quota, &key, -2).await.unwrap(), 40);
    assert_eq!(s.get(&key).await.unwrap().as_deref(), Some(&b"40"[..]));
    let text = f.key("text");
    s.set(&text, b"abc", None).await.unwrap();
    assert!(matches!(
        s.kv_incr(&f.quota, &text, 1).await,
        Err(StoreError::Invalid(_))
    ));
}

async fn sets_report_new_members(f: Fixture) {
    let s = &f.store;
    let key = f.key("set");
    let strings = |items: &[&str]| items.iter().map(|m| (*m).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        s.kv_set_add(&f.quota, &key, &strings(&["a", "b"]))
            .await
            .unwrap(),
        strings(&["a", "b"])
    );
    assert_eq!(
        s.kv_set_add(&f.quota, &key, &strings(&["b", "c", "a", "d"]))
            .await
            .unwrap(),
        strings(&["c", "d"])
    );
    let mut members = s.set_members(&key).await.unwrap();
    members.sort();
    assert_eq!(members, strings(&["a", "b", "c", "d"]));
    assert_eq!(
        s.kv_set_remove(&f.quota, &key, &strings(&["a", "x"]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.set_members(&f.key("none")).await.unwrap(),
        Vec::<String>::new()
    );
    // A set is not a value.
    assert!(matches!(s.get(&key).await, Err(StoreError::Invalid(_))));
}

async fn lock_is_exclusive_and_token_bound(f: Fixture) {
    let s = &f.store;
    let key = f.key("lock");
    let ttl = Duration::from_secs(30);
    assert!(s.lock_acquire(&key, "t1", ttl).await.unwrap());
    assert!(
        !s.lock_acquire(&key, "t2", ttl).await.unwrap(),
        "a second holder cannot acquire"
    );
    assert!(
        !s.lock_release(&key, "t2").await.unwrap(),
        "a wrong token cannot release"
    );
    assert!(
        !s.lock_extend(&key, "t2", ttl).await.unwrap(),
        "a wrong token cannot extend"
    );
    assert!(s.lock_extend(&key, "t1", ttl).await.unwrap());
    assert!(
        !s.lock_acquire(&key, "t2", ttl).await.unwrap(),
        "still held after the failed release"
    );
    assert!(s.lock_release(&key, "t1").await.unwrap());
    assert!(
        s.lock_acquire(&key, "t2", ttl).await.unwrap(),
        "free after the holder released"
    );
}

async fn lock_expires_with_its_ttl(f: Fixture) {
    let s = &f.store;
    let key = f.key("lease");
    assert!(
        s.lock_acquire(&key, "t1", Duration::from_millis(50))
            .await
            .unwrap()
    );
    wait_for(Duration::from_secs(5), || async {
        s.lock_acquire(&key, "t2", Duration::from_secs(30))
            .await
            .unwrap()
            .then_some(())
    })
    .await;
    assert!(
        !s.lock_release(&key, "t1").await.unwrap(),
        "the expired holder cannot release the new lease"
    );
}

/// Many callers at once get exactly `capacity` tokens, then exactly the refill.
async fn rate_limit_allows_capacity_plus_refill(f: Fixture) {
    let key = f.key("bucket");
    // One token per 2 s: nothing refills during a burst of a few milliseconds.
    let bucket = Bucket {
        capacity: 10,
        refill_per_second: 0.5,
    };
    let burst = |n: usize| {
        let store = f.store.clone();
        let key = key.clone();
        async move {
            let calls = (0..n).map(|_| {
                let store = store.clone();
                let key = key.clone();
                tokio::spawn(async move { store.rate_take(&key, bucket, 1).await.unwrap() })
            });
            futures::future::join_all(calls)
                .await
                .into_iter()
                .map(|decision| decision.unwrap())
                .collect::<Vec<_>>()
        }
    };
    let first = burst(60).await;
    assert_eq!(first.iter().filter(|d| d.allowed).count(), 10);
    let refused = first.iter().find(|d| !d.allowed).unwrap();
    assert_eq!(refused.remaining, 0);
    assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(2));

    // The bucket said when the next token is there; after that, exactly one more.
    let wait = first.iter().map(|d| d.retry_after).max().unwrap();
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    let second = burst(30).await;
    assert_eq!(second.iter().filter(|d| d.allowed).count(), 1);
}

/// Several buckets at once, all or none: many callers get exactly what the
/// emptiest allows, and the fuller one loses only those tokens.
async fn rate_limit_takes_from_all_buckets_or_none(f: Fixture) {
    let (roomy, tight) = (f.key("roomy"), f.key("tight"));
    let (big, small) = (
        Bucket {
            capacity: 10,
            refill_per_second: 0.5,
        },
        Bucket {
            capacity: 5,
            refill_per_second: 0.5,
        },
    );
    let calls = (0..40).map(|_| {
        let store = f.store.clone();
        let (roomy, tight) = (roomy.clone(), tight.clone());
        tokio::spawn(async move {
            store
                .rate_take_all(&[(&roomy, big), (&tight, small)], 1)
                .await
                .unwrap()
        })
    });
    let decisions: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|decision| decision.unwrap())
        .collect();
    assert_eq!(decisions.iter().filter(|d| d.allowed).count(), 5);
    let refused = decisions.iter().find(|d| !d.allowed).unwrap();
    assert!(refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_secs(2));
    // The roomy bucket gave only the five: five are left in it.
    let left = f.store.rate_take(&roomy, big, 5).await.unwrap();
    assert!(left.allowed, "{left:?}");
    assert_eq!(left.remaining, 0);
    assert!(!f.store.rate_take(&roomy, big, 1).await.unwrap().allowed);
}

async fn rate_limit_refuses_impossible_requests(f: Fixture) {
    let key = f.key("bucket2");
    let bucket = Bucket {
        capacity: 2,
        refill_per_second: 1.0,
    };
    assert!(matches!(
        f.store.rate_take(&key, bucket, 3).await,
        Err(StoreError::Invalid(_))
    ));
    let empty = Bucket {
        capacity: 0,
        refill_per_second: 1.0,
    };
    assert!(matches!(
        f.store.rate_take(&key, empty, 1).await,
        Err(StoreError::Invalid(_))
    ));
}

async fn a_set_stops_growing_at_its_cap(f: Fixture) {
    let s = &f.store;
    let key = f.key("big");
    let cap = bitbylaw::store::MAX_SET_MEMBERS;
    for batch in 0..cap / 10_000 {
        let members: Vec<String> = (0..10_000)
            .map(|i| format!("m{}", batch * 10_000 + i))
            .collect();
        assert_eq!(
            s.kv_set_add(&f.quota, &key, &members).await.unwrap().len(),
            10_000
        );
    }
    let refused = s
        .kv_set_add(&f.quota, &key, &["new-1".to_owned(), "m0".to_owned()])
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(
        s.kv_set_add(&f.quota, &key, &["m1".to_owned()])
            .await
            .unwrap(),
        Vec::<String>::new(),
        "members already in are fine"
    );
    assert_eq!(
        s.kv_set_remove(&f.quota, &key, &["m2".to_owned()])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.kv_set_add(&f.quota, &key, &["new-1".to_owned()])
            .await
            .unwrap(),
        ["new-1"],
        "room again after a removal"
    );
}

/// The tenant's quota counts names plus values, refuses growth past it (and
/// loses nothing), and gets room back when keys are deleted or expire.
async fn quota_refuses_growth_and_frees_on_delete_and_expiry(f: Fixture) {
    let f = f.with_quota(1000);
    let (s, q) = (&f.store, &f.quota);
    let refused = |result: Result<(), StoreError>| {
        assert!(
            matches!(&result, Err(StoreError::Invalid(message)) if message.contains("quota")),
            "{result:?}"
        );
    };
    let (a, b, c, d) = (f.key("a"), f.key("b"), f.key("c"), f.key("d"));
    s.kv_set(q, &a, &[1; 500], None).await.unwrap();
    refused(s.kv_set(q, &b, &[2; 600], None).await);
    assert_eq!(s.get(&b).await.unwrap(), None, "nothing half-written");
    s.kv_set(q, &b, &[2; 300], Some(Duration::from_millis(200)))
        .await
        .unwrap();
    refused(s.kv_set(q, &c, &[3; 300], None).await);
    // A key that expired gives its room back.
    wait_for(Duration::from_secs(5), || async {
        s.get(&b).await.unwrap().is_none().then_some(())
    })
    .await;
    s.kv_set(q, &c, &[3; 300], None).await.unwrap();
    // So does a deleted one.
    refused(s.kv_set(q, &d, &[4; 500], None).await);
    assert!(s.kv_delete(q, &a).await.unwrap());
    s.kv_set(q, &d, &[4; 500], None).await.unwrap();
    // Sets count their members; a refused add adds nothing.
    let members = vec!["m".repeat(200), "n".repeat(200)];
    let refused_add = s.kv_set_add(q, &f.key("set"), &members).await;
    assert!(
        matches!(refused_add, Err(StoreError::Invalid(_))),
        "{refused_add:?}"
    );
    assert!(s.set_members(&f.key("set")).await.unwrap().is_empty());
    // Shrinking always works, and makes room.
    s.kv_set(q, &d, &[4; 10], None).await.unwrap();
    assert_eq!(
        s.kv_set_add(q, &f.key("set"), &members)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(s.kv_incr(q, &f.key("n"), 3).await.unwrap(), 3);
    assert_eq!(s.get(&c).await.unwrap().as_deref(), Some(&[3; 300][..]));
}

/// Listing a tenant's keys (the dashboard's locks): every key under the
/// prefix, with its time to live, and none of another tenant's; more keys
/// than one SCAN step holds.
async fn keys_are_listed_by_prefix_with_their_ttl(f: Fixture) {
    let s = &f.store;
    let lock = f.key("lock:sync");
    assert!(
        s.lock_acquire(&lock, "tok", Duration::from_secs(60))
            .await
            .unwrap()
    );
    for i in 0..1200 {
        s.set(&f.key(&format!("kv:n{i}")), b"x", None)
            .await
            .unwrap();
    }
    let other = format!("{}:{{u}}:p:lock:sync", f.prefix);
    s.set(&other, b"y", None).await.unwrap();
    let base = format!("{}:{{t}}:p:", f.prefix);
    let found = s.keys_with_prefix(&base).await.unwrap();
    assert_eq!(found.len(), 1201, "every key of tenant t, no other's");
    let (_, ttl) = found.iter().find(|(key, _)| *key == lock).unwrap();
    let ttl = ttl.expect("a lock expires");
    assert!(
        ttl > Duration::from_secs(50) && ttl <= Duration::from_secs(60),
        "{ttl:?}"
    );
    assert!(
        found
            .iter()
            .filter(|(k, _)| k != &lock)
            .all(|(_, ttl)| ttl.is_none())
    );
    assert!(
        s.keys_with_prefix(&format!("{}:{{t}}:q:", f.prefix))
            .await
            .unwrap()
            .is_empty()
    );
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(fixture(false).await).await } )*
        }
        mod redis {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(fixture(true).await).await } )*
        }
    };
}

conformance!(
    kv_roundtrip,
    kv_ttl_expires,
    incr_counts_and_refuses_non_integers,
    sets_report_new_members,
    lock_is_exclusive_and_token_bound,
    lock_expires_with_its_ttl,
    rate_limit_allows_capacity_plus_refill,
    rate_limit_takes_from_all_buckets_or_none,
    rate_limit_refuses_impossible_requests,
    a_set_stops_growing_at_its_cap,
    quota_refuses_growth_and_frees_on_delete_and_expiry,
    keys_are_listed_by_prefix_with_their_ttl,
);

/// The suite ran against what `TEST_REDIS_TARGET` asked for: with `cluster`,
/// a three-node Redis Cluster (so a fallback to one Redis cannot pass unseen).
#[tokio::test]
async fn the_redis_target_is_the_one_asked_for() {
    let store = bitbylaw_tests::redis_target::connect_store().await;
    let info: Result<String, _> = ::redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut store.connection())
        .await;
    if bitbylaw_tests::on_cluster() {
        let info = info.unwrap();
        assert!(info.contains("cluster_state:ok"), "{info}");
        assert!(info.contains("cluster_known_nodes:3"), "{info}");
    } else {
        assert!(
            info.is_err(),
            "the machine's Redis runs without cluster mode"
        );
    }
}
