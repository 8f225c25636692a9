//! URL paths to what they name: discovery documents, or a resource target (group, version,
//! namespace, name, subresource) resolved against the catalog, with the real server's 404s for
//! paths that name nothing.

use super::resources::ResourceDef;
use super::status::ApiError;
use super::store::State;

/// What a path names.
pub(super) enum Route {
    Version,
    Health,
    /// `/api`
    CoreApi,
    /// `/apis`
    Apis,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`
    ResourceList(String, String),
    Resource(Box<Target>),
    /// `/openapi/v3`
    OpenApiIndex,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`
    OpenApiDocument(String, String),
}

/// A resource URL, resolved.
pub(super) struct Target {
    pub def: ResourceDef,
    pub version: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Resolves a path (without query) against the served resources.
pub(super) fn route(state: &State, path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Ok(Route::Version),
        ["healthz" | "readyz" | "livez"] => Ok(Route::Health),
        ["api"] => Ok(Route::CoreApi),
        ["apis"] => Ok(Route::Apis),
        ["openapi", "v3"] => Ok(Route::OpenApiIndex),
        ["openapi", "v3", "api", version] => {
            Ok(Route::OpenApiDocument(String::new(), version.to_string()))
        }
        ["openapi", "v3", "apis", group, version] => Ok(Route::OpenApiDocument(
            group.to_string(),
            version.to_string(),
        )),
        ["api", "v1"] => Ok(Route::ResourceList(String::new(), "v1".into())),
        ["apis", group] => Ok(Route::Group(group.to_string())),
        ["apis", group, version] => Ok(Route::ResourceList(group.to_string(), version.to_string())),
        ["api", "v1", rest @ ..] => resource(state, "", "v1", rest),
        ["apis", group, version, rest @ ..] => resource(state, group, version, rest),
        _ => Err(ApiError::path_not_found()),
    }
}

fn resource(state: &State, group: &str, version: &str, rest: &[&str]) -> Result<Route, ApiError> {
    if rest.first() == Some(&"watch") {
        return Err(ApiError::method_not_allowed());
    }
    let namespaced = match rest {
        ["namespaces", ns, plural, tail @ ..] => state
            .find(group, version, plural)
            .filter(|d| d.namespaced)
            .map(|d| (d, Some(ns.to_string()), tail)),
        _ => None,
    };
    let (def, namespace, tail) = match namespaced {
        Some(found) => found,
        None => {
            let (plural, tail) = rest.split_first().ok_or_else(ApiError::path_not_found)?;
            let def = state
                .find(group, version, plural)
                .ok_or_else(ApiError::path_not_found)?;
            if def.namespaced && !tail.is_empty() {
                return Err(ApiError::path_not_found());
            }
            (def, None, tail)
        }
    };
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, "status"] if def.status_subresource => {
            (Some(name.to_string()), Some("status".to_string()))
        }
        _ => return Err(ApiError::path_not_found()),
    };
    Ok(Route::Resource(Box::new(Target {
        def,
        version: version.to_string(),
        namespace,
        name,
        subresource,
    })))
}
