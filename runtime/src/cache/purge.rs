//! Purges: everything, a deployment's entries (a redeploy, a delete, the admin API), those
//! tagged with a `Cache-Tag` tag, or those under a URL prefix, in the response cache and the
//! Cache API alike. Each purge removes what it matches before it returns, so the next request
//! already misses.

use super::ResponseCache;
use super::entry::Space;
use super::variants::Variants;

/// What a purge by tags or prefixes matches besides its deployment filter.
#[derive(Debug, Clone, Copy)]
pub enum Selector<'a> {
    /// Entries with one of these `Cache-Tag` tags (compared ignoring ASCII case).
    Tags(&'a [String]),
    /// Entries whose URL starts with one of these prefixes: with a scheme
    /// (`https://example.com/img/`) compared to the whole URL, else (`example.com/img/`, as
    /// Cloudflare takes them) to the URL without its scheme.
    Prefixes(&'a [String]),
}

impl ResponseCache {
    /// Drops every response of `worker` and its Cache API entries (a new version of it was
    /// deployed, or it was deleted).
    pub fn purge_worker(&self, worker: &str) {
        self.purge_if(|variants| *variants.worker == *worker);
    }

    /// Drops every stored response.
    pub fn purge_all(&self) {
        self.inner.entries.invalidate_all();
    }

    /// Drops the entries `selector` matches, of `worker` only when given; returns how many
    /// URLs' entries went.
    pub fn purge_selected(&self, worker: Option<&str>, selector: Selector<'_>) -> usize {
        let lowered: Vec<String>;
        let selector = match selector {
            Selector::Tags(tags) => {
                lowered = tags
                    .iter()
                    .map(|tag| tag.trim().to_ascii_lowercase())
                    .collect();
                Selector::Tags(&lowered)
            }
            prefixes @ Selector::Prefixes(_) => prefixes,
        };
        self.purge_if(|variants| {
            worker.is_none_or(|worker| *variants.worker == *worker)
                && match selector {
                    Selector::Tags(tags) => variants.tagged(tags),
                    Selector::Prefixes(prefixes) => {
                        prefixes.iter().any(|prefix| under(&variants.url, prefix))
                    }
                }
        })
    }

    /// Drops the entries of one Cache API cache of `worker`.
    pub(super) fn purge_space(&self, worker: &str, space: &Space) -> usize {
        self.purge_if(|variants| *variants.worker == *worker && variants.space == *space)
    }

    /// Removes every entry `matches` (at once, not when next read).
    fn purge_if(&self, matches: impl Fn(&Variants) -> bool) -> usize {
        let keys: Vec<u64> = self
            .inner
            .entries
            .iter()
            .filter(|(_, variants)| matches(variants))
            .map(|(key, _)| *key)
            .collect();
        for key in &keys {
            self.inner.entries.invalidate(key);
        }
        keys.len()
    }
}

/// Whether `url` lies under `prefix` (see [`Selector::Prefixes`]).
fn under(url: &str, prefix: &str) -> bool {
    if prefix.contains("://") {
        return url.starts_with(prefix);
    }
    let bare = url.split_once("://").map_or(url, |(_, rest)| rest);
    bare.starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use super::under;

    #[test]
    fn prefixes_with_and_without_a_scheme() {
        assert!(under("http://a.example/img/1.png", "a.example/img/"));
        assert!(under(
            "https://a.example/img/1.png",
            "https://a.example/img"
        ));
        assert!(!under(
            "http://a.example/img/1.png",
            "https://a.example/img"
        ));
        assert!(!under("http://a.example/css/1.css", "a.example/img/"));
        assert!(!under("http://b.example/img/1.png", "a.example/img/"));
    }
}
