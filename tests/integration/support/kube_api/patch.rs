//! Pure JSON transforms behind PATCH and field ownership: RFC 7386 merge patch, RFC 6902 JSON
//! patch, an approximation of strategic merge patch, and an approximation of server-side apply
//! with `managedFields`. No I/O and no store access, so each rule is testable on its own.
//!
//! Server-side apply, as approximated here:
//! - a field is a leaf path (scalar, list or empty map); lists are atomic (the real server merges
//!   associative lists such as `containers` by key);
//! - applying takes ownership of every applied leaf; a leaf another manager owns whose value would
//!   change is a conflict (409) unless `force`, which moves the ownership;
//! - a leaf the manager applied before and omits now is removed, unless another manager owns it;
//! - every other write records an `Update` entry for the fields whose values it changed.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field: the keys from the object root down to a leaf.
pub(super) type FieldPath = Vec<String>;
/// The fields one manager owns.
pub(super) type FieldSet = BTreeSet<FieldPath>;

/// Metadata that is never owned: the server sets it, or it identifies the object.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Which part of an object a write covers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Scope {
    /// The main resource; `status` is excluded when it is a subresource.
    Main { status_subresource: bool },
    /// The `status` subresource: only `status`.
    Status,
}

impl Scope {
    /// Whether a top-level field belongs to this scope.
    fn covers(self, key: &str) -> bool {
        match self {
            Scope::Status => key == "status",
            Scope::Main { status_subresource } => {
                key != "apiVersion" && key != "kind" && !(status_subresource && key == "status")
            }
        }
    }

    fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Status => Some("status"),
            Scope::Main { .. } => None,
        }
    }
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let Value::Object(t) = target else { return };
    for (k, v) in patch {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Keys that identify list items when a strategic patch merges lists of objects; the real
/// server reads them from each type's schema, this approximation tries them in order.
const MERGE_KEYS: &[&str] = &[
    "name",
    "containerPort",
    "mountPath",
    "devicePath",
    "port",
    "ip",
    "type",
];

/// An approximation of strategic merge patch: merge patch, plus lists of objects merged by a
/// guessed key (`name`, `containerPort`, ...), and the directives kubectl emits (`$patch`,
/// `$setElementOrder/`, `$deleteFromPrimitiveList/`, `$retainKeys`). Lists of scalars replace.
pub(super) fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = strip_directives(&Value::Object(patch.clone()));
        return;
    }
    if !target.is_object() {
        *target = json!({});
    }
    let Value::Object(t) = target else { return };
    let mut orders = Vec::new();
    for (k, v) in patch {
        if k == "$patch" {
            continue;
        } else if let Some(field) = k.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), v.clone()));
        } else if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Some(drop)) = (t.get_mut(field), v.as_array()) {
                items.retain(|i| !drop.contains(i));
            }
        } else if k == "$retainKeys" {
            if let Some(keep) = v.as_array() {
                let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
                t.retain(|key, _| keep.contains(&key.as_str()) || patch.contains_key(key));
            }
        } else if v.is_null() || v.get("$patch").and_then(Value::as_str) == Some("delete") {
            t.remove(k);
        } else if let Value::Array(items) = v {
            let slot = t.entry(k.clone()).or_insert(Value::Null);
            merge_list(slot, items);
        } else {
            strategic_merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
    for (field, order) in orders {
        if let (Some(Value::Array(items)), Some(order)) = (t.get_mut(&field), order.as_array()) {
            reorder(items, order);
        }
    }
}

/// Removes `$`-directives from a patch fragment that is used as a value.
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// The key shared by every object in both lists, if there is one.
fn merge_key(target: &[Value], patch: &[Value]) -> Option<&'static str> {
    let items: Vec<&Value> = patch
        .iter()
        .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("replace"))
        .chain(target.iter())
        .collect();
    if items.is_empty() || !items.iter().all(|i| i.is_object()) {
        return None;
    }
    MERGE_KEYS
        .iter()
        .copied()
        .find(|k| items.iter().all(|i| i.get(*k).is_some()))
}

