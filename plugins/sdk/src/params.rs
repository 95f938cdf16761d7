//! Typed access to the parameters the host passes to `run`.

use crate::types::{ParamKind, ParamSpec, ParamValue};

/// Declares a parameter for `describe`.
pub fn param(name: &str, kind: ParamKind, default_value: &str, help: &str) -> ParamSpec {
    ParamSpec {
        name: name.into(),
        kind,
        default_value: default_value.into(),
        help: help.into(),
    }
}

/// The parameters of a run, by name.
pub struct Params {
    values: Vec<(String, ParamValue)>,
}

impl Params {
    pub fn new(values: Vec<(String, ParamValue)>) -> Params {
        Params { values }
    }

    fn get(&self, name: &str) -> Result<&ParamValue, String> {
        self.values
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| {
                format!("parameter {name:?} was not passed (is it declared in describe?)")
            })
    }

    pub fn bool(&self, name: &str) -> Result<bool, String> {
        match self.get(name)? {
            ParamValue::Boolean(b) => Ok(*b),
            other => Err(format!("parameter {name:?} is {other:?}, not a boolean")),
        }
    }

    pub fn int(&self, name: &str) -> Result<i64, String> {
        match self.get(name)? {
            ParamValue::Integer(i) => Ok(*i),
            other => Err(format!("parameter {name:?} is {other:?}, not an integer")),
        }
    }

    pub fn float(&self, name: &str) -> Result<f64, String> {
        match self.get(name)? {
            ParamValue::Float(f) => Ok(*f),
            ParamValue::Integer(i) => Ok(*i as f64),
            other => Err(format!("parameter {name:?} is {other:?}, not a number")),
        }
    }

    pub fn text(&self, name: &str) -> Result<String, String> {
        match self.get(name)? {
            ParamValue::Text(s) => Ok(s.clone()),
            other => Err(format!("parameter {name:?} is {other:?}, not text")),
        }
    }

    /// An integer that must lie in `lo..=hi`.
    pub fn int_in(&self, name: &str, lo: i64, hi: i64) -> Result<i64, String> {
        let v = self.int(name)?;
        if v < lo || v > hi {
            return Err(format!(
                "parameter {name} = {v} must be between {lo} and {hi}"
            ));
        }
        Ok(v)
    }
}
