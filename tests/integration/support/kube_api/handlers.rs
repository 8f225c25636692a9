//! Request dispatch: turns a [`Call`] into a [`Reply`] by route and verb, serves GET and LIST
//! (JSON or Table), and hands writes to the `writes` module. Independent of the HTTP library.

use std::sync::Arc;

use serde_json::{Value, json};

use super::discovery;
use super::faults;
use super::openapi;
use super::paging::{self, FieldSelector, ListRequest, Selector};
use super::protobuf;
use super::resources::ResourceDef;
use super::routes::{self, Route, Target};
use super::status::ApiError;
use super::store::State;
use super::table;
use super::writes::{self, WriteOpts};

/// A request, independent of the HTTP library.
#[derive(Clone, Debug, Default)]
pub(super) struct Call {
    pub method: String,
    /// Percent-decoded path without the query.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub accept: String,
    pub content_type: String,
    pub user_agent: String,
    /// `host:port` the client used, for `/api`'s server address.
    pub host: String,
    pub body: Vec<u8>,
}

impl Call {
    /// The last value of a query parameter.
    pub(super) fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn dry_run(&self) -> bool {
        self.query.iter().any(|(k, v)| k == "dryRun" && v == "All")
    }

    /// The field manager: `fieldManager`, else the User-Agent up to its first `/`, as the real
    /// server derives it.
    pub(super) fn manager(&self) -> String {
        match self.param("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => {
                let ua = self.user_agent.split('/').next().unwrap_or_default();
                if ua.is_empty() {
                    "unknown".into()
                } else {
                    ua.chars().take(128).collect()
                }
            }
        }
    }
}

/// A response, independent of the HTTP library.
#[derive(Clone, Debug)]
pub(super) struct Reply {
    pub code: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub(super) fn json(code: u16, v: &Value) -> Self {
        Reply {
            code,
            content_type: "application/json".into(),
            body: v.to_string().into_bytes(),
        }
    }

    pub(super) fn error(e: &ApiError) -> Self {
        Self::json(e.code, &e.to_status())
    }
}

/// Answers one request.
pub(super) fn dispatch(state: &mut State, call: &Call) -> Reply {
    handle(state, call).unwrap_or_else(|e| Reply::error(&e))
}

/// Routes a call to discovery, OpenAPI or a resource.
fn handle(state: &mut State, call: &Call) -> Result<Reply, ApiError> {
    let route = routes::route(state, &call.path)?;
    if !matches!(route, Route::Resource(_)) && call.method != "GET" {
        return Err(ApiError::method_not_allowed());
    }
    match route {
        Route::Version => Ok(Reply::json(200, &discovery::version())),
        Route::Health => Ok(Reply {
            code: 200,
            content_type: "text/plain; charset=utf-8".into(),
            body: b"ok".to_vec(),
        }),
        Route::CoreApi | Route::Apis => {
            let core = matches!(route, Route::CoreApi);
            // A server without aggregated discovery (before Kubernetes 1.26, or switched off
            // for tests) answers the legacy document whatever the client asks for.
            let aggregated =
                discovery::wants_aggregated(&call.accept).filter(|_| state.aggregated_discovery);
            if let Some(v) = aggregated {
                let mut r = Reply::json(200, &discovery::aggregated(state, core, v));
                r.content_type = discovery::aggregated_content_type(v);
                Ok(r)
            } else if core {
                Ok(Reply::json(200, &discovery::core_versions(&call.host)))
            } else {
                Ok(Reply::json(200, &discovery::group_list(state)))
            }
        }
        Route::Group(g) => discovery::group(state, &g)
            .map(|v| Reply::json(200, &v))
            .ok_or_else(ApiError::path_not_found),
        Route::ResourceList(g, v) => discovery::resource_list(state, &g, &v)
            .map(|v| Reply::json(200, &v))
            .ok_or_else(ApiError::path_not_found),
        Route::Resource(t) => resource(state, call, &t),
        Route::OpenApiIndex => Ok(Reply::json(200, &openapi::index(state))),
        Route::OpenApiDocument(g, v) => openapi::document(state, &g, &v)
            .map(|d| Reply::json(200, &d))
            .ok_or_else(ApiError::path_not_found),
    }
}

