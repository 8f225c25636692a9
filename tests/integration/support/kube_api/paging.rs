//! LIST with `limit` and `continue`, label and field selectors. The first page of a chunked list
//! freezes a snapshot (like etcd serving later pages at the first page's revision); the continue
//! token names that snapshot and the next key. Tokens expire when a test says so
//! (`expire_continue_tokens`, `expire_continue_after`) or when old snapshots are evicted, and an
//! expired token gets `410 Expired` carrying an inconsistent continue token, as the real server
//! does after an etcd compaction.
//!
//! A test can make one resource's lists come in another order than etcd's key order
//! ([`ListOrder`], like an aggregated API server or a proxy), and make every continuation page
//! repeat the previous page's last object. The continue token then names a position in the
//! reordered snapshot instead of a key.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::format::{base64_decode, base64url_encode};
use super::resources::ResourceDef;
use super::status::ApiError;
use super::store::State;

/// How many snapshots are kept before the oldest tokens expire on their own.
const MAX_SNAPSHOTS: usize = 256;

/// The real server's message for a continue token older than the compacted revision.
pub(super) const EXPIRED: &str = "The provided continue parameter is too old to display a consistent list \
                       result. You can start a new list without the continue parameter, or use \
                       the continue value from the response.";

/// The order a resource's lists come in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListOrder {
    /// etcd key order, as the real server lists.
    Key,
    /// Reverse key order.
    Reversed,
    /// A different pseudo-random order for every list (pages of one list follow one order),
    /// like a server that changes its order between lists.
    Shuffled,
    /// A different pseudo-random order for every page, continuing at the same position: a
    /// broken server whose pages repeat some objects and never show others, while the first
    /// page's `remainingItemCount` still tells how many there are.
    ShuffledEveryPage,
}

/// How one resource's lists misbehave.
#[derive(Clone, Debug)]
struct Quirk {
    /// As the test named it: `secrets`, `deployments.apps`.
    resource: String,
    order: ListOrder,
    /// Every continuation page starts with the previous page's last object again.
    repeat_last: bool,
}

/// Paging state: snapshots of chunked lists and the test-controlled expiry rules.
#[derive(Default)]
pub(super) struct Paging {
    quirks: Vec<Quirk>,
    next_id: u64,
    list_calls: u64,
    /// Snapshots from before the latest `expire_all` are expired.
    epoch: u64,
    /// A token expires once this many other LIST calls ran after it was issued.
    ttl: Option<u64>,
    snapshots: BTreeMap<u64, Snapshot>,
}

struct Snapshot {
    /// Resource, namespace and selectors: a token only continues the list it came from.
    scope: String,
    rv: u64,
    epoch: u64,
    items: Arc<Vec<(String, Arc<Value>)>>,
}

impl Paging {
    /// Expires every continue token issued so far (like an etcd compaction).
    pub(super) fn expire_all(&mut self) {
        self.epoch += 1;
        self.snapshots.clear();
    }

    /// Makes tokens expire once `n` other LIST calls ran after they were issued; `None` never.
    pub(super) fn set_ttl(&mut self, n: Option<u64>) {
        self.ttl = n;
    }

    /// How many LIST calls the server has answered (pages included).
    pub(super) fn list_calls(&self) -> u64 {
        self.list_calls
    }

    fn quirk_mut(&mut self, resource: &str) -> &mut Quirk {
        let pos = match self.quirks.iter().position(|q| q.resource == resource) {
            Some(pos) => pos,
            None => {
                self.quirks.push(Quirk {
                    resource: resource.to_string(),
                    order: ListOrder::Key,
                    repeat_last: false,
                });
                self.quirks.len() - 1
            }
        };
        &mut self.quirks[pos]
    }

    /// Lists of `resource` come in `order` from now on.
    pub(super) fn set_order(&mut self, resource: &str, order: ListOrder) {
        self.quirk_mut(resource).order = order;
    }

    /// Continuation pages of `resource` start with the previous page's last object again.
    pub(super) fn set_repeat_last(&mut self, resource: &str, on: bool) {
        self.quirk_mut(resource).repeat_last = on;
    }

    fn quirk(&self, def: &ResourceDef) -> Option<&Quirk> {
        self.quirks
            .iter()
            .find(|q| q.resource == def.key() || q.resource == def.plural)
    }
}

/// A pseudo-random but reproducible rank of `key` in the shuffle numbered `seed`.
fn shuffle_rank(seed: u64, key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (seed, key).hash(&mut h);
    h.finish()
}

