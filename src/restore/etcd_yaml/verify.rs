//! Checking the result: the new text must parse to the old document plus exactly the planned edits.

use serde_json::Value;

use super::*;

pub(super) fn verify(
    old: &str,
    new: &str,
    scanned: &Scanned,
    plan: &Plan,
    change: &Rewrite,
) -> Result<(), Error> {
    let fail = |detail: String| Error::Verification {
        detail,
        data_dir: change.data_dir.clone(),
        token: change.cluster_token.clone(),
    };
    let mut expected: Value = serde_saphyr::from_str(old).map_err(|e| yaml_error(&e))?;
    // Sets address items by their index in the old text, so they go before any insertion.
    let (sets, inserts): (Vec<&JsonOp>, Vec<&JsonOp>) = plan
        .json
        .iter()
        .partition(|op| matches!(op, JsonOp::Set { .. }));
    for op in sets.into_iter().chain(inserts) {
        match op {
            JsonOp::Set { pointer, value } => {
                let slot = expected
                    .pointer_mut(pointer)
                    .ok_or_else(|| fail(format!("no value at {pointer}")))?;
                *slot = Value::String(value.clone());
            }
            JsonOp::Insert {
                array,
                index,
                values,
            } => {
                let list = expected
                    .pointer_mut(array)
                    .and_then(Value::as_array_mut)
                    .ok_or_else(|| fail(format!("no list at {array}")))?;
                for (offset, v) in values.iter().enumerate() {
                    list.insert(index + offset, Value::String(v.clone()));
                }
            }
        }
    }
    let actual: Value = serde_saphyr::from_str(new)
        .map_err(|e| fail(format!("the new text does not parse: {}", yaml_error(&e))))?;
    if actual != expected {
        return Err(fail(
            "the new text differs from the old one in more than the planned fields".to_string(),
        ));
    }

    let after = scan(new)
        .map_err(|e| fail(format!("the new text does not read back: {e}")))?
        .etcd;
    let before = &scanned.etcd;
    let checks = [
        (
            "--data-dir",
            Some(after.data_dir.as_str()),
            plan.expect_mount_path.as_str(),
        ),
        (
            "mountPath",
            Some(after.data_volume.mount_path.as_str()),
            plan.expect_mount_path.as_str(),
        ),
        (
            "hostPath",
            Some(after.data_volume.host_path.as_str()),
            change.data_dir.as_str(),
        ),
        (
            "host data dir",
            Some(after.data_volume.host_data_dir.as_str()),
            change.data_dir.as_str(),
        ),
        (
            "--initial-cluster-token",
            after.initial_cluster_token.as_deref(),
            change.cluster_token.as_str(),
        ),
    ];
    for (what, got, want) in checks {
        if got != Some(want) {
            return Err(fail(format!("{what} reads back as {got:?}, not {want:?}")));
        }
    }
    let want_state = match &before.initial_cluster_state {
        Some(_) if change.set_cluster_state_new => Some("new".to_string()),
        other => other.clone(),
    };
    if after.initial_cluster_state != want_state {
        return Err(fail(format!(
            "--initial-cluster-state reads back as {:?}, not {want_state:?}",
            after.initial_cluster_state
        )));
    }
    Ok(())
}
