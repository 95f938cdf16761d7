//! `vlmbench:workload/results`: metrics, tables, notes and the verdict,
//! bounded in size, then recorded by the results service.

use wasmtime::Result;

use super::{HostState, MAX_TABLE_CELLS, MAX_TEXT, check_len, forward, truncate};
use crate::bindings::v0_1::vlmbench::workload::results as results_0_1;
use crate::bindings::wit_results;
use crate::services::ServiceError;

fn trap_on_fatal(r: Result<(), ServiceError>) -> Result<()> {
    match r {
        Ok(()) | Err(ServiceError::Rejected(_) | ServiceError::Failed(_)) => Ok(()),
        Err(ServiceError::Fatal(e)) => Err(wasmtime::Error::msg(e.to_string())),
    }
}

macro_rules! results_host {
    ($m:ident) => {
        impl $m::Host for HostState {
            fn metric(&mut self, name: String, value: f64, unit: String) -> Result<()> {
                trap_on_fatal(self.services.results.metric(
                    truncate(name, 256),
                    value,
                    truncate(unit, 64),
                ))
            }

            fn table(
                &mut self,
                name: String,
                columns: Vec<String>,
                rows: Vec<Vec<String>>,
            ) -> Result<Result<(), String>> {
                let cells = columns.len() * (rows.len() + 1);
                if let Err(e) = check_len("the table", cells, MAX_TABLE_CELLS) {
                    return Ok(Err(e));
                }
                if let Some((i, r)) = rows
                    .iter()
                    .enumerate()
                    .find(|(_, r)| r.len() != columns.len())
                {
                    return Ok(Err(format!(
                        "row {i} of table {name:?} has {} cells for {} columns",
                        r.len(),
                        columns.len()
                    )));
                }
                forward(
                    self.services
                        .results
                        .table(truncate(name, 256), columns, rows),
                )
            }

            fn note(&mut self, text: String) -> Result<()> {
                trap_on_fatal(self.services.results.note(truncate(text, MAX_TEXT)))
            }

            fn verdict(&mut self, passed: bool, summary: String) -> Result<()> {
                trap_on_fatal(
                    self.services
                        .results
                        .verdict(passed, truncate(summary, MAX_TEXT)),
                )
            }
        }
    };
}

results_host!(wit_results);
results_host!(results_0_1);
