//! Tables, recorded with the run and printed as markdown, and the number
//! formats of the seed's tables.

use crate::results;

/// A table of strings; record it with [`Table::record`].
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[&str]) -> Table {
        Table {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: vec![],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Stores the table with the run under `name`.
    pub fn record(&self, name: &str) -> Result<(), String> {
        results::table(name, &self.columns, &self.rows)
    }

    pub fn to_markdown(&self) -> String {
        let mut out = format!("| {} |\n", markdown_cells(&self.columns));
        out.push_str(&format!(
            "|{}|\n",
            self.columns
                .iter()
                .map(|c| "-".repeat(c.len().max(3) + 2))
                .collect::<Vec<_>>()
                .join("|")
        ));
        for r in &self.rows {
            out.push_str(&format!("| {} |\n", markdown_cells(r)));
        }
        out
    }
}

/// Cells joined into a markdown table row, with `|` escaped and line breaks
/// flattened so that text such as a regex keeps its meaning.
fn markdown_cells(cells: &[String]) -> String {
    cells
        .iter()
        .map(|c| c.replace('|', "\\|").replace('\n', " "))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Pixel counts as the seed writes them: `50K`, `1.0M`.
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

/// Milliseconds with one decimal.
pub fn ms(v: f64) -> String {
    format!("{v:.1} ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_formats() {
        assert_eq!(pixels(224 * 224), "50K");
        assert_eq!(pixels(1024 * 1024), "1.0M");
        assert_eq!(pixels(1920 * 1080), "2.1M");
        assert_eq!(seconds(1.0449), "1.04s");
        assert_eq!(tok_s(74.84), "74.8 tok/s");
    }

    #[test]
    fn markdown_escapes_pipes_and_line_breaks() {
        let mut t = Table::new(&["Expected", "Output"]);
        t.row(vec!["/red|blue/".into(), "two\nlines".into()]);
        assert!(
            t.to_markdown().ends_with("| /red\\|blue/ | two lines |\n"),
            "{}",
            t.to_markdown()
        );
    }
}