fn merge_list(target: &mut Value, patch: &[Value]) {
    if patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        let kept: Vec<Value> = patch
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .map(strip_directives)
            .collect();
        *target = Value::Array(kept);
        return;
    }
    let current = target.as_array().cloned().unwrap_or_default();
    let Some(key) = merge_key(&current, patch) else {
        *target = strip_directives(&Value::Array(patch.to_vec()));
        return;
    };
    let mut merged = current;
    for item in patch {
        let id = &item[key];
        let pos = merged.iter().position(|m| &m[key] == id);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(p), true) => {
                merged.remove(p);
            }
            (None, true) => {}
            (Some(p), false) => strategic_merge_patch(&mut merged[p], item),
            (None, false) => merged.push(strip_directives(item)),
        }
    }
    *target = Value::Array(merged);
}

/// Orders list items as `$setElementOrder` lists them; unlisted items keep their place at the end.
fn reorder(items: &mut Vec<Value>, order: &[Value]) {
    let Some(key) = order
        .first()
        .and_then(Value::as_object)
        .and_then(|o| o.keys().next().cloned())
    else {
        return;
    };
    let mut rest = std::mem::take(items);
    for o in order {
        if let Some(p) = rest.iter().position(|i| i.get(&key) == o.get(&key)) {
            items.push(rest.remove(p));
        }
    }
    items.append(&mut rest);
}

/// Splits a JSON pointer (`/a/b~1c`) into unescaped tokens.
fn pointer_tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer
        .strip_prefix('/')
        .ok_or_else(|| format!("invalid JSON pointer \"{pointer}\""))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent_mut<'a>(root: &'a mut Value, tokens: &[String]) -> Result<&'a mut Value, String> {
    let mut cur = root;
    for t in tokens {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| format!("path component {t} not found"))?,
            Value::Array(a) => {
                let i: usize = t.parse().map_err(|_| format!("invalid array index {t}"))?;
                a.get_mut(i)
                    .ok_or_else(|| format!("array index {i} out of bounds"))?
            }
            _ => return Err(format!("cannot descend into a scalar at {t}")),
        };
    }
    Ok(cur)
}

fn pointer_remove(root: &mut Value, tokens: &[String]) -> Result<Value, String> {
    let (last, parents) = tokens.split_last().ok_or("cannot remove the root")?;
    match parent_mut(root, parents)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| format!("unable to remove nonexistent key: {last}")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last}"))?;
            (i < a.len())
                .then(|| a.remove(i))
                .ok_or_else(|| format!("array index {i} out of bounds"))
        }
        _ => Err("cannot remove from a scalar".into()),
    }
}

fn pointer_add(
    root: &mut Value,
    tokens: &[String],
    value: Value,
    replace: bool,
) -> Result<(), String> {
    let Some((last, parents)) = tokens.split_last() else {
        *root = value;
        return Ok(());
    };
    match parent_mut(root, parents)? {
        Value::Object(m) => {
            if replace && !m.contains_key(last) {
                return Err(format!(
                    "replace operation does not apply: doc is missing key: {last}"
                ));
            }
            m.insert(last.clone(), value);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" && !replace {
                a.push(value);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid array index {last}"))?;
            if replace {
                *a.get_mut(i)
                    .ok_or_else(|| format!("array index {i} out of bounds"))? = value;
            } else if i <= a.len() {
                a.insert(i, value);
            } else {
                return Err(format!("array index {i} out of bounds"));
            }
            Ok(())
        }
        _ => Err("cannot add to a scalar".into()),
    }
}

/// RFC 6902 JSON patch (`add`, `remove`, `replace`, `move`, `copy`, `test`).
pub(super) fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be a list of operations")?;
    for op in ops {
        let path = pointer_tokens(op["path"].as_str().ok_or("operation without a path")?)?;
        let from = || pointer_tokens(op["from"].as_str().unwrap_or_default());
        match op["op"].as_str().unwrap_or_default() {
            "add" => pointer_add(target, &path, op["value"].clone(), false)?,
            "replace" => pointer_add(target, &path, op["value"].clone(), true)?,
            "remove" => {
                pointer_remove(target, &path)?;
            }
            "move" => {
                let v = pointer_remove(target, &from()?)?;
                pointer_add(target, &path, v, false)?;
            }
            "copy" => {
                let v = parent_mut(target, &from()?)?.clone();
                pointer_add(target, &path, v, false)?;
            }
            "test" => {
                if *parent_mut(target, &path)? != op["value"] {
                    return Err(format!("testing value {} failed", op["path"]));
                }
            }
            other => return Err(format!("unexpected kind of operation: \"{other}\"")),
        }
    }
    Ok(())
}

