//! `GET /workers/NAME/usage?from=&to=`: a worker's metered usage per minute and version, as
//! JSON. `from` and `to` are Unix seconds (integers); the answer holds every minute that
//! overlaps `[from, to)`. `from` defaults to the oldest kept minute (7 days ago), `to` to the
//! end of the current minute.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::body::Body;
use http::{Response, StatusCode};

use super::{Admin, error, json};
use crate::usage::{Counts, KEPT_MINUTES};

/// The seconds range asked for.
#[derive(Debug, PartialEq, Eq)]
struct Range {
    from: u64,
    to: u64,
}

impl Range {
    /// Parses the query string; the error names the parameter at fault.
    fn parse(query: Option<&str>, now: u64) -> Result<Self, String> {
        let mut from = None;
        let mut to = None;
        for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match &*name {
                "from" => &mut from,
                "to" => &mut to,
                other => {
                    return Err(format!(
                        "unknown parameter `{other}`: expected `from` and `to` (Unix seconds)"
                    ));
                }
            };
            if slot.is_some() {
                return Err(format!("`{name}` is given twice"));
            }
            let seconds = value.parse::<u64>().map_err(|_| {
                format!("`{name}` must be Unix seconds (a non-negative integer), got `{value}`")
            })?;
            *slot = Some(seconds);
        }
        // The end of the current minute, so the minute in progress is always in.
        let to = to.unwrap_or((now / 60 + 1) * 60);
        let from = from.unwrap_or_else(|| now.saturating_sub(KEPT_MINUTES * 60));
        if from >= to {
            return Err(format!("`from` ({from}) must be before `to` ({to})"));
        }
        Ok(Self { from, to })
    }

    /// The minutes overlapping the range: `first..end`.
    fn minutes(&self) -> (u64, u64) {
        (self.from / 60, self.to.div_ceil(60))
    }
}

fn counts_json(counts: &Counts) -> serde_json::Value {
    serde_json::json!({
        "invocations": counts.invocations,
        "cache_hits": counts.cache_hits,
        "cpu_ms": counts.cpu_ms(),
        "gb_seconds": counts.gb_seconds(),
    })
}

fn now_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Admin {
    pub(super) async fn usage(&self, name: &str, query: Option<&str>) -> Response<Body> {
        if self.deployments.get(name).await.is_none() {
            return error(StatusCode::NOT_FOUND, format!("no worker `{name}`"));
        }
        let range = match Range::parse(query, now_seconds()) {
            Ok(range) => range,
            Err(message) => return error(StatusCode::BAD_REQUEST, message),
        };
        let (first, end) = range.minutes();
        let ledger = Arc::clone(&self.ledger);
        let worker = name.to_owned();
        let buckets =
            match tokio::task::spawn_blocking(move || ledger.query(&worker, first, end)).await {
                Ok(Ok(buckets)) => buckets,
                Ok(Err(e)) => {
                    let chain = crate::deployments::error_chain(&e);
                    tracing::error!(worker = name, "cannot read usage: {chain}");
                    return error(StatusCode::INTERNAL_SERVER_ERROR, chain);
                }
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
        let mut total = Counts::default();
        let mut versions: BTreeMap<&str, Counts> = BTreeMap::new();
        let minutes: Vec<_> = buckets
            .iter()
            .map(|bucket| {
                total.add(&bucket.counts);
                versions
                    .entry(&bucket.version)
                    .or_default()
                    .add(&bucket.counts);
                let mut entry = counts_json(&bucket.counts);
                entry["start"] = (bucket.minute * 60).into();
                entry["version"] = bucket.version.as_str().into();
                entry
            })
            .collect();
        let versions: serde_json::Map<_, _> = versions
            .into_iter()
            .map(|(version, counts)| (version.to_owned(), counts_json(&counts)))
            .collect();
        json(
            StatusCode::OK,
            &serde_json::json!({
                "worker": name,
                "from": range.from,
                "to": range.to,
                "bucket_seconds": 60,
                "total": counts_json(&total),
                "versions": versions,
                "minutes": minutes,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, reason = "tests fail loudly")]

    use super::Range;

    #[test]
    fn ranges_parse_and_name_the_bad_parameter() {
        let now = 1_000_000;
        assert_eq!(
            Range::parse(None, now),
            Ok(Range {
                from: now - 7 * 24 * 3600,
                to: now + 20
            })
        );
        assert_eq!(
            Range::parse(Some("from=60&to=180"), now),
            Ok(Range { from: 60, to: 180 })
        );
        assert_eq!(
            Range::parse(Some("from=61&to=179"), now).map(|r| r.minutes()),
            Ok((1, 3))
        );
        for (query, named) in [
            ("from=yesterday", "`from`"),
            ("to=-5", "`to`"),
            ("from=10&to=5", "`from`"),
            ("from=1&from=2", "`from`"),
            ("since=1", "`since`"),
        ] {
            let message = Range::parse(Some(query), now).expect_err(query);
            assert!(message.contains(named), "{query}: {message}");
        }
    }
}
