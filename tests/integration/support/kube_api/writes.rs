//! Writes with the bookkeeping the real server does on each: create, replace (PUT), the PATCH
//! family (server-side apply, merge, strategic, JSON patch), delete and delete collection, plus
//! UID, resourceVersion, creationTimestamp, generation, managedFields, the status subresource
//! split, finalizers and dry run.

use serde_json::{Map, Value, json};

use super::format::{name_suffix, now_rfc3339, uid};
use super::handlers::{Call, Reply, object_reply, parse_body, present};
use super::paging::{self, FieldSelector, ListRequest, Selector};
use super::patch::{self, Scope, Writer};
use super::resources::ResourceDef;
use super::routes::Target;
use super::status::{self, ApiError};
use super::store::State;
use super::strategy::{after_write, forget, strategy, validate_name};

/// How a write is made: dry run, by whom, on which part of the object.
pub(super) struct WriteOpts {
    dry_run: bool,
    manager: String,
    scope_status: bool,
    /// Set when managedFields were already computed by server-side apply.
    applied: bool,
    now: String,
}

impl WriteOpts {
    pub(super) fn new(call: &Call, subresource: Option<&str>) -> Self {
        WriteOpts {
            dry_run: call.dry_run(),
            manager: call.manager(),
            scope_status: subresource == Some("status"),
            applied: false,
            now: now_rfc3339(),
        }
    }

    /// A write made by the server itself or by a test through the handle.
    pub(super) fn internal(manager: &str) -> Self {
        WriteOpts {
            dry_run: false,
            manager: manager.to_string(),
            scope_status: false,
            applied: false,
            now: now_rfc3339(),
        }
    }

    fn scope(&self, def: &ResourceDef) -> Scope {
        if self.scope_status {
            Scope::Status
        } else {
            Scope::Main {
                status_subresource: def.status_subresource,
            }
        }
    }
}

/// Checks (and fills in) `apiVersion` and `kind` against the URL's resource.
fn check_type(def: &ResourceDef, version: &str, obj: &mut Value) -> Result<(), ApiError> {
    let want = def.api_version(version);
    match obj["apiVersion"].as_str() {
        Some(v) if v != want => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({want})"
            )));
        }
        _ => obj["apiVersion"] = json!(want),
    }
    match obj["kind"].as_str() {
        Some(k) if k != def.kind => Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            def.kind
        ))),
        _ => {
            obj["kind"] = json!(def.kind);
            Ok(())
        }
    }
}

/// `metadata` as a map, created when missing.
pub(super) fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// Checks (and fills in) the namespace against the URL.
fn check_namespace(
    def: &ResourceDef,
    namespace: Option<&str>,
    obj: &mut Value,
) -> Result<(), ApiError> {
    let meta = metadata_mut(obj);
    if !def.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    let ns = namespace.unwrap_or("default");
    match meta.get("namespace").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            meta.insert("namespace".into(), json!(ns));
            Ok(())
        }
    }
}

