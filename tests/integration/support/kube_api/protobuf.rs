//! Just enough Kubernetes protobuf to accept what `kubectl create namespace|configmap|secret|
//! serviceaccount` sends (kubectl's generators POST protobuf): the `k8s\0` envelope, ObjectMeta's
//! name, generateName, namespace, labels, annotations and finalizers, and the data fields of
//! ConfigMap and Secret. Other kinds are refused with 415 so a client falls back to JSON
//! knowingly; responses are always JSON.

use serde_json::{Map, Value, json};

use super::format::base64_encode;

/// One decoded field: a varint, or length-delimited bytes (fixed-width values are skipped).
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// The fields of one message, in order.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let field = match tag & 7 {
            0 => Field::Varint(varint(buf, &mut pos)?),
            1 | 5 => {
                pos += if tag & 7 == 1 { 8 } else { 4 };
                Field::Fixed
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| "length overflow")?;
                let bytes = buf.get(pos..pos + len).ok_or("truncated field")?;
                pos += len;
                Field::Bytes(bytes)
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((tag >> 3, field));
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string field is not UTF-8".to_string())
}

/// Adds one `map<string, string|bytes>` entry to `map`.
fn map_entry(map: &mut Map<String, Value>, entry: &[u8], binary: bool) -> Result<(), String> {
    let (mut key, mut value) = (String::new(), Value::String(String::new()));
    for (n, f) in fields(entry)? {
        match (n, f) {
            (1, Field::Bytes(b)) => key = text(b)?,
            (2, Field::Bytes(b)) if binary => value = json!(base64_encode(b)),
            (2, Field::Bytes(b)) => value = json!(text(b)?),
            _ => {}
        }
    }
    map.insert(key, value);
    Ok(())
}

fn object_meta(buf: &[u8]) -> Result<Value, String> {
    let mut meta = Map::new();
    let (mut labels, mut annotations, mut finalizers) = (Map::new(), Map::new(), Vec::new());
    for (n, f) in fields(buf)? {
        let Field::Bytes(b) = f else { continue };
        match n {
            1 => _ = meta.insert("name".into(), json!(text(b)?)),
            2 => _ = meta.insert("generateName".into(), json!(text(b)?)),
            3 => _ = meta.insert("namespace".into(), json!(text(b)?)),
            11 => map_entry(&mut labels, b, false)?,
            12 => map_entry(&mut annotations, b, false)?,
            14 => finalizers.push(json!(text(b)?)),
            _ => {}
        }
    }
    meta.retain(|_, v| v.as_str().is_none_or(|s| !s.is_empty()));
    if !labels.is_empty() {
        meta.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), Value::Array(finalizers));
    }
    Ok(Value::Object(meta))
}

/// Decodes a protobuf request body into the JSON object it stands for.
pub(super) fn decode(body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(b"k8s\0")
        .ok_or("the body lacks the k8s protobuf envelope")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(envelope)? {
        match (n, f) {
            (1, Field::Bytes(type_meta)) => {
                for (m, g) in fields(type_meta)? {
                    match (m, g) {
                        (1, Field::Bytes(b)) => api_version = text(b)?,
                        (2, Field::Bytes(b)) => kind = text(b)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    if api_version != "v1"
        || !["Namespace", "ConfigMap", "Secret", "ServiceAccount"].contains(&kind.as_str())
    {
        return Err(format!(
            "the test server decodes protobuf only for v1 Namespace, ConfigMap, Secret and \
             ServiceAccount, not {api_version} {kind}; send application/json"
        ));
    }
    let mut obj = json!({ "apiVersion": api_version, "kind": kind });
    let (mut data, mut binary, mut string_data) = (Map::new(), Map::new(), Map::new());
    for (n, f) in fields(raw)? {
        match (api_version.as_str(), kind.as_str(), n, f) {
            (_, _, 1, Field::Bytes(b)) => obj["metadata"] = object_meta(b)?,
            ("v1", "Namespace" | "ServiceAccount", _, _) => {}
            ("v1", "ConfigMap", 2, Field::Bytes(b)) => map_entry(&mut data, b, false)?,
            ("v1", "ConfigMap", 3, Field::Bytes(b)) => map_entry(&mut binary, b, true)?,
            ("v1", "ConfigMap", 4, Field::Varint(v)) | ("v1", "Secret", 5, Field::Varint(v)) => {
                obj["immutable"] = json!(v != 0)
            }
            ("v1", "Secret", 2, Field::Bytes(b)) => map_entry(&mut data, b, true)?,
            ("v1", "Secret", 3, Field::Bytes(b)) => obj["type"] = json!(text(b)?),
            ("v1", "Secret", 4, Field::Bytes(b)) => map_entry(&mut string_data, b, false)?,
            _ => {}
        }
    }
    for (key, map) in [
        ("data", data),
        ("binaryData", binary),
        ("stringData", string_data),
    ] {
        if !map.is_empty() {
            obj[key] = Value::Object(map);
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u8, bytes: &[u8]) -> Vec<u8> {
        let mut v = vec![(n << 3) | 2, bytes.len() as u8];
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn decodes_a_configmap_envelope() {
        let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let meta = [
            field(1, b"c"),
            field(3, b"ns"),
            field(11, &[field(1, b"app"), field(2, b"x")].concat()),
        ]
        .concat();
        let raw = [
            field(1, &meta),
            field(2, &[field(1, b"k"), field(2, b"v")].concat()),
        ]
        .concat();
        let body = [b"k8s\0".to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        assert_eq!(
            decode(&body).unwrap(),
            json!({ "apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": { "name": "c", "namespace": "ns", "labels": { "app": "x" } },
                    "data": { "k": "v" } })
        );
    }

    #[test]
    fn refuses_kinds_it_cannot_decode() {
        let type_meta = [field(1, b"apps/v1"), field(2, b"Deployment")].concat();
        let body = [
            b"k8s\0".to_vec(),
            field(1, &type_meta),
            field(2, &field(2, b"x")),
        ]
        .concat();
        assert!(decode(&body).unwrap_err().contains("apps/v1 Deployment"));
    }
}
