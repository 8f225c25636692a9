//! Protobuf values decoded by the generated schema (`k8s-schema.json`), reproducing Go's JSON:
//! gogo protobuf writes every non-pointer scalar field, even when zero, and pointer fields only
//! when set; Go's JSON then leaves a zero value out only on a non-pointer field with
//! `omitempty`. So a zero survives on a pointer field (`allowPrivilegeEscalation: false`,
//! `replicas: 0`) and on a field without `omitempty`, and is left out otherwise. Messages are
//! written whenever they are present; lists and maps when not empty. The types with their own
//! JSON form (Time, MicroTime, Duration, Quantity, IntOrString, RawExtension, JSON, FieldsV1,
//! the JSONSchemaProps unions, named slices) are handled by name.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine;
use serde_json::{Map, Number, Value};

/// The generated table, parsed once.
static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
    Schema::parse(include_str!("k8s-schema.json")).expect("the generated k8s-schema.json parses")
});

struct Schema {
    kinds: HashMap<String, usize>,
    messages: Vec<Message>,
}

struct Message {
    name: String,
    shape: Shape,
}

enum Shape {
    Fields(HashMap<u32, Field>),
    /// A Go named slice: one repeated `items` field, a JSON array.
    List(Type),
    Special(Special, HashMap<u32, Field>),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Special {
    Time,
    MicroTime,
    Duration,
    Quantity,
    IntOrString,
    Raw,
    PropsOrArray,
    PropsOrBool,
    PropsOrStringArray,
}

struct Field {
    number: u32,
    json: String,
    ty: Type,
    key: Option<Type>,
    repeated: bool,
    pointer: bool,
    omitempty: bool,
    inline: bool,
}

#[derive(Clone, Copy, Debug)]
enum Type {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Double,
    Float,
    Message(usize),
    /// A message the schema does not hold.
    Missing,
}

/// The file as generated.
#[derive(serde::Deserialize)]
struct Raw {
    kinds: HashMap<String, String>,
    messages: HashMap<String, RawMessage>,
}

#[derive(serde::Deserialize)]
struct RawMessage {
    #[serde(default)]
    fields: Vec<Value>,
    list: Option<String>,
}

impl Schema {
    fn parse(text: &str) -> Result<Schema, String> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut names: Vec<&String> = raw.messages.keys().collect();
        names.sort();
        let index: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let ty = |t: &str| -> Type {
            match t {
                "string" => Type::String,
                "bytes" => Type::Bytes,
                "bool" => Type::Bool,
                "int32" | "sint32" | "sfixed32" => Type::Int32,
                "int64" | "sint64" | "sfixed64" => Type::Int64,
                "uint32" | "fixed32" => Type::Uint32,
                "uint64" | "fixed64" => Type::Uint64,
                "double" => Type::Double,
                "float" => Type::Float,
                m => index.get(m).map_or(Type::Missing, |&i| Type::Message(i)),
            }
        };
        let mut messages = Vec::with_capacity(names.len());
        for name in &names {
            let m = &raw.messages[*name];
            let shape = if let Some(item) = &m.list {
                Shape::List(ty(item))
            } else {
                let mut fields = HashMap::new();
                for f in &m.fields {
                    let a = f.as_array().ok_or("a field is not a list")?;
                    let number = a.first().and_then(Value::as_u64).ok_or("no number")? as u32;
                    let json = a.get(1).and_then(Value::as_str).ok_or("no name")?;
                    let t = a.get(2).and_then(Value::as_str).ok_or("no type")?;
                    let flags = a.get(3).and_then(Value::as_u64).ok_or("no flags")?;
                    let key = a.get(4).and_then(Value::as_str).map(ty);
                    fields.insert(
                        number,
                        Field {
                            number,
                            json: json.to_string(),
                            ty: ty(t),
                            key,
                            repeated: flags & 1 != 0,
                            pointer: flags & 4 != 0,
                            omitempty: flags & 8 != 0,
                            inline: flags & 16 != 0,
                        },
                    );
                }
                match special(name) {
                    Some(s) => Shape::Special(s, fields),
                    None => Shape::Fields(fields),
                }
            };
            messages.push(Message {
                name: name.to_string(),
                shape,
            });
        }
        let kinds = raw
            .kinds
            .iter()
            .filter_map(|(k, m)| index.get(m.as_str()).map(|&i| (k.clone(), i)))
            .collect();
        Ok(Schema { kinds, messages })
    }
}