/// Creates an object: the path of POST, of apply on an absent object and of test seeding.
pub(super) fn create(
    state: &mut State,
    def: &ResourceDef,
    version: &str,
    namespace: Option<&str>,
    mut obj: Value,
    opts: &WriteOpts,
) -> Result<Value, ApiError> {
    check_type(def, version, &mut obj)?;
    check_namespace(def, namespace, &mut obj)?;
    let meta = metadata_mut(&mut obj);
    if meta
        .get("resourceVersion")
        .and_then(Value::as_str)
        .is_some_and(|rv| !rv.is_empty())
    {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let name = match (
        meta.get("name").and_then(Value::as_str),
        meta.get("generateName").and_then(Value::as_str),
    ) {
        (Some(n), _) if !n.is_empty() => n.to_string(),
        (_, Some(prefix)) if !prefix.is_empty() => {
            let n = format!("{prefix}{}", name_suffix(state.next_serial()));
            metadata_mut(&mut obj).insert("name".into(), json!(n));
            n
        }
        _ => {
            return Err(ApiError::invalid(
                def,
                "",
                &[(
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            ));
        }
    };
    validate_name(def, &name)?;
    let ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
    if let Some(ns) = &ns {
        let namespaces = state
            .resolve("namespaces")
            .expect("namespaces are built in");
        if state.get(&namespaces, None, ns).is_none() {
            return Err(ApiError::namespace_not_found(ns));
        }
    }
    if state.get(def, ns.as_deref(), &name).is_some() {
        return Err(ApiError::already_exists(def, &name));
    }
    if def.status_subresource
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
    strategy(state, def, &mut obj, None)?;
    let serial = state.next_serial();
    let meta = metadata_mut(&mut obj);
    for k in [
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        meta.remove(k);
    }
    meta.insert("uid".into(), json!(uid(serial)));
    meta.insert("creationTimestamp".into(), json!(opts.now));
    if def.generation {
        meta.insert("generation".into(), json!(1));
    }
    if !opts.applied {
        let api_version = def.api_version(version);
        let w = Writer {
            manager: &opts.manager,
            api_version: &api_version,
            time: &opts.now,
            scope: opts.scope(def),
        };
        patch::set_managed(&mut obj, &[]);
        patch::record_update(None, &mut obj, &w);
    }
    if opts.dry_run {
        return Ok(obj);
    }
    let rv = state.next_rv();
    metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
    state.put(def, obj.clone());
    after_write(state, def, &obj, true);
    Ok(obj)
}

/// The object without what changes on every write, to detect no-op updates.
fn comparable(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        if let Some(Value::Array(entries)) = meta.get_mut("managedFields") {
            for e in entries.iter_mut().filter_map(Value::as_object_mut) {
                e.remove("time");
            }
        }
    }
    o
}

/// The object without metadata and status: what `generation` tracks.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    o
}

/// Writes `new` over `old` (both already type- and name-checked): the shared tail of PUT and
/// every PATCH. Returns the stored object and whether anything changed.
fn commit(
    state: &mut State,
    def: &ResourceDef,
    version: &str,
    old: &Value,
    mut new: Value,
    opts: &WriteOpts,
) -> Result<(Value, bool), ApiError> {
    if opts.scope_status {
        let status = new.get("status").cloned();
        let managed = new["metadata"]["managedFields"].take();
        new = old.clone();
        match status {
            Some(s) => new["status"] = s,
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        if opts.applied {
            new["metadata"]["managedFields"] = managed;
        }
    } else if def.status_subresource {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    let old_meta = &old["metadata"];
    let meta = metadata_mut(&mut new);
    for k in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "name",
        "namespace",
    ] {
        match old_meta.get(k) {
            Some(v) => meta.insert(k.into(), v.clone()),
            None => meta.remove(k),
        };
    }
    meta.insert(
        "resourceVersion".into(),
        old_meta["resourceVersion"].clone(),
    );
    strategy(state, def, &mut new, Some(old))?;
    if !opts.applied {
        let api_version = def.api_version(version);
        let w = Writer {
            manager: &opts.manager,
            api_version: &api_version,
            time: &opts.now,
            scope: opts.scope(def),
        };
        let mut old_fields = old.clone();
        old_fields["apiVersion"] = new["apiVersion"].clone();
        old_fields["kind"] = new["kind"].clone();
        new["metadata"]["managedFields"] = old["metadata"]["managedFields"].clone();
        patch::record_update(Some(&old_fields), &mut new, &w);
    }
    let mut old_cmp = comparable(old);
    old_cmp["apiVersion"] = new["apiVersion"].clone();
    if comparable(&new) == old_cmp {
        return Ok((present(def, version, old), false));
    }
    if def.generation && spec_part(&new) != spec_part(old) {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        new["metadata"]["generation"] = json!(g);
    }
    if opts.dry_run {
        return Ok((new, true));
    }
    let finalized = new["metadata"]["deletionTimestamp"].is_string()
        && new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
    let rv = state.next_rv();
    new["metadata"]["resourceVersion"] = json!(rv.to_string());
    let ns = new["metadata"]["namespace"].as_str().map(str::to_string);
    let name = new["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if finalized {
        state.remove(def, ns.as_deref(), &name);
        forget(state, def, &name);
    } else {
        state.put(def, new.clone());
        after_write(state, def, &new, false);
    }
    Ok((new, true))
}

/// Checks a client-supplied resourceVersion precondition.
fn check_precondition(
    def: &ResourceDef,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    match new["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() && Some(rv) != old["metadata"]["resourceVersion"].as_str() => {
            Err(ApiError::conflict(def, name))
        }
        _ => Ok(()),
    }
}

/// Checks that the body names the object the URL names.
fn check_name(obj: &mut Value, name: &str) -> Result<(), ApiError> {
    match obj["metadata"]["name"].as_str() {
        Some(n) if n != name => Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        ))),
        _ => {
            metadata_mut(obj).insert("name".into(), json!(name));
            Ok(())
        }
    }
}

