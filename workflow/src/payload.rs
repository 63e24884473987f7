//! JSON ↔ Temporal payload conversion at the one edge where steps are untyped.
//!
//! Activities and children are scheduled by name with [`RawValue`] input and output; these
//! functions turn `serde_json` values into the SDK's `json/plain` payloads and back, with an
//! error instead of the SDK's panicking `RawValue::to_value`.

use serde::Serialize;
use serde_json::Value;
use temporalio_workflow::common::data_converters::RawValue;
use temporalio_workflow::common::protos::temporal::api::common::v1::Payload;

const ENCODING: &str = "encoding";
const JSON: &[u8] = b"json/plain";
const NULL: &[u8] = b"binary/null";

/// Encode a value as one `json/plain` payload.
pub fn to_raw<T: Serialize>(value: &T) -> RawValue {
    let mut p = Payload::default();
    p.metadata.insert(ENCODING.into(), JSON.to_vec());
    p.data = serde_json::to_vec(value).expect("JSON values always serialize");
    RawValue::new(vec![p])
}

/// Decode the first payload of a raw value as JSON (`null` when there is none).
pub fn from_raw(raw: &RawValue) -> Result<Value, String> {
    let Some(p) = raw.payloads.first() else {
        return Ok(Value::Null);
    };
    match p.metadata.get(ENCODING).map(Vec::as_slice) {
        Some(NULL) | None if p.data.is_empty() => Ok(Value::Null),
        Some(JSON) | None => {
            serde_json::from_slice(&p.data).map_err(|e| format!("payload is not valid JSON: {e}"))
        }
        Some(other) => Err(format!(
            "payload encoding {:?} is not JSON",
            String::from_utf8_lossy(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = serde_json::json!({"a": [1, "two", null]});
        assert_eq!(from_raw(&to_raw(&v)).unwrap(), v);
        assert_eq!(from_raw(&RawValue::empty()).unwrap(), Value::Null);
    }
}
