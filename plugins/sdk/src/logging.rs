//! Logging into the host's log, where lines carry tenant, plugin and request id.
//!
//! ```ignore
//! bitbylaw_sdk::info!("synced {} appointments", n; "employee" => kuerzel);
//! ```

use crate::bindings::bitbylaw::plugin::log as wit;

pub use wit::Level;

/// Sends one log line with key/value fields to the host.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    wit::log(level, message, &fields);
}

/// Logs at a level: `log!(Level::Info, "text {}", x; "key" => value, ...)`.
/// Values may be anything that implements `Display`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($fmt:expr),+ $(; $($key:literal => $value:expr),* $(,)?)?) => {{
        let fields: &[(&str, &str)] = &[$($(($key, &$value.to_string())),*)?];
        $crate::log($level, &format!($($fmt),+), fields)
    }};
}

#[macro_export]
macro_rules! trace { ($($t:tt)*) => { $crate::log!($crate::Level::Trace, $($t)*) }; }
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log!($crate::Level::Debug, $($t)*) }; }
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log!($crate::Level::Info, $($t)*) }; }
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log!($crate::Level::Warn, $($t)*) }; }
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log!($crate::Level::Error, $($t)*) }; }
