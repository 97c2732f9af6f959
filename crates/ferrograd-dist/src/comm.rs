//! The communicator abstraction and its one-process implementation.

use std::time::Duration;

/// A flat buffer of one of the float dtypes gradients come in.
#[derive(Debug)]
pub enum Buffer<'a> {
    /// 32-bit floats.
    F32(&'a mut [f32]),
    /// 64-bit floats.
    F64(&'a mut [f64]),
}

impl Buffer<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Buffer::F32(b) => b.len(),
            Buffer::F64(b) => b.len(),
        }
    }

    /// True when the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The dtype's name, for messages.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            Buffer::F32(_) => "f32",
            Buffer::F64(_) => "f64",
        }
    }
}

impl<'a> From<&'a mut [f32]> for Buffer<'a> {
    fn from(b: &'a mut [f32]) -> Self {
        Buffer::F32(b)
    }
}

impl<'a> From<&'a mut [f64]> for Buffer<'a> {
    fn from(b: &'a mut [f64]) -> Self {
        Buffer::F64(b)
    }
}

impl<'a> From<&'a mut Vec<f32>> for Buffer<'a> {
    fn from(b: &'a mut Vec<f32>) -> Self {
        Buffer::F32(b)
    }
}

impl<'a> From<&'a mut Vec<f64>> for Buffer<'a> {
    fn from(b: &'a mut Vec<f64>) -> Self {
        Buffer::F64(b)
    }
}

/// Why a collective operation failed. Every rank of a group sees an error (not a hang) when
/// one of them fails.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommError {
    /// Another rank panicked or returned an error while the others waited for it.
    #[error("ferrograd-dist: {op} on rank {rank}: rank {failed} failed: {reason}")]
    PeerFailed {
        /// The collective that was waiting.
        op: &'static str,
        /// The rank reporting the error.
        rank: usize,
        /// The rank that failed.
        failed: usize,
        /// What that rank reported.
        reason: String,
    },
    /// The collective did not complete within the group's timeout.
    #[error("ferrograd-dist: {op} on rank {rank}: timed out after {after:?} waiting for rank(s) {missing:?}")]
    Timeout {
        /// The collective that timed out.
        op: &'static str,
        /// The rank reporting the error.
        rank: usize,
        /// The timeout.
        after: Duration,
        /// The ranks that had not joined.
        missing: Vec<usize>,
    },
    /// The ranks called different collectives, or with different lengths or dtypes: a bug in
    /// the program (every rank must make the same calls in the same order).
    #[error("ferrograd-dist: mismatched collectives: {0}")]
    Mismatch(String),
    /// A broadcast named a root outside the group.
    #[error("ferrograd-dist: broadcast from rank {root} in a group of {size}")]
    BadRoot {
        /// The root asked for.
        root: usize,
        /// The group's size.
        size: usize,
    },
    /// The MPI library reported an error.
    #[error("ferrograd-dist: MPI: {0}")]
    Mpi(String),
}

/// A group of `size` processes (or threads) that sum buffers together: what data-parallel
/// training needs from a distributed engine.
///
/// Every rank must make the same calls in the same order with buffers of the same length and
/// dtype (the MPI rule). Implementations: [`SingleProcess`], [`ThreadGroup`](crate::ThreadGroup)
/// (N ranks as threads of one process) and, with the `mpi` feature,
/// `MpiCommunicator`.
pub trait Communicator: Send + Sync {
    /// This rank, `0..size`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// Replaces `buf` on every rank with the element-wise sum of every rank's `buf`. Every
    /// rank receives the same bits.
    fn all_reduce_sum(&self, buf: Buffer<'_>) -> Result<(), CommError>;
    /// Replaces `buf` on every rank with `root`'s.
    fn broadcast(&self, buf: Buffer<'_>, root: usize) -> Result<(), CommError>;
    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<(), CommError>;
}

/// The group of one: every collective is the identity. Lets data-parallel code run
/// unchanged in one process.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _buf: Buffer<'_>) -> Result<(), CommError> {
        Ok(())
    }
    fn broadcast(&self, _buf: Buffer<'_>, root: usize) -> Result<(), CommError> {
        if root != 0 {
            return Err(CommError::BadRoot { root, size: 1 });
        }
        Ok(())
    }
    fn barrier(&self) -> Result<(), CommError> {
        Ok(())
    }
}
