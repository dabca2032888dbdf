//! The Lua scripts (files under `scripts/`, each with a header stating its KEYS, ARGV,
//! reply and guarantee) and script calls.
//!
//! Each script is its body prefixed with the shared helpers (`lib.lua`, plus `worker_lib.lua`
//! or `intake_lib.lua`; the commits also `commit_lib.lua`), concatenated at build time. The
//! `transition` and `settle` scripts also get the container state machine's table, rendered as Lua from
//! [`lifecycle::cell`] when the scripts are built, and `lifecycle_lib.lua`, the step that
//! follows it: the Redis store and the memory store follow one table. Calls go out as EVALSHA; when a server
//! answers NOSCRIPT (its script cache was flushed by a restart, a failover or SCRIPT FLUSH)
//! the call is sent again as EVAL with the body, which also caches it on that server.

use berth_core::lifecycle::{self, Outcome, Refusal, STATES, TransitionKind};
use redis::Cmd;
use std::sync::LazyLock;

/// The [`LuaScript`] of `scripts/$file`: `lib.lua`, then each of the `$lib` helpers, then
/// the file itself, joined by newlines at build time.
macro_rules! script {
    ($file:literal after $($lib:literal),+) => {
        LuaScript::new(
            $file,
            concat!(
                include_str!("scripts/lib.lua"),
                "\n",
                $(include_str!(concat!("scripts/", $lib)), "\n",)+
                include_str!(concat!("scripts/", $file))
            ),
        )
    };
}

/// A script that moves container records by the state machine's table: the intake's helpers,
/// then the table rendered from [`lifecycle::cell`] and `lifecycle_lib.lua`, then the file.
macro_rules! lifecycle_script {
    ($file:literal) => {
        LuaScript::new(
            $file,
            [
                concat!(
                    include_str!("scripts/lib.lua"),
                    "\n",
                    include_str!("scripts/intake_lib.lua"),
                    "\n"
                ),
                &lifecycle_lua(),
                concat!(
                    "\n",
                    include_str!("scripts/lifecycle_lib.lua"),
                    "\n",
                    include_str!(concat!("scripts/", $file))
                ),
            ]
            .concat(),
        )
    };
}

/// The container state machine ([`lifecycle::cell`]) as Lua: `LIFECYCLE[state][kind]` holds
/// the cell's arms in order, each `{guard, outcome, arg}` where arg is the next state of an
/// `allowed` outcome, the refusal's name of a `refused` one, else `''`; `REFUSALS[name]` is
/// each refusal's message template.
fn lifecycle_lua() -> String {
    let mut lua = String::from(
        "-- berth: the container state machine, rendered from berth_core::lifecycle::cell.\n\
         local LIFECYCLE = {\n",
    );
    for state in STATES {
        lua.push_str(&format!("  {} = {{\n", state.as_str()));
        for kind in TransitionKind::ALL {
            let cell = lifecycle::cell(state, kind);
            let arms: Vec<String> = cell
                .arms
                .iter()
                .map(|arm| {
                    let (outcome, arg) = match arm.then {
                        Outcome::Allowed(next) => ("allowed", next.as_str()),
                        Outcome::Idempotent => ("idempotent", ""),
                        Outcome::Refused(refusal) => ("refused", refusal.as_str()),
                    };
                    format!("{{ '{}', '{outcome}', '{arg}' }}", arm.when.as_str())
                })
                .collect();
            lua.push_str(&format!(
                "    -- {}\n    {} = {{ {} }},\n",
                cell.doc,
                kind.as_str(),
                arms.join(", ")
            ));
        }
        lua.push_str("  },\n");
    }
    lua.push_str("}\nlocal REFUSALS = {\n");
    for refusal in Refusal::ALL {
        lua.push_str(&format!(
            "  {} = '{}',\n",
            refusal.as_str(),
            refusal.template()
        ));
    }
    lua.push_str("}\n");
    lua
}

/// A script on one worker's keys (`worker_lib.lua`).
macro_rules! worker_script {
    ($file:literal) => {
        script!($file after "worker_lib.lua")
    };
}

