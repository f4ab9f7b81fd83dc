//! The responses stored for one URL of one deployment's cache: one per set of request header
//! values its `Vary` names (RFC 9111 §4.1), newest first, at most [`MAX_VARIANTS`], so
//! `Accept-Language` or `Accept-Encoding` variants do not evict each other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;

use super::entry::{Space, Stored};

/// Most variants kept for one URL; a new one past it drops the oldest.
pub(crate) const MAX_VARIANTS: usize = 16;

/// What the cache keeps under one key.
#[derive(Debug)]
pub(crate) struct Variants {
    /// The deployment.
    pub(crate) worker: Arc<str>,
    /// The cache within it.
    pub(crate) space: Space,
    /// The URL (the key's hash is only an index).
    pub(crate) url: Box<str>,
    /// The stored responses, newest first.
    pub(crate) list: Box<[Arc<Stored>]>,
}

impl Variants {
    /// `stored` alone.
    pub(crate) fn one(stored: Arc<Stored>) -> Self {
        Self {
            worker: Arc::clone(&stored.worker),
            space: stored.space.clone(),
            url: stored.url.clone(),
            list: Box::new([stored]),
        }
    }

    /// `stored` added to `current` (the variants already kept for its key, if they are for
    /// the same URL): it replaces the one for the same header values, variants of no more
    /// use are dropped, and the oldest past [`MAX_VARIANTS`].
    pub(crate) fn with(current: Option<&Self>, stored: Arc<Stored>, now: Instant) -> Self {
        let mut variants = Self::one(Arc::clone(&stored));
        let Some(current) =
            current.filter(|c| c.is(&variants.worker, &variants.space, &variants.url))
        else {
            return variants;
        };
        let mut list = Vec::with_capacity((current.list.len() + 1).min(MAX_VARIANTS));
        list.push(stored);
        for old in &current.list {
            if list.len() == MAX_VARIANTS {
                break;
            }
            if !old.same_variant(&list[0]) && !old.remaining(now).is_zero() {
                list.push(Arc::clone(old));
            }
        }
        variants.list = list.into_boxed_slice();
        variants
    }

    /// Whether these are `worker`'s variants of `url` in `space`.
    pub(crate) fn is(&self, worker: &str, space: &Space, url: &str) -> bool {
        *self.worker == *worker && self.space == *space && *self.url == *url
    }

    /// The variant stored for `request`'s values of the `Vary` headers, if still of use.
    pub(crate) fn matching(&self, request: &HeaderMap, now: Instant) -> Option<&Arc<Stored>> {
        self.list
            .iter()
            .find(|stored| stored.vary_matches(request) && !stored.remaining(now).is_zero())
    }

    /// How long the cache keeps them: as long as the longest-kept variant.
    pub(crate) fn keep_for(&self, now: Instant) -> Duration {
        self.list
            .iter()
            .map(|stored| stored.remaining(now))
            .max()
            .unwrap_or_default()
    }

    /// What they cost the cache.
    pub(crate) fn weight(&self) -> u32 {
        self.list
            .iter()
            .fold(0u32, |sum, stored| sum.saturating_add(stored.weight()))
    }

    /// Whether one of them carries `tag` (lower-case).
    pub(crate) fn tagged(&self, tags: &[String]) -> bool {
        self.list.iter().any(|stored| {
            stored
                .tags
                .iter()
                .any(|t| tags.iter().any(|tag| **t == **tag))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

    use super::{MAX_VARIANTS, Variants};
    use crate::cache::entry::{Space, Stored};

    fn variant(lang: &str, body: &'static str) -> Arc<Stored> {
        let language = HeaderName::from_static("accept-language");
        Arc::new(Stored {
            worker: Arc::from("w"),
            space: Space::Responses,
            tags: Box::default(),
            url: "http://a.test/".into(),
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: bytes::Bytes::from_static(body.as_bytes()),
            vary: Box::new([(
                language,
                Box::new([HeaderValue::from_str(lang).unwrap_or(HeaderValue::from_static("x"))]),
            )]),
            stored_at: Instant::now(),
            initial_age: Duration::ZERO,
            lifetime: Duration::from_secs(60),
            directives: Default::default(),
            retention: Duration::ZERO,
            revalidating: AtomicBool::new(false),
        })
    }

    fn asking(lang: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(lang) {
            headers.insert("accept-language", value);
        }
        headers
    }

    #[test]
    fn variants_replace_their_own_and_keep_at_most_sixteen() {
        let now = Instant::now();
        let mut variants = Variants::one(variant("en", "en 1"));
        variants = Variants::with(Some(&variants), variant("fr", "fr 1"), now);
        variants = Variants::with(Some(&variants), variant("en", "en 2"), now);
        assert_eq!(variants.list.len(), 2);
        let en = variants
            .matching(&asking("en"), now)
            .map(|s| s.body.clone());
        assert_eq!(en.as_deref(), Some(&b"en 2"[..]));
        assert!(variants.matching(&asking("de"), now).is_none());
        for n in 0..20 {
            variants = Variants::with(Some(&variants), variant(&format!("l{n}"), "x"), now);
        }
        assert_eq!(variants.list.len(), MAX_VARIANTS);
        assert!(variants.matching(&asking("l19"), now).is_some());
        assert!(
            variants.matching(&asking("en"), now).is_none(),
            "the oldest went"
        );
    }
}
