//! `berth logs ID --follow`: prints the kept lines, then only the new ones, until the
//! container ends.
//!
//! Each answer of `GET /v1/containers/{id}/logs?after=N` says where to ask from next
//! (`next`), how many lines after the point are no longer kept (`dropped`: the server keeps
//! only the last ones, and a follower that fell behind is told, never silently skipped) and
//! whether the container has ended (its state is final, judged by the server with the
//! core's `is_terminal`). The server reads the record before the lines, and a final report
//! appends its lines before it ends the record, so the answer that says `ended` has the
//! last lines: the follower prints them and stops, with the container's exit code (as
//! `berth run --wait`: the exit code of an exited container, 1 if it failed or was lost).

use super::client::{Connection, exit_code, summary};
use anyhow::Context;
use berth_api::{Client, ClientError, ContainerView, LogsView};
use berth_core::ContainerId;
use serde::Serialize;
use std::io::{self, Write};
use std::time::Duration;

/// How often a follower asks for new lines.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// The longest pause between tries while the server cannot be reached.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// The exit code when interrupted (Ctrl-C), as a shell reports SIGINT.
pub const INTERRUPTED: i32 = 130;

/// One line of `--json` output.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event<'a> {
    /// An output line, with its position (the count of lines printed before it).
    Line {
        id: &'a ContainerId,
        position: u64,
        line: &'a str,
    },
    /// `count` lines before `position` are no longer kept by the server.
    Dropped {
        id: &'a ContainerId,
        position: u64,
        count: u64,
    },
    /// The container has ended; the last event.
    Ended { container: &'a ContainerView },
}

/// Follows container `id` until it ends (the container's exit code), or until Ctrl-C
/// ([`INTERRUPTED`]).
pub async fn follow(
    connection: &Connection,
    client: &Client,
    id: &ContainerId,
) -> anyhow::Result<i32> {
    let mut out = Printer {
        json: connection.json,
        id,
    };
    tokio::select! {
        result = follow_to_end(client, id, &mut out) => result,
        interrupted = tokio::signal::ctrl_c() => {
            interrupted.context("waiting for Ctrl-C")?;
            Ok(INTERRUPTED)
        }
    }
}

async fn follow_to_end(
    client: &Client,
    id: &ContainerId,
    out: &mut Printer<'_>,
) -> anyhow::Result<i32> {
    // The first read fails at once (an unknown container, no server); later ones are
    // retried: the server may be restarting.
    let mut view = client.logs_after(id, 0).await?;
    loop {
        if !out.lines(&view)? {
            return Ok(0); // Our reader went away (a closed pipe).
        }
        if view.ended {
            break;
        }
        tokio::time::sleep(POLL_EVERY).await;
        let after = view.next;
        view = patiently(|| client.logs_after(id, after)).await?;
    }
    let container = patiently(|| client.container(id)).await?;
    out.end(&container)?;
    Ok(exit_code(&container))
}

/// Calls `call` until it answers, pausing between tries with a capped exponential backoff;
/// an answer that another try would not change (a 4xx) ends it.
async fn patiently<T, F, Fut>(mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut pause = POLL_EVERY;
    loop {
        match call().await {
            Ok(answer) => return Ok(answer),
            Err(error) if error.status().is_some_and(|s| (400..500).contains(&s)) => {
                return Err(error.into());
            }
            Err(error) => {
                eprintln!("berth: {error}; trying again in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(BACKOFF_CAP);
            }
        }
    }
}

struct Printer<'a> {
    json: bool,
    id: &'a ContainerId,
}

impl Printer<'_> {
    /// Prints the answer's lines (after a note of dropped ones); false once stdout is
    /// closed.
    fn lines(&mut self, view: &LogsView) -> anyhow::Result<bool> {
        let mut stdout = io::stdout().lock();
        let written = (|| -> io::Result<()> {
            if view.dropped > 0 {
                if self.json {
                    self.event(
                        &mut stdout,
                        &Event::Dropped {
                            id: self.id,
                            position: view.first,
                            count: view.dropped,
                        },
                    )?;
                } else {
                    stdout.flush()?;
                    eprintln!(
                        "berth: {} lines are no longer kept by the server (it keeps the last ones)",
                        view.dropped
                    );
                }
            }
            for (position, line) in (view.first..).zip(&view.lines) {
                if self.json {
                    let line = Event::Line {
                        id: self.id,
                        position,
                        line,
                    };
                    self.event(&mut stdout, &line)?;
                } else {
                    writeln!(stdout, "{line}")?;
                }
            }
            stdout.flush()
        })();
        match written {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            Err(error) => Err(error).context("writing to stdout"),
        }
    }

    /// Says how the container ended.
    fn end(&mut self, container: &ContainerView) -> anyhow::Result<()> {
        if self.json {
            let mut stdout = io::stdout().lock();
            match self.event(&mut stdout, &Event::Ended { container }) {
                Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
                    return Err(error).context("writing to stdout");
                }
                _ => {}
            }
        } else {
            eprintln!("{}", summary(container));
        }
        Ok(())
    }

    fn event(&self, out: &mut impl Write, event: &Event<'_>) -> io::Result<()> {
        serde_json::to_writer(&mut *out, event)?;
        writeln!(out)
    }
}
