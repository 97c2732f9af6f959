//! Data-parallel training on MPI processes. `cargo test --features mpi` runs this binary,
//! which launches itself under `mpirun -np N` for each scenario and checks what the ranks
//! report: a step on N ranks equals one process's step on the whole batch, the parameters
//! stay identical on every rank through 100 steps, and a rank that panics ends the job
//! (with its message) instead of leaving the others waiting, as does a rank that stalls
//! (after the communicator's timeout).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrograd::{grad, leaves};
use ferrograd_dist::{Communicator, DataParallel, MpiCommunicator};
use ferrograd_nn::optim::{Optimizer, Sgd};

mod common;
use common::{batch, max_diff, mlp, mlp_loss};

const SCENARIO: &str = "FERROGRAD_MPI_SCENARIO";

fn main() {
    match std::env::var(SCENARIO) {
        Ok(s) => rank_main(&s),
        Err(_) => launch_all(),
    }
}

// ----- the launcher (a plain process, not an MPI rank) -----

fn launch_all() {
    let version = Command::new("mpirun").arg("--version").output();
    if version.map(|o| !o.status.success()).unwrap_or(true) {
        panic!(
            "the mpi feature is on but `mpirun` does not run: install Open MPI \
             (Debian: apt-get install openmpi-bin libopenmpi-dev)"
        );
    }
    for n in [2, 3, 4] {
        let (ok, out, took) = launch("train", n, Duration::from_secs(300));
        assert!(ok, "train on {n} ranks failed:\n{out}");
        for r in 0..n {
            let line = format!("rank {r} of {n}: ok");
            assert!(out.contains(&line), "no '{line}' in:\n{out}");
        }
        println!("mpi: train on {n} ranks ok ({took:.1?})");
    }
    let (ok, out, took) = launch("fail", 3, Duration::from_secs(120));
    assert!(!ok, "the job with a failing rank exited cleanly:\n{out}");
    assert!(out.contains("the data ran out on rank 1"), "{out}");
    assert!(
        out.contains("rank 1 panicked; aborting the MPI job"),
        "{out}"
    );
    assert!(!out.contains("rank 0 of 3: ok"), "{out}");
    println!("mpi: a failing rank ends the job ({took:.1?})");
    let (ok, out, took) = launch("stall", 2, Duration::from_secs(120));
    assert!(!ok, "the job with a stalled rank exited cleanly:\n{out}");
    assert!(out.contains("timed out after"), "{out}");
    assert!(took < Duration::from_secs(60), "the watchdog took {took:?}");
    println!("mpi: a stalled rank ends the job after the timeout ({took:.1?})");
    println!("mpi: all scenarios passed");
}

/// Runs this binary on `n` ranks with `scenario`; returns whether the job succeeded and
/// what it printed. Panics when the job outlives `limit` (a hang).
fn launch(scenario: &str, n: usize, limit: Duration) -> (bool, String, Duration) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new("mpirun")
        .args(["--oversubscribe", "-np", &n.to_string()])
        .arg(exe)
        .env(SCENARIO, scenario)
        // Open MPI refuses to start as root without these (CI containers run as root)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun starts");
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().expect("mpirun's status") {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("mpirun's output");
            panic!(
                "{scenario} on {n} ranks still ran after {limit:?}: a hang\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = start.elapsed();
    let out = child.wait_with_output().expect("mpirun's output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text, took)
}

// ----- a rank -----

fn rank_main(scenario: &str) {
    let comm = match scenario {
        "stall" => MpiCommunicator::init_with_timeout(Duration::from_secs(2)),
        _ => MpiCommunicator::init(),
    };
    let comm = Arc::new(comm.expect("MPI starts"));
    let (rank, size) = (comm.rank(), comm.size());
    match scenario {
        "train" => train(comm.clone(), rank, size),
        "fail" => {
            if rank == 1 {
                std::thread::sleep(Duration::from_millis(200));
                panic!("the data ran out on rank 1");
            }
            let mut v = vec![1.0f32; 4];
            comm.all_reduce_sum((&mut v).into()).expect("all-reduce");
            comm.barrier().expect("barrier");
        }
        "stall" => {
            // rank 1 never joins: rank 0's watchdog ends the job
            if rank == 1 {
                std::thread::sleep(Duration::from_secs(300));
            }
            comm.barrier().expect("barrier");
        }
        other => panic!("unknown scenario {other}"),
    }
    println!("rank {rank} of {size}: ok");
}

fn train(comm: Arc<MpiCommunicator>, rank: usize, size: usize) {
    let per_rank = 5;
    // one step against a single process on the whole batch
    let (x, y) = batch(per_rank * size, 7);
    let (whole, _) = grad(mlp_loss).call(&mlp(1), (&x, &y));
    let mut params = mlp(1 + rank as u64);
    let ddp = DataParallel::with_bucket_bytes(comm.clone(), &mut params, 256).expect("ddp");
    assert_eq!(
        max_diff(&params, &mlp(1)),
        0.0,
        "rank 0's parameters everywhere"
    );
    let step = ddp.wrap(grad(mlp_loss));
    let (xs, ys) = (
        x.narrow(0, rank * per_rank, per_rank),
        y.narrow(0, rank * per_rank, per_rank),
    );
    let (local, _) = step.call(&params, (&xs, &ys));
    let g = ddp.finish(&local).expect("finish");
    let d = max_diff(&g, &whole);
    assert!(
        d < 1e-6,
        "rank {rank}: the averaged gradient differs by {d}"
    );

    // 100 steps on different data per rank: the parameters stay the same bits everywhere
    let mut opt = Sgd::new(0.05).momentum(0.9);
    for i in 0..100 {
        let (x, y) = batch(per_rank, 1000 * i + rank as u64);
        let (local, _) = step.call(&params, (&x, &y));
        let g = ddp.finish(&local).expect("finish");
        params = opt.step(&params, &g);
    }
    for t in leaves(&params) {
        let mine = t.to_f64_vec();
        let mut theirs = mine.clone();
        comm.broadcast((&mut theirs).into(), 0).expect("broadcast");
        assert_eq!(
            mine, theirs,
            "rank {rank}'s parameters differ from rank 0's"
        );
    }
    let stats = ddp.stats();
    assert_eq!(stats.steps, 101);
    assert_eq!(stats.sent_during_backward, stats.buckets);
}