fn special(name: &str) -> Option<Special> {
    let (package, short) = name.rsplit_once('.')?;
    Some(match (package, short) {
        ("k8s.io.apimachinery.pkg.apis.meta.v1", "Time") => Special::Time,
        ("k8s.io.apimachinery.pkg.apis.meta.v1", "MicroTime") => Special::MicroTime,
        ("k8s.io.apimachinery.pkg.apis.meta.v1", "Duration") => Special::Duration,
        ("k8s.io.apimachinery.pkg.apis.meta.v1", "FieldsV1") => Special::Raw,
        ("k8s.io.apimachinery.pkg.api.resource", "Quantity" | "QuantityValue") => Special::Quantity,
        ("k8s.io.apimachinery.pkg.util.intstr", "IntOrString") => Special::IntOrString,
        ("k8s.io.apimachinery.pkg.runtime", "RawExtension") => Special::Raw,
        (p, "JSON") if p.starts_with("k8s.io.apiextensions_apiserver.") => Special::Raw,
        (p, "JSONSchemaPropsOrArray") if p.starts_with("k8s.io.apiextensions_apiserver.") => {
            Special::PropsOrArray
        }
        (p, "JSONSchemaPropsOrBool") if p.starts_with("k8s.io.apiextensions_apiserver.") => {
            Special::PropsOrBool
        }
        (p, "JSONSchemaPropsOrStringArray") if p.starts_with("k8s.io.apiextensions_apiserver.") => {
            Special::PropsOrStringArray
        }
        _ => return None,
    })
}

/// The message of (apiVersion, kind), if the schema knows it.
pub fn kind(api_version: &str, kind: &str) -> Option<usize> {
    SCHEMA.kinds.get(&format!("{api_version} {kind}")).copied()
}

/// The runtime.Unknown envelope.
pub struct Unknown<'b> {
    pub api_version: String,
    pub kind: String,
    pub raw: &'b [u8],
    pub content_encoding: String,
}

/// Parses the envelope after `k8s\0`.
pub fn envelope(b: &[u8]) -> Result<Unknown<'_>, String> {
    let mut u = Unknown {
        api_version: String::new(),
        kind: String::new(),
        raw: &[],
        content_encoding: String::new(),
    };
    for f in Wire::new(b) {
        match f? {
            (1, Value_::Bytes(tm)) => {
                for f in Wire::new(tm) {
                    match f? {
                        (1, Value_::Bytes(v)) => u.api_version = text(v),
                        (2, Value_::Bytes(v)) => u.kind = text(v),
                        _ => {}
                    }
                }
            }
            (2, Value_::Bytes(v)) => u.raw = v,
            (3, Value_::Bytes(v)) => u.content_encoding = text(v),
            _ => {}
        }
    }
    if u.api_version.is_empty() || u.kind.is_empty() {
        return Err("the envelope names no apiVersion or kind".into());
    }
    Ok(u)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// One field's wire value.
enum Value_<'b> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'b [u8]),
}

/// The fields of a message, in wire order.
struct Wire<'b> {
    b: &'b [u8],
    at: usize,
}

impl<'b> Wire<'b> {
    fn new(b: &'b [u8]) -> Wire<'b> {
        Wire { b, at: 0 }
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.at).ok_or("a varint runs past the end")?;
            self.at += 1;
            v |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a varint is longer than 10 bytes".into())
    }

    fn slice(&mut self, n: usize) -> Result<&'b [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or("a field runs past the end")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
}

impl<'b> Iterator for Wire<'b> {
    type Item = Result<(u32, Value_<'b>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.b.len() {
            return None;
        }
        let r = (|| {
            let tag = self.varint()?;
            let number = (tag >> 3) as u32;
            let v = match tag & 7 {
                0 => Value_::Varint(self.varint()?),
                1 => Value_::Fixed64(u64::from_le_bytes(self.slice(8)?.try_into().unwrap())),
                2 => {
                    let n = self.varint()? as usize;
                    Value_::Bytes(self.slice(n)?)
                }
                5 => Value_::Fixed32(u32::from_le_bytes(self.slice(4)?.try_into().unwrap())),
                w => {
                    return Err(format!(
                        "wire type {w} of field {number} is not used by Kubernetes"
                    ));
                }
            };
            Ok((number, v))
        })();
        if r.is_err() {
            self.at = self.b.len();
        }
        Some(r)
    }
}