/// The value at a field path, if present.
pub(super) fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, k| cur.get(k))
}

/// Removes a field, and any map that becomes empty because of it.
fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Some(m) = obj.as_object_mut() else { return };
    if rest.is_empty() {
        m.remove(first);
        return;
    }
    if let Some(child) = m.get_mut(first) {
        remove_at(child, rest);
        if child.as_object().is_some_and(Map::is_empty) {
            m.remove(first);
        }
    }
}

/// The leaf fields of an object within a scope (nulls are "not specified" and own nothing).
pub(super) fn leaf_fields(obj: &Value, scope: Scope) -> FieldSet {
    fn walk(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        match v {
            Value::Null => {}
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        }
    }
    let mut out = FieldSet::new();
    let Some(m) = obj.as_object() else { return out };
    for (k, v) in m {
        if !scope.covers(k) {
            continue;
        }
        if k == "metadata" {
            for (mk, mv) in v.as_object().into_iter().flatten() {
                if !SERVER_METADATA.contains(&mk.as_str()) {
                    walk(mv, &mut vec![k.clone(), mk.clone()], &mut out);
                }
            }
        } else {
            walk(v, &mut vec![k.clone()], &mut out);
        }
    }
    out
}

/// The part of an object a scope covers, with server-set metadata and nulls dropped.
fn scoped(obj: &Value, scope: Scope) -> Value {
    let mut out = Map::new();
    for (k, v) in obj.as_object().into_iter().flatten() {
        if !scope.covers(k) || v.is_null() {
            continue;
        }
        if k == "metadata" {
            let meta: Map<String, Value> = v
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(mk, mv)| !SERVER_METADATA.contains(&mk.as_str()) && !mv.is_null())
                .map(|(mk, mv)| (mk.clone(), mv.clone()))
                .collect();
            out.insert(k.clone(), Value::Object(meta));
        } else {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// Objects merge key by key, everything else (lists included) replaces; nulls are skipped.
fn deep_merge(target: &mut Value, src: &Value) {
    match (target, src) {
        (Value::Object(t), Value::Object(s)) => {
            for (k, v) in s {
                if v.is_null() {
                    continue;
                }
                match t.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => deep_merge(slot, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, s) => *t = s.clone(),
    }
}

/// `.spec.replicas`, the way conflicts name a field.
pub(super) fn field_string(path: &[String]) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}

/// Whether one path is a prefix of the other (so owning one overlaps the other).
fn related(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// `{"f:metadata":{"f:labels":{"f:app":{}}}}` for a field set.
pub(super) fn fields_to_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            let slot = cur
                .entry(format!("f:{seg}"))
                .or_insert_with(|| Value::Object(Map::new()));
            cur = slot.as_object_mut().expect("fieldsV1 nodes are maps");
        }
    }
    Value::Object(root)
}

/// The inverse of [`fields_to_v1`]; keys this server does not write (`k:`, `v:`, `i:`, `.`)
/// make their parent an atomic leaf.
pub(super) fn fields_from_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        let Some(m) = v.as_object() else { return };
        let children: Vec<(&String, &Value)> =
            m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
        if (m.is_empty() || children.len() < m.len()) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, child) in children {
            path.push(k[2..].to_string());
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// One `metadata.managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct ManagedEntry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl ManagedEntry {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_to_v1(&self.fields),
        });
        if let Some(s) = &self.subresource {
            v["subresource"] = json!(s);
        }
        v
    }

    fn same_owner(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

/// The managedFields entries of an object.
pub(super) fn managed_entries(obj: &Value) -> Vec<ManagedEntry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| ManagedEntry {
            manager: e["manager"].as_str().unwrap_or_default().to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
            time: e["time"].as_str().unwrap_or_default().to_string(),
            subresource: e["subresource"].as_str().map(str::to_string),
            fields: fields_from_v1(&e["fieldsV1"]),
        })
        .collect()
}

/// Writes entries back into `metadata.managedFields` (removed when there are none).
pub(super) fn set_managed(obj: &mut Value, entries: &[ManagedEntry]) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        let list: Vec<Value> = entries.iter().map(ManagedEntry::to_json).collect();
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Who is writing, for managedFields.
#[derive(Clone, Debug)]
pub(super) struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub time: &'a str,
    pub scope: Scope,
}