/// Picks the verb for a resource URL from the method and the presence of a name.
fn resource(state: &mut State, call: &Call, t: &Target) -> Result<Reply, ApiError> {
    if call.param("watch").is_some_and(|w| w == "true" || w == "1") {
        return Err(ApiError::method_not_allowed());
    }
    let accept = call.accept.to_ascii_lowercase();
    if !accept.is_empty()
        && !accept.contains("json")
        && !accept.contains("*/*")
        && !accept.contains("yaml")
    {
        return Err(ApiError::not_acceptable(&call.accept));
    }
    let ns = t.namespace.as_deref();
    match (
        call.method.as_str(),
        t.name.as_deref(),
        t.subresource.as_deref(),
    ) {
        ("GET", None, _) => list(state, call, t),
        ("GET", Some(name), _) => {
            let obj = state
                .get(&t.def, ns, name)
                .ok_or_else(|| ApiError::not_found(&t.def, name))?;
            let obj = present(&t.def, &t.version, obj);
            Ok(object_reply(call, &t.def, 200, obj))
        }
        ("POST", None, None) if ns.is_some() || !t.def.namespaced => {
            let body = parse_body(call)?;
            let opts = WriteOpts::new(call, None);
            let created = writes::create(state, &t.def, &t.version, ns, body, &opts)?;
            Ok(object_reply(call, &t.def, 201, created))
        }
        ("PUT", Some(name), sub) => {
            let body = parse_body(call)?;
            let opts = WriteOpts::new(call, sub);
            let (obj, _) = writes::replace(state, t, name, body, &opts)?;
            Ok(object_reply(call, &t.def, 200, obj))
        }
        ("PATCH", Some(name), sub) => writes::patch_call(state, call, t, name, sub),
        ("DELETE", Some(name), None) => {
            let opts = writes::delete_options(call)?;
            writes::delete(state, &t.def, ns, name, &opts)
        }
        ("DELETE", None, None) => writes::delete_collection(state, call, t),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// Sets `apiVersion` and `kind` for the version the client asked for.
pub(super) fn present(def: &ResourceDef, version: &str, obj: &Value) -> Value {
    let mut o = obj.clone();
    o["apiVersion"] = json!(def.api_version(version));
    o["kind"] = json!(def.kind);
    o
}

/// One object as JSON, or as a one-row Table when the client asked for Tables.
pub(super) fn object_reply(call: &Call, def: &ResourceDef, code: u16, obj: Value) -> Reply {
    if table::wants_table(&call.accept) {
        let meta = json!({ "resourceVersion": obj["metadata"]["resourceVersion"] });
        let t = table::table(def, &[Arc::new(obj)], meta, call.param("includeObject"));
        return Reply::json(code, &t);
    }
    Reply::json(code, &obj)
}

/// The body as JSON (or YAML, when sent as YAML; or the protobuf kubectl's generators send).
pub(super) fn parse_body(call: &Call) -> Result<Value, ApiError> {
    if writes::essence(&call.content_type) == "application/vnd.kubernetes.protobuf" {
        return protobuf::decode(&call.body)
            .map_err(|e| ApiError::unsupported_media_type(&format!("{}: {e}", call.content_type)));
    }
    let text = std::str::from_utf8(&call.body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8 text"))?;
    let is_yaml = call.content_type.contains("yaml");
    let parsed = match serde_json::from_str::<Value>(text) {
        Ok(v) => Ok(v),
        Err(e) if !is_yaml => Err(format!("couldn't get version/kind; json parse error: {e}")),
        Err(_) => serde_saphyr::from_str::<Value>(text)
            .map_err(|e| format!("error converting YAML to JSON: {e}")),
    };
    let v = parsed.map_err(ApiError::bad_request)?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

/// LIST: checks the query, injects faults, pages, and renders a list or a Table.
fn list(state: &mut State, call: &Call, t: &Target) -> Result<Reply, ApiError> {
    let continue_token = call.param("continue").filter(|c| !c.is_empty());
    let rv = call.param("resourceVersion").filter(|v| !v.is_empty());
    match call.param("resourceVersionMatch").filter(|v| !v.is_empty()) {
        None => {}
        Some(_) if rv.is_none() => {
            return Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        Some(_) if continue_token.is_some() => {
            return Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        Some("NotOlderThan") => {}
        Some("Exact") if rv != Some(&state.current_rv().to_string()) => {
            let msg = format!(
                "too old resource version: {} ({})",
                rv.unwrap_or_default(),
                state.current_rv()
            );
            return Err(ApiError::expired(&msg, None));
        }
        Some("Exact") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "resourceVersionMatch: Unsupported value: \"{other}\": supported values: \"Exact\", \"NotOlderThan\""
            )));
        }
    }
    if continue_token.is_some() && rv.is_some_and(|v| v != "0") {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    if let Some(err) = faults::check_list(
        &mut state.faults,
        &t.def,
        t.namespace.as_deref(),
        continue_token.is_some(),
    ) {
        return Err(err);
    }
    let limit = match call.param("limit").filter(|l| !l.is_empty()) {
        None => None,
        Some(l) => Some(
            l.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?
                .max(0) as usize,
        ),
    };
    let label_text = call.param("labelSelector").unwrap_or_default();
    let field_text = call.param("fieldSelector").unwrap_or_default();
    let req = ListRequest {
        def: &t.def,
        namespace: t.namespace.as_deref(),
        limit,
        continue_token,
        labels: Selector::parse(label_text)?,
        fields: FieldSelector::parse(field_text, &t.def)?,
        selector_text: format!("{label_text}|{field_text}"),
    };
    let page = paging::list(state, &req)?;
    let mut meta = json!({ "resourceVersion": page.resource_version.to_string() });
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(n) = page.remaining {
        meta["remainingItemCount"] = json!(n);
    }
    if table::wants_table(&call.accept) {
        let items: Vec<Arc<Value>> = page
            .items
            .iter()
            .map(|o| Arc::new(present(&t.def, &t.version, o)))
            .collect();
        return Ok(Reply::json(
            200,
            &table::table(&t.def, &items, meta, call.param("includeObject")),
        ));
    }
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|o| {
            let mut v = present(&t.def, &t.version, o);
            if !t.def.custom {
                // Built-in list items carry no apiVersion/kind, as from the real server.
                if let Some(m) = v.as_object_mut() {
                    m.remove("apiVersion");
                    m.remove("kind");
                }
            }
            v
        })
        .collect();
    Ok(Reply::json(
        200,
        &json!({
            "kind": format!("{}List", t.def.kind),
            "apiVersion": t.def.api_version(&t.version),
            "metadata": meta,
            "items": items,
        }),
    ))
}
