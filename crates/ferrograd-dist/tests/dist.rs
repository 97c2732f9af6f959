//! Data-parallel training on N ranks as threads of one process: the collectives, failure
//! without hangs, and one step on N ranks against one step of a single process on the whole
//! batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrograd::{grad, DType, Tensor};
use ferrograd_dist::{
    CommError, Communicator, DataParallel, ShardedSampler, SingleProcess, ThreadGroup,
};
use ferrograd_nn::optim::{Adam, Optimizer};

mod common;
use common::{batch, max_diff, mlp, mlp_loss};

fn ok<R>(results: Vec<Result<R, String>>) -> Vec<R> {
    results
        .into_iter()
        .enumerate()
        .map(|(r, x)| x.unwrap_or_else(|e| panic!("rank {r}: {e}")))
        .collect()
}

#[test]
fn all_reduce_sums_and_broadcast_copies_on_every_group_size() {
    for n in 1..=4 {
        let out = ok(ThreadGroup::new(n).run(|comm| {
            let r = comm.rank();
            let mut a = vec![r as f32 + 0.5, -(r as f32)];
            comm.all_reduce_sum((&mut a).into()).unwrap();
            let mut b: Vec<f64> = (0..5).map(|i| (i * 10 + r) as f64).collect();
            comm.broadcast((&mut b).into(), n - 1).unwrap();
            comm.barrier().unwrap();
            let mut empty: Vec<f64> = Vec::new();
            comm.all_reduce_sum((&mut empty).into()).unwrap();
            (a, b)
        }));
        let sum_r = (0..n).sum::<usize>() as f32;
        for (a, b) in out {
            assert_eq!(a, vec![sum_r + 0.5 * n as f32, -sum_r]);
            assert_eq!(
                b,
                (0..5).map(|i| (i * 10 + n - 1) as f64).collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn mismatched_collectives_are_errors_on_every_rank() {
    let out = ok(ThreadGroup::new(2).run(|comm| {
        let mut a = vec![0.0f64; 1 + comm.rank()];
        comm.all_reduce_sum((&mut a).into())
    }));
    for e in out {
        let msg = e.unwrap_err().to_string();
        assert!(msg.contains("mismatched collectives"), "{msg}");
        assert!(
            msg.contains("1 f64 elements") && msg.contains("2 f64"),
            "{msg}"
        );
    }
    let out = ok(ThreadGroup::new(2).run(|comm| comm.broadcast((&mut vec![0.0f32]).into(), 2)));
    for e in out {
        assert_eq!(e, Err(CommError::BadRoot { root: 2, size: 2 }));
    }
}

#[test]
fn a_rank_that_panics_stops_the_others_with_an_error_not_a_hang() {
    let start = Instant::now();
    let out = ThreadGroup::new(3).run(|comm| {
        if comm.rank() == 1 {
            panic!("out of data");
        }
        let mut a = vec![1.0f32];
        comm.all_reduce_sum((&mut a).into())
    });
    assert!(start.elapsed() < Duration::from_secs(30));
    assert!(out[1].as_ref().unwrap_err().contains("out of data"));
    for r in [0, 2] {
        match out[r].as_ref().unwrap() {
            Err(CommError::PeerFailed { failed, reason, .. }) => {
                assert_eq!(*failed, 1);
                assert!(reason.contains("out of data"), "{reason}");
            }
            other => panic!("rank {r}: {other:?}"),
        }
    }
}

#[test]
fn a_rank_that_returns_early_or_stalls_ends_the_wait() {
    let out = ok(ThreadGroup::new(2).run(|comm| {
        if comm.rank() == 0 {
            return None;
        }
        Some(comm.barrier())
    }));
    match &out[1] {
        Some(Err(CommError::PeerFailed {
            failed: 0, reason, ..
        })) => {
            assert!(reason.contains("returned without joining"), "{reason}")
        }
        other => panic!("{other:?}"),
    }

    let start = Instant::now();
    let out = ok(ThreadGroup::new(2)
        .timeout(Duration::from_millis(200))
        .run(|comm| {
            if comm.rank() == 1 {
                std::thread::sleep(Duration::from_millis(1500));
            }
            comm.barrier()
        }));
    assert!(start.elapsed() < Duration::from_secs(10));
    match &out[0] {
        Err(CommError::Timeout { missing, .. }) => assert_eq!(missing, &vec![1]),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(out[1], Err(CommError::PeerFailed { failed: 0, .. })),
        "{:?}",
        out[1]
    );
}

#[test]
fn a_data_parallel_step_equals_a_single_process_step_on_the_whole_batch() {
    let per_rank = 6;
    for n in [2, 3, 4] {
        let (x, y) = batch(per_rank * n, 7);
        let (whole, _) = grad(mlp_loss).call(&mlp(1), (&x, &y));
        // buckets of 256 bytes: several per dtype; and the default: one per dtype
        for bucket_bytes in [256, ferrograd_dist::DEFAULT_BUCKET_BYTES] {
            let out = ok(ThreadGroup::new(n).run(|comm| {
                let r = comm.rank();
                // every rank starts from a different model: rank 0's is broadcast
                let mut params = mlp(1 + r as u64);
                let ddp =
                    DataParallel::with_bucket_bytes(Arc::new(comm), &mut params, bucket_bytes)
                        .unwrap();
                let step = ddp.wrap(grad(mlp_loss));
                let xs = x.narrow(0, r * per_rank, per_rank);
                let ys = y.narrow(0, r * per_rank, per_rank);
                let (local, _) = step.call(&params, (&xs, &ys));
                (ddp.buckets(), ddp.finish(&local).unwrap(), params)
            }));
            for (r, (buckets, g, params)) in out.iter().enumerate() {
                if bucket_bytes == 256 {
                    assert!(*buckets >= 4, "{buckets} buckets");
                } else {
                    assert_eq!(*buckets, 2);
                }
                assert_eq!(max_diff(params, &mlp(1)), 0.0, "rank {r}'s parameters");
                let d = max_diff(g, &whole);
                assert!(d < 1e-6, "{n} ranks, rank {r}: differs by {d}");
                assert_eq!(g[3].dtype(), DType::F64);
                // the same bits on every rank
                assert_eq!(max_diff(g, &out[0].1), 0.0);
            }
        }
    }
}

#[test]
fn parameters_stay_identical_on_every_rank_through_training() {
    let out = ok(ThreadGroup::new(3).run(|comm| {
        let r = comm.rank();
        let mut params = mlp(10 + r as u64);
        let ddp = DataParallel::with_bucket_bytes(Arc::new(comm), &mut params, 512).unwrap();
        let step = ddp.wrap(grad(mlp_loss));
        let mut opt = Adam::new(0.01);
        let mut first = None;
        let mut last = 0.0;
        for i in 0..100 {
            let (x, y) = batch(4, 1000 * i + r as u64);
            let (local, loss) = step.call(&params, (&x, &y));
            let g = ddp.finish(&local).unwrap();
            params = opt.step(&params, &g);
            let mean = ddp.average(&loss).unwrap().item_f64();
            first.get_or_insert(mean);
            last = mean;
        }
        (params, first.unwrap(), last, ddp.stats())
    }));
    for (params, first, last, stats) in &out {
        assert_eq!(max_diff(params, &out[0].0), 0.0);
        assert_eq!(stats.steps, 100);
        // with 512-byte buckets: the f64 bias; the output layer's f32 matrix (256 bytes)
        // with the hidden bias (64); the hidden matrix (512)
        assert_eq!(stats.buckets, 300, "{stats:?}");
        // every bucket left while the backward pass ran, none at finish
        assert_eq!(stats.sent_during_backward, 300, "{stats:?}");
        assert_eq!(
            stats.bytes,
            100 * (4 * 8 + (64 + 16 + 128) * 4),
            "{stats:?}"
        );
        assert!(last < first, "the loss went from {first} to {last}");
    }
}

#[test]
fn no_sync_accumulates_locally_and_the_next_step_averages_the_sum() {
    let (x, y) = batch(16, 3);
    let params = mlp(4);
    let part = |k: usize| (x.narrow(0, 4 * k, 4), y.narrow(0, 4 * k, 4));
    // rank r accumulates micro-batches 2r and 2r + 1
    let local = |k: usize| {
        let (xs, ys) = part(k);
        grad(mlp_loss).call(&params, (&xs, &ys)).0
    };
    let want: Vec<Tensor> = (0..4)
        .map(|i| {
            let sum = (0..4)
                .map(|k| local(k)[i].clone())
                .reduce(|a, b| &a + &b)
                .unwrap();
            &sum * 0.5
        })
        .collect();
    let out = ok(ThreadGroup::new(2).run(|comm| {
        let r = comm.rank();
        let mut params = params.clone();
        let ddp = DataParallel::with_bucket_bytes(Arc::new(comm), &mut params, 256).unwrap();
        let step = ddp.wrap(grad(mlp_loss));
        let (x0, y0) = part(2 * r);
        ddp.no_sync(|| step.call(&params, (&x0, &y0)));
        let (x1, y1) = part(2 * r + 1);
        let (g, _) = step.call(&params, (&x1, &y1));
        ddp.finish(&g).unwrap()
    }));
    for g in &out {
        let d = max_diff(g, &want);
        assert!(d < 1e-6, "differs by {d}");
    }
}

#[test]
fn data_parallel_works_in_optimize_mode_and_in_one_process() {
    let (x, y) = batch(8, 5);
    let (whole, _) = grad(mlp_loss).call(&mlp(2), (&x, &y));
    let out = ok(ThreadGroup::new(2).run(|comm| {
        let r = comm.rank();
        let mut params = mlp(2);
        let ddp = DataParallel::with_bucket_bytes(Arc::new(comm), &mut params, 256).unwrap();
        let step = ddp.wrap(grad(mlp_loss).optimize(true));
        let (xs, ys) = (x.narrow(0, 4 * r, 4), y.narrow(0, 4 * r, 4));
        let mut g = Vec::new();
        for _ in 0..3 {
            let (local, _) = step.call(&params, (&xs, &ys));
            g = ddp.finish(&local).unwrap();
        }
        // the hook's reads of the gradients are not guards: the plan replays
        if std::env::var_os("FERROGRAD_OPTIMIZE").is_none() {
            assert_eq!(step.stats().hits, 2, "{:?}", step.stats());
        }
        g
    }));
    for g in &out {
        assert!(max_diff(g, &whole) < 1e-6);
    }

    let mut params = mlp(2);
    let ddp = DataParallel::new(Arc::new(SingleProcess), &mut params).unwrap();
    let step = ddp.wrap(grad(mlp_loss));
    let (local, _) = step.call(&params, (&x, &y));
    let g = ddp.finish(&local).unwrap();
    assert_eq!(max_diff(&g, &whole), 0.0);
    assert_eq!(max_diff(&local, &whole), 0.0);
}

#[test]
fn finish_without_a_step_in_between_is_an_error_not_a_wrong_gradient() {
    let mut params = mlp(2);
    let ddp = DataParallel::new(Arc::new(SingleProcess), &mut params).unwrap();
    let step = ddp.wrap(grad(mlp_loss));
    let (x, y) = batch(4, 1);
    step.call(&params, (&x, &y));
    let (local, _) = step.call(&params, (&x, &y));
    let err = ddp.finish(&local).unwrap_err().to_string();
    assert!(
        err.contains("call finish after every synchronized step"),
        "{err}"
    );
    let wrong_tree = vec![local[0].clone()];
    let err = ddp.finish(&wrong_tree).unwrap_err().to_string();
    assert!(
        err.contains("tree of 1 leaves") && err.contains("made for 4"),
        "{err}"
    );
}

#[test]
fn the_sampler_gives_disjoint_equal_shares_that_cover_each_epoch() {
    for (len, size) in [(10, 3), (12, 4), (7, 2), (5, 5)] {
        for epoch in 0..3 {
            let shares: Vec<Vec<usize>> = (0..size)
                .map(|r| ShardedSampler::new(len, r, size).indices(epoch))
                .collect();
            let per_rank = len.div_ceil(size);
            assert!(shares.iter().all(|s| s.len() == per_rank));
            let mut all: Vec<usize> = shares.concat();
            all.sort_unstable();
            all.dedup();
            assert_eq!(all, (0..len).collect::<Vec<_>>(), "len {len} size {size}");
            let dropped: Vec<Vec<usize>> = (0..size)
                .map(|r| {
                    ShardedSampler::new(len, r, size)
                        .drop_last(true)
                        .indices(epoch)
                })
                .collect();
            let mut all: Vec<usize> = dropped.concat();
            assert_eq!(all.len(), len / size * size);
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), len / size * size, "no index twice");
        }
        let a = ShardedSampler::new(len, 0, size).indices(0);
        let b = ShardedSampler::new(len, 0, size).indices(1);
        assert!(len < 7 || a != b, "epochs are shuffled differently");
    }
}

#[test]
fn a_rank_that_fails_mid_training_stops_the_others_at_finish() {
    let start = Instant::now();
    let out = ThreadGroup::new(3).run(|comm| {
        let r = comm.rank();
        let mut params = mlp(1);
        let ddp = DataParallel::with_bucket_bytes(Arc::new(comm), &mut params, 256).unwrap();
        let step = ddp.wrap(grad(mlp_loss));
        for i in 0..10 {
            if r == 2 && i == 3 {
                panic!("rank 2 lost its data at step 3");
            }
            let (x, y) = batch(4, i);
            let (local, _) = step.call(&params, (&x, &y));
            if let Err(e) = ddp.finish(&local) {
                return (i, e.to_string());
            }
        }
        (10, String::new())
    });
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(out[2].as_ref().unwrap_err().contains("lost its data"));
    for r in [0, 1] {
        let (step, err) = out[r].as_ref().unwrap();
        assert_eq!(*step, 3, "rank {r} stopped at step {step}");
        assert!(
            err.contains("rank 2 failed") && err.contains("lost its data"),
            "{err}"
        );
    }
}
