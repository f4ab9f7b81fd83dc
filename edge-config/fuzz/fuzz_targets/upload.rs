//! An admin upload: `NAME\nJSON` (or just JSON, deployed as `fuzz`). Errors name the request;
//! accepted uploads have the name they were deployed as and routes that start with `/`.
#![no_main]

use std::path::{Path, PathBuf};

use edge_config::{Limits, Upload, valid_worker_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (name, json) = match data.iter().position(|b| *b == b'\n') {
        Some(end) => (
            String::from_utf8_lossy(&data[..end]).into_owned(),
            &data[end + 1..],
        ),
        None => ("fuzz".to_owned(), data),
    };
    let origin = Path::new("PUT /workers/fuzz");
    let upload = match Upload::parse(json, origin) {
        Ok(upload) => upload,
        Err(error) => {
            assert_eq!(error.file, origin);
            return;
        }
    };
    let file = PathBuf::from("/nonexistent/isola-fuzz/worker.js");
    match upload.into_worker(&name, file.clone(), &Limits::default(), origin) {
        Ok((worker, routes, _code)) => {
            assert!(valid_worker_name(&name), "invalid name {name:?} accepted");
            assert_eq!(worker.name, name);
            assert_eq!(worker.file, file);
            for route in routes.iter().flatten() {
                assert_eq!(route.worker, name);
                assert!(
                    route.path_prefix.starts_with('/'),
                    "{:?}",
                    route.path_prefix
                );
                if let Some(host) = &route.host {
                    assert_eq!(host, &host.to_ascii_lowercase());
                }
            }
        }
        Err(error) => assert_eq!(error.file, origin),
    }
});
