//! The queue's Lua code, and how it reaches the server.
//!
//! Every operation is one script: `lua/<name>.lua`, run after the shared modules
//! (`prelude.lua`, `politeness.lua`, `dedup.lua`, `jobs.lua`). On Redis >= 7 all of them are
//! loaded once as one function library (`FUNCTION LOAD`) and called with `FCALL`: the shared
//! modules' ~800 lines then run once per load, not on every call (they cost about 20 µs of
//! server time per call as a script). Older servers, or a user whose ACL denies `FUNCTION`, get each
//! operation as its own script (`EVALSHA`, reloaded by `redis::Script` after a restart).
//!
//! The library's name carries a hash of its code, so clients of different versions sharing a
//! server (a rolling upgrade) each call their own functions. A library missing when it is
//! called (a restart without persistence, `FUNCTION FLUSH`) is loaded again and the call sent
//! once more: a missing function ran nothing.

use std::fmt::Write as _;
use std::sync::LazyLock;

use redis::Script;

/// One queue operation's Lua.
pub(super) struct QueueScript {
    /// The operation: function `<library>_<name>`.
    name: &'static str,
    /// Its code: `lua/<file>.lua`.
    #[cfg_attr(
        not(test),
        allow(dead_code, reason = "the tests match it against lua/")
    )]
    file: &'static str,
    /// The function's flags: `no-writes` (only reads: allowed on a replica and when Redis is
    /// out of memory) or `allow-oom` (frees memory: it must run when Redis is full; a
    /// function without flags is refused then, before it runs).
    flags: &'static str,
    body: &'static str,
    /// The standalone script (prelude + body), for servers without functions.
    script: LazyLock<Script>,
}

impl QueueScript {
    pub(super) fn script(&self) -> &Script {
        &self.script
    }
}

/// The standalone script of `lua/<file>.lua` (default: `<name>`): `begin()` gets the
/// script's KEYS and ARGV (the shared modules declare locals of those names).
macro_rules! queue_script {
    ($name:literal, $flags:literal) => {
        queue_script!($name, $name, $flags)
    };
    ($name:literal, $file:literal, $flags:literal) => {
        QueueScript {
            name: $name,
            file: $file,
            flags: $flags,
            body: include_str!(concat!("lua/", $file, ".lua")),
            script: LazyLock::new(|| {
                Script::new(concat!(
                    "local EVAL_KEYS, EVAL_ARGV = KEYS, ARGV\n",
                    include_str!("lua/prelude.lua"),
                    include_str!("lua/politeness.lua"),
                    include_str!("lua/dedup.lua"),
                    include_str!("lua/jobs.lua"),
                    "local function main()\n",
                    include_str!(concat!("lua/", $file, ".lua")),
                    "\nend\nbegin(EVAL_KEYS, EVAL_ARGV)\n",
                    "local seen_error = seen_prepare()\nif seen_error then return seen_error end\n",
                    "local result = main()\nflush()\nreturn result\n"
                ))
            }),
        }
    };
}

pub(super) static SUBMIT: QueueScript = queue_script!("submit", "");
pub(super) static CLAIM: QueueScript = queue_script!("claim", "");
pub(super) static SETTLE: QueueScript = queue_script!("settle", "");
pub(super) static COMPLETE_MANY: QueueScript = queue_script!("complete_many", "");
pub(super) static FINISH: QueueScript = queue_script!("finish", "");
pub(super) static ADMIN: QueueScript = queue_script!("admin", "");
pub(super) static HEARTBEAT: QueueScript = queue_script!("heartbeat", "");
pub(super) static WORKERS: QueueScript = queue_script!("workers", "");
pub(super) static REAP: QueueScript = queue_script!("reap", "allow-oom");
pub(super) static PURGE: QueueScript = queue_script!("purge", "allow-oom");
pub(super) static STATS: QueueScript = queue_script!("stats", "no-writes");
pub(super) static LIST: QueueScript = queue_script!("list", "no-writes");
pub(super) static DOMAINS: QueueScript = queue_script!("domains", "");
/// The read actions of `workers.lua` and `domains.lua` (`list`, `get`) as functions that
/// only read: they answer when Redis is out of memory (a dashboard looking at a full Redis).
pub(super) static WORKERS_READ: QueueScript = queue_script!("workers_read", "workers", "no-writes");
pub(super) static DOMAINS_READ: QueueScript = queue_script!("domains_read", "domains", "no-writes");

pub(super) static UPGRADE: QueueScript = queue_script!("upgrade", "");
pub(super) static RESULTS: QueueScript = queue_script!("results", "allow-oom");
pub(super) static LAYOUT: QueueScript = queue_script!("layout", "");

static ALL: [&QueueScript; 18] = [
    &SUBMIT,
    &CLAIM,
    &SETTLE,
    &COMPLETE_MANY,
    &FINISH,
    &ADMIN,
    &HEARTBEAT,
    &WORKERS,
    &REAP,
    &PURGE,
    &STATS,
    &LIST,
    &DOMAINS,
    &WORKERS_READ,
    &DOMAINS_READ,
    &UPGRADE,
    &RESULTS,
    &LAYOUT,
];

