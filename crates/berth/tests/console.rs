//! The web console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven through WebDriver with fantoccini), against real `berth server`
//! and `berth worker` processes: the page loads without script errors; a container
//! submitted with `berth run` appears on the page and changes state within 2 s, and its
//! page follows its logs and cancels it; output that looks like markup stays text; the
//! backlog and the throughput chart show; a killed worker shows as lost; a client token
//! sees none of another tenant's containers and not the fleet; the fleet view is saved as a screenshot (in
//! `CARGO_TARGET_TMPDIR`, printed). A second test times the fleet view of 1,000 workers (printed, not
//! asserted: a timing assertion would flake on a busy machine).
//!
//! Both tests fail, not skip, without chromium or chromedriver (scripts/test.sh installs
//! them). `BERTH_CHROMIUM` and `BERTH_CHROMEDRIVER` override where they are looked for.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

mod common;

use common::{BERTH, Proc, eventually, free_port};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A `berth server` on the embedded store whose workers are lost after 2 s of silence,
/// and the berth processes that call it (all sharing one config directory and its admin
/// token).
struct Fleet {
    config: tempfile::TempDir,
    url: String,
    token: String,
    procs: Vec<(String, Proc)>,
}

impl Fleet {
    fn start() -> Fleet {
        let config = tempfile::tempdir().unwrap();
        let token = berth_core::Token::from_random(rand::random(), rand::random()).expose();
        std::fs::write(config.path().join("token"), &token).unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let mut fleet = Fleet {
            config,
            url: format!("http://{listen}"),
            token,
            procs: Vec::new(),
        };
        let server = fleet.spawn(&["server", "--listen", &listen, "--heartbeat-timeout", "2"]);
        fleet.procs.push(("server".to_owned(), server));
        eventually("the server to answer", || {
            fleet.berth(&["workers", "--json"]).status.success()
        });
        fleet
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BERTH);
        command
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .env("BERTH_CONFIG_DIR", self.config.path())
            .env("BERTH_SERVER", &self.url);
        command
    }

    fn spawn(&self, args: &[&str]) -> Proc {
        let child = self
            .command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Proc(child)
    }

    fn berth(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Starts `berth worker --id id` with the process runtime and `extra` arguments.
    fn worker(&mut self, id: &str, extra: &[&str]) {
        let work = self.config.path().join(id);
        let mut args = vec!["worker", "--server", &self.url, "--id", id];
        args.extend(["--runtime", "process", "--cpu", "2", "--memory", "2Gi"]);
        args.extend(["--work-dir", work.to_str().unwrap()]);
        args.extend(extra);
        let worker = self.spawn(&args);
        self.procs.push((id.to_owned(), worker));
    }

    /// Kills the process started as `name` (SIGKILL).
    fn kill(&mut self, name: &str) {
        self.procs.retain(|(n, _)| n != name);
    }

    fn workers(&self) -> Vec<Value> {
        let out = self.berth(&["workers", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }
}

/// A program from `variable` or the first of `candidates` that exists; the test fails
/// without it (scripts/test.sh installs chromium and chromium-driver).
fn program(variable: &str, candidates: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return PathBuf::from(path);
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!("none of {candidates:?} exists: install chromium and chromium-driver (scripts/test.sh does), or set {variable}")
        })
}

/// chromedriver on a free port, and a headless Chromium session through it.
struct Browser {
    client: Client,
    _driver: Proc,
}

impl Browser {
    async fn start() -> Browser {
        let chromium = program(
            "BERTH_CHROMIUM",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let chromedriver = program("BERTH_CHROMEDRIVER", &["/usr/bin/chromedriver"]);
        let port = free_port();
        let driver = Proc(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                // --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(error) if started.elapsed() < Duration::from_secs(30) => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => panic!("no WebDriver session from chromedriver: {error}"),
            }
        };
        Browser {
            client,
            _driver: driver,
        }
    }