/// The JSON of message `index` encoded in `b`.
pub fn message(b: &[u8], index: usize, warnings: &mut Vec<String>) -> Result<Value, String> {
    decode_message(&SCHEMA, b, index, warnings, 0)
}

const MAX_DEPTH: usize = 100;

fn decode_message(
    schema: &Schema,
    b: &[u8],
    index: usize,
    warnings: &mut Vec<String>,
    depth: usize,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("messages are nested more than 100 deep".into());
    }
    let m = &schema.messages[index];
    let fields = match &m.shape {
        Shape::List(item) => {
            let mut out = Vec::new();
            for f in Wire::new(b) {
                let (n, v) = f?;
                if n == 1 {
                    scalar_or_message(schema, *item, v, warnings, depth, &mut out)?;
                }
            }
            return Ok(Value::Array(out));
        }
        Shape::Special(s, fields) => return special_value(schema, *s, fields, b, warnings, depth),
        Shape::Fields(fields) => fields,
    };
    let mut present: Vec<(u32, Value)> = Vec::new();
    let mut lists: HashMap<u32, Vec<Value>> = HashMap::new();
    let mut maps: HashMap<u32, Map<String, Value>> = HashMap::new();
    let mut unknown: Vec<u32> = Vec::new();
    for f in Wire::new(b) {
        let (n, v) = f?;
        let Some(field) = fields.get(&n) else {
            if !unknown.contains(&n) {
                unknown.push(n);
            }
            continue;
        };
        if let Some(key_type) = field.key {
            let Value_::Bytes(entry) = v else {
                return Err(format!("{}.{} is not a map entry", m.name, field.json));
            };
            let (mut key, mut value) = (None, None);
            for e in Wire::new(entry) {
                let mut one = Vec::new();
                match e? {
                    (1, v) => {
                        scalar_or_message(schema, key_type, v, warnings, depth, &mut one)?;
                        key = one.pop();
                    }
                    (2, v) => {
                        scalar_or_message(schema, field.ty, v, warnings, depth, &mut one)?;
                        value = one.pop();
                    }
                    _ => {}
                }
            }
            let key = match key {
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => String::new(),
            };
            let value = value.unwrap_or_else(|| zero(schema, field.ty));
            maps.entry(n).or_default().insert(key, value);
        } else if field.repeated {
            let list = lists.entry(n).or_default();
            scalar_or_message(schema, field.ty, v, warnings, depth, list)?;
        } else {
            let mut one = Vec::new();
            scalar_or_message(schema, field.ty, v, warnings, depth, &mut one)?;
            if let Some(v) = one.pop() {
                present.retain(|(k, _)| *k != n);
                present.push((n, v));
            }
        }
    }
    for n in unknown {
        warnings.push(format!(
            "field {n} of {} is not in lifeboat's Kubernetes schema (the cluster runs a newer Kubernetes than the schema's sources); it is left out",
            m.name
        ));
    }
    let mut numbered: Vec<(u32, Value)> = present;
    numbered.extend(lists.into_iter().map(|(n, l)| (n, Value::Array(l))));
    numbered.extend(maps.into_iter().map(|(n, m)| (n, Value::Object(m))));
    numbered.sort_by_key(|(n, _)| *n);
    let mut out = Map::new();
    for (n, v) in numbered {
        let field = &fields[&n];
        let scalar = !matches!(field.ty, Type::Message(_) | Type::Missing);
        let empty_list = match &v {
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty() && (field.repeated || field.key.is_some()),
            _ => false,
        };
        if (field.repeated || field.key.is_some()) && empty_list {
            continue;
        }
        if scalar && !field.repeated && !field.pointer && field.omitempty && is_zero(&v) {
            continue;
        }
        if field.inline
            && let Value::Object(inner) = v
        {
            out.extend(inner);
            continue;
        }
        out.insert(field.json.clone(), v);
    }
    debug_assert!(fields.values().all(|f| f.number > 0));
    Ok(Value::Object(out))
}

