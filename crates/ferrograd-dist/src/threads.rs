//! N ranks as threads of one process: the real collective algorithm with no launcher, so
//! `cargo test` exercises data-parallel training end to end.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::comm::{Buffer, CommError, Communicator};

/// How long a collective waits for the other ranks before giving up, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `size` ranks as threads of this process, each with its [`ThreadCommunicator`].
///
/// ```
/// use ferrograd_dist::{Communicator, ThreadGroup};
/// let sums = ThreadGroup::new(3).run(|comm| {
///     let mut v = vec![comm.rank() as f64 + 1.0; 2];
///     comm.all_reduce_sum((&mut v).into()).unwrap();
///     v
/// });
/// for s in sums {
///     assert_eq!(s.unwrap(), vec![6.0, 6.0]);
/// }
/// ```
#[derive(Debug, Clone)]
pub struct ThreadGroup {
    size: usize,
    timeout: Duration,
}

impl ThreadGroup {
    /// A group of `size` ranks (at least one).
    pub fn new(size: usize) -> ThreadGroup {
        assert!(
            size > 0,
            "ferrograd-dist: ThreadGroup::new: a group needs at least one rank"
        );
        ThreadGroup {
            size,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// How long a collective waits for the other ranks ([`DEFAULT_TIMEOUT`] unless set).
    pub fn timeout(mut self, timeout: Duration) -> ThreadGroup {
        self.timeout = timeout;
        self
    }

    /// Runs `f` on every rank, each on its own thread, and returns what each returned, by
    /// rank: `Err` with the panic's message for a rank that panicked. A rank that panics or
    /// returns makes the collectives the others are waiting in fail with
    /// [`CommError::PeerFailed`] rather than hang.
    pub fn run<R: Send>(
        &self,
        f: impl Fn(ThreadCommunicator) -> R + Sync,
    ) -> Vec<Result<R, String>> {
        let shared = Arc::new(Shared {
            size: self.size,
            timeout: self.timeout,
            state: Mutex::new(State {
                round: 0,
                arrived: (0..self.size).map(|_| None).collect(),
                count: 0,
                result: None,
                failed: None,
                exited: vec![false; self.size],
            }),
            cv: Condvar::new(),
        });
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.size)
                .map(|rank| {
                    let comm = ThreadCommunicator {
                        rank,
                        shared: shared.clone(),
                    };
                    let shared = shared.clone();
                    let f = &f;
                    scope.spawn(move || {
                        let out = catch_unwind(AssertUnwindSafe(|| f(comm)));
                        match &out {
                            Ok(_) => shared.exit(rank),
                            Err(e) => shared.fail(rank, panic_message(e.as_ref())),
                        }
                        out.map_err(|e| panic_message(e.as_ref()))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| Err(panic_message(e.as_ref()))))
                .collect()
        })
    }
}

fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = e.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = e.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".into()
    }
}

/// One rank's handle on a [`ThreadGroup`].
#[derive(Clone)]
pub struct ThreadCommunicator {
    rank: usize,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ThreadCommunicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ThreadCommunicator(rank {} of {})",
            self.rank, self.shared.size
        )
    }
}

struct Shared {
    size: usize,
    timeout: Duration,
    state: Mutex<State>,
    cv: Condvar,
}

struct State {
    /// Collectives completed so far.
    round: u64,
    /// What each rank brought to the current collective.
    arrived: Vec<Option<Contribution>>,
    count: usize,
    /// The outcome of the last completed collective.
    result: Option<Arc<Result<Data, CommError>>>,
    failed: Option<(usize, String)>,
    exited: Vec<bool>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    AllReduce,
    Broadcast(usize),
    Barrier,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::AllReduce => "all_reduce_sum",
            Kind::Broadcast(_) => "broadcast",
            Kind::Barrier => "barrier",
        }
    }
}

struct Contribution {
    kind: Kind,
    dtype: &'static str,
    len: usize,
    data: Data,
}

