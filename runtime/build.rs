//! Builds the startup snapshot at compile time: the Web extensions' JavaScript and the
//! bootstrap in `js/` are evaluated once here, so the binary needs neither at run time.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let artifacts = isola_bindings::snapshot::create()?;
    std::fs::write(out_dir.join("ISOLA_SNAPSHOT.bin"), &artifacts.bytes)?;

    let mut residual = String::new();
    for (name, files) in [
        ("RESIDUAL_JS", &artifacts.residual_js),
        ("RESIDUAL_ESM", &artifacts.residual_esm),
    ] {
        writeln!(residual, "pub(crate) static {name}: &[(&str, &str)] = &[")?;
        for (specifier, path) in files {
            writeln!(
                residual,
                "    ({specifier:?}, include_str!({:?})),",
                path.display().to_string()
            )?;
        }
        writeln!(residual, "];")?;
    }
    std::fs::write(out_dir.join("residual_sources.rs"), residual)?;

    for file in &artifacts.files_loaded {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    Ok(())
}
