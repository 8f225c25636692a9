//! Validating the request, then planning the edits: each one a span of the original text and
//! its replacement, with the JSON change it must make to the parsed document.

use serde_saphyr::Spanned;

use super::*;

pub(super) fn validate_data_dir(dir: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidDataDir {
            value: dir.to_string(),
            reason,
        })
    };
    if !dir.starts_with('/') {
        return bad("is not an absolute path");
    }
    if dir == "/" {
        return bad("is the root directory");
    }
    if dir.len() > 4096 {
        return bad("is longer than 4096 bytes");
    }
    if dir.ends_with('/') {
        return bad("ends with '/'");
    }
    if !dir
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        return bad("has characters other than letters, digits, '.', '_', '-' and '/'");
    }
    if dir[1..]
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return bad("has an empty, '.' or '..' component");
    }
    Ok(())
}

pub(super) fn validate_token(token: &str) -> Result<(), Error> {
    let bad = |reason| {
        Err(Error::InvalidToken {
            value: token.to_string(),
            reason,
        })
    };
    if token.is_empty() {
        return bad("is empty");
    }
    if token.len() > 128 {
        return bad("is longer than 128 characters");
    }
    if token.starts_with('-') {
        return bad("starts with '-'");
    }
    if !token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return bad("has characters other than letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Planning the edits.

/// Replace `start..end` of the original text with `text` (an insertion when `start == end`).
#[derive(Debug, Clone)]
pub(super) struct Edit {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) text: String,
}

/// What the parsed document must look like after the edits, as JSON pointer operations.
#[derive(Debug, Clone)]
pub(super) enum JsonOp {
    Set {
        pointer: String,
        value: String,
    },
    Insert {
        array: String,
        index: usize,
        values: Vec<String>,
    },
}

#[derive(Default)]
pub(super) struct Plan {
    pub(super) edits: Vec<Edit>,
    pub(super) changes: Vec<(usize, Change)>,
    pub(super) json: Vec<JsonOp>,
    /// `--data-dir` and the data `mountPath` after the rewrite (they end up equal).
    pub(super) expect_mount_path: String,
}

/// Byte range of a scalar in the text, refusing aliases and multi-line values.
pub(super) fn span_of(
    text: &str,
    value: &Spanned<String>,
    what: &str,
) -> Result<(usize, usize), Error> {
    let line = value.referenced.line();
    if value.referenced != value.defined {
        return Err(Error::Alias {
            what: what.to_string(),
            line,
        });
    }
    let span = value.referenced.span();
    let (Some(start), Some(len)) = (span.byte_offset(), span.byte_len()) else {
        return Err(Error::MultiLineValue {
            what: what.to_string(),
            line,
        });
    };
    let (start, end) = (start as usize, (start + len) as usize);
    let line_start = text
        .get(..start)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let before = text.get(line_start..start).unwrap_or_default().trim_end();
    let last_word = before
        .rsplit([' ', '\t', '[', '{', ','])
        .next()
        .unwrap_or_default();
    if last_word.starts_with('&') {
        return Err(Error::Anchor {
            what: what.to_string(),
            line,
        });
    }
    match text.get(start..end) {
        Some(token) if !token.contains('\n') && !token.is_empty() => Ok((start, end)),
        _ => Err(Error::MultiLineValue {
            what: what.to_string(),
            line,
        }),
    }
}

/// `value` written in the same quoting style as the scalar `original`.
pub(super) fn render_like(original: &str, value: &str) -> String {
    match original.as_bytes().first() {
        Some(b'\'') => format!("'{}'", value.replace('\'', "''")),
        Some(b'"') => double_quoted(value),
        _ if plain_safe(value) => value.to_string(),
        _ => double_quoted(value),
    }
}

pub(super) fn double_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `value` reads back as the same string when written unquoted, in block or flow context,
/// under YAML 1.1 (Kubernetes) and 1.2 alike. Deliberately narrow.
pub(super) fn plain_safe(value: &str) -> bool {
    const WORDS: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let mut chars = value.chars();
    let first_ok = match chars.next() {
        Some('/') => true,
        Some('-') => matches!(chars.next(), Some(c) if c != ' '),
        Some(c) => c.is_ascii_alphabetic(),
        None => false,
    };
    first_ok
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '='))
        && !WORDS.contains(&value.to_ascii_lowercase().as_str())
}

pub(super) fn container_pointer(scanned: &Scanned) -> String {
    format!("/spec/containers/{}", scanned.container_index)
}

pub(super) fn item_pointer(scanned: &Scanned, list: ListKind, index: usize) -> String {
    format!("{}/{}/{}", container_pointer(scanned), list.key(), index)
}

/// Sets a flag's value in place, keeping its form and quoting.
pub(super) fn set_flag(
    text: &str,
    scanned: &Scanned,
    flag: &'static str,
    field: Field,
    new: &str,
    plan: &mut Plan,
) -> Result<(), Error> {
    let Some(hit) = scanned.flags.get(flag) else {
        return Ok(());
    };
    if hit.value == new {
        return Ok(());
    }
    let what = format!("--{flag}");
    let (index, item, new_item) = match &hit.value_item {
        None => {
            let (index, item) = &hit.flag_item;
            (*index, item, format!("{}{}={}", hit.dashes, flag, new))
        }
        Some((index, item)) => (*index, item, new.to_string()),
    };
    let (start, end) = span_of(text, item, &what)?;
    plan.edits.push(Edit {
        start,
        end,
        text: render_like(&text[start..end], &new_item),
    });
    plan.json.push(JsonOp::Set {
        pointer: item_pointer(scanned, hit.list, index),
        value: new_item,
    });
    plan.changes.push((
        start,
        Change {
            field,
            old: Some(hit.value.clone()),
            new: new.to_string(),
        },
    ));
    Ok(())
}

