//! MPI through rsmpi, on the system's MPI library (the `mpi` feature).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives as _, Root};
use mpi::Threading;

use crate::comm::{Buffer, CommError, Communicator};
use crate::threads::DEFAULT_TIMEOUT;

/// The ranks of an MPI job (`MPI_COMM_WORLD`), started by `mpirun -np N program`.
///
/// Created once per process by [`MpiCommunicator::init`]; dropping it finalizes MPI. A rank
/// that panics aborts the whole job (`MPI_Abort`), so the others stop with mpirun's report
/// rather than hang; a collective that waits longer than the timeout aborts the job too,
/// naming the collective.
pub struct MpiCommunicator {
    world: World,
    rank: usize,
    size: usize,
    /// Serializes this process's MPI calls; the watchdog runs while it lives.
    busy: Arc<Mutex<()>>,
    // dropped last: finalizes MPI
    _universe: Universe,
}

/// `MPI_COMM_WORLD`, callable from any thread.
struct World(SimpleCommunicator);

// SAFETY: MPI was initialized with MPI_THREAD_MULTIPLE or MPI_THREAD_SERIALIZED (checked in
// `init`), so its calls may come from any thread as long as they do not overlap, which the
// `busy` mutex guarantees; the handle itself is an immutable integer or pointer.
unsafe impl Send for World {}
// SAFETY: as for Send: every use goes through `busy`.
unsafe impl Sync for World {}

impl MpiCommunicator {
    /// Initializes MPI (once per process) with the default timeout. Errors when MPI was
    /// already initialized or offers no thread support beyond one thread.
    pub fn init() -> Result<MpiCommunicator, CommError> {
        Self::init_with_timeout(DEFAULT_TIMEOUT)
    }

    /// [`init`](MpiCommunicator::init) with how long a collective may wait before the job is
    /// aborted.
    pub fn init_with_timeout(timeout: Duration) -> Result<MpiCommunicator, CommError> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Multiple)
            .ok_or_else(|| CommError::Mpi("MPI was already initialized in this process".into()))?;
        if threading < Threading::Serialized {
            return Err(CommError::Mpi(format!(
                "the MPI library offers thread support {threading:?}; ferrograd-dist needs \
                 at least Serialized (its communication thread calls MPI)"
            )));
        }
        let world = universe.world();
        let rank = world.rank() as usize;
        let size = world.size() as usize;
        install_abort_on_panic(rank);
        let busy = Arc::new(Mutex::new(()));
        let watched = Arc::downgrade(&busy);
        std::thread::Builder::new()
            .name("ferrograd-dist watchdog".into())
            .spawn(move || watchdog(watched, rank, timeout))
            .map_err(|e| CommError::Mpi(format!("cannot start the watchdog thread: {e}")))?;
        Ok(MpiCommunicator {
            world: World(world),
            rank,
            size,
            busy,
            _universe: universe,
        })
    }

    fn call<R>(&self, op: &'static str, f: impl FnOnce(&SimpleCommunicator) -> R) -> R {
        let _serial = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        let mut watch = WATCH.lock().unwrap_or_else(|e| e.into_inner());
        *watch = Some((op, Instant::now()));
        drop(watch);
        let out = f(&self.world.0);
        *WATCH.lock().unwrap_or_else(|e| e.into_inner()) = None;
        out
    }
}

/// The collective in progress in this process, and since when (read by the watchdog).
static WATCH: Mutex<Option<(&'static str, Instant)>> = Mutex::new(None);

fn watchdog(alive: std::sync::Weak<Mutex<()>>, rank: usize, timeout: Duration) {
    let tick = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
    while alive.strong_count() > 0 {
        std::thread::sleep(tick);
        let stuck = *WATCH.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((op, since)) = stuck {
            if since.elapsed() > timeout {
                eprintln!(
                    "ferrograd-dist: {op} on rank {rank}: timed out after {timeout:?} waiting \
                     for the other ranks; aborting the MPI job"
                );
                abort_world();
            }
        }
    }
}

fn abort_world() -> ! {
    // SAFETY: MPI_Abort on MPI_COMM_WORLD may be called from any thread of an initialized
    // process; it does not return.
    unsafe {
        mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, 1);
    }
    std::process::abort()
}

/// A panic on any thread prints its message, then ends the whole job.
fn install_abort_on_panic(rank: usize) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        eprintln!("ferrograd-dist: rank {rank} panicked; aborting the MPI job");
        abort_world();
    }));
}

impl Communicator for MpiCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, buf: Buffer<'_>) -> Result<(), CommError> {
        self.call("all_reduce_sum", |w| match buf {
            Buffer::F32(b) => {
                let send = b.to_vec();
                w.all_reduce_into(&send[..], b, SystemOperation::sum());
            }
            Buffer::F64(b) => {
                let send = b.to_vec();
                w.all_reduce_into(&send[..], b, SystemOperation::sum());
            }
        });
        Ok(())
    }

    fn broadcast(&self, buf: Buffer<'_>, root: usize) -> Result<(), CommError> {
        if root >= self.size {
            return Err(CommError::BadRoot {
                root,
                size: self.size,
            });
        }
        self.call("broadcast", |w| {
            let root = w.process_at_rank(root as i32);
            match buf {
                Buffer::F32(b) => root.broadcast_into(b),
                Buffer::F64(b) => root.broadcast_into(b),
            }
        });
        Ok(())
    }

    fn barrier(&self) -> Result<(), CommError> {
        self.call("barrier", |w| w.barrier());
        Ok(())
    }
}