/// Reorders items (in key order, or already reordered) and keys them by position, so paging by
/// "the first key at or after the token's" walks the new order.
fn reorder(
    items: &[(String, Arc<Value>)],
    order: ListOrder,
    seed: u64,
) -> Vec<(String, Arc<Value>)> {
    let mut out: Vec<(String, Arc<Value>)> = items.to_vec();
    let name = |v: &Value| {
        format!(
            "{}/{}",
            v["metadata"]["namespace"].as_str().unwrap_or_default(),
            v["metadata"]["name"].as_str().unwrap_or_default()
        )
    };
    match order {
        ListOrder::Key => return out,
        ListOrder::Reversed => out.reverse(),
        ListOrder::Shuffled | ListOrder::ShuffledEveryPage => {
            out.sort_by_key(|(_, v)| shuffle_rank(seed, &name(v)))
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, (_, v))| (format!("{i:010}"), v))
        .collect()
}

/// The decoded continue token.
#[derive(Debug)]
struct Token {
    rv: i64,
    start: String,
    snapshot: Option<u64>,
    issued_at: u64,
}

fn encode_token(rv: i64, start: &str, snapshot: Option<u64>, issued_at: u64) -> String {
    let mut t = json!({ "v": "meta.k8s.io/v1", "rv": rv, "start": start, "at": issued_at });
    if let Some(s) = snapshot {
        t["snap"] = json!(s);
    }
    base64url_encode(t.to_string().as_bytes())
}

fn decode_token(token: &str) -> Result<Token, ApiError> {
    let invalid = |why: &str| ApiError::bad_request(format!("continue key is not valid: {why}"));
    let bytes = base64_decode(token).ok_or_else(|| invalid("illegal base64 data"))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| invalid("not a JSON token"))?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(invalid(
            "incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        ));
    }
    Ok(Token {
        rv: v["rv"].as_i64().ok_or_else(|| invalid("missing rv"))?,
        start: v["start"]
            .as_str()
            .ok_or_else(|| invalid("missing start"))?
            .to_string(),
        snapshot: v["snap"].as_u64(),
        issued_at: v["at"].as_u64().unwrap_or(0),
    })
}

/// One requirement of a label selector.
#[derive(Debug, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` (equality- and set-based).
#[derive(Debug, Default, PartialEq)]
pub(super) struct Selector(Vec<Requirement>);

impl Selector {
    pub(super) fn parse(s: &str) -> Result<Self, ApiError> {
        let mut parts = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[start..]);
        let bad = |p: &str| ApiError::bad_request(format!("unable to parse requirement: \"{p}\""));
        let set = |v: &str| -> Vec<String> {
            v.trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(|x| x.trim().to_string())
                .collect()
        };
        let mut reqs = Vec::new();
        for p in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
            let req = if let Some((k, v)) = p.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = p.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set(v))
            } else if let Some((k, v)) = p.split_once(" in ") {
                Requirement::In(k.trim().into(), set(v))
            } else if let Some(k) = p.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else if p.contains(' ') || p.contains('(') {
                return Err(bad(p));
            } else {
                Requirement::Exists(p.into())
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn matches(&self, obj: &Value) -> bool {
        let labels = &obj["metadata"]["labels"];
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v),
            Requirement::NotEquals(k, v) => get(k) != Some(v),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Field paths every resource can be filtered by.
const COMMON_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// Extra field paths the real server supports for some resources.
fn extra_fields(def: &ResourceDef) -> &'static [&'static str] {
    match (def.group.as_str(), def.plural.as_str()) {
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        ("", "secrets") => &["type"],
        ("", "namespaces") => &["status.phase"],
        ("", "nodes") => &["spec.unschedulable"],
        _ => &[],
    }
}

/// A parsed `fieldSelector` (`=`, `==`, `!=`) over the fields the real server indexes.
#[derive(Debug, Default)]
pub(super) struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub(super) fn parse(s: &str, def: &ResourceDef) -> Result<Self, ApiError> {
        let mut out = Vec::new();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((k, v)) = p.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{p}'; can't understand '{p}'"
                )));
            };
            if !COMMON_FIELDS.contains(&field) && !extra_fields(def).contains(&field) {
                return Err(ApiError::bad_request(format!(
                    "\"{field}\" is not a known field selector: only \"{}\"",
                    COMMON_FIELDS
                        .iter()
                        .chain(extra_fields(def))
                        .copied()
                        .collect::<Vec<_>>()
                        .join("\", \"")
                )));
            }
            out.push((field.to_string(), equal, value.to_string()));
        }
        Ok(FieldSelector(out))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let v = field.split('.').fold(obj, |cur, k| &cur[k]);
            let actual = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Object(m) if field == "source" => m
                    .get("component")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                other => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

/// What a LIST call asks for.
pub(super) struct ListRequest<'a> {
    pub def: &'a ResourceDef,
    pub namespace: Option<&'a str>,
    pub limit: Option<usize>,
    pub continue_token: Option<&'a str>,
    pub labels: Selector,
    pub fields: FieldSelector,
    /// The raw selector strings, so a token is bound to the same query.
    pub selector_text: String,
}

