//! A well-formed component that exports something else than the bitbylaw
//! handler: loading it as a plugin must fail with a clear error.

// The bindings generated here export functions by symbol name, which the
// workspace lint counts as unsafe code; the SDK keeps this out of plugin crates.
#![allow(unsafe_code)]

wit_bindgen::generate!({
    inline: "
        package test:other;
        world other {
            export run: func() -> u32;
        }
    ",
});

struct Other;

impl Guest for Other {
    fn run() -> u32 {
        42
    }
}

export!(Other);
