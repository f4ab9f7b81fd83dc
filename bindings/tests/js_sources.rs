//! The bootstrap JavaScript in `js/` is 7-bit ASCII. deno_core loads extension sources as
//! one-byte (Latin-1) strings: a UTF-8 character in a string literal reaches the worker as
//! mojibake (`3000–4999` became `3000â€“4999` in a WebSocket error), and a debug build's
//! snapshot step refuses the file outright.

use std::path::Path;

#[test]
fn every_bootstrap_file_is_ascii() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../js");
    let mut checked = 0;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .path();
        if path.extension().is_none_or(|ext| ext != "js") {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        checked += 1;
        for (number, line) in text.lines().enumerate() {
            if let Some(c) = line.chars().find(|c| !c.is_ascii()) {
                found.push(format!("{}:{}: {c:?}", path.display(), number + 1));
            }
        }
    }
    assert!(
        checked > 5,
        "only {checked} files found in {}",
        dir.display()
    );
    assert!(
        found.is_empty(),
        "non-ASCII characters:\n{}",
        found.join("\n")
    );
}
