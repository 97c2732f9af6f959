//! Flushing subnormal floats to zero on the threads that run the kernels.

/// The MXCSR bits: results that would be subnormal become zero (FTZ, bit 15), and subnormal
/// operands are read as zero (DAZ, bit 6).
#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

/// Sets or clears flush-to-zero on the calling thread; whether it was set before.
#[cfg(target_arch = "x86_64")]
fn set_on_this_thread(on: bool) -> bool {
    let mut csr: u32 = 0;
    // SAFETY: `stmxcsr` stores the 32-bit control register into `csr`, a valid place for
    // it; `ldmxcsr` loads a value that differs from the current one only in FTZ and DAZ,
    // which every x86-64 CPU has, so it cannot fault.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
        let was = csr & FTZ_DAZ == FTZ_DAZ;
        let new = if on { csr | FTZ_DAZ } else { csr & !FTZ_DAZ };
        std::arch::asm!("ldmxcsr [{}]", in(reg) &new, options(nostack, readonly, preserves_flags));
        was
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn set_on_this_thread(_on: bool) -> bool {
    false
}

/// Makes f32 and f64 arithmetic flush subnormal results and operands (magnitudes below
/// 1.2·10⁻³⁸ in f32, 2.2·10⁻³⁰⁸ in f64) to zero on the calling thread and on every thread of
/// the pool the kernels run on, or (`false`) restores IEEE's gradual underflow there. Off by
/// default, as in PyTorch (`torch.set_flush_denormal`); TensorFlow and XLA run with it on.
///
/// Why: x86 cores compute with a subnormal operand or result through a microcode assist that
/// costs on the order of 100 cycles, and training produces them where values underflow: a
/// sharp attention's softmax weights (`e^-90`) and the gradients that flow through them. In
/// a small transformer's backward, projections whose incoming gradient held 1-7% subnormal
/// values took 2-20 times as long as the same products on normal values (AVX-512 Xeon).
/// [`Array::attention_softmax`](crate::Array::attention_softmax) and its gradient zero
/// their own (as PyTorch's CPU attention does), which took most of that back; this catches
/// the rest, everywhere. With flushing on, those values are zeros: below the smallest
/// normal float, where results already carry fewer significant bits, nothing else changes.
///
/// Other threads of your own that run ferrograd code keep their setting: call this on each.
/// Returns whether the calling thread flushed before. On CPUs other than x86-64 it does
/// nothing and returns `false`.
///
/// ```
/// use ferrograd_array::{flush_denormals, Array};
/// let tiny = Array::from_vec(vec![1e-30f32], &[1]);
/// let was = flush_denormals(true);
/// assert_eq!(tiny.mul_scalar(1e-10).to_vec::<f32>(), vec![0.0]);
/// flush_denormals(was);
/// ```
pub fn flush_denormals(on: bool) -> bool {
    let was = set_on_this_thread(on);
    rayon::broadcast(|_| {
        set_on_this_thread(on);
    });
    was
}
