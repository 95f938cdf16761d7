//! How results are presented, in one place for the host's store, the web
//! page (through the store's JSON) and the plugin SDK: the number formats,
//! markdown tables, percentiles, and the resolution table of the vllm-mlx
//! image benchmark (Resolution, Pixels, Time, Tokens, Speed). The standard
//! library only, so that it builds for the plugins' wasm32-wasip2 too.

/// The value at fraction `q` of the sorted sample, interpolating linearly
/// between neighbours (NumPy's default); NaN for an empty sample.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The mean of `values`; NaN for none.
pub fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// Pixel counts as the vllm-mlx image benchmark writes them: `50K`, `1.0M`.
pub fn pixels(n: u64) -> String {
    if n >= 1_000_000 {
        format!("{:.1}M", n as f64 / 1e6)
    } else {
        format!("{}K", (n as f64 / 1e3).round() as u64)
    }
}

/// Seconds with two decimals and a unit: `1.04s`.
pub fn seconds(s: f64) -> String {
    format!("{s:.2}s")
}

/// A rate with one decimal: `74.8 tok/s`.
pub fn tok_s(v: f64) -> String {
    format!("{v:.1} tok/s")
}

/// Milliseconds with one decimal: `21.3 ms`.
pub fn ms(v: f64) -> String {
    format!("{v:.1} ms")
}

/// A markdown table. `|` in cells is escaped and line breaks are flattened,
/// so that text such as a regex or a model's output keeps its meaning.
pub fn markdown_table(columns: &[String], rows: &[Vec<String>]) -> String {
    let mut out = format!(
        "| {} |\n|{}|\n",
        markdown_cells(columns),
        columns.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        out.push_str(&format!("| {} |\n", markdown_cells(r)));
    }
    out
}

fn markdown_cells(cells: &[String]) -> String {
    cells
        .iter()
        .map(|c| c.replace('|', "\\|").replace('\n', " "))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// One measured request as the resolution table reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// What the request measured: `224x224` in a sweep.
    pub label: String,
    /// The first image's pixels (0 without an image).
    pub pixels: u64,
    /// The whole request, in seconds.
    pub seconds: f64,
    pub output_tokens: u64,
}

/// One row: a label's requests.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolutionRow {
    pub label: String,
    pub pixels: u64,
    /// Means over the label's requests.
    pub seconds: f64,
    pub tokens: f64,
    /// Output tokens over the whole request time: `tokens / seconds`.
    pub speed: f64,
}

/// The vllm-mlx image benchmark's table over measured requests: a row per
/// label (in order of first appearance) with the mean Time and Tokens and
/// Speed = Tokens / Time; the average of the Speeds; the aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolutionTable {
    /// `Resolution` when every label is a `WxH` size, else `Request`.
    pub first_column: &'static str,
    pub rows: Vec<ResolutionRow>,
    pub requests: usize,
    pub total_seconds: f64,
    pub total_tokens: u64,
}

