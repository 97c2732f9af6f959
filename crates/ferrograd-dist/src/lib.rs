//! # ferrograd-dist
//!
//! Data-parallel training for ferrograd, on an existing distributed engine: every rank (a
//! process under `mpirun`, or a thread) computes the gradient of its share of each batch,
//! and [`DataParallel`] averages the gradients across ranks in buckets, starting each
//! bucket's all-reduce as soon as the backward pass has finalized its gradients.
//!
//! - [`Communicator`]: rank, size, all-reduce, broadcast and barrier, with three
//!   implementations: [`SingleProcess`], [`ThreadGroup`] (N ranks as threads of one
//!   process, which is how the tests run the real algorithm with no launcher), and with the
//!   `mpi` cargo feature `MpiCommunicator` on the system's MPI library (rsmpi).
//! - [`DataParallel`]: parameters broadcast from rank 0, gradients averaged in buckets
//!   overlapped with the backward pass, [`no_sync`](DataParallel::no_sync) for gradient
//!   accumulation, [`stats`](DataParallel::stats) for the share of communication hidden.
//! - [`ShardedSampler`]: each rank's share of an epoch.
//!
//! The example `train-digits-ddp` trains the digits MLP or CNN (`--model cnn`) on
//! `mpirun -np 2` (see the README) or, without MPI, on threads (`--ranks 2`).
#![warn(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]

mod comm;
mod ddp;
#[cfg(feature = "mpi")]
mod mpi;
mod sampler;
mod threads;

pub use comm::{Buffer, CommError, Communicator, SingleProcess};
pub use ddp::{DataParallel, DataParallelStats, DEFAULT_BUCKET_BYTES};
#[cfg(feature = "mpi")]
pub use mpi::MpiCommunicator;
pub use sampler::ShardedSampler;
pub use threads::{ThreadCommunicator, ThreadGroup, DEFAULT_TIMEOUT};
