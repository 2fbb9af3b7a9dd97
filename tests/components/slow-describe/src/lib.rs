//! Slow to load: `describe` counts itself in `describing` (kv), then takes
//! 1.5 s. A test waits for the count to rise and acts while the host is still
//! loading the tenant (a version switch, a reload). No routes.

use std::time::Duration;

use bitbylaw_sdk::{Description, Plugin, kv};

struct SlowDescribe;

impl Plugin for SlowDescribe {
    fn describe() -> Description {
        // A failed count only makes the waiting test fail; describing goes on.
        let _ = kv::incr("describing", 1);
        std::thread::sleep(Duration::from_millis(1500));
        Description::new("slow-describe", "0.1.0")
    }
}

bitbylaw_sdk::export_plugin!(SlowDescribe);
