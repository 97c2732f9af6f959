//! Data-parallel training: every rank computes the gradient of its share of the batch, and
//! the gradients are averaged across ranks in buckets, while the backward pass still runs.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ferrograd::{leaves, rebuild, DType, Grad, Tensor, Tree};

use crate::comm::{Buffer, CommError, Communicator};

/// The bucket size [`DataParallel`] uses unless told otherwise: 25 MiB, PyTorch's default.
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// Averages gradients across the ranks of a [`Communicator`], the way PyTorch's
/// `DistributedDataParallel` does:
///
/// - [`new`](DataParallel::new) broadcasts the parameters from rank 0, so every rank starts
///   from the same model;
/// - [`wrap`](DataParallel::wrap) adds an [`on_gradient`](Grad::on_gradient) hook to a
///   `grad`: as the backward pass finalizes each parameter's gradient, it is copied into a
///   flat bucket (buckets fill in backward order, one dtype each, of about 25 MiB or what
///   [`with_bucket_bytes`](DataParallel::with_bucket_bytes) says), and a full bucket is
///   handed to a communication thread that all-reduces it while the backward pass goes on;
/// - [`finish`](DataParallel::finish) waits for the last buckets and returns the gradient
///   tree averaged over the ranks, identical on every rank, for the optimizer.
///
/// Every rank must run the same steps with batches of the same size (a
/// [`ShardedSampler`](crate::ShardedSampler) gives each rank its share of an epoch); with a
/// loss that averages over the batch, the averaged gradient is then the gradient of the
/// whole batch. [`no_sync`](DataParallel::no_sync) accumulates gradients locally for
/// gradient accumulation.
///
/// ```
/// use std::sync::Arc;
/// use ferrograd::{grad, Tensor};
/// use ferrograd_dist::{Communicator, DataParallel, ThreadGroup};
/// let losses = ThreadGroup::new(2).run(|comm| {
///     let rank = comm.rank() as f64;
///     let mut w = Tensor::from_vec(vec![rank; 2], &[2]); // rank 0's value wins
///     let ddp = DataParallel::new(Arc::new(comm), &mut w).unwrap();
///     let step = ddp.wrap(grad(|w: &Tensor, x: &Tensor| (w * x).sum()));
///     // each rank sees its own data; the gradient is the average: (1 + 3) / 2
///     let x = Tensor::from_vec(vec![1.0 + 2.0 * rank; 2], &[2]);
///     let (local, _) = step.call(&w, (&x,));
///     let averaged = ddp.finish(&local).unwrap();
///     averaged.to_vec::<f64>()
/// });
/// for g in losses {
///     assert_eq!(g.unwrap(), vec![2.0, 2.0]);
/// }
/// ```
pub struct DataParallel {
    comm: Arc<dyn Communicator>,
    reducer: Arc<Mutex<Reducer>>,
    done: Mutex<Receiver<Done>>,
    stats: Mutex<DataParallelStats>,
    worker: Option<std::thread::JoinHandle<()>>,
}

/// What a [`DataParallel`] did so far: how many steps and buckets, how long the all-reduces
/// took on the communication thread, and how long [`finish`](DataParallel::finish) waited for
/// them after the backward pass. `1 - waited / communicated` is the share of the
/// communication hidden behind the backward pass.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DataParallelStats {
    /// Synchronized steps finished.
    pub steps: u64,
    /// Buckets all-reduced.
    pub buckets: u64,
    /// Of those, the buckets the backward pass sent itself, as soon as their last gradient
    /// was final (the rest were sent by `finish`: their gradients never arrived).
    pub sent_during_backward: u64,
    /// Bytes all-reduced (this rank's buffers).
    pub bytes: u64,
    /// Time the communication thread spent in all-reduces.
    pub communicated: Duration,
    /// Time `finish` spent waiting for buckets.
    pub waited: Duration,
}

impl DataParallelStats {
    /// The share of the communication time that overlapped the backward pass, in `[0, 1]`.
    pub fn hidden_share(&self) -> f64 {
        if self.communicated.is_zero() {
            return 0.0;
        }
        (1.0 - self.waited.as_secs_f64() / self.communicated.as_secs_f64()).clamp(0.0, 1.0)
    }
}

/// Where one parameter lives in the buckets (integer leaves have none).
#[derive(Debug, Clone)]
struct Slot {
    bucket: usize,
    offset: usize,
    numel: usize,
    shape: Vec<usize>,
}

#[derive(Debug)]
enum Flat {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Flat {
    fn zeros(dtype: DType, len: usize) -> Flat {
        match dtype {
            DType::F32 => Flat::F32(vec![0.0; len]),
            _ => Flat::F64(vec![0.0; len]),
        }
    }

