//! `--set key=value` checked against what the plugin declared in `describe`.

use crate::bindings::wit_types::{ParamKind, ParamSpec, ParamValue};

fn parse(spec: &ParamSpec, raw: &str) -> Result<ParamValue, String> {
    let bad = |what: &str| {
        format!(
            "--set {}={raw}: {what} (declared as {:?}: {})",
            spec.name, spec.kind, spec.help
        )
    };
    match spec.kind {
        ParamKind::Boolean => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(ParamValue::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(ParamValue::Boolean(false)),
            _ => Err(bad("expected true or false")),
        },
        ParamKind::Integer => raw
            .trim()
            .parse::<i64>()
            .map(ParamValue::Integer)
            .map_err(|_| bad("expected an integer")),
        ParamKind::Float => match raw.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(ParamValue::Float(f)),
            _ => Err(bad("expected a finite number")),
        },
        ParamKind::Text => Ok(ParamValue::Text(raw.to_string())),
    }
}

/// Every declared parameter with its value: the `--set` one, else the
/// default. Unknown names and wrong types are errors that list the choices.
pub fn resolve_params(
    specs: &[ParamSpec],
    sets: &[(String, String)],
) -> Result<Vec<(String, ParamValue)>, String> {
    for (name, _) in sets {
        if !specs.iter().any(|s| &s.name == name) {
            let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "--set {name}: the plugin has no such parameter (it has: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let given = sets
            .iter()
            .rev()
            .find(|(n, _)| n == &spec.name)
            .map(|(_, v)| v.as_str());
        let value = match given {
            Some(raw) => parse(spec, raw)?,
            None => parse(spec, &spec.default_value)
                .map_err(|e| format!("the plugin's own default is invalid: {e}"))?,
        };
        out.push((spec.name.clone(), value));
    }
    Ok(out)
}

/// Splits `key=value`.
pub fn parse_set(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("--set {arg}: expected key=value")),
    }
}

/// A parameter value as text (for storage and display).
pub fn display_value(v: &ParamValue) -> String {
    match v {
        ParamValue::Boolean(b) => b.to_string(),
        ParamValue::Integer(i) => i.to_string(),
        ParamValue::Float(f) => f.to_string(),
        ParamValue::Text(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: ParamKind, d: &str) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            kind,
            default_value: d.into(),
            help: "h".into(),
        }
    }

    #[test]
    fn values_are_typed_and_defaults_filled() {
        let specs = vec![
            spec("quick", ParamKind::Boolean, "false"),
            spec("repeats", ParamKind::Integer, "3"),
        ];
        let got = resolve_params(&specs, &[("quick".into(), "true".into())]).unwrap();
        assert!(matches!(got[0].1, ParamValue::Boolean(true)));
        assert!(matches!(got[1].1, ParamValue::Integer(3)));
        let e = resolve_params(&specs, &[("repeats".into(), "many".into())]).unwrap_err();
        assert!(e.contains("expected an integer"), "{e}");
        let e = resolve_params(&specs, &[("repeat".into(), "2".into())]).unwrap_err();
        assert!(e.contains("quick, repeats"), "{e}");
        assert!(parse_set("novalue").is_err());
    }
}
