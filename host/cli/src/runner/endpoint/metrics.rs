//! A server's Prometheus `/metrics`, read before and after a run: what
//! changed (requests, tokens, prefix-cache hits, queue) goes into the run as
//! a table.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

/// Where a server's metrics are: `/metrics` at the root of its URL.
pub struct ServerMetrics {
    url: String,
    agent: ureq::Agent,
}

/// The most bytes of one scrape.
const MAX_SCRAPE: u64 = 8 << 20;
/// Rows of the table at most.
const MAX_ROWS: usize = 300;

impl ServerMetrics {
    pub fn new(base: &str, timeout: Duration) -> ServerMetrics {
        let root = base.trim_end_matches('/');
        let root = root.strip_suffix("/v1").unwrap_or(root);
        ServerMetrics {
            url: format!("{root}/metrics"),
            agent: ureq::AgentBuilder::new()
                .timeout(timeout.min(Duration::from_secs(10)))
                .build(),
        }
    }

    /// The metrics' text, or none where the server has none.
    pub fn scrape(&self) -> Option<String> {
        let resp = self.agent.get(&self.url).call().ok()?;
        let mut text = String::new();
        resp.into_reader()
            .take(MAX_SCRAPE)
            .read_to_string(&mut text)
            .ok()?;
        Some(text)
    }
}

/// Samples of Prometheus' text format: `name{labels} value`.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            // The value follows the last space outside the labels; an
            // optional timestamp may follow it.
            let (series, rest) = match l.rfind('}') {
                Some(end) => (&l[..=end], l[end + 1..].trim()),
                None => l.split_once(' ')?,
            };
            let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
            Some((series.trim().to_string(), value))
        })
        .collect()
}

/// The table of what changed between `before` and `after` (and the
/// samples that stayed, after those that changed, up to the row limit):
/// its name, columns and rows. None when the server had no metrics.
pub fn metrics_table(
    before: Option<&str>,
    after: Option<&str>,
) -> Option<(String, Vec<String>, Vec<Vec<String>>)> {
    let after = samples(after?);
    if after.is_empty() {
        return None;
    }
    let before = before.map(samples).unwrap_or_default();
    let mut changed = vec![];
    let mut same = vec![];
    for (series, value) in &after {
        let was = before.get(series);
        let row = vec![
            series.clone(),
            was.map(|v| format!("{v}")).unwrap_or_default(),
            format!("{value}"),
            was.map(|v| format!("{}", value - v)).unwrap_or_default(),
        ];
        if was != Some(value) {
            changed.push(row);
        } else {
            same.push(row);
        }
    }
    let rows: Vec<Vec<String>> = changed.into_iter().chain(same).take(MAX_ROWS).collect();
    let columns = ["series", "before", "after", "change"]
        .map(String::from)
        .to_vec();
    Some((
        "server metrics (/metrics before and after the run)".into(),
        columns,
        rows,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_series_come_first_with_their_change() {
        let before = "# HELP x\nvlm_requests_total 3\nvlm_queue 0\n";
        let after = "vlm_requests_total 10\nvlm_queue 0\nhits{kind=\"a b\"} 2 1700000000\n";
        let (_, cols, rows) = metrics_table(Some(before), Some(after)).unwrap();
        assert_eq!(cols.len(), 4);
        assert_eq!(rows[0], vec!["hits{kind=\"a b\"}", "", "2", ""]);
        assert_eq!(rows[1], vec!["vlm_requests_total", "3", "10", "7"]);
        assert_eq!(rows[2][0], "vlm_queue");
        assert!(metrics_table(Some(before), Some("<html>not metrics</html>")).is_none());
    }
}
