//! W3C Trace Context (`traceparent`, <https://www.w3.org/TR/trace-context/>): the incoming
//! value is accepted only when well formed (else a new trace starts and the bad value is never
//! echoed), and each outbound subrequest gets a child with a span id of its own.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

/// One `traceparent` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace's id (never 0).
    pub trace_id: u128,
    /// The id of the span the value names as parent (never 0).
    pub parent_id: u64,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` field value: `00-<32 hex>-<16 hex>-<2 hex>` in lowercase; a later
    /// version may append `-…` fields (ignored), version `ff` is invalid; all-zero ids are
    /// invalid.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() < 55 {
            return None;
        }
        let version = u8::try_from(hex_field(&value[0..2])?).ok()?;
        if version == 0xff || (version == 0 && value.len() != 55) {
            return None;
        }
        if value.len() > 55 && value[55] != b'-' {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id = hex_field(&value[3..35])?;
        let parent_id = u64::try_from(hex_field(&value[36..52])?).ok()?;
        let flags = u8::try_from(hex_field(&value[53..55])?).ok()?;
        (trace_id != 0 && parent_id != 0).then_some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// A new trace (not sampled) whose first span is this node's.
    pub fn root() -> Self {
        let trace_id = (u128::from(random_nonzero()) << 64) | u128::from(random_u64());
        Self {
            trace_id,
            parent_id: random_nonzero(),
            flags: 0,
        }
    }

    /// The value to send with a subrequest: same trace and flags, a new span id.
    pub fn child(&self) -> Self {
        Self {
            parent_id: random_nonzero(),
            ..*self
        }
    }

    /// The field value (version 00).
    pub fn to_header_string(&self) -> String {
        String::from_utf8_lossy(&self.to_header_bytes()).into_owned()
    }

    /// The field value (version 00) as bytes, made without allocating.
    pub fn to_header_bytes(&self) -> [u8; 55] {
        let mut out = [b'-'; 55];
        out[0..2].copy_from_slice(b"00");
        crate::hex::write(self.trace_id, &mut out[3..35]);
        crate::hex::write(u128::from(self.parent_id), &mut out[36..52]);
        crate::hex::write(u128::from(self.flags), &mut out[53..55]);
        out
    }
}

/// Lowercase hex digits (at most 32) as a number; `None` for anything else.
fn hex_field(digits: &[u8]) -> Option<u128> {
    if digits.is_empty() || digits.len() > 32 {
        return None;
    }
    digits.iter().try_fold(0u128, |acc, &digit| {
        let value = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        Some((acc << 4) | u128::from(value))
    })
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(RandomState::new().hash_one(std::thread::current().id()));
}

/// A pseudo-random number (SplitMix64 per thread, seeded by the process's hash keys): span and
/// trace ids must be unique, not secret, and cost no system call.
pub fn random_u64() -> u64 {
    STATE.with(|state| {
        let next = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

fn random_nonzero() -> u64 {
    random_u64().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_the_spec_example() {
        let parsed = TraceParent::parse(VALID.as_bytes());
        assert_eq!(
            parsed,
            Some(TraceParent {
                trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
                parent_id: 0x00f067aa0ba902b7,
                flags: 1,
            })
        );
        assert_eq!(parsed.map(|p| p.to_header_string()).as_deref(), Some(VALID));
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "01-4bf92f35",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad}");
        }
        let later = format!("01{}-future", &VALID[2..]);
        assert!(TraceParent::parse(later.as_bytes()).is_some(), "{later}");
    }

    #[test]
    fn children_keep_the_trace_and_get_new_spans() {
        let root = TraceParent::root();
        let (a, b) = (root.child(), root.child());
        assert_eq!((a.trace_id, b.trace_id), (root.trace_id, root.trace_id));
        assert_ne!(a.parent_id, b.parent_id);
        assert_eq!(TraceParent::parse(a.to_header_string().as_bytes()), Some(a));
    }
}
