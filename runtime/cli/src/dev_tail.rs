//! `isola dev`'s request lines: its worker's live tail, subscribed in the same process and
//! printed on stdout as `isola tail --format pretty` prints it (`pretty.rs`), coloured only
//! when stdout is a terminal. The tail is bounded like any other: when stdout falls behind,
//! events are dropped (and counted on stderr), never requests slowed.

use std::io::IsTerminal as _;

use anyhow::Context as _;

use crate::pretty::{Filter, Format, Printer};

/// Prints the events of worker `name` on stdout from a thread of its own, until the process
/// ends.
pub fn print(name: &str) -> anyhow::Result<()> {
    let mut subscription = isola_runtime::tail::of(name)
        .subscribe()
        .context("cannot follow the dev worker's requests")?;
    let colour = std::io::stdout().is_terminal();
    std::thread::Builder::new()
        .name("isola-dev-tail".to_owned())
        .spawn(move || {
            let mut printer = Printer::new(Filter::default(), Format::Pretty, colour);
            while let Some(event) = subscription.blocking_next() {
                if printer
                    .event(&mut std::io::stdout().lock(), &event)
                    .is_err()
                {
                    // stdout is gone: nothing more can be shown.
                    break;
                }
            }
        })
        .context("cannot start the thread printing requests")?;
    Ok(())
}