/// PUT: replaces an existing object (409 on a stale resourceVersion).
pub(super) fn replace(
    state: &mut State,
    t: &Target,
    name: &str,
    mut body: Value,
    opts: &WriteOpts,
) -> Result<(Value, bool), ApiError> {
    check_type(&t.def, &t.version, &mut body)?;
    check_namespace(&t.def, t.namespace.as_deref(), &mut body)?;
    check_name(&mut body, name)?;
    let old = state
        .get(&t.def, t.namespace.as_deref(), name)
        .ok_or_else(|| ApiError::not_found(&t.def, name))?
        .clone();
    check_precondition(&t.def, name, &old, &body)?;
    commit(state, &t.def, &t.version, &old, body, opts)
}

/// The media type without parameters, lowercased.
pub(super) fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// PATCH: server-side apply, or a merge, strategic merge or JSON patch of an existing object.
pub(super) fn patch_call(
    state: &mut State,
    call: &Call,
    t: &Target,
    name: &str,
    sub: Option<&str>,
) -> Result<Reply, ApiError> {
    let kind = essence(&call.content_type);
    let opts = WriteOpts::new(call, sub);
    let ns = t.namespace.as_deref();
    if kind == "application/apply-patch+yaml" {
        return apply_call(state, call, t, name, opts);
    }
    let old = state
        .get(&t.def, ns, name)
        .ok_or_else(|| ApiError::not_found(&t.def, name))?
        .clone();
    let mut patched = present(&t.def, &t.version, &old);
    let text = std::str::from_utf8(&call.body).unwrap_or_default();
    let patch_doc: Value = serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    match kind.as_str() {
        "application/merge-patch+json" => patch::merge_patch(&mut patched, &patch_doc),
        "application/strategic-merge-patch+json" if t.def.custom => {
            return Err(ApiError::unsupported_media_type(&call.content_type));
        }
        "application/strategic-merge-patch+json" => {
            patch::strategic_merge_patch(&mut patched, &patch_doc)
        }
        "application/json-patch+json" => {
            patch::json_patch(&mut patched, &patch_doc).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?
        }
        _ => return Err(ApiError::unsupported_media_type(&call.content_type)),
    }
    check_type(&t.def, &t.version, &mut patched)?;
    check_namespace(&t.def, ns, &mut patched)?;
    if patched["metadata"]["name"].as_str() != Some(name) {
        return Err(ApiError::bad_request(
            "metadata.name: a patch may not change the object's name",
        ));
    }
    check_precondition(&t.def, name, &old, &patched)?;
    let (obj, _) = commit(state, &t.def, &t.version, &old, patched, &opts)?;
    Ok(object_reply(call, &t.def, 200, obj))
}