/// A commit script (`worker_lib.lua` and `commit_lib.lua`).
macro_rules! commit_script {
    ($file:literal) => {
        script!($file after "worker_lib.lua", "commit_lib.lua")
    };
}

/// A script on the intake's keys (`intake_lib.lua`).
macro_rules! intake_script {
    ($file:literal) => {
        script!($file after "intake_lib.lua")
    };
}

/// One Lua script: its name, its full body and the body's SHA1.
#[derive(Debug)]
pub struct LuaScript {
    /// The script's file name, for logs.
    pub name: &'static str,
    body: String,
    sha: String,
}

impl LuaScript {
    fn new(name: &'static str, body: impl Into<String>) -> LuaScript {
        let body = body.into();
        LuaScript {
            name,
            sha: redis::Script::new(&body).get_hash().to_owned(),
            body,
        }
    }

    /// The script's SHA1, as EVALSHA wants it.
    pub fn sha(&self) -> &str {
        &self.sha
    }

    /// `SCRIPT LOAD` of this script.
    pub fn load_cmd(&self) -> Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(&self.body);
        cmd
    }
}

/// Every script of the Redis store.
#[derive(Debug)]
pub struct Scripts {
    /// Commits a group on a worker, lock-free (`free`) or under its lock (`locked`).
    pub commit: LuaScript,
    /// Commits many groups, each on its own worker, lock-free (standalone Redis only).
    pub commit_many: LuaScript,
    /// Gives a container's capacity back.
    pub release: LuaScript,
    /// Registers or updates a worker.
    pub register: LuaScript,
    /// Records a heartbeat.
    pub heartbeat: LuaScript,
    /// Sets a worker's status.
    pub set_status: LuaScript,
    /// Takes a worker's lock.
    pub lock: LuaScript,
    /// Releases a worker's lock.
    pub unlock: LuaScript,
    /// Takes a worker's next assignments.
    pub deliver: LuaScript,
    /// Acknowledges an assignment.
    pub ack: LuaScript,
    /// Accepts requests.
    pub submit: LuaScript,
    /// Moves a container record forward.
    pub transition: LuaScript,
    /// Settles claimed intake entries.
    pub settle: LuaScript,
    /// Claims intake entries without blocking.
    pub claim: LuaScript,
    /// Screens entries claimed by a blocking read.
    pub screen: LuaScript,
    /// Moves due backlog entries to the intake.
    pub promote: LuaScript,
    /// Reads the unmet demand of the backlog.
    pub demand: LuaScript,
    /// Gives back a dead worker's container.
    pub reclaim: LuaScript,
    /// Asks for a container to stop.
    pub cancel: LuaScript,
    /// Removes a worker that owns nothing.
    pub deregister: LuaScript,
    /// Appends output lines to a container's log.
    pub append_logs: LuaScript,
    /// Reads a container's kept output lines from a position on.
    pub read_logs: LuaScript,
    /// Charges placements to their tenants' quotas before their commit.
    pub hold: LuaScript,
    /// Reads every charge and the usage together.
    pub read_quota: LuaScript,
    /// Stops containers on a worker to book a request of higher priority in their place.
    pub preempt: LuaScript,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            commit: commit_script!("commit.lua"),
            commit_many: commit_script!("commit_many.lua"),
            release: worker_script!("release.lua"),
            register: worker_script!("register.lua"),
            heartbeat: worker_script!("heartbeat.lua"),
            set_status: worker_script!("set_status.lua"),
            lock: worker_script!("lock.lua"),
            unlock: worker_script!("unlock.lua"),
            deliver: worker_script!("deliver.lua"),
            ack: worker_script!("ack.lua"),
            submit: intake_script!("submit.lua"),
            transition: lifecycle_script!("transition.lua"),
            settle: lifecycle_script!("settle.lua"),
            claim: intake_script!("claim.lua"),
            screen: intake_script!("screen.lua"),
            promote: intake_script!("promote.lua"),
            demand: intake_script!("demand.lua"),
            reclaim: intake_script!("reclaim.lua"),
            cancel: intake_script!("cancel.lua"),
            deregister: worker_script!("deregister.lua"),
            append_logs: intake_script!("append_logs.lua"),
            read_logs: intake_script!("read_logs.lua"),
            hold: intake_script!("hold.lua"),
            read_quota: intake_script!("read_quota.lua"),
            preempt: worker_script!("preempt.lua"),
        }
    }

    /// Every script, for loading.
    pub fn all(&self) -> [&LuaScript; 25] {
        [
            &self.commit,
            &self.commit_many,
            &self.release,
            &self.register,
            &self.heartbeat,
            &self.set_status,
            &self.lock,
            &self.unlock,
            &self.deliver,
            &self.ack,
            &self.submit,
            &self.transition,
            &self.settle,
            &self.claim,
            &self.screen,
            &self.promote,
            &self.demand,
            &self.reclaim,
            &self.cancel,
            &self.deregister,
            &self.append_logs,
            &self.read_logs,
            &self.hold,
            &self.read_quota,
            &self.preempt,
        ]
    }
}