    fn buffer(&mut self) -> Buffer<'_> {
        match self {
            Flat::F32(v) => Buffer::F32(v),
            Flat::F64(v) => Buffer::F64(v),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Flat::F32(v) => v.len() * 4,
            Flat::F64(v) => v.len() * 8,
        }
    }

    /// `self[offset..] += t` (contiguous or not).
    fn add(&mut self, offset: usize, t: &Tensor) {
        fn add_into<T: ferrograd::Element + std::ops::AddAssign>(dst: &mut [T], t: &Tensor) {
            let value = t.value();
            match value.as_slice::<T>() {
                Some(src) => dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s),
                None => dst
                    .iter_mut()
                    .zip(value.to_vec::<T>())
                    .for_each(|(d, s)| *d += s),
            }
        }
        let n = t.numel();
        match self {
            Flat::F32(v) => add_into(&mut v[offset..offset + n], &t.to_dtype(DType::F32)),
            Flat::F64(v) => add_into(&mut v[offset..offset + n], &t.to_dtype(DType::F64)),
        }
    }

    fn tensor(&self, slot: &Slot) -> Tensor {
        let range = slot.offset..slot.offset + slot.numel;
        match self {
            Flat::F32(v) => Tensor::from_vec(v[range].to_vec(), &slot.shape),
            Flat::F64(v) => Tensor::from_vec(v[range].to_vec(), &slot.shape),
        }
    }

    fn scale(&mut self, by: f64) {
        match self {
            Flat::F32(v) => v.iter_mut().for_each(|x| *x *= by as f32),
            Flat::F64(v) => v.iter_mut().for_each(|x| *x *= by),
        }
    }

    fn zero(&mut self) {
        match self {
            Flat::F32(v) => v.fill(0.0),
            Flat::F64(v) => v.fill(0.0),
        }
    }
}

struct Bucket {
    /// `None` while the communication thread holds it.
    data: Option<Flat>,
    /// Leaves of this bucket whose gradient has not arrived in this step.
    pending: usize,
    members: usize,
}

struct Reducer {
    slots: Vec<Option<Slot>>,
    buckets: Vec<Bucket>,
    /// Buckets go out in index order (every rank must issue the same collectives in the
    /// same order): the next one to send.
    next: usize,
    /// Buckets sent in this step and not yet back.
    in_flight: usize,
    sync: bool,
    jobs: Option<Sender<Job>>,
    error: Option<String>,
}

struct Job {
    bucket: usize,
    data: Flat,
}

struct Done {
    bucket: usize,
    data: Flat,
    outcome: Result<(), CommError>,
    took: Duration,
}

/// Each leaf's value read out of its bucket (buckets hold their leaves' own dtype), or the
/// leaf itself where it has none (integer leaves).
fn from_buckets(buckets: &[Bucket], slots: &[Option<Slot>], current: &[Tensor]) -> Vec<Tensor> {
    current
        .iter()
        .zip(slots)
        .map(|(t, s)| match s {
            Some(s) => buckets[s.bucket]
                .data
                .as_ref()
                .expect("every bucket is home")
                .tensor(s),
            None => t.clone(),
        })
        .collect()
}

impl Reducer {
    /// The hook's work: add the gradient of leaf `i` into its bucket and send every bucket
    /// that is complete, in order.
    fn ready(&mut self, i: usize, g: &Tensor) {
        let Some(slot) = self.slots.get(i).cloned().flatten() else {
            return;
        };
        let bucket = &mut self.buckets[slot.bucket];
        let Some(data) = bucket.data.as_mut() else {
            self.error.get_or_insert_with(|| {
                "a gradient arrived while its bucket was being all-reduced: call finish after \
                 every synchronized step"
                    .into()
            });
            return;
        };
        data.add(slot.offset, g);
        if !self.sync {
            return;
        }
        if bucket.pending == 0 {
            self.error.get_or_insert_with(|| {
                format!("leaf {i} reported twice in one step: call finish after every synchronized step")
            });
            return;
        }
        bucket.pending -= 1;
        self.launch_ready();
    }

    fn launch_ready(&mut self) {
        while self.next < self.buckets.len() && self.buckets[self.next].pending == 0 {
            let data = self.buckets[self.next]
                .data
                .take()
                .expect("an unsent bucket holds its data");
            if let Some(jobs) = &self.jobs {
                // a closed channel shows up in finish as a missing bucket
                let _ = jobs.send(Job {
                    bucket: self.next,
                    data,
                });
            }
            self.in_flight += 1;
            self.next += 1;
        }
    }
}

