//! The query of the socket's URL, read with axum's `Query` extractor.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// What the socket's URL asks for. The URL may carry the host's own
/// parameters too (a token its extractor reads), so no query is refused:
/// pairs other than those below are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SocketQuery {
    /// `batch=1` or `batch=true`, in any of the pairs: `presence_batch`
    /// frames. Any other value (`batch=0`, `batch=yes`) means none.
    pub(crate) batches: bool,
}

impl<'de> Deserialize<'de> for SocketQuery {
    /// Visits every pair rather than deriving: a derived struct refuses a
    /// repeated name (`?batch=0&batch=1`), and this query refuses nothing.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;

        impl<'de> Visitor<'de> for Pairs {
            type Value = SocketQuery;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a query string")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut pairs: M) -> Result<SocketQuery, M::Error> {
                let mut query = SocketQuery::default();
                while let Some((name, value)) = pairs.next_entry::<String, String>()? {
                    if name == "batch" && matches!(value.as_str(), "1" | "true") {
                        query.batches = true;
                    }
                }
                Ok(query)
            }
        }

        deserializer.deserialize_map(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use axum::extract::Query;
    use axum::http::Uri;

    use super::*;

    fn batches(uri: &'static str) -> bool {
        let uri = Uri::from_static(uri);
        let Query(query) = Query::<SocketQuery>::try_from_uri(&uri).expect("never refused");
        query.batches
    }

    #[test]
    fn batch_1_or_true_in_any_pair_asks_for_batches_and_nothing_is_refused() {
        for asks in [
            "/ws/presence?batch=1",
            "/ws/presence?batch=true",
            "/ws/presence?token=abc&batch=1",
            "/ws/presence?batch=0&batch=1",
            "/ws/presence?&&batch=true&",
        ] {
            assert!(batches(asks), "{asks}");
        }
        for does_not in [
            "/ws/presence",
            "/ws/presence?",
            "/ws/presence?batch",
            "/ws/presence?batch=",
            "/ws/presence?batch=0",
            "/ws/presence?batch=yes",
            "/ws/presence?batch=TRUE",
            "/ws/presence?batch=1=1",
            "/ws/presence?batches=1",
            "/ws/presence?token=%zz&x",
        ] {
            assert!(!batches(does_not), "{does_not}");
        }
    }
}
