//! Errors as the API server reports them: a `v1 Status` object with `status: Failure`, a
//! `reason` (NotFound, AlreadyExists, Conflict, Expired, ...), a `message` and the HTTP `code`.
//! Messages follow the real server's wording so client error handling is exercised faithfully.

use std::fmt;

use serde_json::{Value, json};

use super::resources::ResourceDef;

/// A failed API call, as the server would put it in a `Status` body.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// The HTTP status code, also `Status.code`.
    pub code: u16,
    /// `Status.reason`, e.g. `NotFound` or `Expired`.
    pub reason: String,
    /// `Status.message`, in the real server's wording.
    pub message: String,
    details: Option<Value>,
    list_continue: Option<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// `details` naming one object of a resource.
fn object_details(def: &ResourceDef, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": def.plural });
    if !def.group.is_empty() {
        d["group"] = json!(def.group);
    }
    d
}

impl ApiError {
    pub(super) fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
            list_continue: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub(super) fn not_found(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", def.qualified()),
        )
        .with_details(object_details(def, name))
    }

    pub(super) fn namespace_not_found(ns: &str) -> Self {
        Self::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
            .with_details(json!({ "name": ns, "kind": "namespaces" }))
    }

    /// A path that names no API, resource or subresource.
    pub(super) fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({ "causes": [{
            "reason": "UnexpectedServerResponse",
            "message": "404 page not found"
        }]}))
    }

    pub(super) fn already_exists(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", def.qualified()),
        )
        .with_details(object_details(def, name))
    }

    /// A write whose resourceVersion (or UID) precondition no longer holds.
    pub(super) fn conflict(def: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                def.qualified()
            ),
        )
        .with_details(object_details(def, name))
    }

    /// A server-side apply that would take fields another manager owns, without `force`.
    pub(super) fn apply_conflict(
        def: &ResourceDef,
        name: &str,
        conflicts: &[(String, String)],
    ) -> Self {
        let what = if conflicts.len() == 1 {
            "1 conflict".to_string()
        } else {
            format!("{} conflicts", conflicts.len())
        };
        let lines: Vec<String> = conflicts
            .iter()
            .map(|(manager, field)| format!("conflict with \"{manager}\": {field}"))
            .collect();
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(manager, field)| {
                json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{manager}\""),
                    "field": field,
                })
            })
            .collect();
        let mut details = object_details(def, name);
        details["causes"] = json!(causes);
        Self::new(
            409,
            "Conflict",
            format!("Apply failed with {what}: {}", lines.join("\n")),
        )
        .with_details(details)
    }

    /// A continue token (or resourceVersion) the server no longer has history for.
    pub(super) fn expired(message: &str, list_continue: Option<String>) -> Self {
        let mut e = Self::new(410, "Expired", message);
        e.list_continue = list_continue;
        e
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// `422 Invalid` with one cause per `(field, problem)`.
    pub(super) fn invalid(def: &ResourceDef, name: &str, causes: &[(String, String)]) -> Self {
        let text: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let list: Vec<Value> = causes
            .iter()
            .map(|(f, m)| json!({ "reason": "FieldValueInvalid", "message": m, "field": f }))
            .collect();
        let mut details = json!({ "name": name, "kind": def.kind, "causes": list });
        if !def.group.is_empty() {
            details["group"] = json!(def.group);
        }
        let message = if text.len() == 1 {
            format!("{} \"{name}\" is invalid: {}", def.kind, text[0])
        } else {
            format!("{} \"{name}\" is invalid: [{}]", def.kind, text.join(", "))
        };
        Self::new(422, "Invalid", message).with_details(details)
    }

    pub(super) fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub(super) fn forbidden(def: &ResourceDef, verb: &str, namespace: Option<&str>) -> Self {
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        Self::new(
            403,
            "Forbidden",
            format!(
                "{} is forbidden: User \"system:anonymous\" cannot {verb} resource \"{}\" \
                 in API group \"{}\" {scope}",
                def.qualified(),
                def.plural,
                def.group
            ),
        )
        .with_details(json!({ "kind": def.plural, "group": def.group }))
    }

    pub(super) fn internal(message: &str) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
        .with_details(json!({ "causes": [{ "message": message }] }))
    }

    pub(super) fn not_acceptable(accept: &str) -> Self {
        Self::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: application/json, \
                 application/yaml (asked for {accept})"
            ),
        )
    }

    pub(super) fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted \
                 media types include: application/json-patch+json, application/merge-patch+json, \
                 application/apply-patch+yaml, application/strategic-merge-patch+json"
            ),
        )
    }

    /// The `Status` object sent as the response body.
    pub fn to_status(&self) -> Value {
        let mut metadata = json!({});
        if let Some(c) = &self.list_continue {
            metadata["continue"] = json!(c);
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": metadata,
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

/// The `Status` a successful DELETE returns for resources that are removed at once.
pub(super) fn delete_success(def: &ResourceDef, name: &str, uid: &str) -> Value {
    let mut details = object_details(def, name);
    details["uid"] = json!(uid);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