/// Decodes one wire value of `ty` into `out` (several for a packed list).
fn scalar_or_message(
    schema: &Schema,
    ty: Type,
    v: Value_<'_>,
    warnings: &mut Vec<String>,
    depth: usize,
    out: &mut Vec<Value>,
) -> Result<(), String> {
    match (ty, v) {
        (Type::String, Value_::Bytes(b)) => out.push(Value::String(text(b))),
        (Type::Bytes, Value_::Bytes(b)) => out.push(Value::String(
            base64::engine::general_purpose::STANDARD.encode(b),
        )),
        (Type::Message(i), Value_::Bytes(b)) => {
            out.push(decode_message(schema, b, i, warnings, depth + 1)?)
        }
        (Type::Missing, _) => {
            return Err("a field's message type is not in lifeboat's schema".into());
        }
        (t, Value_::Varint(x)) => out.push(varint_value(t, x)?),
        (Type::Double, Value_::Fixed64(x)) => out.push(float(f64::from_bits(x))),
        (Type::Uint64 | Type::Int64, Value_::Fixed64(x)) => out.push(Value::from(x as i64)),
        (Type::Float, Value_::Fixed32(x)) => out.push(float(f32::from_bits(x) as f64)),
        (Type::Uint32 | Type::Int32, Value_::Fixed32(x)) => out.push(Value::from(x as i32)),
        // A packed list of numbers.
        (t, Value_::Bytes(b)) => {
            let mut w = Wire::new(b);
            while w.at < b.len() {
                match t {
                    Type::Double => out.push(float(f64::from_bits(u64::from_le_bytes(
                        w.slice(8)?.try_into().unwrap(),
                    )))),
                    Type::Float => out.push(float(f32::from_bits(u32::from_le_bytes(
                        w.slice(4)?.try_into().unwrap(),
                    )) as f64)),
                    _ => out.push(varint_value(t, w.varint()?)?),
                }
            }
        }
        (t, _) => return Err(format!("a {t:?} field has the wrong wire type")),
    }
    Ok(())
}

fn varint_value(t: Type, x: u64) -> Result<Value, String> {
    Ok(match t {
        Type::Bool => Value::Bool(x != 0),
        Type::Int32 => Value::from(x as i64 as i32),
        Type::Int64 => Value::from(x as i64),
        Type::Uint32 => Value::from(x as u32),
        Type::Uint64 => Value::from(x),
        t => return Err(format!("a {t:?} field holds a varint")),
    })
}

/// A float as Go's JSON writes it: integral values without a fraction.
fn float(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        Value::from(f as i64)
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Null => true,
        _ => false,
    }
}

/// The JSON of a map value the entry left out (its zero value).
fn zero(schema: &Schema, t: Type) -> Value {
    match t {
        Type::String | Type::Bytes => Value::String(String::new()),
        Type::Bool => Value::Bool(false),
        Type::Message(i) => {
            decode_message(schema, &[], i, &mut Vec::new(), 0).unwrap_or(Value::Null)
        }
        Type::Missing => Value::Null,
        _ => Value::from(0),
    }
}

/// The fields of a special message by number, raw.
fn raw_fields(b: &[u8]) -> Result<HashMap<u32, Vec<Value_<'_>>>, String> {
    let mut out: HashMap<u32, Vec<Value_<'_>>> = HashMap::new();
    for f in Wire::new(b) {
        let (n, v) = f?;
        out.entry(n).or_default().push(v);
    }
    Ok(out)
}

