//! The array layer's cache of freed buffers, seen through [`cached_bytes`]. Its own test
//! binary with one test: the cache is global to the process.

use ferrograd_array::{cached_bytes, release_cached_memory, Array, DType};

/// f32 buffers of `n` elements, each zeroed (from the cache when it has one).
fn buffers(count: usize, n: usize) -> Vec<Array> {
    (0..count).map(|_| Array::zeros(&[n], DType::F32)).collect()
}

#[test]
fn a_size_keeps_as_many_buffers_as_were_held_at_once_and_new_sizes_stop_at_1024() {
    release_cached_memory();
    assert_eq!(cached_bytes(), 0);
    // a step holding 40 buffers of one size (64 KiB each): the first step's free keeps 16
    // (a size's base allowance), the second step misses 24 and keeps all 40 ...
    let (n, bytes) = (16 * 1024, 64 * 1024);
    drop(buffers(40, n));
    assert_eq!(cached_bytes(), 16 * bytes, "after the first step");
    let mut second = buffers(40, n);
    // (written, so that the third step sees whether its buffers are zeroed again)
    let seven = Array::full(&[1], 7.0, DType::F32).expand(&[n]);
    for a in &mut second {
        seven.contiguous_into(a);
    }
    drop(second);
    assert_eq!(cached_bytes(), 40 * bytes, "after the second step");
    // ... and from the third on every buffer comes from the cache, zeroed
    let third = buffers(40, n);
    assert_eq!(cached_bytes(), 0, "all 40 taken from the cache");
    assert!(third
        .iter()
        .all(|a| a.to_vec::<f32>().iter().all(|&x| x == 0.0)));
    drop(third);
    assert_eq!(cached_bytes(), 40 * bytes);
    release_cached_memory();
    assert_eq!(cached_bytes(), 0);

    // 2000 sizes freed one after the other (an array grown step by step): the cache knows
    // at most 1024 sizes, and with all of those holding a buffer it takes no new one
    let sizes: Vec<usize> = (0..2000).map(|i| 4096 + i).collect();
    let arrays: Vec<Array> = sizes
        .iter()
        .map(|&n| Array::zeros(&[n], DType::F32))
        .collect();
    drop(arrays); // front to back
    let first: usize = sizes[..1024].iter().map(|n| 4 * n).sum();
    assert_eq!(cached_bytes(), first);
    release_cached_memory();
}
