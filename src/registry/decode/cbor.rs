//! CBOR (RFC 8949) values as Kubernetes 1.32+ may store them, to JSON: the self-described
//! tag 55799 first, maps with string keys, and strings that Kubernetes writes as byte strings
//! (read as text when they are UTF-8, as base64 otherwise). Other tags are read through.

use base64::Engine;
use serde_json::{Map, Number, Value};

const MAX_DEPTH: usize = 100;

/// Decodes one CBOR data item that fills `b`.
pub fn decode(b: &[u8]) -> Result<Value, String> {
    let mut r = Reader { b, at: 0 };
    let v = r.item(0)?;
    if r.at != b.len() {
        return Err(format!("{} bytes follow the value", b.len() - r.at));
    }
    Ok(v)
}

struct Reader<'b> {
    b: &'b [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let v = *self
            .b
            .get(self.at)
            .ok_or("it ends in the middle of a value")?;
        self.at += 1;
        Ok(v)
    }

    fn take(&mut self, n: u64) -> Result<&[u8], String> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.at.checked_add(n))
            .filter(|&e| e <= self.b.len())
            .ok_or("a string runs past the end")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// The argument of an initial byte's additional information; `None` for indefinite.
    fn argument(&mut self, info: u8) -> Result<Option<u64>, String> {
        Ok(Some(match info {
            0..=23 => info as u64,
            24 => self.byte()? as u64,
            25 => u16::from_be_bytes(self.take(2)?.try_into().unwrap()) as u64,
            26 => u32::from_be_bytes(self.take(4)?.try_into().unwrap()) as u64,
            27 => u64::from_be_bytes(self.take(8)?.try_into().unwrap()),
            31 => return Ok(None),
            _ => return Err(format!("additional information {info} is reserved")),
        }))
    }

    fn item(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err("values are nested more than 100 deep".into());
        }
        let initial = self.byte()?;
        let (major, info) = (initial >> 5, initial & 0x1f);
        match major {
            0 => Ok(Value::from(
                self.argument(info)?.ok_or("an indefinite integer")?,
            )),
            1 => {
                let n = self.argument(info)?.ok_or("an indefinite integer")?;
                Ok(i64::try_from(n)
                    .map_or_else(|_| Value::from(-1.0 - n as f64), |n| Value::from(-1 - n)))
            }
            2 | 3 => {
                let bytes = match self.argument(info)? {
                    Some(n) => self.take(n)?.to_vec(),
                    None => {
                        let mut all = Vec::new();
                        loop {
                            if self.b.get(self.at) == Some(&0xff) {
                                self.at += 1;
                                break;
                            }
                            let chunk = self.byte()?;
                            if chunk >> 5 != major {
                                return Err("a string chunk of another type".into());
                            }
                            let n = self
                                .argument(chunk & 0x1f)?
                                .ok_or("a nested indefinite string")?;
                            all.extend_from_slice(self.take(n)?);
                        }
                        all
                    }
                };
                Ok(match String::from_utf8(bytes) {
                    Ok(s) => Value::String(s),
                    Err(e) if major == 2 => Value::String(
                        base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
                    ),
                    Err(_) => return Err("a text string is not UTF-8".into()),
                })
            }
            4 => {
                let mut out = Vec::new();
                match self.argument(info)? {
                    Some(n) => {
                        for _ in 0..n {
                            out.push(self.item(depth + 1)?);
                        }
                    }
                    None => {
                        while self.b.get(self.at) != Some(&0xff) {
                            out.push(self.item(depth + 1)?);
                        }
                        self.at += 1;
                    }
                }
                Ok(Value::Array(out))
            }
            5 => {
                let mut out = Map::new();
                let n = self.argument(info)?;
                let mut i = 0u64;
                loop {
                    match n {
                        Some(n) if i == n => break,
                        None if self.b.get(self.at) == Some(&0xff) => {
                            self.at += 1;
                            break;
                        }
                        _ => {}
                    }
                    let key = match self.item(depth + 1)? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    let value = self.item(depth + 1)?;
                    out.insert(key, value);
                    i += 1;
                }
                Ok(Value::Object(out))
            }
            6 => {
                self.argument(info)?.ok_or("an indefinite tag")?;
                self.item(depth + 1)
            }
            _ => match info {
                20 => Ok(Value::Bool(false)),
                21 => Ok(Value::Bool(true)),
                22 | 23 => Ok(Value::Null),
                25 => {
                    let h = u16::from_be_bytes(self.take(2)?.try_into().unwrap());
                    Ok(float(half(h)))
                }
                26 => {
                    let f = f32::from_be_bytes(self.take(4)?.try_into().unwrap());
                    Ok(float(f as f64))
                }
                27 => {
                    let f = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    Ok(float(f))
                }
                _ => Err(format!("simple value {info} has no JSON form")),
            },
        }
    }
}