/// Records a non-apply write from `old` (absent on create) to `new`: the writer's `Update` entry
/// gains every field whose value changed, and other managers lose those fields.
pub(super) fn record_update(old: Option<&Value>, new: &mut Value, w: &Writer<'_>) {
    let mut entries = old.map(managed_entries).unwrap_or_default();
    let now = leaf_fields(new, w.scope);
    let before = old.map(|o| leaf_fields(o, w.scope)).unwrap_or_default();
    let changed: FieldSet = now
        .iter()
        .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .cloned()
        .collect();
    let gone: Vec<&FieldPath> = before
        .iter()
        .filter(|p| value_at(new, p).is_none())
        .collect();
    for e in &mut entries {
        e.fields.retain(|f| {
            !changed
                .iter()
                .chain(gone.iter().copied())
                .any(|c| related(f, c))
        });
    }
    let sub = w.scope.subresource();
    if !changed.is_empty() {
        match entries
            .iter_mut()
            .find(|e| e.same_owner(w.manager, "Update", sub))
        {
            Some(e) => {
                e.fields.extend(changed);
                e.time = w.time.to_string();
                e.api_version = w.api_version.to_string();
            }
            None => entries.push(ManagedEntry {
                manager: w.manager.to_string(),
                operation: "Update".into(),
                api_version: w.api_version.to_string(),
                time: w.time.to_string(),
                subresource: sub.map(str::to_string),
                fields: changed,
            }),
        }
    }
    entries.retain(|e| !e.fields.is_empty());
    set_managed(new, &entries);
}

