//! The cascade of the integrations in small: a schedule fires every second; the
//! first firing emits one `item` event per item (`items` setting, default 200);
//! each item handler counts its item in `handled:<i>` and `handled-total`.
//! Every firing records its tick in the set `started` when it begins, and in
//! the set `ticks` and the count `fires` when it ends, so a test sees whether
//! any tick ran twice or never finished. A firing that begins while another
//! runs (the count `running` above zero) records its tick in `overlaps`.
//! `work_ms` makes each item take time, `tick_ms` each firing.

use std::time::Duration;

use bitbylaw_sdk::{Description, Event, HandlerError, Plugin, Tick, config, events, kv};

struct Cascade;

fn retryable(error: impl std::fmt::Display) -> HandlerError {
    HandlerError::Retryable(error.to_string())
}

impl Plugin for Cascade {
    fn describe() -> Description {
        Description::new("cascade", "0.1.0")
            .schedule("fanout", "* * * * * *")
            .topic("item")
    }

    fn handle_schedule(tick: Tick) -> Result<(), HandlerError> {
        let at = tick.scheduled_at.to_string();
        kv::set_add("started", std::slice::from_ref(&at)).map_err(retryable)?;
        if kv::incr("running", 1).map_err(retryable)? > 1 {
            kv::set_add("overlaps", std::slice::from_ref(&at)).map_err(retryable)?;
        }
        if let Some(ms) = config::get("tick_ms").and_then(|v| v.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        kv::incr("running", -1).map_err(retryable)?;
        kv::set_add("ticks", &[at]).map_err(retryable)?;
        kv::incr("fires", 1).map_err(retryable)?;
        if kv::incr("fanouts", 1).map_err(retryable)? == 1 {
            let items: u32 = config::get("items")
                .and_then(|v| v.parse().ok())
                .unwrap_or(200);
            for item in 0..items {
                events::emit("item", item.to_string().as_bytes()).map_err(retryable)?;
            }
        }
        Ok(())
    }

    fn handle_event(event: Event) -> Result<(), HandlerError> {
        let item = String::from_utf8(event.payload)
            .map_err(|_| HandlerError::Permanent("bad item".into()))?;
        if let Some(ms) = config::get("work_ms").and_then(|v| v.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        kv::incr(&format!("handled:{item}"), 1).map_err(retryable)?;
        kv::incr("handled-total", 1).map_err(retryable)?;
        Ok(())
    }
}

bitbylaw_sdk::export_plugin!(Cascade);
