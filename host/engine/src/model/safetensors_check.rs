//! Validates a safetensors file's header in Rust before MLX reads it, so a
//! corrupt or hostile file gets a clear error naming what is wrong instead of
//! whatever the C++ reader makes of it. Checked: the header length, that the
//! header is a JSON object, each tensor's dtype, shape and byte range, that
//! the ranges fit the file and do not overlap.

use std::io::Read;
use std::path::Path;

use serde_json::Value;

/// Largest header accepted (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

fn dtype_size(d: &str) -> Option<u64> {
    Some(match d {
        "BOOL" | "U8" | "I8" | "F8_E4M3" | "F8_E5M2" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" | "C64" => 8,
        _ => return None,
    })
}

/// The header's tensors: name → (dtype, shape, byte range), checked against
/// a file of `file_len` bytes whose header is `header` (without its 8-byte
/// length prefix).
pub fn parse_header(
    header: &[u8],
    file_len: u64,
) -> Result<Vec<(String, String, Vec<u64>)>, String> {
    let v: Value =
        serde_json::from_slice(header).map_err(|e| format!("the header is not valid JSON: {e}"))?;
    let obj = v.as_object().ok_or("the header is not a JSON object")?;
    let data_len = file_len
        .checked_sub(8 + header.len() as u64)
        .ok_or("the file is shorter than its header")?;
    let mut out = vec![];
    let mut ranges = vec![];
    for (name, t) in obj {
        if name == "__metadata__" {
            if !t.is_object()
                || t.as_object()
                    .is_some_and(|m| m.values().any(|x| !x.is_string()))
            {
                return Err("__metadata__ must map names to strings".into());
            }
            continue;
        }
        let bad = |what: &str| format!("tensor {name:?}: {what}");
        let dtype = t
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no dtype"))?;
        let size = dtype_size(dtype).ok_or_else(|| bad(&format!("unknown dtype {dtype:?}")))?;
        let shape: Vec<u64> = t
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| {
                d.as_u64()
                    .ok_or_else(|| bad("a dimension is not a non-negative integer"))
            })
            .collect::<Result<_, _>>()?;
        if shape.len() > 8 || shape.iter().any(|&d| d > i32::MAX as u64) {
            return Err(bad(&format!("shape {shape:?} is out of range")));
        }
        let offsets = t
            .get("data_offsets")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no data_offsets"))?;
        let (start, end) = match offsets.as_slice() {
            [a, b] => (
                a.as_u64().ok_or_else(|| bad("bad offset"))?,
                b.as_u64().ok_or_else(|| bad("bad offset"))?,
            ),
            _ => return Err(bad("data_offsets must hold two numbers")),
        };
        let elements = shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| bad("shape overflows"))?;
        let bytes = elements
            .checked_mul(size)
            .ok_or_else(|| bad("size overflows"))?;
        if end < start || end - start != bytes {
            return Err(bad(&format!(
                "data_offsets [{start}, {end}] do not hold {bytes} bytes of {dtype} {shape:?}"
            )));
        }
        if end > data_len {
            return Err(bad(&format!(
                "data ends at {end}, past the end of the data ({data_len} bytes): the file is truncated"
            )));
        }
        ranges.push((start, end, name.clone()));
        out.push((name.clone(), dtype.to_string(), shape));
    }
    ranges.sort();
    for w in ranges.windows(2) {
        if w[1].0 < w[0].1 {
            return Err(format!("tensors {:?} and {:?} overlap", w[0].2, w[1].2));
        }
    }
    Ok(out)
}

/// Checks the file at `path`; the error says what is wrong (not where: the caller adds the path).
pub fn check_file(path: &Path) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let file_len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| "shorter than the 8-byte header length".to_string())?;
    let n = u64::from_le_bytes(len);
    if n == 0 || n > MAX_HEADER || n > file_len.saturating_sub(8) {
        return Err(format!(
            "header length {n} is impossible for a {file_len}-byte file (corrupt or not safetensors)"
        ));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|e| format!("cannot read the header: {e}"))?;
    parse_header(&header, file_len).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> Vec<u8> {
        json.as_bytes().to_vec()
    }

    #[test]
    fn good_and_bad_headers() {
        let h = header(
            r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"__metadata__":{"format":"pt"}}"#,
        );
        let len = 8 + h.len() as u64 + 16;
        assert_eq!(parse_header(&h, len).unwrap().len(), 1);
        assert!(parse_header(&h, len - 1).unwrap_err().contains("truncated"));
        let cases = [
            (r#"[1,2]"#, "not a JSON object"),
            (
                r#"{"a":{"dtype":"Q9","shape":[1],"data_offsets":[0,1]}}"#,
                "unknown dtype",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
                "do not hold 12 bytes",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#,
                "non-negative",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#,
                "out of range",
            ),
            (
                r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}"#,
                "overlap",
            ),
            ("{not json", "not valid JSON"),
        ];
        for (json, want) in cases {
            let err = parse_header(json.as_bytes(), 1 << 20).unwrap_err();
            assert!(err.contains(want), "{json}: {err}");
        }
    }
}