/// Server-side apply (see the `patch` module for what is approximated).
fn apply_call(
    state: &mut State,
    call: &Call,
    t: &Target,
    name: &str,
    mut opts: WriteOpts,
) -> Result<Reply, ApiError> {
    if call.param("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::new(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let mut applied = parse_body(&Call {
        content_type: "application/yaml".into(),
        ..call.clone()
    })?;
    if applied["apiVersion"].as_str().is_none() || applied["kind"].as_str().is_none() {
        return Err(ApiError::bad_request(
            "invalid object type: apiVersion and kind must be set in an apply configuration",
        ));
    }
    if !applied["metadata"]["managedFields"].is_null() {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    check_type(&t.def, &t.version, &mut applied)?;
    check_namespace(&t.def, t.namespace.as_deref(), &mut applied)?;
    check_name(&mut applied, name)?;
    let force = call.param("force") == Some("true");
    let api_version = t.def.api_version(&t.version);
    let w = Writer {
        manager: &opts.manager,
        api_version: &api_version,
        time: &opts.now,
        scope: opts.scope(&t.def),
    };
    let old = state.get(&t.def, t.namespace.as_deref(), name).cloned();
    opts.applied = true;
    match old {
        None if opts.scope_status => Err(ApiError::not_found(&t.def, name)),
        None => {
            let obj = patch::apply(None, &applied, &w, force)
                .map_err(|c| ApiError::apply_conflict(&t.def, name, &c))?;
            let created = create(
                state,
                &t.def,
                &t.version,
                t.namespace.as_deref(),
                obj,
                &opts,
            )?;
            Ok(object_reply(call, &t.def, 201, created))
        }
        Some(old) => {
            check_precondition(&t.def, name, &old, &applied)?;
            let current = present(&t.def, &t.version, &old);
            let merged = patch::apply(Some(&current), &applied, &w, force)
                .map_err(|c| ApiError::apply_conflict(&t.def, name, &c))?;
            let (obj, _) = commit(state, &t.def, &t.version, &old, merged, &opts)?;
            Ok(object_reply(call, &t.def, 200, obj))
        }
    }
}

/// DeleteOptions that matter here.
pub(super) struct DeleteOpts {
    dry_run: bool,
    uid: Option<String>,
    resource_version: Option<String>,
    now: String,
}

/// DeleteOptions from the body (and `dryRun` from the query).
pub(super) fn delete_options(call: &Call) -> Result<DeleteOpts, ApiError> {
    let body: Value = if call.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&call.body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let dry_in_body = body["dryRun"]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOpts {
        dry_run: call.dry_run() || dry_in_body,
        uid: body["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        now: now_rfc3339(),
    })
}

/// DELETE of one object. Objects with finalizers get a deletionTimestamp and stay until the
/// finalizers are removed; namespaces and CRDs are removed at once with their contents.
pub(super) fn delete(
    state: &mut State,
    def: &ResourceDef,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOpts,
) -> Result<Reply, ApiError> {
    let old = state
        .get(def, ns, name)
        .ok_or_else(|| ApiError::not_found(def, name))?
        .clone();
    let meta = &old["metadata"];
    if opts.uid.as_deref().is_some_and(|u| meta["uid"] != u)
        || opts
            .resource_version
            .as_deref()
            .is_some_and(|rv| meta["resourceVersion"] != rv)
    {
        return Err(ApiError::conflict(def, name));
    }
    let version = def.preferred().to_string();
    let has_finalizers = meta["finalizers"].as_array().is_some_and(|f| !f.is_empty());
    if has_finalizers {
        let mut marked = old.clone();
        if marked["metadata"]["deletionTimestamp"].is_null() {
            marked["metadata"]["deletionTimestamp"] = json!(opts.now);
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if !opts.dry_run {
                marked["metadata"]["resourceVersion"] = json!(state.next_rv().to_string());
                state.put(def, marked.clone());
            }
        }
        return Ok(Reply::json(200, &present(def, &version, &marked)));
    }
    let returns_object = !def.custom
        && matches!(
            def.plural.as_str(),
            "namespaces" | "customresourcedefinitions"
        );
    let mut gone = present(def, &version, &old);
    if def.plural == "namespaces" && def.group.is_empty() {
        gone["metadata"]["deletionTimestamp"] = json!(opts.now);
        gone["status"]["phase"] = json!("Terminating");
    }
    if !opts.dry_run {
        state.remove(def, ns, name);
        forget(state, def, name);
        state.next_rv();
    }
    if returns_object {
        Ok(Reply::json(200, &gone))
    } else {
        Ok(Reply::json(
            200,
            &status::delete_success(def, name, meta["uid"].as_str().unwrap_or_default()),
        ))
    }
}

