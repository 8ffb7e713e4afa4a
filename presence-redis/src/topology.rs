//! Where the cluster feed listens: any node of the deployment will do, since
//! a cluster-wide `PUBLISH` reaches every node (replicas included). The
//! feed starts from the configured seeds, learns the cluster's nodes from
//! `CLUSTER NODES` each time it connects, and when its node dies or
//! refuses, moves on to the next one.

/// The nodes the feed may listen on, and which to try next.
#[derive(Debug)]
pub(crate) struct FeedNodes {
    /// The configured URLs (the single Redis, or the cluster's seeds).
    seeds: Vec<String>,
    /// Nodes learned from the cluster, as URLs.
    learned: Vec<String>,
    /// Whether this is a Redis Cluster (its topology can be learned).
    cluster: bool,
    next: usize,
}

impl FeedNodes {
    pub(crate) fn new(seeds: Vec<String>, cluster: bool) -> Self {
        Self {
            seeds,
            learned: Vec::new(),
            cluster,
            next: 0,
        }
    }

    fn candidates(&self) -> Vec<&String> {
        let mut all: Vec<&String> = self.seeds.iter().collect();
        for url in &self.learned {
            if !all.contains(&url) {
                all.push(url);
            }
        }
        all
    }

    /// The next node to try; whether a whole round has been tried since
    /// the last success (the caller then backs off).
    pub(crate) fn next(&mut self) -> (String, bool) {
        let candidates = self.candidates();
        let count = candidates.len().max(1);
        let url = candidates
            .get(self.next % count)
            .map_or_else(String::new, |url| (*url).clone());
        self.next += 1;
        (url, self.next.is_multiple_of(count))
    }

    /// The feed listens on `url` now: asks it for the cluster's nodes.
    pub(crate) async fn connected(&mut self, client: &redis::Client, url: &str) {
        // The next failure tries the other nodes first.
        if let Some(at) = self.candidates().iter().position(|c| c.as_str() == url) {
            self.next = at + 1;
        }
        if !self.cluster {
            return;
        }
        let nodes: Result<String, _> = async {
            let mut connection = client.get_multiplexed_async_connection().await?;
            redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut connection)
                .await
        }
        .await;
        match nodes {
            Ok(nodes) => {
                let seed = self.seeds.first().cloned().unwrap_or_default();
                self.learned = live_addresses(&nodes)
                    .into_iter()
                    .map(|(host, port)| with_address(&seed, &host, port))
                    .collect();
            }
            Err(error) => {
                tracing::debug!(%error, "presence feed: could not learn the cluster's nodes")
            }
        }
    }
}

/// The `host:port` of every node `CLUSTER NODES` does not flag as failed.
fn live_addresses(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _id = fields.next()?;
            let address = fields.next()?;
            let flags = fields.next()?;
            if flags.contains("fail") || flags.contains("noaddr") || flags.contains("handshake") {
                return None;
            }
            // `ip:port@cport[,hostname]`
            let address = address.split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            let port = port.parse().ok()?;
            (!host.is_empty()).then(|| (host.to_owned(), port))
        })
        .collect()
}

/// `seed` with its host and port replaced (scheme, credentials and
/// database kept).
fn with_address(seed: &str, host: &str, port: u16) -> String {
    let (scheme, rest) = seed.split_once("://").unwrap_or(("redis", seed));
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((credentials, rest)) => (format!("{credentials}@"), rest),
        None => (String::new(), rest),
    };
    let path = rest.find('/').map_or("", |at| &rest[at..]);
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!("{scheme}://{credentials}{host}:{port}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_are_read_and_failed_ones_skipped() {
        let nodes = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1 4 connected
67ed 127.0.0.1:30002@40002 master - 0 1 2 connected 5461-10922
e7d1 127.0.0.1:30001@40001 master,fail - 1 1 1 disconnected
9a11 10.0.0.5:30003@40003,node-3.example myself,master - 0 0 3 connected 10923-16383
";
        assert_eq!(
            live_addresses(nodes),
            vec![
                ("127.0.0.1".into(), 30004),
                ("127.0.0.1".into(), 30002),
                ("10.0.0.5".into(), 30003)
            ]
        );
    }

    #[test]
    fn a_learned_node_keeps_the_seeds_scheme_credentials_and_database() {
        assert_eq!(
            with_address("rediss://user:pw@seed:6379/2", "10.0.0.5", 30003),
            "rediss://user:pw@10.0.0.5:30003/2"
        );
        assert_eq!(
            with_address("redis://127.0.0.1:7000", "::1", 7001),
            "redis://[::1]:7001"
        );
    }

    #[test]
    fn nodes_are_tried_in_turn_from_after_the_last_good_one() {
        let mut nodes = FeedNodes::new(vec!["redis://a".into(), "redis://b".into()], false);
        assert_eq!(nodes.next(), ("redis://a".into(), false));
        assert_eq!(nodes.next(), ("redis://b".into(), true));
        assert_eq!(nodes.next(), ("redis://a".into(), false));
    }
}