fn float(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        Value::from(f as i64)
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// An IEEE 754 half-precision float.
fn half(h: u16) -> f64 {
    let exp = (h >> 10) & 0x1f;
    let mant = (h & 0x3ff) as f64;
    let v = match exp {
        0 => mant * 2f64.powi(-24),
        31 => {
            if mant == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        e => (1.0 + mant / 1024.0) * 2f64.powi(e as i32 - 15),
    };
    if h & 0x8000 != 0 { -v } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc8949_examples_decode() {
        // From RFC 8949, appendix A.
        assert_eq!(decode(&[0x00]).unwrap(), json!(0));
        assert_eq!(decode(&[0x18, 0x64]).unwrap(), json!(100));
        assert_eq!(decode(&[0x39, 0x03, 0xe7]).unwrap(), json!(-1000));
        assert_eq!(decode(&[0xf9, 0x3e, 0x00]).unwrap(), json!(1.5));
        assert_eq!(
            decode(&[0xfb, 0x3f, 0xf1, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a]).unwrap(),
            json!(1.1)
        );
        assert_eq!(
            decode(&[0x64, 0x49, 0x45, 0x54, 0x46]).unwrap(),
            json!("IETF")
        );
        assert_eq!(decode(&[0x83, 0x01, 0x02, 0x03]).unwrap(), json!([1, 2, 3]));
        assert_eq!(
            decode(&[0xa2, 0x61, 0x61, 0x01, 0x61, 0x62, 0x82, 0x02, 0x03]).unwrap(),
            json!({"a": 1, "b": [2, 3]})
        );
        // Indefinite-length array and map.
        assert_eq!(decode(&[0x9f, 0x01, 0x02, 0xff]).unwrap(), json!([1, 2]));
        assert_eq!(
            decode(&[0xbf, 0x61, 0x61, 0xf5, 0xff]).unwrap(),
            json!({"a": true})
        );
        assert_eq!(decode(&[0xf6]).unwrap(), Value::Null);
    }

    #[test]
    fn kubernetes_byte_strings_read_as_text_behind_the_self_described_tag() {
        // 55799({ h'6b696e64': h'436f6e6669674d6170' }) = {"kind": "ConfigMap"}
        let mut b = vec![0xd9, 0xd9, 0xf7, 0xa1, 0x44];
        b.extend(b"kind");
        b.push(0x49);
        b.extend(b"ConfigMap");
        assert_eq!(decode(&b).unwrap(), json!({"kind": "ConfigMap"}));
        // Bytes that are not UTF-8 stay bytes, as base64.
        assert_eq!(decode(&[0x42, 0xff, 0x00]).unwrap(), json!("/wA="));
    }

    #[test]
    fn damaged_cbor_is_an_error() {
        assert!(decode(&[0x83, 0x01]).is_err());
        assert!(decode(&[0x01, 0x02]).is_err());
        assert!(decode(&[0x1c]).is_err());
        assert!(decode(&[0x7f, 0x41, 0x00, 0xff]).is_err());
    }
}