/// Every operation as one function library.
pub(super) struct Library {
    /// `scraperv4_<12 hex digits of the code's SHA-1>`.
    name: String,
    /// The `FUNCTION LOAD` payload.
    code: String,
}

impl Library {
    /// The function of `script` in this library.
    pub(super) fn function(&self, script: &QueueScript) -> String {
        format!("{}_{}", self.name, script.name)
    }

    pub(super) fn code(&self) -> &str {
        &self.code
    }
}

pub(super) static LIBRARY: LazyLock<Library> = LazyLock::new(|| {
    // Written with a placeholder for the library's name, which is the hash of all of it:
    // a library with other flags or another wrapper is another library.
    const NAME: &str = "@LIBRARY@";
    let mut code = String::with_capacity(96 * 1024);
    code.push_str(include_str!("lua/prelude.lua"));
    code.push_str(include_str!("lua/politeness.lua"));
    code.push_str(include_str!("lua/dedup.lua"));
    code.push_str(include_str!("lua/jobs.lua"));
    for script in ALL {
        let _ = write!(
            code,
            "local function s_{}()\n{}\nend\n",
            script.name, script.body
        );
    }
    for script in ALL {
        let flags = if script.flags.is_empty() {
            String::new()
        } else {
            format!(", flags = {{'{}'}}", script.flags)
        };
        let _ = writeln!(
            code,
            "redis.register_function{{function_name = '{NAME}_{op}', callback = \
             function(keys, args) if #keys == 0 then keys, args = cluster_args(args) end \
             begin(keys, args) local seen_error = seen_prepare() \
             if seen_error then return seen_error end local result = s_{op}() flush() \
             return result end{flags}}}",
            op = script.name,
        );
    }
    let hash = Script::new(&code).get_hash().to_owned();
    let name = format!("scraperv4_{}", &hash[..12]);
    let code = format!("#!lua name={name}\n{}", code.replace(NAME, &name));
    Library { name, code }
});

/// The server does not have the function called (its library was never loaded there, or
/// was lost): nothing ran.
pub(super) fn function_missing(error: &redis::RedisError) -> bool {
    error.to_string().contains("Function not found")
}

/// The server cannot load or call functions (Redis < 7, or an ACL that denies the
/// commands). A `NOPERM` about anything else (a key a function touched) is not this: the
/// function may have written before it, and running the script after it would do it twice.
pub(super) fn functions_unsupported(error: &redis::RedisError) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    // Redis 7: 'fcall', 'function|load'; Redis 6.2: `fcall`, `function`.
    let about_functions = ["'fcall'", "'function", "`fcall`", "`function`"]
        .iter()
        .any(|name| text.contains(name));
    about_functions && (text.contains("unknown command") || error.code() == Some("NOPERM"))
}

/// `FUNCTION LOAD` answered that the library is there already (another client loaded it).
pub(super) fn already_loaded(error: &redis::RedisError) -> bool {
    error.to_string().contains("already exists")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_about_the_function_commands_fall_back_to_scripts() {
        for (text, unsupported) in [
            (
                "NOPERM this user has no permissions to run the 'fcall' command",
                true,
            ),
            (
                "NOPERM this user has no permissions to run the 'function|load' command",
                true,
            ),
            (
                "ERR unknown command 'FCALL', with args beginning with: ",
                true,
            ),
            (
                "ERR unknown command `FUNCTION`, with args beginning with: `LOAD`, ",
                true,
            ),
            (
                "NOPERM this user has no permissions to access one of the keys used as arguments",
                false,
            ),
            (
                "ERR The user executing the script can't access at least one of the keys mentioned \
              in the command arguments script: f, on @user_function:2.",
                false,
            ),
            (
                "ERR unknown command 'FOO', with args beginning with: ",
                false,
            ),
        ] {
            let parsed = redis::parse_redis_value(format!("-{text}\r\n").as_bytes())
                .expect("an error reply")
                .extract_error()
                .expect_err("an error");
            assert_eq!(functions_unsupported(&parsed), unsupported, "{text}");
        }
    }

    #[test]
    fn every_script_is_in_the_library_once() {
        let library = &*LIBRARY;
        assert!(library.code.starts_with("#!lua name=scraperv4_"));
        for script in ALL {
            let function = library.function(script);
            assert_eq!(
                library.code.matches(&format!("'{function}'")).count(),
                1,
                "{function}"
            );
        }
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/queue/redis/lua"))
            .expect("lua dir")
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                let op = name.strip_suffix(".lua")?.to_owned();
                (!["prelude", "politeness", "dedup", "jobs"].contains(&op.as_str())).then_some(op)
            })
            .collect::<std::collections::BTreeSet<_>>();
        let listed = ALL
            .iter()
            .map(|script| script.file.to_owned())
            .collect::<std::collections::BTreeSet<_>>();
        assert_eq!(files, listed, "every lua/<operation>.lua is one of ALL");
    }
}