/// The scripts, built once per process.
pub static SCRIPTS: LazyLock<Scripts> = LazyLock::new(Scripts::new);

/// One call of a script with its keys and arguments.
#[derive(Debug, Clone)]
pub struct ScriptCall {
    script: &'static LuaScript,
    keys: Vec<String>,
    args: Vec<String>,
}

impl ScriptCall {
    /// A call of `script` on `keys` (all in one hash slot) with `args`.
    pub fn new(script: &'static LuaScript, keys: Vec<String>, args: Vec<String>) -> ScriptCall {
        ScriptCall { script, keys, args }
    }

    /// The name of the script called.
    pub fn script_name(&self) -> &'static str {
        self.script.name
    }

    /// The first key: where the call is routed.
    pub fn first_key(&self) -> &str {
        self.keys.first().map_or("", String::as_str)
    }

    /// The call as EVALSHA.
    pub fn evalsha(&self) -> Cmd {
        self.command("EVALSHA", self.script.sha())
    }

    /// The call as EVAL with the script's body (the fallback after NOSCRIPT).
    pub fn eval(&self) -> Cmd {
        self.command("EVAL", &self.script.body)
    }

    fn command(&self, name: &str, script: &str) -> Cmd {
        let mut cmd = redis::cmd(name);
        cmd.arg(script)
            .arg(self.keys.len())
            .arg(&self.keys)
            .arg(&self.args);
        cmd
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn every_script_has_the_helpers_and_a_distinct_hash() {
        let mut hashes: Vec<&str> = SCRIPTS.all().iter().map(|s| s.sha()).collect();
        for script in SCRIPTS.all() {
            assert!(
                script.body.contains("local function uint"),
                "{}",
                script.name
            );
            assert_eq!(script.sha().len(), 40);
        }
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), SCRIPTS.all().len());
    }

    #[test]
    fn the_scripts_that_move_records_carry_the_whole_table() {
        for body in [&SCRIPTS.transition.body, &SCRIPTS.settle.body] {
            carries_the_whole_table(body);
        }
    }

    fn carries_the_whole_table(body: &str) {
        for state in STATES {
            for kind in TransitionKind::ALL {
                let doc = lifecycle::cell(state, kind).doc;
                assert!(body.contains(&format!("-- {doc}")), "{state} {kind:?}");
            }
        }
        for refusal in Refusal::ALL {
            assert!(body.contains(refusal.template()), "{refusal:?}");
        }
        // lifecycle_lib.lua's facts name every guard the table may name.
        for guard in berth_core::lifecycle::Guard::ALL {
            let fact = format!("\n    {} = ", guard.as_str());
            assert!(body.contains(&fact), "{guard:?}");
        }
    }

    #[test]
    fn a_call_packs_keys_then_arguments() {
        let call = ScriptCall::new(
            &SCRIPTS.heartbeat,
            vec!["key-one".into()],
            vec!["arg-one".into(), "arg-two".into()],
        );
        let packed = String::from_utf8(call.evalsha().get_packed_command()).unwrap();
        assert!(packed.contains(SCRIPTS.heartbeat.sha()));
        assert!(packed.find("key-one").unwrap() < packed.find("arg-one").unwrap());
        assert_eq!(call.first_key(), "key-one");
    }
}
