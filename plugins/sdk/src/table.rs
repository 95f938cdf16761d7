//! Tables, recorded with the run and printed as markdown, and the number
//! formats and resolution table of the vllm-mlx image benchmark, as the
//! host writes them (`vlmbench_report`).

pub use vlmbench_report::{Measured, ResolutionTable, ms, pixels, seconds, tok_s};

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
        vlmbench_report::markdown_table(&self.columns, &self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_escapes_pipes_and_line_breaks() {
        let mut t = Table::new(&["Expected", "Output"]);
        t.row(vec!["/red|blue/".into(), "two\nlines".into()]);
        assert_eq!(
            t.to_markdown(),
            "| Expected | Output |\n|---|---|\n| /red\\|blue/ | two lines |\n"
        );
    }
}
