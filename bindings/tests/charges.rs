//! Blob parts, object URLs and compression streams are charged to the isolate's memory
//! account while they live, and the charge returns to zero once they are freed (as deno_web's
//! JavaScript frees them: a Blob's finalizer removes its part, `revokeObjectURL`, a stream's
//! end).
#![allow(clippy::unwrap_used, reason = "a test fails loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deno_core::{JsRuntime, RuntimeOptions};
use isola_bindings::blob::{ChargedBlobStore, isola_blob};
use isola_bindings::compression::isola_compression;
use isola_bindings::memory::{MemoryAccount, MemoryMeter};

/// A meter without a limit that remembers what is charged.
#[derive(Default)]
struct Meter(AtomicUsize);

impl MemoryMeter for Meter {
    fn charge(&self, bytes: usize) -> bool {
        self.0.fetch_add(bytes, Ordering::Relaxed);
        true
    }

    fn release(&self, bytes: usize) {
        self.0.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// A runtime with deno_web and Isola's charging extensions (no snapshot), and its meter.
fn runtime() -> (JsRuntime, Arc<Meter>) {
    let meter = Arc::new(Meter::default());
    let account = MemoryAccount::new(meter.clone());
    let runtime = JsRuntime::new(RuntimeOptions {
        extensions: vec![
            deno_webidl::deno_webidl::init(),
            deno_web::deno_web::init(
                Arc::new(ChargedBlobStore::new(account.clone())),
                None,
                false,
                deno_web::InMemoryBroadcastChannel::default(),
            ),
            isola_blob::init(account.clone()),
            isola_compression::init(account),
        ],
        ..Default::default()
    });
    (runtime, meter)
}

fn run(runtime: &mut JsRuntime, code: &'static str) {
    runtime.execute_script("<test>", code).unwrap();
}

fn charged(meter: &Meter) -> usize {
    meter.0.load(Ordering::Relaxed)
}

#[tokio::test]
async fn blob_parts_and_object_urls_are_charged_until_freed() {
    let (mut runtime, meter) = runtime();
    run(
        &mut runtime,
        "globalThis.ops = Deno.core.ops;
         globalThis.id = ops.op_blob_create_part(new Uint8Array(1_000_000));
         globalThis.slice = ops.op_blob_slice_part(id, { start: 0, len: 10 });",
    );
    let with_part = charged(&meter);
    assert!(
        (1_000_000..1_001_000).contains(&with_part),
        "the copy and two entries: {with_part}"
    );

    run(
        &mut runtime,
        "globalThis.url = ops.op_blob_create_object_url('text/plain', [id]);
         ops.op_blob_remove_part(id);
         ops.op_blob_remove_part(slice);",
    );
    let with_url = charged(&meter);
    assert!(
        with_url >= 1_000_000,
        "the object URL keeps the contents alive: {with_url}"
    );

    run(&mut runtime, "ops.op_blob_revoke_object_url(url);");
    assert_eq!(charged(&meter), 0, "everything freed");
}

#[tokio::test]
async fn compression_state_is_charged_until_the_stream_ends() {
    let (mut runtime, meter) = runtime();
    run(
        &mut runtime,
        "globalThis.ops = Deno.core.ops;
         globalThis.streams = ['gzip', 'deflate', 'deflate-raw', 'brotli'].flatMap((format) => [
           [format, ops.op_compression_new(format, false)],
           [format, ops.op_compression_new(format, true)],
         ]);",
    );
    let live = charged(&meter);
    assert!(live > 17 * 1024 * 1024, "eight live codecs: {live}");

    run(
        &mut runtime,
        "const text = new Uint8Array(120_000).map((_, i) => 'hello '.charCodeAt(i % 6));
         for (let i = 0; i < streams.length; i += 2) {
           const [, encoder] = streams[i];
           const [, decoder] = streams[i + 1];
           const packed = [ops.op_compression_write(encoder, text), ops.op_compression_finish(encoder, true)];
           let size = 0;
           for (const chunk of packed) size += ops.op_compression_write(decoder, chunk).length;
           size += ops.op_compression_finish(decoder, true).length;
           if (size !== text.length) throw new Error(`${streams[i][0]}: ${size} bytes back`);
         }",
    );
    assert_eq!(charged(&meter), 0, "every stream finished");
}