/// One page of a list.
pub(super) struct Page {
    pub items: Vec<Arc<Value>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// Serves one LIST call (a first page or a continuation).
pub(super) fn list(state: &mut State, req: &ListRequest<'_>) -> Result<Page, ApiError> {
    state.paging.list_calls += 1;
    let now = state.paging.list_calls;
    let scope = format!(
        "{}|{}|{}",
        req.def.key(),
        req.namespace.unwrap_or_default(),
        req.selector_text
    );
    let (items, rv, start) = match req.continue_token {
        Some(raw) => {
            let token = decode_token(raw)?;
            let paging = &state.paging;
            let snapshot = token
                .snapshot
                .and_then(|id| paging.snapshots.get(&id).map(|s| (id, s)));
            let expired_by_ttl = paging
                .ttl
                .is_some_and(|ttl| now.saturating_sub(token.issued_at + 1) >= ttl);
            match snapshot {
                Some((id, s)) if s.epoch == paging.epoch && !expired_by_ttl => {
                    if s.scope != scope {
                        return Err(ApiError::bad_request(
                            "continue key is not valid: the token belongs to a different list",
                        ));
                    }
                    (Arc::clone(&s.items), s.rv, (token.start, Some(id)))
                }
                _ if token.rv >= 0 => {
                    let fresh = encode_token(-1, &token.start, None, now);
                    return Err(ApiError::expired(EXPIRED, Some(fresh)));
                }
                // An inconsistent token (rv -1): continue from the key in the current state.
                _ => (
                    Arc::new(live(state, req)),
                    state.current_rv(),
                    (token.start, None),
                ),
            }
        }
        None => (
            Arc::new(live(state, req)),
            state.current_rv(),
            (String::new(), None),
        ),
    };
    let (start_key, snapshot_id) = start;
    let quirk = state.paging.quirk(req.def).cloned();
    let is_continue = req.continue_token.is_some();
    let mut items = items;
    if let Some(q) = &quirk {
        // A fresh list (or one continued from the live state) is reordered; a snapshot already
        // is, unless its order changes with every page.
        if snapshot_id.is_none() || q.order == ListOrder::ShuffledEveryPage {
            items = Arc::new(reorder(&items, q.order, now));
        }
    }
    let first = items.partition_point(|(k, _)| *k < start_key);
    // The object before the token's position, sent again at the head of this page.
    let repeated = (is_continue && quirk.as_ref().is_some_and(|q| q.repeat_last))
        .then(|| first.checked_sub(1).map(|i| Arc::clone(&items[i].1)))
        .flatten();
    let rest = &items[first..];
    let take = req
        .limit
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX)
        .min(rest.len());
    let page: Vec<Arc<Value>> = repeated
        .into_iter()
        .chain(rest[..take].iter().map(|(_, v)| Arc::clone(v)))
        .collect();
    let more = take < rest.len();
    let continue_token = more.then(|| {
        let id =
            snapshot_id.unwrap_or_else(|| save_snapshot(&mut state.paging, &scope, rv, &items));
        encode_token(rv as i64, &rest[take].0, Some(id), now)
    });
    let selectors_used = !req.labels.is_empty() || !req.fields.is_empty();
    Ok(Page {
        items: page,
        resource_version: rv,
        continue_token,
        remaining: (more && !selectors_used).then(|| rest.len() - take),
    })
}

/// The matching objects in the current state, in key order.
fn live(state: &State, req: &ListRequest<'_>) -> Vec<(String, Arc<Value>)> {
    state
        .scan(req.def, req.namespace)
        .filter(|(_, v)| req.labels.matches(v) && req.fields.matches(v))
        .map(|(k, v)| (k.clone(), Arc::clone(v)))
        .collect()
}

fn save_snapshot(
    paging: &mut Paging,
    scope: &str,
    rv: u64,
    items: &Arc<Vec<(String, Arc<Value>)>>,
) -> u64 {
    paging.next_id += 1;
    let id = paging.next_id;
    paging.snapshots.insert(
        id,
        Snapshot {
            scope: scope.to_string(),
            rv,
            epoch: paging.epoch,
            items: Arc::clone(items),
        },
    );
    while paging.snapshots.len() > MAX_SNAPSHOTS {
        paging.snapshots.pop_first();
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_and_match() {
        let obj = json!({ "metadata": { "labels": { "app": "web", "tier": "front" } } });
        for (s, want) in [
            ("app=web", true),
            ("app==web,tier!=back", true),
            ("app in (web, api),!missing", true),
            ("tier notin (front)", false),
            ("missing", false),
            ("", true),
        ] {
            assert_eq!(Selector::parse(s).unwrap().matches(&obj), want, "{s}");
        }
        assert!(Selector::parse("a b").is_err());
    }

    #[test]
    fn tokens_round_trip() {
        let t = decode_token(&encode_token(42, "ns/name", Some(7), 3)).unwrap();
        assert_eq!(
            (t.rv, t.start.as_str(), t.snapshot, t.issued_at),
            (42, "ns/name", Some(7), 3)
        );
        assert_eq!(decode_token("!!").unwrap_err().code, 400);
    }
}