    /// Opens the console of `fleet` and enters its admin token.
    async fn log_in(&self, fleet: &Fleet) {
        self.client.goto(&format!("{}/", fleet.url)).await.unwrap();
        let input = self.client.find(Locator::Css("#token")).await.unwrap();
        input.send_keys(&fleet.token).await.unwrap();
        self.client
            .find(Locator::Css("#login button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn go(&self, fleet: &Fleet, hash: &str) {
        self.client
            .goto(&format!("{}/{hash}", fleet.url))
            .await
            .unwrap();
    }

    /// The text of the first element matching `css`, if there is one.
    async fn text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// Waits (at most 60 s) until the element matching `css` shows text `wanted` says is
    /// right; its text.
    async fn wait_text(&self, css: &str, wanted: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            match self.text(css).await {
                Some(text) if wanted(&text) => return text,
                seen if started.elapsed() > Duration::from_secs(60) => panic!(
                    "{css} never showed the text wanted (last: {seen:?}); the page's status: \
                     {:?}, its view: {:?}",
                    self.text("#status").await,
                    self.text("#view").await
                ),
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The page's script errors (the console's own hook collects them); fails if the
    /// script never ran.
    async fn script_errors(&self) -> Vec<Value> {
        let errors = self
            .client
            .execute("return window.berthConsoleErrors;", Vec::new())
            .await
            .unwrap();
        errors
            .as_array()
            .cloned()
            .expect("the console's script did not run")
    }

    /// Saves a screenshot of the page as `name` in the test's artifact directory.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).unwrap();
        println!("screenshot: {}", path.display());
        path
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_fleet_and_follows_containers_live() {
    let mut fleet = Fleet::start();
    fleet.worker("w-a", &[]);
    fleet.worker("w-b", &[]);
    fleet.worker("w-gpu", &["--pool", "gpu", "--gpu", "A10G:2"]);
    eventually("three workers", || fleet.workers().len() == 3);
    let browser = Browser::start().await;
    browser.log_in(&fleet).await;
    for id in ["w-a", "w-b", "w-gpu"] {
        let css = format!("tr[data-id='{id}'] .worker-status");
        browser.wait_text(&css, |s| s == "available").await;
    }
    assert_eq!(browser.script_errors().await, Vec::<Value>::new());

    container_appears_and_changes_state(&fleet, &browser).await;
    container_page_follows_logs(&browser).await;
    container_page_cancels(&fleet, &browser).await;
    user_text_stays_text(&fleet, &browser).await;

    // Some load, so that the screenshots show the bars filled.
    for run in [
        &[
            "--id", "train-1", "--gpu", "A10G:1", "--cpu", "1", "--memory", "1Gi",
        ][..],
        &["--id", "web-2", "--cpu", "1500m", "--memory", "1536Mi"][..],
    ] {
        let out = fleet.berth(&[&["run"][..], run, &["--", "sleep", "60"]].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    backlog_and_throughput_show(&fleet, &browser).await;
    browser.go(&fleet, "#/fleet").await;
    browser
        .wait_text("tr[data-id='w-gpu'] .bar-label", |cpu| {
            cpu.starts_with("1000/")
        })
        .await;
    browser.screenshot("console-fleet.png").await;
    fleet.kill("w-b");
    browser
        .wait_text("tr[data-id='w-b'] .worker-status", |s| s == "lost")
        .await;
    let row = browser
        .client
        .find(Locator::Css("tr[data-id='w-b']"))
        .await
        .unwrap();
    assert!(row.attr("class").await.unwrap().unwrap().contains("lost"));
    browser.screenshot("console-fleet-lost.png").await;
    assert_eq!(browser.script_errors().await, Vec::<Value>::new());
    a_client_token_sees_its_tenant_only(&fleet, &browser).await;
    assert_eq!(browser.script_errors().await, Vec::<Value>::new());
    browser.client.close().await.unwrap();
}

/// A command and output that look like markup are shown as text: no element is made.
async fn user_text_stays_text(fleet: &Fleet, browser: &Browser) {
    let markup = "<img id=injected src=/x onerror=alert(1)>";
    let run = [
        "run", "--id", "markup-1", "--cpu", "100m", "--memory", "64Mi", "--", "echo",
    ];
    assert!(
        fleet
            .berth(&[&run[..], &[markup]].concat())
            .status
            .success()
    );
    browser.go(fleet, "#/containers/markup-1").await;
    browser
        .wait_text("#logs", |logs| logs.contains(markup))
        .await;
    let command = browser.text("dd[data-field='command']").await.unwrap();
    assert_eq!(command, format!("echo {markup}"));
    let injected = browser
        .client
        .find_all(Locator::Css("#injected"))
        .await
        .unwrap();
    assert!(injected.is_empty(), "the output became markup");
}

/// After "Forget token", a client token of another tenant sees none of the admin's
/// containers and is told the fleet needs an admin token.
async fn a_client_token_sees_its_tenant_only(fleet: &Fleet, browser: &Browser) {
    let out = fleet.berth(&["token", "create", "--kind", "client", "--tenant", "acme"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    browser
        .client
        .find(Locator::Css("#forget"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let input = browser.client.find(Locator::Css("#token")).await.unwrap();
    input.send_keys(&token).await.unwrap();
    let submit = browser
        .client
        .find(Locator::Css("#login button[type=submit]"))
        .await
        .unwrap();
    submit.click().await.unwrap();
    browser
        .wait_text("#view p.error", |error| error.contains("may not see"))
        .await;
    browser.go(fleet, "#/containers").await;
    browser
        .wait_text("#containers p.note", |note| {
            note == "0 of the 0 newest containers"
        })
        .await;
}

/// `berth run` a container: its row appears on the containers page within 2 s, and its
/// state there changes within 2 s more.
async fn container_appears_and_changes_state(fleet: &Fleet, browser: &Browser) {
    browser.go(fleet, "#/containers").await;
    browser.wait_text("#containers p.note", |_| true).await;
    let run = ["run", "--id", "web-1", "--cpu", "100m", "--memory", "64Mi"];
    let out = fleet.berth(&[&run[..], &["--", "sh", "-c", "sleep 1.5; echo from-web-1"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let submitted = Instant::now();
    let css = "tr[data-id='web-1'] .container-state";
    let first = browser.wait_text(css, |_| true).await;
    let appeared = submitted.elapsed();
    assert!(
        appeared <= Duration::from_secs(2),
        "appeared after {appeared:?}"
    );
    let next = browser.wait_text(css, |state| state != first).await;
    let changed = submitted.elapsed() - appeared;
    assert!(
        changed <= Duration::from_secs(2),
        "{first} -> {next} after {changed:?}"
    );
    println!("web-1 appeared as {first} after {appeared:?}, became {next} {changed:?} later");
}

/// The container's own page shows its record and the logs it printed.
async fn container_page_follows_logs(browser: &Browser) {
    browser
        .client
        .find(Locator::Css("tr[data-id='web-1'] a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_text("#logs", |logs| logs.contains("from-web-1"))
        .await;
    browser
        .wait_text("dd[data-field='state']", |s| s == "exited")
        .await;
    let command = browser.text("dd[data-field='command']").await.unwrap();
    assert_eq!(command, "sh -c sleep 1.5; echo from-web-1");
}

/// The cancel button on a running container's page cancels it.
async fn container_page_cancels(fleet: &Fleet, browser: &Browser) {
    let run = [
        "run", "--id", "long-1", "--cpu", "100m", "--memory", "64Mi", "--", "sleep", "60",
    ];
    assert!(fleet.berth(&run).status.success());
    browser.go(fleet, "#/containers/long-1").await;
    browser
        .wait_text("dd[data-field='state']", |s| s == "running")
        .await;
    browser
        .client
        .find(Locator::Css("#cancel"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let ended = browser
        .wait_text("dd[data-field='state']", |s| s != "running")
        .await;
    println!("long-1 cancelled: {ended}");
}

/// The backlog view shows the queue and the demand; the throughput chart has a bar for
/// the placements made so far.
async fn backlog_and_throughput_show(fleet: &Fleet, browser: &Browser) {
    browser.go(fleet, "#/backlog").await;
    browser
        .wait_text("#backlog h2", |title| title == "Unmet demand per pool")
        .await;
    browser.go(fleet, "#/throughput").await;
    browser.wait_text("#throughput p.note", |_| true).await;
    let bars = browser
        .client
        .find_all(Locator::Css("#throughput-chart rect.placed"))
        .await
        .unwrap();
    assert!(!bars.is_empty(), "no placements drawn");
    browser.screenshot("console-throughput.png").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_view_of_a_thousand_workers_renders() {
    let fleet = Fleet::start();
    let http = reqwest::Client::new();
    for i in 0..1000 {
        let gpu = (i % 4 == 0).then(|| json!({"count": 4, "type": "A100-40"}));
        let body = json!({
            "id": format!("w-{i:04}"),
            "pool": format!("pool-{}", i % 10),
            "cpu_millicores": 16000,
            "memory_mib": 65536,
            "gpu": gpu,
        });
        let response = http
            .post(format!("{}/v1/workers", fleet.url))
            .bearer_auth(&fleet.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
    }
    let browser = Browser::start().await;
    browser.log_in(&fleet).await;
    browser
        .wait_text("#fleet p.note", |note| note.starts_with("1000 workers"))
        .await;
    // The script times each build of the view: the API read, the DOM and its layout.
    let mut figures = Vec::new();
    for _ in 0..5 {
        let timing = browser
            .client
            .execute("return window.berthTimings.fleet;", Vec::new())
            .await
            .unwrap();
        figures.push(timing.as_f64().unwrap());
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    println!("fleet view of 1,000 workers, ms per refresh: {figures:?}");
    browser.screenshot("console-fleet-1000.png").await;
    assert_eq!(browser.script_errors().await, Vec::<Value>::new());
    browser.client.close().await.unwrap();
}
