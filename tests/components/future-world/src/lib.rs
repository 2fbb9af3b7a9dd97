//! A plugin built for a later `bitbylaw:plugin` world than this host loads
//! (0.9.0): `inspect` and a tenant load must say which world it was built
//! for and which this host loads, in one message.

// The bindings generated here export functions by symbol name, which the
// workspace lint counts as unsafe code; the SDK keeps this out of plugin crates.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    inline: "
        package bitbylaw:plugin@0.9.0;
        interface log {
            log: func(message: string);
        }
        interface handler {
            describe: func() -> string;
        }
        world plugin {
            import log;
            export handler;
        }
    ",
});

struct Future;

impl exports::bitbylaw::plugin::handler::Guest for Future {
    fn describe() -> String {
        bitbylaw::plugin::log::log("described");
        "future".into()
    }
}

export!(Future);
