//! Records the git commit lifeboat is built from, for `lifeboat --version`: the short hash of
//! HEAD, or "unknown" when building outside a git checkout (e.g. from a source tarball).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LIFEBOAT_COMMIT");
    let commit = std::env::var("LIFEBOAT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=LIFEBOAT_COMMIT={commit}");
    // A commit moves the branch's ref, a checkout moves HEAD: either changes the hash. In a
    // worktree .git is a file, so ask git where HEAD and the ref really are.
    let mut watched = vec![];
    watched.extend(git(&["rev-parse", "--git-path", "HEAD"]));
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.extend(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched {
        // A path that does not exist would make cargo rerun this script on every build.
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// `git ARGS` in the package directory, trimmed, if git runs and succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}