/// DELETE on a list URL: deletes what the selectors match and returns the deleted objects.
pub(super) fn delete_collection(
    state: &mut State,
    call: &Call,
    t: &Target,
) -> Result<Reply, ApiError> {
    let labels = Selector::parse(call.param("labelSelector").unwrap_or_default())?;
    let fields = FieldSelector::parse(call.param("fieldSelector").unwrap_or_default(), &t.def)?;
    let req = ListRequest {
        def: &t.def,
        namespace: t.namespace.as_deref(),
        limit: None,
        continue_token: None,
        labels,
        fields,
        selector_text: String::new(),
    };
    let page = paging::list(state, &req)?;
    let opts = delete_options(call)?;
    let mut deleted = Vec::new();
    for obj in page.items {
        let meta = &obj["metadata"];
        let name = meta["name"].as_str().unwrap_or_default();
        let ns = meta["namespace"].as_str().filter(|_| t.def.namespaced);
        delete(state, &t.def, ns, name, &opts)?;
        deleted.push(present(&t.def, &t.version, &obj));
    }
    Ok(Reply::json(
        200,
        &json!({
            "kind": format!("{}List", t.def.kind),
            "apiVersion": t.def.api_version(&t.version),
            "metadata": { "resourceVersion": state.current_rv().to_string() },
            "items": deleted,
        }),
    ))
}

/// Creates an object from a test or the seeder, by its `apiVersion` and `kind`.
pub(super) fn create_internal(
    state: &mut State,
    obj: Value,
    manager: &str,
) -> Result<Value, ApiError> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let (def, version) = state.find_kind(&api_version, &kind).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            format!("the server doesn't have a resource type for {kind} in {api_version}"),
        )
    })?;
    let ns = obj["metadata"]["namespace"]
        .as_str()
        .map(str::to_string)
        .or_else(|| def.namespaced.then(|| "default".to_string()));
    create(
        state,
        &def,
        &version,
        ns.as_deref(),
        obj,
        &WriteOpts::internal(manager),
    )
}

/// Replaces an object's status from a test (as a controller would through `/status`).
pub(super) fn set_status_internal(
    state: &mut State,
    obj: &Value,
    status: Value,
) -> Result<Value, ApiError> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let (def, version) = state
        .find_kind(api_version, kind)
        .ok_or_else(|| ApiError::bad_request(format!("unknown kind {kind} in {api_version}")))?;
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let ns = meta["namespace"].as_str().filter(|_| def.namespaced);
    let old = state
        .get(&def, ns, name)
        .ok_or_else(|| ApiError::not_found(&def, name))?
        .clone();
    let mut new = old.clone();
    new["status"] = status;
    let mut opts = WriteOpts::internal("lifeboat-test-controller");
    opts.scope_status = def.status_subresource;
    commit(state, &def, &version, &old, new, &opts).map(|(o, _)| o)
}

/// Creates the namespaces every cluster starts with.
pub(super) fn bootstrap(state: &mut State) {
    for ns in ["default", "kube-node-lease", "kube-public", "kube-system"] {
        let obj = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } });
        create_internal(state, obj, "kube-apiserver").expect("system namespaces are valid");
    }
}
