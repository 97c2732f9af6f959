//! Each rank's share of an epoch.

use ferrograd::{Generator, Tensor};
use ferrograd_nn::data::Dataset;

/// Splits each epoch of a data set of `len` examples across the ranks, as PyTorch's
/// `DistributedSampler` does: every rank draws the same permutation of the epoch (seeded by
/// `seed` and the epoch number, or the identity without shuffling), pads it by repeating
/// its start to a multiple of the number of ranks (or drops the remainder with
/// [`drop_last`](ShardedSampler::drop_last)), and takes every `size`-th index from its rank
/// on. The shares are disjoint (but for the padding), of equal length, and cover the epoch.
///
/// ```
/// use ferrograd_dist::ShardedSampler;
/// let shares: Vec<Vec<usize>> =
///     (0..3).map(|r| ShardedSampler::new(10, r, 3).shuffle(None).indices(0)).collect();
/// assert_eq!(shares, vec![vec![0, 3, 6, 9], vec![1, 4, 7, 0], vec![2, 5, 8, 1]]);
/// ```
#[derive(Debug, Clone)]
pub struct ShardedSampler {
    len: usize,
    rank: usize,
    size: usize,
    seed: Option<u64>,
    drop_last: bool,
}

impl ShardedSampler {
    /// The share of rank `rank` of `size` of a data set of `len` examples, shuffled with
    /// seed 0 each epoch.
    pub fn new(len: usize, rank: usize, size: usize) -> ShardedSampler {
        assert!(
            rank < size,
            "ferrograd-dist: ShardedSampler: rank {rank} in a group of {size}"
        );
        ShardedSampler {
            len,
            rank,
            size,
            seed: Some(0),
            drop_last: false,
        }
    }

    /// Shuffles each epoch with this seed (the same on every rank), or not at all with
    /// `None`.
    pub fn shuffle(mut self, seed: Option<u64>) -> ShardedSampler {
        self.seed = seed;
        self
    }

    /// Drops the examples past the last multiple of the number of ranks instead of padding.
    pub fn drop_last(mut self, on: bool) -> ShardedSampler {
        self.drop_last = on;
        self
    }

    /// How many examples each rank gets per epoch.
    pub fn per_rank(&self) -> usize {
        if self.drop_last {
            self.len / self.size
        } else {
            self.len.div_ceil(self.size)
        }
    }

    /// This rank's indices for `epoch`.
    pub fn indices(&self, epoch: u64) -> Vec<usize> {
        let order: Vec<usize> = match self.seed {
            Some(seed) => Generator::new(seed.wrapping_add(epoch.wrapping_mul(0x9E37_79B9)))
                .randperm(self.len)
                .to_vec::<i64>()
                .into_iter()
                .map(|i| i as usize)
                .collect(),
            None => (0..self.len).collect(),
        };
        let total = self.per_rank() * self.size;
        (0..self.per_rank())
            .map(|k| order[(self.rank + k * self.size) % total.max(1) % self.len.max(1)])
            .collect()
    }

    /// This rank's examples of `data` for `epoch`, in the epoch's order.
    pub fn shard(&self, data: &Dataset, epoch: u64) -> Dataset {
        assert_eq!(
            data.len(),
            self.len,
            "ferrograd-dist: ShardedSampler::shard: the sampler is for {} examples, the data set has {}",
            self.len,
            data.len()
        );
        let ids: Vec<i64> = self.indices(epoch).into_iter().map(|i| i as i64).collect();
        let n = ids.len();
        data.select(&Tensor::from_vec(ids, &[n]))
    }
}
