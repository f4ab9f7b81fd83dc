//! The Cache API (`caches.default`, `caches.open(name)`, `Cache.match/put/delete`) as workers
//! see it on Workers. The storage is the node's response cache, which lives in the runtime:
//! the runtime puts a [`CacheBackend`] for the isolate's deployment into its OpState
//! ([`CacheSlot`]), so this crate never depends on the runtime. Bodies given to `put` are read
//! here, in Rust, from the response's stream (or taken as the string or bytes it was built
//! from), copied once into one buffer.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use deno_core::{ByteString, JsBuffer, OpState, ResourceId, ToJsBuffer, op2};
use deno_error::JsErrorBox;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

/// Largest chunk read from a response stream at once.
const CHUNK_BYTES: usize = 64 * 1024;

/// A response as the Cache API stores and returns it.
#[derive(Debug, Clone)]
pub struct CachedResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its whole body.
    pub body: Bytes,
}

/// Why `put` throws (a `TypeError` in JavaScript, as on Workers).
#[derive(Debug, thiserror::Error)]
pub enum PutRefusal {
    /// `206 Partial Content` cannot be stored.
    #[error("Cache.put() cannot store a 206 Partial Content response")]
    Partial,
    /// `Vary: *` (or an unreadable `Vary`) cannot be matched by any request.
    #[error("Cache.put() cannot store a response with Vary: *")]
    VaryStar,
    /// The body is larger than the cache stores.
    #[error("Cache.put(): the response body is larger than the cache's max_object_bytes ({0})")]
    TooLarge(u64),
}

/// One deployment's view of the node's cache, implemented by the runtime. `cache` is `None`
/// for `caches.default`, else the name given to `caches.open`. Another deployment's entries
/// are out of reach: the implementation keys everything by the deployment it was made for.
pub trait CacheBackend: Send + Sync + std::fmt::Debug {
    /// The largest body `put` accepts.
    fn max_body_bytes(&self) -> u64;
    /// Stores `response` as the answer to a GET of `url` with `request` headers: `Ok(true)`
    /// when stored, `Ok(false)` when the storage rules say it must not be (`private`,
    /// `no-store`, `Set-Cookie`, no lifetime), as Workers ignores those.
    fn put(
        &self,
        cache: Option<&str>,
        url: &str,
        request: &HeaderMap,
        response: CachedResponse,
    ) -> Result<bool, PutRefusal>;
    /// The fresh stored response for a GET of `url` with `request` headers (`Vary`), answering
    /// the request's `Range` (206, 416) and preconditions (304).
    fn lookup(&self, cache: Option<&str>, url: &str, request: &HeaderMap)
    -> Option<CachedResponse>;
    /// Removes what is stored for `url`; whether something was.
    fn delete(&self, cache: Option<&str>, url: &str) -> bool;
    /// Notes that cache `name` was opened.
    fn open(&self, name: &str);
    /// Whether cache `name` was opened.
    fn has(&self, name: &str) -> bool;
    /// The names of the opened caches, in order.
    fn names(&self) -> Vec<String>;
    /// Removes cache `name` and everything in it; whether it existed.
    fn drop_cache(&self, name: &str) -> bool;
}

/// The isolate's [`CacheBackend`], in its OpState; absent when the node's cache is off (the
/// Cache API then stores nothing, as on Workers' preview).
#[derive(Clone)]
pub struct CacheSlot(pub Arc<dyn CacheBackend>);

deno_core::extension!(
    isola_cache,
    deps = [deno_webidl, deno_web, deno_fetch],
    ops = [
        op_isola_cache_put_text,
        op_isola_cache_put_bytes,
        op_isola_cache_put_stream,
        op_isola_cache_match,
        op_isola_cache_delete,
        op_isola_cache_open,
        op_isola_cache_has,
        op_isola_cache_names,
        op_isola_cache_drop,
    ],
    esm = [dir "../js", "20_cache.js"],
);

type HeaderList = Vec<(ByteString, ByteString)>;

/// What `put` knows besides the body.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutHead {
    cache: Option<String>,
    url: String,
    request: HeaderList,
    status: u16,
    headers: HeaderList,
    /// The body's length when known (to size the buffer).
    length: Option<u64>,
}

/// Which cache an op is about: `null` for `caches.default`, else the name given to `open`.
#[derive(Deserialize)]
#[serde(transparent)]
struct CacheName(Option<String>);

/// A stored response handed to JavaScript.
#[derive(Serialize)]
struct Matched {
    status: u16,
    headers: HeaderList,
    body: ToJsBuffer,
}