enum Data {
    None,
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Data {
    fn of(buf: &Buffer<'_>) -> Data {
        match buf {
            Buffer::F32(b) => Data::F32(b.to_vec()),
            Buffer::F64(b) => Data::F64(b.to_vec()),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // a rank that panicked while holding the lock left the state consistent (every
        // update under the lock is a plain assignment), so go on
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, rank: usize, reason: String) {
        let mut s = self.lock();
        s.failed.get_or_insert((rank, reason));
        self.cv.notify_all();
    }

    fn exit(&self, rank: usize) {
        let mut s = self.lock();
        s.exited[rank] = true;
        self.cv.notify_all();
    }

    /// Joins the current collective with `mine`, waits for the others, and returns the
    /// outcome every rank shares.
    fn collective(
        &self,
        rank: usize,
        mine: Contribution,
    ) -> Result<Arc<Result<Data, CommError>>, CommError> {
        let op = mine.kind.name();
        let peer_failed = |(failed, reason): &(usize, String)| CommError::PeerFailed {
            op,
            rank,
            failed: *failed,
            reason: reason.clone(),
        };
        let mut s = self.lock();
        if let Some(f) = &s.failed {
            return Err(peer_failed(f));
        }
        if s.arrived[rank].is_some() {
            return Err(CommError::Mismatch(format!(
                "rank {rank} entered {op} while its previous collective was still waiting \
                 (two threads of one rank calling collectives at once)"
            )));
        }
        let round = s.round;
        s.arrived[rank] = Some(mine);
        s.count += 1;
        if s.count == self.size {
            let contributions: Vec<Contribution> = s
                .arrived
                .iter_mut()
                .map(|c| c.take().expect("every rank arrived"))
                .collect();
            let outcome = Arc::new(combine(contributions));
            s.result = Some(outcome.clone());
            s.count = 0;
            s.round += 1;
            self.cv.notify_all();
            return Ok(outcome);
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            if s.round != round {
                return Ok(s.result.clone().expect("a completed round has a result"));
            }
            if let Some(f) = &s.failed {
                return Err(peer_failed(f));
            }
            let missing: Vec<usize> = (0..self.size).filter(|&r| s.arrived[r].is_none()).collect();
            if let Some(&gone) = missing.iter().find(|&&r| s.exited[r]) {
                let reason = "returned without joining this collective".to_string();
                s.failed.get_or_insert((gone, reason.clone()));
                self.cv.notify_all();
                return Err(peer_failed(&(gone, reason)));
            }
            let now = Instant::now();
            if now >= deadline {
                let err = CommError::Timeout {
                    op,
                    rank,
                    after: self.timeout,
                    missing,
                };
                s.failed.get_or_insert((rank, err.to_string()));
                self.cv.notify_all();
                return Err(err);
            }
            s = self
                .cv
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The shared outcome of one collective: the sum in rank order (the same bits for every
/// rank), or the root's buffer.
fn combine(contributions: Vec<Contribution>) -> Result<Data, CommError> {
    let first = &contributions[0];
    for (r, c) in contributions.iter().enumerate() {
        if c.kind != first.kind || c.dtype != first.dtype || c.len != first.len {
            return Err(CommError::Mismatch(format!(
                "rank 0 called {} of {} {} elements, rank {r} called {} of {} {} elements",
                first.kind.name(),
                first.len,
                first.dtype,
                c.kind.name(),
                c.len,
                c.dtype
            )));
        }
    }
    match first.kind {
        Kind::Barrier => Ok(Data::None),
        Kind::Broadcast(root) => {
            let mut contributions = contributions;
            Ok(std::mem::replace(&mut contributions[root].data, Data::None))
        }
        Kind::AllReduce => {
            let mut it = contributions.into_iter().map(|c| c.data);
            let mut acc = it.next().expect("a group has a rank");
            for d in it {
                match (&mut acc, d) {
                    (Data::F32(a), Data::F32(b)) => a.iter_mut().zip(b).for_each(|(x, y)| *x += y),
                    (Data::F64(a), Data::F64(b)) => a.iter_mut().zip(b).for_each(|(x, y)| *x += y),
                    _ => unreachable!("dtypes were checked"),
                }
            }
            Ok(acc)
        }
    }
}

fn copy_out(outcome: &Result<Data, CommError>, buf: Buffer<'_>) -> Result<(), CommError> {
    match (outcome.as_ref().map_err(Clone::clone)?, buf) {
        (Data::None, _) => {}
        (Data::F32(d), Buffer::F32(b)) => b.copy_from_slice(d),
        (Data::F64(d), Buffer::F64(b)) => b.copy_from_slice(d),
        _ => unreachable!("dtypes were checked"),
    }
    Ok(())
}

impl Communicator for ThreadCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.shared.size
    }

    fn all_reduce_sum(&self, buf: Buffer<'_>) -> Result<(), CommError> {
        let mine = Contribution {
            kind: Kind::AllReduce,
            dtype: buf.dtype_name(),
            len: buf.len(),
            data: Data::of(&buf),
        };
        let outcome = self.shared.collective(self.rank, mine)?;
        copy_out(&outcome, buf)
    }

    fn broadcast(&self, buf: Buffer<'_>, root: usize) -> Result<(), CommError> {
        if root >= self.shared.size {
            return Err(CommError::BadRoot {
                root,
                size: self.shared.size,
            });
        }
        let mine = Contribution {
            kind: Kind::Broadcast(root),
            dtype: buf.dtype_name(),
            len: buf.len(),
            data: if self.rank == root {
                Data::of(&buf)
            } else {
                Data::None
            },
        };
        let outcome = self.shared.collective(self.rank, mine)?;
        copy_out(&outcome, buf)
    }

    fn barrier(&self) -> Result<(), CommError> {
        let mine = Contribution {
            kind: Kind::Barrier,
            dtype: "",
            len: 0,
            data: Data::None,
        };
        self.shared.collective(self.rank, mine).map(|_| ())
    }
}