impl DataParallel {
    /// Prepares data-parallel training of `params` over `comm`: broadcasts rank 0's
    /// parameters into `params` on every rank, lays out the gradient buckets
    /// ([`DEFAULT_BUCKET_BYTES`]) and starts the communication thread.
    pub fn new<P: Tree>(comm: Arc<dyn Communicator>, params: &mut P) -> Result<Self, CommError> {
        Self::with_bucket_bytes(comm, params, DEFAULT_BUCKET_BYTES)
    }

    /// [`new`](DataParallel::new) with buckets of about `bucket_bytes` (a parameter larger
    /// than that gets a bucket of its own). Smaller buckets start communicating earlier in
    /// the backward pass; larger ones make fewer, more efficient calls.
    pub fn with_bucket_bytes<P: Tree>(
        comm: Arc<dyn Communicator>,
        params: &mut P,
        bucket_bytes: usize,
    ) -> Result<Self, CommError> {
        let current = leaves(params);
        let mut slots: Vec<Option<Slot>> = vec![None; current.len()];
        let mut sizes: Vec<(DType, usize, usize)> = Vec::new(); // dtype, elements, members
                                                                // backward order: the last parameters' gradients are final first
        for (i, t) in current.iter().enumerate().rev() {
            let dtype = t.dtype();
            if !dtype.is_float() {
                continue;
            }
            let bytes = t.numel() * dtype.size_in_bytes();
            let fits = sizes.last().is_some_and(|&(d, n, _)| {
                d == dtype && (n * d.size_in_bytes() + bytes <= bucket_bytes || n == 0)
            });
            if !fits {
                sizes.push((dtype, 0, 0));
            }
            let bucket = sizes.len() - 1;
            let last = &mut sizes[bucket];
            slots[i] = Some(Slot {
                bucket,
                offset: last.1,
                numel: t.numel(),
                shape: t.shape().to_vec(),
            });
            last.1 += t.numel();
            last.2 += 1;
        }
        let mut buckets: Vec<Bucket> = sizes
            .iter()
            .map(|&(dtype, len, members)| Bucket {
                data: Some(Flat::zeros(dtype, len)),
                pending: members,
                members,
            })
            .collect();

        // rank 0's parameters, through the buckets
        for (i, t) in current.iter().enumerate() {
            if let Some(s) = &slots[i] {
                buckets[s.bucket]
                    .data
                    .as_mut()
                    .expect("fresh")
                    .add(s.offset, t);
            }
        }
        for b in &mut buckets {
            comm.broadcast(b.data.as_mut().expect("fresh").buffer(), 0)?;
        }
        *params = rebuild(params, from_buckets(&buckets, &slots, &current));
        for b in &mut buckets {
            b.data.as_mut().expect("fresh").zero();
        }

        let (jobs, work) = channel::<Job>();
        let (results, done) = channel::<Done>();
        let worker = comm.clone();
        let worker = std::thread::Builder::new()
            .name(format!("ferrograd-dist rank {}", comm.rank()))
            .spawn(move || communicate(worker, work, results))
            .map_err(|e| CommError::Mpi(format!("cannot start the communication thread: {e}")))?;
        Ok(DataParallel {
            comm,
            reducer: Arc::new(Mutex::new(Reducer {
                slots,
                buckets,
                next: 0,
                in_flight: 0,
                sync: true,
                jobs: Some(jobs),
                error: None,
            })),
            done: Mutex::new(done),
            stats: Mutex::new(DataParallelStats::default()),
            worker: Some(worker),
        })
    }

    /// The communicator.
    pub fn comm(&self) -> &Arc<dyn Communicator> {
        &self.comm
    }

    /// The number of buckets the gradients travel in.
    pub fn buckets(&self) -> usize {
        self.reducer().buckets.len()
    }

    /// Installs the hook that feeds this `DataParallel` into a `grad` (replacing any
    /// [`on_gradient`](Grad::on_gradient) hook it had). Call [`finish`](DataParallel::finish)
    /// after each call of the returned `grad` (outside [`no_sync`](DataParallel::no_sync)).
    pub fn wrap<F>(&self, g: Grad<F>) -> Grad<F> {
        let reducer = self.reducer.clone();
        g.on_gradient(move |i, t| {
            reducer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .ready(i, t)
        })
    }