/// Adds `--initial-cluster-token` right after `--data-dir`, in its form, quoting and indentation.
pub(super) fn insert_token(
    text: &str,
    scanned: &Scanned,
    token: &str,
    plan: &mut Plan,
) -> Result<(), Error> {
    let anchor = &scanned.flags["data-dir"];
    let (flag_start, flag_end) = span_of(text, &anchor.flag_item.1, "--data-dir")?;
    let flag_style = &text[flag_start..flag_end];
    // (value to write, rendered item)
    let items: Vec<(String, String)> = match &anchor.value_item {
        None => {
            let item = format!("{}initial-cluster-token={}", anchor.dashes, token);
            vec![(item.clone(), render_like(flag_style, &item))]
        }
        Some((_, value)) => {
            let (vs, ve) = span_of(text, value, "--data-dir")?;
            let name = format!("{}initial-cluster-token", anchor.dashes);
            vec![
                (name.clone(), render_like(flag_style, &name)),
                (token.to_string(), render_like(&text[vs..ve], token)),
            ]
        }
    };
    let (last_index, last) = anchor.last_item();
    let (start, end) = span_of(text, last, "--data-dir")?;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let prefix = &text[line_start..start];
    let block_item = {
        let p = prefix.trim_start_matches([' ', '\t']);
        p.starts_with('-') && p.len() > 1 && p[1..].chars().all(|c| c == ' ' || c == '\t')
    };
    let (at, rendered) = if block_item {
        match text[end..].find('\n') {
            Some(nl) => {
                let at = end + nl + 1;
                let eol = if text[..end + nl].ends_with('\r') {
                    "\r\n"
                } else {
                    "\n"
                };
                let lines: String = items
                    .iter()
                    .map(|(_, r)| format!("{prefix}{r}{eol}"))
                    .collect();
                (at, lines)
            }
            None => {
                let lines: String = items
                    .iter()
                    .map(|(_, r)| format!("\n{prefix}{r}"))
                    .collect();
                (text.len(), lines)
            }
        }
    } else {
        // A flow sequence: `[etcd, --data-dir=/x]`.
        let joined: String = items.iter().map(|(_, r)| format!(", {r}")).collect();
        (end, joined)
    };
    plan.edits.push(Edit {
        start: at,
        end: at,
        text: rendered,
    });
    plan.json.push(JsonOp::Insert {
        array: format!("{}/{}", container_pointer(scanned), anchor.list.key()),
        index: last_index + 1,
        values: items.into_iter().map(|(v, _)| v).collect(),
    });
    plan.changes.push((
        at,
        Change {
            field: Field::InitialClusterToken,
            old: None,
            new: token.to_string(),
        },
    ));
    Ok(())
}

pub(super) fn plan(text: &str, scanned: &Scanned, change: &Rewrite) -> Result<Plan, Error> {
    let m = &scanned.etcd;
    let volume = &m.data_volume;
    let mut plan = Plan::default();

    // See the module docs: keep the kubeadm mirror (in-container path == host path) when it holds.
    let mirrored = trim_slash(&volume.mount_path) == trim_slash(&volume.host_path);
    let new_mount_path = if mirrored {
        change.data_dir.clone()
    } else {
        volume.mount_path.clone()
    };
    plan.expect_mount_path = new_mount_path.clone();

    set_flag(
        text,
        scanned,
        "data-dir",
        Field::DataDir,
        &new_mount_path,
        &mut plan,
    )?;
    if scanned.flags.contains_key("initial-cluster-token") {
        set_flag(
            text,
            scanned,
            "initial-cluster-token",
            Field::InitialClusterToken,
            &change.cluster_token,
            &mut plan,
        )?;
    } else {
        insert_token(text, scanned, &change.cluster_token, &mut plan)?;
    }
    if change.set_cluster_state_new {
        set_flag(
            text,
            scanned,
            "initial-cluster-state",
            Field::InitialClusterState,
            "new",
            &mut plan,
        )?;
    }

    let mut set_path = |span: &Spanned<String>, field: Field, pointer: String, new: &str| {
        if span.value == new {
            return Ok(());
        }
        let (start, end) = span_of(text, span, &field.to_string())?;
        plan.edits.push(Edit {
            start,
            end,
            text: render_like(&text[start..end], new),
        });
        plan.json.push(JsonOp::Set {
            pointer,
            value: new.to_string(),
        });
        plan.changes.push((
            start,
            Change {
                field,
                old: Some(span.value.clone()),
                new: new.to_string(),
            },
        ));
        Ok::<(), Error>(())
    };
    set_path(
        &scanned.mount_span,
        Field::MountPath {
            volume: volume.name.clone(),
        },
        format!(
            "{}/volumeMounts/{}/mountPath",
            container_pointer(scanned),
            scanned.mount_index
        ),
        &new_mount_path,
    )?;
    set_path(
        &scanned.host_span,
        Field::HostPath {
            volume: volume.name.clone(),
        },
        format!("/spec/volumes/{}/hostPath/path", scanned.volume_index),
        &change.data_dir,
    )?;
    Ok(plan)
}

pub(super) fn apply_edits(text: &str, edits: &[Edit]) -> String {
    let mut sorted: Vec<&Edit> = edits.iter().collect();
    sorted.sort_by_key(|e| (e.start, e.end));
    let mut out = String::with_capacity(text.len() + 128);
    let mut at = 0;
    for edit in sorted {
        out.push_str(&text[at..edit.start]);
        out.push_str(&edit.text);
        at = edit.end;
    }
    out.push_str(&text[at..]);
    out
}
