//! The startup snapshot built by `build.rs`, and the sources of the lazily loaded extension
//! scripts that are not in it.

/// V8 startup snapshot with the Web extensions and the bootstrap already evaluated.
pub(crate) static SNAPSHOT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ISOLA_SNAPSHOT.bin"));

include!(concat!(env!("OUT_DIR"), "/residual_sources.rs"));
