//! Discovered jobs store their crawl's config once, by reference.
//!
//! Every link a page discovers becomes a job carrying its page's config (`worker/crawl.rs`
//! copies it, without the page number of pagination): a crawl of 10 M pages with a 500-byte
//! config would hold 5 GB of copies of a handful of texts. A discovered job whose config is
//! [`MIN_SHARED`] bytes or more keeps only its config's [`hash`]; the text is stored once
//! per queue (per shard of a sharded queue), under that hash, and put back when the job is
//! read — the job a client gets is the same either way.
//!
//! - **Redis** (`redis/mod.rs`, `lua/jobs.lua`, `lua/prelude.lua`): within one call (a
//!   submit, or the children of a finish), a config two or more jobs share is *carried* by
//!   the first of them — its spec has the config and starts with `{"config_carrier":"<hash>"`
//!   — and *referenced* by the others — their spec has no config and starts with
//!   `{"config_ref":"<hash>"`. The script stores the carrier's spec under `config:<hash>`
//!   (`SET NX`: the first one stays) before it creates any job, so a reference never
//!   outlives, nor precedes, the text it names, whatever happened to the queue's keys before
//!   (a client keeps no memory of what it stored). Scripts that return jobs (claim, list)
//!   append the stored spec to a referencing job's fields; `get` reads it with a second
//!   command. A config no other job of its call shares stays in its job.
//! - **SQLite** (`sqlite/mod.rs`): the same rule per insert call; a `configs` table, written
//!   in the insert's transaction by the carrier; the other jobs' `config` column holds
//!   `@<hash>`, resolved by the query that reads jobs.
//! - Off with the queue's `shared_configs` setting: clients of an older release cannot read
//!   jobs holding a reference (they would take them for corrupt), so a rolling upgrade from
//!   one turns it off until every client of the queue is upgraded.
//!
//! The hash is SHA-256 (128 bits of it), computed once per distinct text of a call: a
//! multi-tenant queue must not let one crawl's config be read as another's.
//!
//! Stored configs are never deleted (`purge` deletes jobs only): there is one per distinct
//! config text shared within a call — a crawl's config (the next page of a paginated crawl
//! is one job per page, so its config, with the page number, stays in it) — not one per
//! job. A queue of many crawls with configs of their own keeps one per crawl.

use super::job::NewJob;

/// Configs shorter than this stay in their job (a reference is 47 bytes of the spec).
pub const MIN_SHARED: usize = 64;

/// Whether `job` keeps its config by reference: discovered (it has a parent) and a config
/// of at least [`MIN_SHARED`] bytes.
pub fn by_reference(job: &NewJob) -> bool {
    job.parent_id.is_some() && job.config.len() >= MIN_SHARED
}

/// The name of a config text: 128 bits of its SHA-256, 32 hex digits (a cryptographic hash:
/// two crawls of different tenants must not be able to make their configs collide).
pub fn hash(config: &str) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(config.as_bytes());
    digest[..16]
        .iter()
        .fold(String::with_capacity(32), |mut out, byte| {
            use std::fmt::Write as _;
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// How a stored spec that carries a shared config starts (its hash follows).
pub const CARRIER: &str = "{\"config_carrier\":\"";
/// How a stored spec that refers to a shared config starts (its hash follows).
pub const REFERENCE: &str = "{\"config_ref\":\"";

/// The hash that follows `prefix` ([`CARRIER`] or [`REFERENCE`]) at the start of `spec`.
pub fn hash_after<'a>(spec: &'a str, prefix: &str) -> Option<&'a str> {
    spec.strip_prefix(prefix)?.get(..32)
}

/// How each of `jobs` stores its config in one call: `None` in its job, else its hash and
/// whether this job carries the text (the first job of the call sharing it) — only for
/// configs at least two jobs of the call share, and only when the queue's
/// `shared_configs` is on. Each distinct text is hashed once.
pub fn roles<'a>(
    enabled: bool,
    jobs: impl Iterator<Item = &'a NewJob>,
) -> Vec<Option<(String, bool)>> {
    use std::collections::HashMap;
    let jobs: Vec<&NewJob> = jobs.collect();
    if !enabled {
        return vec![None; jobs.len()];
    }
    // Per shared text: how many jobs use it, and its hash once it is known to be shared.
    let mut uses: HashMap<&str, (usize, Option<String>)> = HashMap::new();
    for job in jobs.iter().filter(|job| by_reference(job)) {
        uses.entry(job.config.as_str()).or_default().0 += 1;
    }
    jobs.iter()
        .map(|job| {
            if !by_reference(job) {
                return None;
            }
            let (count, name) = uses.get_mut(job.config.as_str())?;
            if *count < 2 {
                return None;
            }
            if let Some(name) = name {
                return Some((name.clone(), false));
            }
            let first = hash(&job.config);
            *name = Some(first.clone());
            Some((first, true))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(parent: Option<&str>, config: &str) -> NewJob {
        NewJob {
            parent_id: parent.map(str::to_owned),
            config: config.to_owned(),
            ..NewJob::default()
        }
    }

    #[test]
    fn shared_configs_of_discovered_jobs_are_carried_once_and_referenced() {
        let big = format!("{{\"headers\":{{\"x\":\"{}\"}}}}", "a".repeat(80));
        let other = format!("{{\"headers\":{{\"y\":\"{}\"}}}}", "b".repeat(80));
        let jobs = [
            job(Some("p"), &big),
            job(Some("p"), "{}"),
            job(Some("p"), &big),
            job(None, &big),
            job(Some("p"), &other),
            job(Some("p"), &big),
        ];
        let roles = roles(true, jobs.iter());
        assert!(super::roles(false, jobs.iter()).iter().all(Option::is_none));
        let h = hash(&big);
        assert_eq!(
            roles,
            [
                Some((h.clone(), true)),
                None,
                Some((h.clone(), false)),
                None, // submitted by a client: its config stays
                None, // shared by no other job of the call
                Some((h, false)),
            ]
        );
        assert_eq!(hash(&big).len(), 32);
        assert_ne!(hash(&big), hash(&other));
    }
}
