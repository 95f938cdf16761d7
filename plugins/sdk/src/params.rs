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

    /// A text parameter holding a comma-separated list of `WIDTHxHEIGHT`
    /// image sizes (empty items skipped).
    pub fn sizes(&self, name: &str) -> Result<Vec<(u32, u32)>, String> {
        parse_sizes(name, &self.text(name)?)
    }
}

/// The largest side a size may have (the host's decoding limit).
pub const MAX_SIDE: u32 = 8192;

/// `224x224, 1920x1080`: sizes of 1 to [`MAX_SIDE`] pixels a side; errors
/// name the parameter `what`.
pub fn parse_sizes(what: &str, text: &str) -> Result<Vec<(u32, u32)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            let (w, h) = x
                .split_once(['x', 'X'])
                .ok_or_else(|| format!("{what}: {x:?} is not WIDTHxHEIGHT"))?;
            let side = |v: &str| {
                v.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_SIDE).contains(n))
                    .ok_or_else(|| format!("{what}: {x:?} needs sides of 1 to {MAX_SIDE} pixels"))
            };
            Ok((side(w)?, side(h)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_say_what_is_wrong() {
        assert_eq!(
            parse_sizes("sizes", " 224x224, 1920X1080,,").unwrap(),
            [(224, 224), (1920, 1080)]
        );
        let e = parse_sizes("sizes", "224").unwrap_err();
        assert!(e.contains("sizes") && e.contains("WIDTHxHEIGHT"), "{e}");
        for bad in ["0x10", "10x9000", "axb"] {
            let e = parse_sizes("resolutions", bad).unwrap_err();
            assert!(e.contains("resolutions") && e.contains("1 to 8192"), "{e}");
        }
    }
}