/// A server-side apply of `applied` onto `current` (absent: the object is created). Returns the
/// merged object with its managedFields, or the `(manager, field)` conflicts when not forced.
pub(super) fn apply(
    current: Option<&Value>,
    applied: &Value,
    w: &Writer<'_>,
    force: bool,
) -> Result<Value, Vec<(String, String)>> {
    let sub = w.scope.subresource();
    let applied_set = leaf_fields(applied, w.scope);
    let Some(current) = current else {
        let mut created = applied.clone();
        set_managed(&mut created, &[]);
        let entry = ManagedEntry {
            manager: w.manager.to_string(),
            operation: "Apply".into(),
            api_version: w.api_version.to_string(),
            time: w.time.to_string(),
            subresource: sub.map(str::to_string),
            fields: applied_set,
        };
        set_managed(&mut created, &[entry]);
        return Ok(created);
    };
    let mut entries = managed_entries(current);
    let is_other = |e: &ManagedEntry| e.manager != w.manager && e.subresource.as_deref() == sub;
    let changing: Vec<&FieldPath> = applied_set
        .iter()
        .filter(|p| value_at(current, p) != value_at(applied, p))
        .collect();
    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| is_other(e)) {
        for p in &changing {
            if e.fields.iter().any(|f| related(f, p)) {
                conflicts.push((e.manager.clone(), field_string(p)));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        conflicts.dedup();
        return Err(conflicts);
    }
    let mut merged = current.clone();
    deep_merge(&mut merged, &scoped(applied, w.scope));
    let previous: FieldSet = entries
        .iter()
        .find(|e| e.same_owner(w.manager, "Apply", sub))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for r in previous
        .iter()
        .filter(|r| !applied_set.iter().any(|a| related(a, r)))
    {
        let shared = entries
            .iter()
            .filter(|e| is_other(e))
            .any(|e| e.fields.iter().any(|f| related(f, r)));
        if !shared {
            remove_at(&mut merged, r);
        }
    }
    for e in entries.iter_mut().filter(|e| is_other(e)) {
        e.fields.retain(|f| !changing.iter().any(|p| related(f, p)));
    }
    let mine = ManagedEntry {
        manager: w.manager.to_string(),
        operation: "Apply".into(),
        api_version: w.api_version.to_string(),
        time: w.time.to_string(),
        subresource: sub.map(str::to_string),
        fields: applied_set,
    };
    match entries
        .iter_mut()
        .find(|e| e.same_owner(w.manager, "Apply", sub))
    {
        Some(e) => *e = mine,
        None => entries.push(mine),
    }
    entries.retain(|e| !e.fields.is_empty());
    set_managed(&mut merged, &entries);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: Scope = Scope::Main {
        status_subresource: false,
    };

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            api_version: "v1",
            time: "2024-01-01T00:00:00Z",
            scope: MAIN,
        }
    }

    fn cm(data: Value) -> Value {
        json!({ "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "c", "namespace": "d" }, "data": data })
    }

    #[test]
    fn merge_patch_deletes_with_null() {
        let mut v = json!({ "a": { "b": 1, "c": 2 }, "l": [1, 2] });
        merge_patch(&mut v, &json!({ "a": { "b": null, "d": 3 }, "l": [3] }));
        assert_eq!(v, json!({ "a": { "c": 2, "d": 3 }, "l": [3] }));
    }

    #[test]
    fn strategic_patch_merges_containers_by_name() {
        let mut v = json!({ "containers": [
            { "name": "a", "image": "a:1" }, { "name": "b", "image": "b:1" } ] });
        strategic_merge_patch(
            &mut v,
            &json!({
                "$setElementOrder/containers": [{ "name": "b" }, { "name": "a" }],
                "containers": [{ "name": "a", "image": "a:2" }]
            }),
        );
        assert_eq!(
            v,
            json!({ "containers": [
            { "name": "b", "image": "b:1" }, { "name": "a", "image": "a:2" } ] })
        );
    }

    #[test]
    fn json_patch_applies_operations_in_order() {
        let mut v = json!({ "a": [1, 2], "b": { "c~d": 1 } });
        json_patch(
            &mut v,
            &json!([
                { "op": "add", "path": "/a/-", "value": 3 },
                { "op": "replace", "path": "/b/c~0d", "value": 2 },
                { "op": "move", "from": "/b", "path": "/e" },
                { "op": "test", "path": "/e/c~0d", "value": 2 }
            ]),
        )
        .unwrap();
        assert_eq!(v, json!({ "a": [1, 2, 3], "e": { "c~d": 2 } }));
        assert!(json_patch(&mut v, &json!([{ "op": "remove", "path": "/zz" }])).is_err());
    }

    #[test]
    fn fields_v1_round_trips() {
        let set = leaf_fields(&cm(json!({ "a": "1", "b": "2" })), MAIN);
        assert_eq!(
            fields_to_v1(&set),
            json!({ "f:data": { "f:a": {}, "f:b": {} } })
        );
        assert_eq!(fields_from_v1(&fields_to_v1(&set)), set);
    }

    #[test]
    fn apply_removes_fields_the_manager_stops_applying() {
        let first = apply(
            None,
            &cm(json!({ "a": "1", "b": "2" })),
            &writer("m"),
            false,
        )
        .unwrap();
        let second = apply(Some(&first), &cm(json!({ "a": "1" })), &writer("m"), false).unwrap();
        assert_eq!(second["data"], json!({ "a": "1" }));
    }

    #[test]
    fn apply_conflicts_with_another_manager_unless_forced() {
        let first = apply(None, &cm(json!({ "a": "1" })), &writer("one"), false).unwrap();
        let conflicts = apply(
            Some(&first),
            &cm(json!({ "a": "2" })),
            &writer("two"),
            false,
        )
        .unwrap_err();
        assert_eq!(conflicts, [("one".to_string(), ".data.a".to_string())]);
        // The same value is shared ownership, not a conflict.
        assert!(
            apply(
                Some(&first),
                &cm(json!({ "a": "1" })),
                &writer("two"),
                false
            )
            .is_ok()
        );
        let forced = apply(Some(&first), &cm(json!({ "a": "2" })), &writer("two"), true).unwrap();
        assert_eq!(forced["data"]["a"], "2");
        let owners: Vec<String> = managed_entries(&forced)
            .into_iter()
            .map(|e| e.manager)
            .collect();
        assert_eq!(owners, ["two"]);
    }

    #[test]
    fn updates_take_ownership_of_changed_fields() {
        let first = apply(
            None,
            &cm(json!({ "a": "1", "b": "1" })),
            &writer("apply"),
            false,
        )
        .unwrap();
        let mut edited = first.clone();
        edited["data"]["a"] = json!("9");
        record_update(Some(&first), &mut edited, &writer("kubectl-edit"));
        let entries = managed_entries(&edited);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].manager, "kubectl-edit");
        assert!(
            entries[1]
                .fields
                .contains(&vec!["data".to_string(), "a".to_string()])
        );
        assert!(
            !entries[0]
                .fields
                .contains(&vec!["data".to_string(), "a".to_string()])
        );
    }
}