    /// Runs `f` (one or more gradient calls) without communicating: the gradients of the
    /// wrapped `grad`s it calls are summed locally, and the next synchronized call adds its
    /// own and averages the sum across ranks, as PyTorch's `no_sync` does for gradient
    /// accumulation.
    pub fn no_sync<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore<'a>(&'a Mutex<Reducer>);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.0.lock().unwrap_or_else(|e| e.into_inner()).sync = true;
            }
        }
        self.reducer().sync = false;
        let _restore = Restore(&self.reducer);
        f()
    }

    /// Waits for every bucket of the step and returns the averaged gradient tree (`grads`,
    /// the wrapped call's local gradients, gives the tree's shape and its integer leaves).
    /// The result is the same on every rank.
    pub fn finish<P: Tree>(&self, grads: &P) -> Result<P, CommError> {
        let started = Instant::now();
        let (expected, early, error) = {
            let mut r = self.reducer();
            let early = r.in_flight;
            if r.slots.len() != leaves(grads).len() {
                return Err(CommError::Mismatch(format!(
                    "finish got a tree of {} leaves; the DataParallel was made for {}",
                    leaves(grads).len(),
                    r.slots.len()
                )));
            }
            // buckets whose gradients never arrived (a call not wrapped) go out as they are
            for b in &mut r.buckets {
                b.pending = 0;
            }
            r.launch_ready();
            (r.in_flight, early, r.error.take())
        };
        let mut first_error = error.map(CommError::Mismatch);
        let mut took = Duration::ZERO;
        let mut bytes = 0;
        let mut returned = Vec::with_capacity(expected);
        {
            let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
            for _ in 0..expected {
                let Ok(d) = done.recv() else {
                    first_error
                        .get_or_insert(CommError::Mpi("the communication thread stopped".into()));
                    break;
                };
                took += d.took;
                bytes += d.data.bytes();
                if let Err(e) = d.outcome {
                    first_error.get_or_insert(e);
                }
                returned.push((d.bucket, d.data));
            }
        }
        let waited = started.elapsed();
        let mut r = self.reducer();
        for (i, data) in returned {
            r.buckets[i].data = Some(data);
        }
        let result = match &first_error {
            Some(_) => None,
            None => {
                let averaged = from_buckets(&r.buckets, &r.slots, &leaves(grads));
                Some(rebuild(grads, averaged))
            }
        };
        for b in &mut r.buckets {
            if let Some(d) = &mut b.data {
                d.zero();
            }
            b.pending = b.members;
        }
        r.next = 0;
        r.in_flight = 0;
        drop(r);
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.steps += 1;
        s.buckets += expected as u64;
        s.sent_during_backward += early as u64;
        s.bytes += bytes as u64;
        s.communicated += took;
        s.waited += waited;
        match first_error {
            Some(e) => Err(e),
            None => Ok(result.expect("no error")),
        }
    }

    /// The average over the ranks of every float leaf of `tree` (a metric, running
    /// statistics), in one all-reduce per leaf; integer leaves come back unchanged.
    pub fn average<P: Tree>(&self, tree: &P) -> Result<P, CommError> {
        let mut out = Vec::new();
        for t in leaves(tree) {
            if !t.dtype().is_float() {
                out.push(t);
                continue;
            }
            let slot = Slot {
                bucket: 0,
                offset: 0,
                numel: t.numel(),
                shape: t.shape().to_vec(),
            };
            let mut flat = Flat::zeros(t.dtype(), t.numel());
            flat.add(0, &t);
            self.comm.all_reduce_sum(flat.buffer())?;
            flat.scale(1.0 / self.comm.size() as f64);
            out.push(flat.tensor(&slot));
        }
        Ok(rebuild(tree, out))
    }

    /// What this `DataParallel` did so far.
    pub fn stats(&self) -> DataParallelStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reducer(&self) -> MutexGuard<'_, Reducer> {
        self.reducer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for DataParallel {
    fn drop(&mut self) {
        // closing the channel ends the communication thread after its current bucket
        self.reducer().jobs = None;
        // Joined, so that its handle on the communicator is gone when this returns (MPI
        // finalizes when the last one goes); not while unwinding, when the thread may wait
        // in a collective for peers that wait for this rank.
        if let Some(worker) = self.worker.take() {
            if !std::thread::panicking() {
                let _ = worker.join();
            }
        }
    }
}

/// The communication thread: all-reduces each bucket it is given and scales it to the mean.
fn communicate(comm: Arc<dyn Communicator>, work: Receiver<Job>, results: Sender<Done>) {
    let scale = 1.0 / comm.size() as f64;
    while let Ok(Job { bucket, mut data }) = work.recv() {
        let start = Instant::now();
        let outcome = comm.all_reduce_sum(data.buffer());
        if outcome.is_ok() {
            data.scale(scale);
        }
        let took = start.elapsed();
        let failed = outcome.is_err();
        if results
            .send(Done {
                bucket,
                data,
                outcome,
                took,
            })
            .is_err()
            || failed
        {
            break;
        }
    }
}
