//! Fused programs on a GPU: one generated kernel per program ([`source::program_source`]),
//! every instruction evaluated in registers per element; a reduction's value is written out
//! and summed by the reduction kernel, as direct mode sums it.

use cudarc::driver::PushKernelArg;

use super::elementwise::{base_ptr, go, gpu_of, grid, kernel, layout};
use super::source::{self, FusedArgs, Layout, FUSED_INPUTS, FUSED_OUTPUTS, SPLAT};
use crate::array::Array;
use crate::error::same_device;
use crate::fused::Program;
use crate::DType;

/// Whether `program` has a GPU kernel in `dtype` (few enough operands, every function with
/// a C expression).
pub(crate) fn runs(program: &Program, dtype: DType) -> bool {
    program.gpu_kernel(dtype).is_some()
}

/// Runs `program` over `shape` on its inputs' GPU into `outs` (the outputs, then the
/// reductions' results; the caller checked their number, the inputs' dtypes and shapes).
#[track_caller]
pub(crate) fn run(
    program: &Program,
    inputs: &[&Array],
    shape: &[usize],
    dtype: DType,
    outs: &mut [Option<Array>],
) {
    let op = "fused program";
    let device = same_device(op, inputs);
    let gpu = gpu_of(device, op);
    let Some((name, code)) = program.gpu_kernel(dtype) else {
        crate::error::no_kernel_on(op, device)
    };
    let n: usize = shape.iter().product();
    let (values, reductions) = (program.outputs().len(), program.reductions());
    // the values the reductions add up, written out whole
    let mut reduced: Vec<Array> = reductions
        .iter()
        .map(|_| Array::empty_on(shape, dtype, device))
        .collect();
    let mut args = FusedArgs {
        outs: [0; FUSED_OUTPUTS],
        ins: [0; FUSED_INPUTS],
        layouts: [Layout {
            ndim: -1,
            offset: 0,
            shape: [1; source::MAX_DIMS],
            strides: [0; source::MAX_DIMS],
        }; FUSED_INPUTS],
        splats: [0.0; FUSED_INPUTS],
    };
    for (k, &a) in inputs.iter().enumerate().take(FUSED_INPUTS) {
        if a.device().is_cpu() {
            // a host scalar (the only host operand `same_device` lets through), passed by
            // value as the op-by-op kernels take it
            args.layouts[k].ndim = SPLAT;
            args.splats[k] = a.item_f64();
        } else {
            args.ins[k] = base_ptr(a, &gpu);
            args.layouts[k] = layout(a, shape, op);
        }
    }
    for (k, out) in outs[..values].iter_mut().enumerate() {
        let out = out.get_or_insert_with(|| Array::empty_on(shape, dtype, device));
        args.outs[k] = out.cuda_out(&gpu, shape, dtype, op).ptr(&gpu, 0);
    }
    for (k, r) in reduced.iter_mut().enumerate() {
        args.outs[values + k] = r.cuda_out(&gpu, shape, dtype, op).ptr(&gpu, 0);
    }
    if n > 0 {
        let k = kernel(&gpu, name, || code.clone(), op);
        let n = n as i64;
        let mut b = gpu.stream.launch_builder(&k);
        b.arg(&args).arg(&n);
        // SAFETY: `program_source`'s signature; each input's storage holds what its layout
        // addresses over the program's shape, each output n elements (fresh or reused
        // buffers of the shape, contiguous, written whole).
        unsafe { go(b, grid(n as usize), &gpu, op) }
    }
    reduce(program, reduced, &mut outs[values..]);
}

/// The reductions' results from the values they add up (each in the program's shape), by
/// the reduction kernels of the values' device, as direct mode sums them.
pub(crate) fn reduce(program: &Program, values: Vec<Array>, outs: &mut [Option<Array>]) {
    for ((r, value), out) in program.reductions().iter().zip(values).zip(outs) {
        let kept = r.kept();
        let rows = value.reshape(&[value.numel() / kept.max(1), kept]);
        let sum = match r.mean {
            true => rows.mean_dim(0usize, false),
            false => rows.sum_dim(0usize, false),
        };
        *out = Some(sum.reshape(&r.shape));
    }
}
