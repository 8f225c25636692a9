//! Injected failures for tests: make LIST of one resource fail (403, 500, any code), always,
//! a number of times, or only on continuation pages (410 Expired there: a compaction mid-list), so a client's partial-backup and retry
//! paths can be driven on purpose.

use super::resources::ResourceDef;
use super::status::ApiError;

/// A failure to inject into LIST calls; build with [`Fault::forbidden`],
/// [`Fault::internal_error`] or [`Fault::status`].
#[derive(Clone, Debug, PartialEq)]
pub struct Fault {
    code: u16,
    times: Option<u32>,
    continue_only: bool,
}

impl Fault {
    /// `403 Forbidden`, as for a service account without `list` permission.
    pub fn forbidden() -> Self {
        Self::status(403)
    }

    /// `500 InternalError`, as for an etcd timeout.
    pub fn internal_error() -> Self {
        Self::status(500)
    }

    /// `410 Expired` with the real server's message for an expired continue token (with
    /// [`Fault::on_continue_only`]: an etcd compaction in the middle of a list).
    pub fn expired() -> Self {
        Self::status(410)
    }

    /// Any HTTP code, with the matching Status reason where Kubernetes has one.
    pub fn status(code: u16) -> Self {
        Fault {
            code,
            times: None,
            continue_only: false,
        }
    }

    /// Fails only the next `n` matching calls, then lets them through (a transient fault).
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Fails only calls that carry a `continue` token: the first page succeeds, a later one fails.
    pub fn on_continue_only(mut self) -> Self {
        self.continue_only = true;
        self
    }
}

/// A fault installed for the resources a test named.
#[derive(Clone, Debug)]
pub(super) struct FaultRule {
    /// As the test named it: `secrets`, `deployments.apps`, `widgets.example.com`.
    pub resource: String,
    pub fault: Fault,
}

/// The error to answer a LIST with, if a fault applies; consumes one use of counted faults.
pub(super) fn check_list(
    rules: &mut [FaultRule],
    def: &ResourceDef,
    namespace: Option<&str>,
    is_continue: bool,
) -> Option<ApiError> {
    let pos = rules.iter().position(|r| {
        (r.resource == def.key() || r.resource == def.plural)
            && (!r.fault.continue_only || is_continue)
            && r.fault.times != Some(0)
    })?;
    let fault = rules[pos].fault.clone();
    if let Some(n) = &mut rules[pos].fault.times {
        *n -= 1;
    }
    let err = match fault.code {
        403 => ApiError::forbidden(def, "list", namespace),
        500 => ApiError::internal("injected fault: etcdserver: request timed out"),
        429 => ApiError::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        ),
        503 => ApiError::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        504 => ApiError::new(
            504,
            "Timeout",
            "the server was unable to return a response in the time allotted, but may still be processing the request",
        ),
        401 => ApiError::new(401, "Unauthorized", "Unauthorized"),
        410 => ApiError::expired(super::paging::EXPIRED, None),
        code => ApiError::new(
            code,
            "InternalError",
            format!("injected fault with code {code}"),
        ),
    };
    Some(err)
}