/// Whether `label` is a `WxH` size.
fn is_resolution(label: &str) -> bool {
    label.split_once('x').is_some_and(|(w, h)| {
        [w, h]
            .iter()
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

impl ResolutionTable {
    /// The table of `requests`; `None` when there are none.
    pub fn of(requests: impl IntoIterator<Item = Measured>) -> Option<ResolutionTable> {
        let mut groups: Vec<(String, Vec<Measured>)> = vec![];
        for r in requests {
            match groups.iter_mut().find(|(l, _)| *l == r.label) {
                Some((_, v)) => v.push(r),
                None => groups.push((r.label.clone(), vec![r])),
            }
        }
        if groups.is_empty() {
            return None;
        }
        let first_column = if groups.iter().all(|(l, _)| is_resolution(l)) {
            "Resolution"
        } else {
            "Request"
        };
        let requests = groups.iter().map(|(_, v)| v.len()).sum();
        let all = groups.iter().flat_map(|(_, v)| v);
        let total_seconds = all.clone().map(|r| r.seconds).sum();
        let total_tokens = all.map(|r| r.output_tokens).sum();
        let rows = groups
            .into_iter()
            .map(|(label, rs)| {
                let seconds = mean(rs.iter().map(|r| r.seconds));
                let tokens = mean(rs.iter().map(|r| r.output_tokens as f64));
                ResolutionRow {
                    label,
                    pixels: rs[0].pixels,
                    seconds,
                    tokens,
                    speed: tokens / seconds,
                }
            })
            .collect();
        Some(ResolutionTable {
            first_column,
            rows,
            requests,
            total_seconds,
            total_tokens,
        })
    }

    pub fn columns(&self) -> Vec<String> {
        [self.first_column, "Pixels", "Time", "Tokens", "Speed"]
            .map(String::from)
            .to_vec()
    }

    /// The rows in the benchmark's formats.
    pub fn cells(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|r| {
                vec![
                    r.label.clone(),
                    pixels(r.pixels),
                    seconds(r.seconds),
                    format!("{:.0}", r.tokens),
                    tok_s(r.speed),
                ]
            })
            .collect()
    }

    /// The mean of the rows' Speeds: the benchmark's "average".
    pub fn average_speed(&self) -> f64 {
        mean(self.rows.iter().map(|r| r.speed))
    }

    /// Total tokens over total time.
    pub fn aggregate_speed(&self) -> f64 {
        self.total_tokens as f64 / self.total_seconds
    }

    fn fastest(&self) -> &ResolutionRow {
        let by_speed = |a: &&ResolutionRow, b: &&ResolutionRow| a.speed.total_cmp(&b.speed);
        self.rows.iter().max_by(by_speed).expect("a table has rows")
    }

    fn slowest(&self) -> &ResolutionRow {
        let by_speed = |a: &&ResolutionRow, b: &&ResolutionRow| a.speed.total_cmp(&b.speed);
        self.rows.iter().min_by(by_speed).expect("a table has rows")
    }

    /// The summary sentence: the average both ways, the fastest and the
    /// slowest row, and what Speed means.
    pub fn summary(&self) -> String {
        let across = self.first_column.to_lowercase();
        let (fast, slow) = (self.fastest(), self.slowest());
        format!(
            "**Summary:** Average {:.1} tok/s across all {across}s (mean of the per-{across} Speed, \
             as the vllm-mlx image benchmark computes it); {:.1} tok/s aggregate (total tokens over \
             total time). Fastest at {} ({:.1} tok/s), slowest at {} ({:.1} tok/s). Speed is output \
             tokens over the whole request time, including preprocessing and prefill.",
            self.average_speed(),
            self.aggregate_speed(),
            fast.label,
            fast.speed,
            slow.label,
            slow.speed
        )
    }

    pub fn aggregate_columns() -> Vec<String> {
        [
            "Configs",
            "Total Time (s)",
            "Total Tokens",
            "Aggregate Tok/s",
        ]
        .map(String::from)
        .to_vec()
    }

    pub fn aggregate_cells(&self) -> Vec<Vec<String>> {
        vec![vec![
            self.rows.len().to_string(),
            format!("{:.2}", self.total_seconds),
            self.total_tokens.to_string(),
            format!("{:.1}", self.aggregate_speed()),
        ]]
    }

    /// The table, the summary and the aggregate as markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = markdown_table(&self.columns(), &self.cells());
        out.push_str(&format!("\n{}\n\n", self.summary()));
        out.push_str(&markdown_table(
            &Self::aggregate_columns(),
            &self.aggregate_cells(),
        ));
        if self.requests > self.rows.len() {
            out.push_str(&format!(
                "\n({} measured requests; Time and Tokens are per-request means.)\n",
                self.requests
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(label: &str, px: u64, s: f64, tokens: u64) -> Measured {
        Measured {
            label: label.into(),
            pixels: px,
            seconds: s,
            output_tokens: tokens,
        }
    }

    #[test]
    fn the_benchmarks_formats() {
        assert_eq!(pixels(224 * 224), "50K");
        assert_eq!(pixels(1024 * 1024), "1.0M");
        assert_eq!(pixels(1920 * 1080), "2.1M");
        assert_eq!(seconds(1.0449), "1.04s");
        assert_eq!(tok_s(74.84), "74.8 tok/s");
        assert_eq!(ms(21.26), "21.3 ms");
    }

    #[test]
    fn percentiles_interpolate_between_neighbours() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.5);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 1.0), 4.0);
        assert!((percentile(&v, 0.9) - 3.7).abs() < 1e-12);
        assert!(percentile(&[], 0.5).is_nan());
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }

    #[test]
    fn markdown_escapes_pipes_and_line_breaks() {
        let t = markdown_table(
            &["Expected".into(), "Output".into()],
            &[vec!["/red|blue/".into(), "two\nlines".into()]],
        );
        assert_eq!(
            t,
            "| Expected | Output |\n|---|---|\n| /red\\|blue/ | two lines |\n"
        );
    }

    #[test]
    fn rows_are_means_per_label_and_speed_is_tokens_over_time() {
        let t = ResolutionTable::of([
            measured("224x224", 50_176, 1.0, 100),
            measured("1920x1080", 2_073_600, 2.0, 100),
            measured("224x224", 50_176, 3.0, 100),
        ])
        .unwrap();
        assert_eq!(t.first_column, "Resolution");
        assert_eq!(t.rows.len(), 2);
        assert_eq!((t.rows[0].seconds, t.rows[0].speed), (2.0, 50.0));
        assert_eq!(t.average_speed(), 50.0);
        assert_eq!(t.aggregate_speed(), 50.0);
        assert_eq!(
            t.cells()[1],
            ["1920x1080", "2.1M", "2.00s", "100", "50.0 tok/s"]
        );
        let md = t.to_markdown();
        assert!(md.starts_with("| Resolution | Pixels | Time | Tokens | Speed |"));
        assert!(md.contains("across all resolutions") && md.contains("(3 measured requests;"));
        assert!(ResolutionTable::of([]).is_none());
    }

    #[test]
    fn labels_that_are_not_sizes_make_a_request_column() {
        for odd in ["x224", "224x", "2x2x2", "photo.png", "1a cached"] {
            let t = ResolutionTable::of([measured(odd, 0, 1.0, 1)]).unwrap();
            assert_eq!(t.first_column, "Request", "{odd}");
        }
        let t = ResolutionTable::of([measured("224x224", 1, 1.0, 1), measured("b", 1, 1.0, 1)]);
        assert_eq!(t.unwrap().first_column, "Request");
    }
}
