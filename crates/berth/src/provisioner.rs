//! The provisioners `berth server` drives: per pool, an executable or a webhook, given one
//! JSON call ([`Call`]) and answering one JSON object ([`Answer`]).
//!
//! - An executable (`provisioner = { command = ["/path/prog", "arg"] }`) gets the call on
//!   stdin and prints the answer on stdout. It must exit 0 within the timeout; otherwise,
//!   or if its stdout is not the answer, the call fails with its stderr in the error (it is
//!   killed if it outlives the timeout).
//! - A webhook (`provisioner = { url = "http://..." }`; plain http only, the workspace's
//!   reqwest has no TLS) gets the call POSTed as JSON and answers the JSON object with a
//!   2xx status.
//!
//! A failed call is logged by the engine and never stops it.

use async_trait::async_trait;
use berth_core::{Pool, PoolName, WorkerId};
use berth_engine::PoolController;
use berth_store::PoolDemand;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How a pool's workers are started and stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An executable and its arguments, run once per call.
    Command(Vec<String>),
    /// A URL the call is POSTed to.
    Webhook(reqwest::Url),
}

/// One pool's provisioner: where calls go, how long one may take, and when idle workers
/// are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioner {
    /// Where calls go.
    pub target: Target,
    /// How long one call may take.
    pub timeout: Duration,
    /// How long a worker may own nothing before it is removed; `None`: never.
    pub idle_timeout: Option<Duration>,
}

/// What a provisioner is given: the action, the pool, and for `add` the demand and the
/// count of workers wanted, for `remove` the workers to stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// `add` or `remove`.
    pub action: String,
    /// The pool's name.
    pub pool: String,
    /// The GPU type of the pool's workers, if any.
    pub gpu_type: Option<String>,
    /// The size of one worker of the pool.
    pub worker_size: Size,
    /// `add`: how many workers are wanted; `remove`: how many are given.
    pub count: u32,
    /// `add`: the unmet demand the workers are for.
    pub demand: Option<Demand>,
    /// `remove`: the ids of the drained workers to stop.
    pub workers: Vec<String>,
}

/// An amount of capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Size {
    /// CPU in millicores.
    pub cpu_millicores: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Whole GPUs.
    pub gpus: u32,
}

/// The unmet demand of a pool: the waiting requests and what they ask for together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demand {
    /// How many requests wait.
    pub requests: u64,
    /// CPU in millicores.
    pub cpu_millicores: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Whole GPUs.
    pub gpus: u32,
}

/// What a provisioner answers: the ids of the workers it started (`add`; they count toward
/// the demand until they register). Other keys are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Answer {
    /// The ids the started workers will register under.
    #[serde(default)]
    pub started: Vec<String>,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The executable could not be started or talked to.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The executable.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The call took longer than the timeout (an executable is killed).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The executable exited unsuccessfully.
    #[error("{program} exited with {status}; stderr: {stderr}")]
    Exit {
        /// The executable.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its stderr.
        stderr: String,
    },
    /// The webhook could not be reached or answered with an error status.
    #[error("webhook: {0}")]
    Http(#[from] reqwest::Error),
    /// The answer is not the expected JSON object, or names an invalid worker id.
    #[error("bad answer ({message}): {answer}")]
    BadAnswer {
        /// What is wrong.
        message: String,
        /// The start of the answer.
        answer: String,
    },
}

/// The most of a stderr or an answer an error quotes.
const QUOTE: usize = 2000;

impl Provisioner {
    /// Sends `call` and reads the answer.
    pub async fn call(&self, call: &Call) -> Result<Answer, CallError> {
        let body = serde_json::to_vec(call).map_err(|e| CallError::BadAnswer {
            message: format!("the call does not encode: {e}"),
            answer: String::new(),
        })?;
        let answer = match &self.target {
            Target::Command(argv) => run(argv, &body, self.timeout).await?,
            Target::Webhook(url) => post(url, body, self.timeout).await?,
        };
        parse_answer(&answer)
    }
}

/// Runs the executable with `body` on stdin; its stdout if it exits 0 in time.
async fn run(argv: &[String], body: &[u8], timeout: Duration) -> Result<Vec<u8>, CallError> {
    let program = argv.first().cloned().unwrap_or_default();
    let spawn_error = |source| CallError::Spawn {
        program: program.clone(),
        source,
    };
    let mut child = tokio::process::Command::new(&program)
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A call that times out is dropped, and the executable with it.
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    let talk = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A program may exit without reading its call (e.g. one that always fails);
            // its exit status says what happened, not the closed pipe.
            match stdin.write_all(body).await {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    return Err(spawn_error(e));
                }
                _ => {}
            }
        }
        child.wait_with_output().await.map_err(spawn_error)
    };
    let output = tokio::time::timeout(timeout, talk)
        .await
        .map_err(|_| CallError::Timeout(timeout))??;
    if !output.status.success() {
        return Err(CallError::Exit {
            program,
            status: output.status,
            stderr: tail(&output.stderr),
        });
    }
    Ok(output.stdout)
}

