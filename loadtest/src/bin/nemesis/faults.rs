//! The seeded fault schedule: which faults, when, on what. The same seed
//! gives the same schedule (and the same workload choices), so a failing
//! run is replayed with `--seed`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// One fault. Processes are named by their index; Redis masters by their
/// rank among the masters (by port) at the moment the fault starts.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// `SIGSTOP` a vaxslot process, `SIGCONT` it `for_ms` later: past its
    /// 3 s lease, with requests in flight.
    PauseProcess { process: usize, for_ms: u64 },
    /// `SIGKILL` a vaxslot process, start it again `down_ms` later.
    KillProcess { process: usize, down_ms: u64 },
    /// `SIGKILL` a Redis master (its replica takes over after the 2 s node
    /// timeout), start it again `down_ms` later (it rejoins as a replica).
    KillMaster { master: usize, down_ms: u64 },
    /// `SIGSTOP` a Redis master for `for_ms` (a failover, then a stale
    /// master that wakes up).
    PauseMaster { master: usize, for_ms: u64 },
    /// `CLIENT PAUSE` on a master for `for_ms`: writes and reads wait.
    ClientPause { master: usize, for_ms: u64 },
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::PauseProcess { .. } => "pause_process",
            Fault::KillProcess { .. } => "kill_process",
            Fault::KillMaster { .. } => "kill_master",
            Fault::PauseMaster { .. } => "pause_master",
            Fault::ClientPause { .. } => "client_pause",
        }
    }

    /// How long after it starts the fault is healed.
    pub fn lasts_ms(self) -> u64 {
        match self {
            Fault::PauseProcess { for_ms, .. }
            | Fault::PauseMaster { for_ms, .. }
            | Fault::ClientPause { for_ms, .. } => for_ms,
            Fault::KillProcess { down_ms, .. } | Fault::KillMaster { down_ms, .. } => down_ms,
        }
    }
}

/// A fault and when it starts, in ms from the start of the load.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Planned {
    pub at_ms: u64,
    #[serde(flatten)]
    pub fault: Fault,
}

/// The schedule of `count` faults over `load_ms` for `processes` processes.
/// Faults start in the first three quarters of the load, so that each
/// heals while clients still book.
pub fn schedule(seed: u64, load_ms: u64, count: usize, processes: usize) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e65_6d65_7369_7321);
    let latest = (load_ms * 3 / 4).max(1);
    let mut plan: Vec<Planned> = (0..count)
        .map(|_| {
            let fault = match rng.random_range(0..5) {
                0 => Fault::PauseProcess {
                    process: rng.random_range(0..processes),
                    for_ms: rng.random_range(12_000..=15_000),
                },
                1 => Fault::KillProcess {
                    process: rng.random_range(0..processes),
                    down_ms: rng.random_range(1_000..=5_000),
                },
                2 => Fault::KillMaster {
                    master: rng.random_range(0..3),
                    down_ms: rng.random_range(3_000..=8_000),
                },
                3 => Fault::PauseMaster {
                    master: rng.random_range(0..3),
                    for_ms: rng.random_range(3_000..=6_000),
                },
                _ => Fault::ClientPause {
                    master: rng.random_range(0..3),
                    for_ms: rng.random_range(500..=3_000),
                },
            };
            Planned {
                at_ms: rng.random_range(0..latest),
                fault,
            }
        })
        .collect();
    plan.sort_by_key(|planned| planned.at_ms);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_is_one_schedule_and_another_differs() {
        let a = schedule(7, 40_000, 8, 3);
        let b = schedule(7, 40_000, 8, 3);
        let c = schedule(8, 40_000, 8, 3);
        let json = |plan: &[Planned]| serde_json::to_string(plan).unwrap();
        assert_eq!(json(&a), json(&b));
        assert_ne!(json(&a), json(&c));
        assert!(a.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(a.iter().all(|p| p.at_ms < 30_000));
    }
}
