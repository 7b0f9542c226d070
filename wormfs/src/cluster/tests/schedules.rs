//! Randomized fault schedules on the in-process cluster.

use super::*;

/// Randomized fault schedules: partitions, cut links, lost, delayed and duplicated
/// messages, crashes and restarts, with writes through every node in between. After the
/// faults end, every acknowledged write reads back exact on every node, the metadata of
/// every node is the same, no referenced chunk is gone, and the nodes committed the same
/// entry at every index.
///
/// `WORMFS_FAULT_SCHEDULES` sets how many schedules run (default 200, several at a time),
/// `WORMFS_FAULT_SEED` replays one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_fault_schedules_keep_the_invariants() {
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    let seeds: Vec<u64> = match env("WORMFS_FAULT_SEED") {
        Some(seed) => vec![seed],
        None => (0..env("WORMFS_FAULT_SCHEDULES").unwrap_or(200))
            .map(|n| 0x5eed_0000 + n)
            .collect(),
    };
    let started = Instant::now();
    let at_once = Arc::new(tokio::sync::Semaphore::new(24));
    let mut runs = Vec::new();
    for seed in seeds.iter().copied() {
        let permit = at_once.clone().acquire_owned().await.unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let l = log.clone();
        let run = tokio::spawn(async move {
            let acked = run_schedule(seed, 6, l).await;
            drop(permit);
            acked
        });
        runs.push((seed, log, run));
    }
    let mut acked = 0;
    let replay = seeds.len() == 1;
    for (seed, log, run) in runs {
        match run.await {
            Ok(n) if replay => {
                acked += n;
                for line in log.lock().unwrap().iter() {
                    eprintln!("{line}");
                }
            }
            Ok(n) => acked += n,
            Err(e) => {
                for line in log.lock().unwrap().iter() {
                    eprintln!("{line}");
                }
                panic!(
                    "the fault schedule with seed {seed} failed (replay it with \
                     WORMFS_FAULT_SEED={seed}): {e}"
                );
            }
        }
    }
    eprintln!(
        "{} fault schedules in {:.1} s: {acked} writes acknowledged, all read back",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
}

/// A small deterministic generator (xorshift64*) for the schedule.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0.max(1);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) % n
    }
}

/// How long a write in a schedule may take before the client gives up on it (it then
/// counts as not acknowledged, whatever became of it).
const SCHEDULE_WRITE_PATIENCE: Duration = Duration::from_millis(1500);

/// Runs one schedule of `steps` faults from `seed`, logging to `log`; returns how many
/// writes were acknowledged (and read back).
async fn run_schedule(seed: u64, steps: usize, log: Arc<Mutex<Vec<String>>>) -> usize {
    let say = |line: String| log.lock().unwrap().push(line);
    let started = Instant::now();
    let mut f = Fixture::start(3).await;
    say(format!(
        "started at {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    f.hub.seed(seed);
    let mut dice = Dice(seed);
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    let names = f.names();
    for step in 0..steps {
        let who = dice.below(3) as usize;
        let other = (who + 1 + dice.below(2) as usize) % 3;
        let what = match dice.below(8) {
            0 => {
                f.hub.partition(&[
                    vec![names[who].clone()],
                    names
                        .iter()
                        .filter(|n| **n != names[who])
                        .cloned()
                        .collect(),
                ]);
                format!("partition {} from the others", names[who])
            }
            1 => {
                f.hub.cut(&names[who], &names[other]);
                f.hub.cut(&names[other], &names[who]);
                format!("cut the link {} - {}", names[who], names[other])
            }
            2 => {
                f.hub.cut(&names[who], &names[other]);
                format!("cut the link {} -> {} one way", names[who], names[other])
            }
            3 => {
                f.hub.set_loss(50);
                "lose 5% of messages".to_owned()
            }
            4 => {
                f.hub.set_delay(Duration::from_millis(1 + dice.below(20)));
                "delay every message".to_owned()
            }
            5 => {
                f.hub.set_duplicates(200, "");
                "deliver 20% of messages twice".to_owned()
            }
            6 if f.up().count() == 3 => {
                f.crash(who).await;
                format!("crash {}", names[who])
            }
            _ => {
                f.hub.heal();
                f.restart_crashed().await;
                "heal, restart what crashed".to_owned()
            }
        };
        say(format!(
            "seed {seed} step {step} at {:.1} s: {what}",
            started.elapsed().as_secs_f64()
        ));
        // a write through each node that is up, at once; some fail while the faults last
        let writes: Vec<_> = f
            .up()
            .map(|(i, _)| {
                let name = format!("f{step}-{i}");
                let len = STRIPE + 1 + dice.below(STRIPE as u64) as usize;
                let data = pattern(seed ^ (step as u64 * 8 + i as u64), len);
                (i, name, data)
            })
            .collect();
        let outcomes = futures::future::join_all(writes.iter().map(|(i, name, data)| {
            tokio::time::timeout(SCHEDULE_WRITE_PATIENCE, f.write(*i, name, data))
        }))
        .await;
        for ((_, name, data), outcome) in writes.into_iter().zip(outcomes) {
            match outcome {
                Ok(Ok(())) => acked.push((name, data)),
                Ok(Err(e)) => say(format!("  not acknowledged: {e}")),
                Err(_) => say(format!(
                    "  {name} not acknowledged within {SCHEDULE_WRITE_PATIENCE:?}"
                )),
            }
        }
    }
    f.hub.heal();
    f.restart_crashed().await;
    say(format!(
        "healed at {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    f.wait_for_master(&names).await;
    say(format!(
        "a master at {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    // a write after the faults: the cluster works again
    let last = pattern(seed, STRIPE + 7);
    let deadline = Instant::now() + PATIENCE;
    loop {
        match f.write(0, "after", &last).await {
            Ok(()) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no write succeeds after the faults: {e}"
                );
                // a create that failed half way left the name taken
                let _ = f.nodes[0].fs().unlink(FileId::ROOT, "after").await;
            }
        }
    }
    acked.push(("after".to_owned(), last));
    f.wait_converged().await;
    for (name, data) in &acked {
        for i in 0..3 {
            let got = f.read(i, name).await.unwrap();
            assert!(
                got == *data,
                "acknowledged {name} reads back different on n{i}"
            );
        }
    }
    for i in 0..3 {
        f.check_no_referenced_chunk_is_gone(i);
    }
    f.check_committed_logs_agree();
    say(format!(
        "seed {seed}: {} writes acknowledged, all read back",
        acked.len()
    ));
    f.stop().await;
    acked.len()
}