fn special_value(
    schema: &Schema,
    s: Special,
    fields: &HashMap<u32, Field>,
    b: &[u8],
    warnings: &mut Vec<String>,
    depth: usize,
) -> Result<Value, String> {
    let mut raw = raw_fields(b)?;
    let int = |raw: &mut HashMap<u32, Vec<Value_<'_>>>, n: u32| -> i64 {
        match raw.get_mut(&n).and_then(|v| v.pop()) {
            Some(Value_::Varint(x)) => x as i64,
            _ => 0,
        }
    };
    fn bytes(raw: &mut HashMap<u32, Vec<Value_<'_>>>, n: u32) -> Option<Vec<u8>> {
        match raw.get_mut(&n).and_then(|v| v.pop()) {
            Some(Value_::Bytes(x)) => Some(x.to_vec()),
            _ => None,
        }
    }
    Ok(match s {
        Special::Time | Special::MicroTime => {
            if raw.is_empty() {
                return Ok(Value::Null);
            }
            let seconds = int(&mut raw, 1);
            let nanos = int(&mut raw, 2);
            let t = chrono::DateTime::from_timestamp(seconds, nanos.clamp(0, 999_999_999) as u32)
                .ok_or_else(|| format!("time {seconds}s is out of range"))?;
            Value::String(if s == Special::Time {
                t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            } else {
                t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
            })
        }
        Special::Duration => Value::String(go_duration(int(&mut raw, 1))),
        Special::Quantity => match bytes(&mut raw, 1) {
            Some(q) if !q.is_empty() => Value::String(text(&q)),
            _ => Value::String("0".into()),
        },
        Special::IntOrString => {
            let kind = int(&mut raw, 1);
            let i = int(&mut raw, 2);
            let st = bytes(&mut raw, 3).map(|b| text(&b)).unwrap_or_default();
            if kind == 1 {
                Value::String(st)
            } else {
                Value::from(i as i32)
            }
        }
        Special::Raw => match bytes(&mut raw, 1) {
            None => Value::Null,
            Some(r) if r.is_empty() => Value::Null,
            Some(r) => serde_json::from_slice(&r).unwrap_or_else(|e| {
                warnings.push(format!(
                    "an embedded raw value is not JSON ({e}); it is kept as base64"
                ));
                Value::String(base64::engine::general_purpose::STANDARD.encode(&r))
            }),
        },
        Special::PropsOrArray | Special::PropsOrBool | Special::PropsOrStringArray => {
            // The schema variant is field 1 (OrArray, OrStringArray) or 2 (OrBool).
            let schema_field = if s == Special::PropsOrBool { 2 } else { 1 };
            let props = fields.get(&schema_field).map(|f| f.ty);
            if let (Some(Type::Message(i)), Some(Value_::Bytes(sb))) =
                (props, raw.get_mut(&schema_field).and_then(|v| v.pop()))
            {
                return decode_message(schema, sb, i, warnings, depth + 1);
            }
            match s {
                Special::PropsOrBool => Value::Bool(int(&mut raw, 1) != 0),
                Special::PropsOrArray => {
                    let mut out = Vec::new();
                    if let Some(Type::Message(i)) = fields.get(&2).map(|f| f.ty) {
                        for v in raw.remove(&2).unwrap_or_default() {
                            if let Value_::Bytes(sb) = v {
                                out.push(decode_message(schema, sb, i, warnings, depth + 1)?);
                            }
                        }
                    }
                    Value::Array(out)
                }
                _ => Value::Array(
                    raw.remove(&2)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|v| match v {
                            Value_::Bytes(b) => Some(Value::String(text(b))),
                            _ => None,
                        })
                        .collect(),
                ),
            }
        }
    })
}

/// A duration in nanoseconds as Go's `time.Duration.String` writes it: `1h2m3.5s`, `300ms`.
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let negative = nanos < 0;
    let mut n = nanos.unsigned_abs();
    let sign = if negative { "-" } else { "" };
    if n < 1_000_000_000 {
        // Below a second: the largest unit that keeps an integer part.
        let (unit, scale) = if n < 1_000 {
            ("ns", 1)
        } else if n < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", fraction(n, scale));
    }
    let hours = n / 3_600_000_000_000;
    n %= 3_600_000_000_000;
    let minutes = n / 60_000_000_000;
    n %= 60_000_000_000;
    let mut out = sign.to_string();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&format!("{}s", fraction(n, 1_000_000_000)));
    out
}

/// `n / scale` with its fraction, trailing zeros dropped.
fn fraction(n: u64, scale: u64) -> String {
    let whole = n / scale;
    let rest = n % scale;
    if rest == 0 {
        return whole.to_string();
    }
    let digits = scale.ilog10() as usize;
    let frac = format!("{rest:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
pub(super) fn schema_sources() -> Vec<String> {
    let raw: Value = serde_json::from_str(include_str!("k8s-schema.json")).unwrap();
    raw["sources"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}@{v}"))
        .collect()
}