fn headers(list: &HeaderList) -> Result<HeaderMap, JsErrorBox> {
    let mut map = HeaderMap::with_capacity(list.len());
    for (name, value) in list {
        let name = HeaderName::from_bytes(name)
            .map_err(|_| JsErrorBox::type_error("Cache: invalid header name"))?;
        let value = HeaderValue::from_bytes(value)
            .map_err(|_| JsErrorBox::type_error("Cache: invalid header value"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn backend(state: &OpState) -> Option<Arc<dyn CacheBackend>> {
    state.try_borrow::<CacheSlot>().map(|slot| slot.0.clone())
}

/// Stores `body` under `head` through `backend`.
fn put(backend: &dyn CacheBackend, head: &PutHead, body: Bytes) -> Result<bool, JsErrorBox> {
    let status = StatusCode::from_u16(head.status)
        .map_err(|_| JsErrorBox::type_error("Cache.put(): invalid status"))?;
    let response = CachedResponse {
        status,
        headers: headers(&head.headers)?,
        body,
    };
    let request = headers(&head.request)?;
    backend
        .put(head.cache.as_deref(), &head.url, &request, response)
        .map_err(|refusal| JsErrorBox::type_error(refusal.to_string()))
}

fn too_large(backend: &dyn CacheBackend, len: usize) -> Result<(), JsErrorBox> {
    let limit = backend.max_body_bytes();
    if len as u64 > limit {
        return Err(JsErrorBox::type_error(
            PutRefusal::TooLarge(limit).to_string(),
        ));
    }
    Ok(())
}

/// `put` of a response whose body is a string (moved, not copied).
#[op2]
fn op_isola_cache_put_text(
    state: &mut OpState,
    #[serde] head: PutHead,
    #[string] body: String,
) -> Result<bool, JsErrorBox> {
    let Some(backend) = backend(state) else {
        return Ok(false);
    };
    too_large(&*backend, body.len())?;
    put(&*backend, &head, Bytes::from(body))
}

/// `put` of a response whose body is bytes (or none): copied once, out of the isolate's heap.
#[op2]
fn op_isola_cache_put_bytes(
    state: &mut OpState,
    #[serde] head: PutHead,
    #[buffer] body: JsBuffer,
) -> Result<bool, JsErrorBox> {
    let Some(backend) = backend(state) else {
        return Ok(false);
    };
    too_large(&*backend, body.len())?;
    put(&*backend, &head, Bytes::copy_from_slice(&body))
}

/// `put` of a response with a streamed body: read here from the stream's resource `rid`
/// (made by `resourceForReadableStream`) into one buffer, refused once it passes the limit.
#[op2]
async fn op_isola_cache_put_stream(
    state: Rc<RefCell<OpState>>,
    #[serde] head: PutHead,
    #[smi] rid: ResourceId,
) -> Result<bool, JsErrorBox> {
    let (resource, backend) = {
        let mut state = state.borrow_mut();
        let resource = state
            .resource_table
            .take_any(rid)
            .map_err(|e| JsErrorBox::type_error(e.to_string()))?;
        (resource, backend(&state))
    };
    let Some(backend) = backend else {
        resource.close();
        return Ok(false);
    };
    let limit = backend.max_body_bytes();
    let capacity = head.length.unwrap_or(0).min(limit);
    let mut body = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let read = loop {
        match resource.clone().read(CHUNK_BYTES).await {
            Ok(view) if view.is_empty() => break Ok(()),
            Ok(view) => {
                if (body.len() + view.len()) as u64 > limit {
                    break too_large(&*backend, body.len() + view.len());
                }
                body.extend_from_slice(&view);
            }
            Err(error) => break Err(JsErrorBox::type_error(error.to_string())),
        }
    };
    resource.close();
    read?;
    put(&*backend, &head, body.freeze())
}

/// The stored response for a GET of `url` (with the request's header list), if any.
#[op2]
#[serde]
fn op_isola_cache_match(
    state: &mut OpState,
    #[serde] cache: CacheName,
    #[string] url: &str,
    #[serde] request: HeaderList,
) -> Result<Option<Matched>, JsErrorBox> {
    let Some(backend) = backend(state) else {
        return Ok(None);
    };
    let request = headers(&request)?;
    let Some(found) = backend.lookup(cache.0.as_deref(), url, &request) else {
        return Ok(None);
    };
    let headers = found
        .headers
        .iter()
        .map(|(name, value)| {
            (
                ByteString::from(name.as_str()),
                ByteString::from(value.as_bytes().to_vec()),
            )
        })
        .collect();
    Ok(Some(Matched {
        status: found.status.as_u16(),
        headers,
        body: ToJsBuffer::from(found.body.to_vec()),
    }))
}

/// Removes what is stored for `url`; whether something was.
#[op2]
fn op_isola_cache_delete(
    state: &mut OpState,
    #[serde] cache: CacheName,
    #[string] url: &str,
) -> bool {
    backend(state).is_some_and(|backend| backend.delete(cache.0.as_deref(), url))
}

/// `caches.open(name)`.
#[op2(fast)]
fn op_isola_cache_open(state: &mut OpState, #[string] name: &str) {
    if let Some(backend) = backend(state) {
        backend.open(name);
    }
}

/// `caches.has(name)`.
#[op2(fast)]
fn op_isola_cache_has(state: &mut OpState, #[string] name: &str) -> bool {
    backend(state).is_some_and(|backend| backend.has(name))
}

/// `caches.keys()`.
#[op2]
#[serde]
fn op_isola_cache_names(state: &mut OpState) -> Vec<String> {
    backend(state).map_or_else(Vec::new, |backend| backend.names())
}

/// `caches.delete(name)`.
#[op2(fast)]
fn op_isola_cache_drop(state: &mut OpState, #[string] name: &str) -> bool {
    backend(state).is_some_and(|backend| backend.drop_cache(name))
}
