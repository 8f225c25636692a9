//! A stand-in for the kubelet's static-pod handling, enough for the guided restore: it watches
//! one manifests directory and runs the etcd container of `etcd.yaml` as a local process (its
//! command and args, with every path under a volumeMount mapped to the volume's hostPath),
//! stops it when the file disappears, and restarts it when the file changes. It can be frozen
//! (it then neither stops nor starts anything), like a kubelet that hangs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A running fake kubelet; stops its pod when dropped.
pub struct Kubelet {
    stop: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Kubelet {
    /// Watches `manifests` and runs etcd from `etcd_bin`; the pod's output goes to `log`.
    pub fn start(manifests: &Path, etcd_bin: &Path, log: PathBuf) -> Kubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let frozen = Arc::new(AtomicBool::new(false));
        let (manifests, etcd_bin, flag, ice) = (
            manifests.to_path_buf(),
            etcd_bin.to_path_buf(),
            stop.clone(),
            frozen.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut pod: Option<(Child, String)> = None;
            while !flag.load(Ordering::SeqCst) {
                if ice.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let text = std::fs::read_to_string(manifests.join("etcd.yaml")).ok();
                let changed = match (&pod, &text) {
                    (Some((_, ran)), Some(now)) => ran != now,
                    (Some(_), None) => true,
                    _ => false,
                };
                let exited = pod
                    .as_mut()
                    .is_some_and(|(c, _)| c.try_wait().ok().flatten().is_some());
                if (changed || exited)
                    && let Some((mut c, _)) = pod.take()
                {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                if pod.is_none()
                    && let Some(text) = text
                {
                    let argv = pod_command(&text, &etcd_bin);
                    let out = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&log)
                        .unwrap();
                    let child = Command::new(&argv[0])
                        .args(&argv[1..])
                        .stdout(Stdio::null())
                        .stderr(out)
                        .spawn()
                        .expect("start the pod's etcd");
                    pod = Some((child, text));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Some((mut c, _)) = pod {
                let _ = c.kill();
                let _ = c.wait();
            }
        });
        Kubelet {
            stop,
            frozen,
            thread: Some(thread),
        }
    }

    /// From now on the kubelet neither stops nor starts the pod, whatever the manifests say.
    pub fn freeze(&self) {
        self.frozen.store(true, Ordering::SeqCst);
    }

    /// The kubelet follows the manifests again.
    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The etcd container's argv with container paths mapped to host paths.
fn pod_command(text: &str, etcd_bin: &Path) -> Vec<String> {
    let pod: serde_json::Value = serde_saphyr::from_str(text).expect("etcd.yaml parses");
    let spec = &pod["spec"];
    let container = &spec["containers"][0];
    let mut argv: Vec<String> = ["command", "args"]
        .iter()
        .flat_map(|k| container[*k].as_array().cloned().unwrap_or_default())
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(argv[0], "etcd", "the etcd container runs etcd");
    argv[0] = etcd_bin.join("etcd").display().to_string();
    let mut mounts: Vec<(String, String)> = container["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            let name = m["name"].as_str()?;
            let volume = spec["volumes"]
                .as_array()?
                .iter()
                .find(|v| v["name"] == name)?;
            Some((
                m["mountPath"].as_str()?.to_string(),
                volume["hostPath"]["path"].as_str()?.to_string(),
            ))
        })
        .collect();
    mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    for arg in argv.iter_mut().skip(1) {
        if let Some((flag, value)) = arg.split_once('=')
            && let Some((mount, host)) = mounts
                .iter()
                .find(|(m, _)| value == m || value.starts_with(&format!("{m}/")))
        {
            *arg = format!("{flag}={host}{}", &value[mount.len()..]);
        }
    }
    argv
}
