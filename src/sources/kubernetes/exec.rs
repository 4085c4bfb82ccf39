//! kubeconfig `exec` credential plugins (`aws eks get-token`,
//! `gke-gcloud-auth-plugin`, `kubelogin`…), run as kubectl runs them: the command
//! with its args and env, `KUBERNETES_EXEC_INFO` describing the request, stdout an
//! `ExecCredential` whose `status.token` is the bearer token. The token is cached
//! until a minute before its `expirationTimestamp` (a plugin can take seconds and
//! rate limits apply), and the plugin is bounded: a timeout, killed when it runs
//! over, its output capped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::config::Secret;

/// How long a plugin may run (a cloud CLI fetching a token over the network).
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes of stdout kept; an ExecCredential is a few KiB.
const MAX_OUTPUT: u64 = 256 * 1024;
/// A token without an expiry is asked for again after this long.
const NO_EXPIRY_TTL: chrono::Duration = chrono::Duration::minutes(10);
/// A cached token is renewed this long before it expires.
const RENEW_BEFORE: chrono::Duration = chrono::Duration::seconds(60);

/// The `exec` section of a kubeconfig user.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ExecConfig {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Option<Vec<EnvVar>>,
}

#[derive(Debug, Clone, Deserialize)]
struct EnvVar {
    name: String,
    value: String,
}

#[derive(Deserialize)]
struct ExecCredential {
    #[serde(default)]
    status: Option<ExecStatus>,
}

#[derive(Deserialize)]
struct ExecStatus {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "expirationTimestamp", default)]
    expiration: Option<DateTime<Utc>>,
}

pub(super) struct ExecPlugin {
    config: ExecConfig,
    /// Where a relative command with a path separator is found (the kubeconfig's dir).
    dir: PathBuf,
    cached: Mutex<Option<(Secret, DateTime<Utc>)>>,
}

impl ExecPlugin {
    pub(super) fn new(config: ExecConfig, dir: &Path) -> Self {
        ExecPlugin {
            config,
            dir: dir.to_path_buf(),
            cached: Mutex::new(None),
        }
    }

    /// The bearer token, from the cache or a run of the plugin. Errors are one line
    /// naming the command, never the plugin's output (it may hold a token).
    pub(super) async fn token(&self) -> std::result::Result<Secret, String> {
        let now = Utc::now();
        // The lock is held only to read or write the cache, never across the run.
        if let Some((token, until)) = self.lock().as_ref() {
            if now + RENEW_BEFORE < *until {
                return Ok(token.clone());
            }
        }
        let (token, until) = self.run().await?;
        *self.lock() = Some((token.clone(), until));
        Ok(token)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Secret, DateTime<Utc>)>> {
        // A poisoned cache only means another call panicked mid-write of a value.
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn command_path(&self) -> PathBuf {
        let command = Path::new(&self.config.command);
        if command.is_relative() && self.config.command.contains('/') {
            self.dir.join(command)
        } else {
            command.to_path_buf()
        }
    }

    async fn run(&self) -> std::result::Result<(Secret, DateTime<Utc>), String> {
        let name = &self.config.command;
        let api_version = self
            .config
            .api_version
            .clone()
            .unwrap_or_else(|| "client.authentication.k8s.io/v1beta1".into());
        let info = serde_json::json!({
            "apiVersion": api_version,
            "kind": "ExecCredential",
            "spec": {"interactive": false}
        });
        let mut command = tokio::process::Command::new(self.command_path());
        command
            .args(&self.config.args)
            .env("KUBERNETES_EXEC_INFO", info.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        for var in self.config.env.iter().flatten() {
            command.env(&var.name, &var.value);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("exec credential plugin `{name}` could not start: {e}"))?;
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| format!("exec credential plugin `{name}`: no output"))?;
        let work = async {
            let mut out = Vec::new();
            (&mut stdout)
                .take(MAX_OUTPUT)
                .read_to_end(&mut out)
                .await
                .map_err(|e| format!("exec credential plugin `{name}`: reading its output: {e}"))?;
            let status = child
                .wait()
                .await
                .map_err(|e| format!("exec credential plugin `{name}`: {e}"))?;
            Ok::<_, String>((out, status))
        };
        let (out, status) = tokio::time::timeout(PLUGIN_TIMEOUT, work)
            .await
            .map_err(|_| {
                format!(
                    "exec credential plugin `{name}` ran over {} s and was stopped",
                    PLUGIN_TIMEOUT.as_secs()
                )
            })??;
        if !status.success() {
            return Err(format!(
                "exec credential plugin `{name}` failed ({status}); run it by hand to see why"
            ));
        }
        let credential: ExecCredential = serde_json::from_slice(&out).map_err(|_| {
            format!("exec credential plugin `{name}` did not print an ExecCredential")
        })?;
        let status = credential.status.ok_or_else(|| {
            format!("exec credential plugin `{name}`: the ExecCredential has no status")
        })?;
        let token = status.token.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
            format!(
                "exec credential plugin `{name}` gave no token (client certificates from plugins are not supported)"
            )
        })?;
        let until = status
            .expiration
            .unwrap_or_else(|| Utc::now() + NO_EXPIRY_TTL);
        Ok((Secret::new(token.trim().to_string()), until))
    }
}