/// POSTs `body` as JSON to `url`; the response body if its status is 2xx.
async fn post(url: &reqwest::Url, body: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, CallError> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let response = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                CallError::Timeout(timeout)
            } else {
                e.into()
            }
        })?;
    Ok(response.error_for_status()?.bytes().await?.to_vec())
}

/// Reads an answer: a JSON object whose `started` ids are valid worker ids.
pub fn parse_answer(bytes: &[u8]) -> Result<Answer, CallError> {
    let bad = |message: String| CallError::BadAnswer {
        message,
        answer: tail(bytes),
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    if !value.is_object() {
        return Err(bad("not a JSON object".to_owned()));
    }
    let answer: Answer = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    if let Some(id) = answer
        .started
        .iter()
        .find(|id| WorkerId::new(id.as_str()).is_err())
    {
        return Err(bad(format!("{id:?} is not a valid worker id")));
    }
    Ok(answer)
}

/// The last [`QUOTE`] bytes of `bytes` as text, trimmed.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(QUOTE);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

/// The call asking for `count` workers of `pool` for `demand`.
pub fn add_call(pool: &Pool, demand: &PoolDemand, count: u32) -> Call {
    Call {
        action: "add".to_owned(),
        count,
        demand: Some(Demand {
            requests: demand.requests,
            cpu_millicores: demand.resources.cpu_millicores,
            memory_mib: demand.resources.memory_mib,
            gpus: demand.resources.gpu_count,
        }),
        workers: Vec::new(),
        ..pool_call(pool)
    }
}

/// The call asking to stop `workers` of `pool`.
pub fn remove_call(pool: &Pool, workers: &[WorkerId]) -> Call {
    Call {
        action: "remove".to_owned(),
        count: u32::try_from(workers.len()).unwrap_or(u32::MAX),
        workers: workers.iter().map(|w| w.as_str().to_owned()).collect(),
        ..pool_call(pool)
    }
}

/// The parts of a call that describe the pool.
fn pool_call(pool: &Pool) -> Call {
    Call {
        action: String::new(),
        pool: pool.attributes.pool.to_string(),
        gpu_type: pool.gpu_type.as_ref().map(ToString::to_string),
        worker_size: Size {
            cpu_millicores: pool.worker_size.cpu_millicores,
            memory_mib: pool.worker_size.memory_mib,
            gpus: pool.worker_size.gpu_count,
        },
        count: 0,
        demand: None,
        workers: Vec::new(),
    }
}

/// The configured provisioners by pool, as the engine's [`PoolController`].
#[derive(Debug, Default)]
pub struct Provisioners {
    /// The provisioner of each pool that has one.
    pub by_pool: HashMap<PoolName, Provisioner>,
}

impl Provisioners {
    fn of(&self, pool: &Pool) -> Result<&Provisioner, String> {
        self.by_pool
            .get(&pool.attributes.pool)
            .ok_or_else(|| format!("pool {} has no provisioner", pool.attributes.pool))
    }
}

#[async_trait]
impl PoolController for Provisioners {
    fn manages(&self, pool: &PoolName) -> bool {
        self.by_pool.contains_key(pool)
    }

    async fn add_workers(
        &self,
        pool: &Pool,
        demand: &PoolDemand,
        count: u32,
    ) -> Result<Vec<WorkerId>, String> {
        let answer = self
            .of(pool)?
            .call(&add_call(pool, demand, count))
            .await
            .map_err(|e| e.to_string())?;
        // parse_answer checked every id already.
        Ok(answer
            .started
            .iter()
            .filter_map(|id| WorkerId::new(id.as_str()).ok())
            .collect())
    }

    fn idle_timeout(&self, pool: &PoolName) -> Option<Duration> {
        self.by_pool.get(pool).and_then(|p| p.idle_timeout)
    }

    async fn remove_workers(&self, pool: &Pool, workers: &[WorkerId]) -> Result<(), String> {
        self.of(pool)?
            .call(&remove_call(pool, workers))
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use berth_core::{GpuType, PoolAttributes, Resources};

    fn gpu_pool() -> Pool {
        Pool {
            attributes: PoolAttributes::plain(PoolName::new("gpu").unwrap()),
            gpu_type: Some(GpuType::A100_80),
            worker_size: Resources::new(32_000, 262_144, 8),
            fallback: Vec::new(),
        }
    }

    fn sh(script: &str, timeout: Duration) -> Provisioner {
        Provisioner {
            target: Target::Command(vec!["sh".into(), "-c".into(), script.into()]),
            timeout,
            idle_timeout: None,
        }
    }

    #[test]
    fn the_add_call_is_this_json() {
        let demand = PoolDemand {
            pool: Some(PoolName::new("gpu").unwrap()),
            requests: 3,
            resources: Resources::new(1500, 2048, 9),
            gpus_by_type: Default::default(),
        };
        let json = serde_json::to_value(add_call(&gpu_pool(), &demand, 2)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "action": "add", "pool": "gpu", "gpu_type": GpuType::A100_80.to_string(),
                "worker_size": {"cpu_millicores": 32000, "memory_mib": 262144, "gpus": 8},
                "count": 2,
                "demand": {"requests": 3, "cpu_millicores": 1500, "memory_mib": 2048, "gpus": 9},
                "workers": []
            })
        );
        let remove = remove_call(&gpu_pool(), &[WorkerId::new("w-1").unwrap()]);
        let json = serde_json::to_value(remove).unwrap();
        assert_eq!(json["action"], "remove");
        assert_eq!(json["workers"], serde_json::json!(["w-1"]));
        assert_eq!(json["count"], 1);
        assert_eq!(json["demand"], serde_json::Value::Null);
    }

    #[test]
    fn answers_are_json_objects_naming_valid_ids() {
        let answer = parse_answer(br#"{"started": ["w-1", "w-2"], "note": "ok"}"#).unwrap();
        assert_eq!(answer.started, ["w-1", "w-2"]);
        assert_eq!(parse_answer(b"{}").unwrap(), Answer::default());
        for bad in [
            &b"started w-1"[..],
            b"[]",
            br#"{"started": "w-1"}"#,
            br#"{"started": ["a b"]}"#,
        ] {
            let error = parse_answer(bad).unwrap_err();
            assert!(matches!(error, CallError::BadAnswer { .. }), "{error}");
        }
    }

    #[tokio::test]
    async fn an_executable_reads_the_call_and_answers_on_stdout() {
        // The script echoes the pool it was given back as the started worker's id.
        let script = r#"read -r call; pool=$(echo "$call" | sed 's/.*"pool":"\([^"]*\)".*/\1/'); echo "{\"started\": [\"$pool-1\"]}""#;
        let call = add_call(
            &gpu_pool(),
            &PoolDemand {
                pool: None,
                requests: 1,
                resources: Resources::new(1, 1, 0),
                gpus_by_type: Default::default(),
            },
            1,
        );
        let answer = sh(script, Duration::from_secs(10))
            .call(&call)
            .await
            .unwrap();
        assert_eq!(answer.started, ["gpu-1"]);
    }

    #[tokio::test]
    async fn failures_are_errors_with_what_went_wrong() {
        let call = remove_call(&gpu_pool(), &[]);
        let error = sh("echo out of quota >&2; exit 3", Duration::from_secs(10))
            .call(&call)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("out of quota"), "{error}");
        let error = sh("echo not json", Duration::from_secs(10))
            .call(&call)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("not json"), "{error}");
        let error = sh("sleep 30", Duration::from_millis(200))
            .call(&call)
            .await
            .unwrap_err();
        assert!(matches!(error, CallError::Timeout(_)), "{error}");
        let missing = Provisioner {
            target: Target::Command(vec!["/nonexistent/provisioner".into()]),
            timeout: Duration::from_secs(1),
            idle_timeout: None,
        };
        let error = missing.call(&call).await.unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/provisioner"),
            "{error}"
        );
    }

    /// Serves one HTTP request on a fresh port with `status` and `body`; the URL, and the
    /// request as received.
    async fn one_shot(
        status: &'static str,
        body: &'static str,
    ) -> (reqwest::Url, tokio::task::JoinHandle<String>) {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/grow", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Reads until the JSON body's closing brace: the call is one JSON object.
            while !request.ends_with(b"}") {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        (url, server)
    }

    fn webhook(url: reqwest::Url) -> Provisioner {
        Provisioner {
            target: Target::Webhook(url),
            timeout: Duration::from_secs(10),
            idle_timeout: None,
        }
    }

    #[tokio::test]
    async fn a_webhook_gets_the_call_posted_and_answers_in_the_body() {
        let (url, server) = one_shot("200 OK", r#"{"started": ["w-9"]}"#).await;
        let call = remove_call(&gpu_pool(), &[WorkerId::new("w-1").unwrap()]);
        let answer = webhook(url).call(&call).await.unwrap();
        assert_eq!(answer.started, ["w-9"]);
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /grow HTTP/1.1"), "{request}");
        assert!(request.contains("application/json"), "{request}");
        assert!(request.contains(r#""action":"remove""#), "{request}");

        let (url, server) = one_shot("503 Service Unavailable", "{}").await;
        let error = webhook(url).call(&call).await.unwrap_err();
        assert!(matches!(error, CallError::Http(_)), "{error}");
        assert!(error.to_string().contains("503"), "{error}");
        server.await.unwrap();
    }
}
