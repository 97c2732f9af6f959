//! Matrix products. One primitive, `Matmul` on operands of at least 2 dims with broadcast
//! batch dims; vectors are lifted to matrices around it, as PyTorch's `matmul` does.

use smallvec::smallvec;

use super::unbroadcast;
use crate::op::{wanted, Grads, Op};
use crate::tensor::apply;
use crate::Tensor;

/// `dA = G Bᵀ`, `dB = Aᵀ G`, summed over broadcast batch dims.
///
/// Each gradient comes out in its operand's layout: for a transposed operand (`x.matmul(&w.t())`)
/// the product is formed transposed, `dB = (Gᵀ A)ᵀ`, so the gradient that reaches `w` through
/// the transpose is contiguous rather than a transposed view every later update would copy.
pub(crate) fn matmul_vjp(a: &Tensor, b: &Tensor, g: &Tensor, needs: &[bool]) -> Grads {
    let t = |x: &Tensor| x.transpose(-1, -2);
    smallvec![
        wanted(needs, 0, || {
            let da = if a.data().is_transposed_block() {
                t(&b.matmul(&t(g)))
            } else {
                g.matmul(&t(b))
            };
            unbroadcast(&da, a.shape())
        }),
        wanted(needs, 1, || {
            let db = if b.data().is_transposed_block() {
                t(&t(g).matmul(a))
            } else {
                t(a).matmul(g)
            };
            unbroadcast(&db, b.shape())
        }),
    ]
}

impl Tensor {
    /// Matrix product with PyTorch's rules: vector·vector is a dot product, a vector on the
    /// left is a row and on the right a column (dropped from the result), leading dims
    /// broadcast as batch dims.
    #[track_caller]
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        if self.ndim() >= 2 && other.ndim() >= 2 {
            return apply(Op::Matmul, &[self, other]);
        }
        // Shape errors come from the array layer, with the caller's line.
        if self.ndim() == 0 || other.ndim() == 0 {
            self.data().matmul(other.data());
        }
        let a = if self.ndim() == 1 {
            self.unsqueeze(0)
        } else {
            self.clone()
        };
        let b = if other.ndim() == 1 {
            other.unsqueeze(-1)
        } else {
            other.clone()
        };
        let k_a = a.shape()[a.ndim() - 1];
        let k_b = b.shape()[b.ndim() - 2];
        if k_a != k_b {
            self.data().matmul(other.data());
        }
        let mut out = apply(Op::Matmul, &[&a, &b]);
        if other.ndim() == 1 {
            out = out.squeeze_dim(-1);
        }
        if self.ndim() == 1 {
            out = out.squeeze_dim(if other.ndim() == 1 { -1 } else { -2 });
        }
        out
    }

    /// Product of two matrices.
    #[track_caller]
    pub fn mm(&self, other: &Tensor) -> Tensor {
        if self.ndim() != 2 || other.ndim() != 2 {
            self.data().mm(other.data());
        }
        self.matmul(other)
    }

    /// Matrix times vector.
    #[track_caller]
    pub fn mv(&self, vector: &Tensor) -> Tensor {
        if self.ndim() != 2 || vector.ndim() != 1 {
            self.data().mv(vector.data());
        }
        self.matmul(vector)
    }

    /// Inner product of two vectors, as a 0-d tensor.
    #[track_caller]
    pub fn dot(&self, other: &Tensor) -> Tensor {
        if self.ndim() != 1 || other.ndim() != 1 || self.numel() != other.numel() {
            self.data().dot(other.data());
        }
        (self * other).sum()
    }

    /// Outer product of two vectors.
    #[track_caller]
    pub fn outer(&self, other: &Tensor) -> Tensor {
        if self.ndim() != 1 || other.ndim() != 1 {
            self.data().outer(other.data());
        }
        &self.unsqueeze(1) * &other.unsqueeze(0)
    }

    /// Batched product of two 3-d tensors with one batch size.
    #[track_caller]
    pub fn bmm(&self, other: &Tensor) -> Tensor {
        if self.ndim() != 3 || other.ndim() != 3 || self.shape()[0] != other.shape()[0] {
            self.data().bmm(other.data());
        }
        self.matmul(other)
    }

    /// `β · self + α · (m1 @ m2)` for matrices (PyTorch's `addmm`); `self` broadcasts to the
    /// product's shape. `β` and `α` are numbers or tensors (then they get gradients too).
    ///
    /// ```
    /// use ferrograd::{DType, Tensor};
    /// let c = Tensor::ones(&[2, 2], DType::F64);
    /// let a = Tensor::eye(2, DType::F64);
    /// let y = c.addmm(&a, &a, 0.5, 2.0);
    /// assert_eq!(y.to_vec::<f64>(), vec![2.5, 0.5, 0.5, 2.5]);
    /// ```
    #[track_caller]
    pub fn addmm(
        &self,
        m1: &Tensor,
        m2: &Tensor,
        beta: impl Coefficient,
        alpha: impl Coefficient,
    ) -> Tensor {
        add_scaled(self, beta, &m1.mm(m2), alpha)
    }

    /// `β · self + α · (matrix @ vector)` (PyTorch's `addmv`).
    #[track_caller]
    pub fn addmv(
        &self,
        matrix: &Tensor,
        vector: &Tensor,
        beta: impl Coefficient,
        alpha: impl Coefficient,
    ) -> Tensor {
        add_scaled(self, beta, &matrix.mv(vector), alpha)
    }

    /// `β · self + α · (v1 ⊗ v2)` (PyTorch's `addr`).
    #[track_caller]
    pub fn addr(
        &self,
        v1: &Tensor,
        v2: &Tensor,
        beta: impl Coefficient,
        alpha: impl Coefficient,
    ) -> Tensor {
        add_scaled(self, beta, &v1.outer(v2), alpha)
    }

    /// `β · self + α · (b1 @ b2)` for batches of matrices `[B, n, m]` and `[B, m, p]`
    /// (PyTorch's `baddbmm`).
    #[track_caller]
    pub fn baddbmm(
        &self,
        b1: &Tensor,
        b2: &Tensor,
        beta: impl Coefficient,
        alpha: impl Coefficient,
    ) -> Tensor {
        add_scaled(self, beta, &b1.bmm(b2), alpha)
    }

    /// `β · self + α · Σ_b (b1[b] @ b2[b])`: the batch's products summed (PyTorch's
    /// `addbmm`).
    #[track_caller]
    pub fn addbmm(
        &self,
        b1: &Tensor,
        b2: &Tensor,
        beta: impl Coefficient,
        alpha: impl Coefficient,
    ) -> Tensor {
        add_scaled(self, beta, &b1.bmm(b2).sum_dim(0, false), alpha)
    }
}

/// A scale factor of [`Tensor::addmm`] and its relatives: a number, or a tensor (one
/// element, or broadcasting) that is differentiated like any other.
pub trait Coefficient {
    /// `self · t`.
    fn scale(self, t: &Tensor) -> Tensor;
    /// True for the number 1 (no multiplication needed).
    fn is_one(&self) -> bool {
        false
    }
    /// True for the number 0 (the term is dropped, as PyTorch ignores `input` when β = 0,
    /// NaN and infinity included).
    fn is_zero(&self) -> bool {
        false
    }
}

impl Coefficient for f64 {
    fn scale(self, t: &Tensor) -> Tensor {
        t * self
    }
    fn is_one(&self) -> bool {
        *self == 1.0
    }
    fn is_zero(&self) -> bool {
        *self == 0.0
    }
}

impl Coefficient for &Tensor {
    fn scale(self, t: &Tensor) -> Tensor {
        t * self
    }
}

/// `β · input + α · product`, `input` broadcast to the product's shape.
#[track_caller]
fn add_scaled(
    input: &Tensor,
    beta: impl Coefficient,
    product: &Tensor,
    alpha: impl Coefficient,
) -> Tensor {
    if crate::broadcast_shapes(input.shape(), product.shape()).as_deref() != Some(product.shape()) {
        panic!(
            "ferrograd: addmm and its relatives: input of shape {:?} does not broadcast to the \
             product's shape {:?} (at {})",
            input.shape(),
            product.shape(),
            ferrograd_array::Site(std::panic::Location::caller())
        );
    }
    let p = if alpha.is_one() {
        product.clone()
    } else {
        alpha.scale(product)
    };
    if beta.is_zero() {
        return p;
    }
    let i = if beta.is_one() {
        input.clone()
    } else {
        beta.scale(input)
    };
    &i + &p
}

/// Which norm [`Tensor::matrix_norm`] computes (PyTorch's `ord` of
/// `torch.linalg.matrix_norm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatrixNorm {
    /// Frobenius: the square root of the sum of squares (`'fro'`).
    Frobenius,
    /// Nuclear: the sum of the singular values (`'nuc'`).
    Nuclear,
    /// The largest absolute column sum (`1`).
    One,
    /// The smallest absolute column sum (`-1`).
    NegOne,
    /// The largest singular value, the spectral norm (`2`).
    Two,
    /// The smallest singular value (`-2`).
    NegTwo,
    /// The largest absolute row sum (`inf`).
    Inf,
    /// The smallest absolute row sum (`-inf`).
    NegInf,
}

impl Tensor {
    /// A norm of each matrix of `[.., m, n]` (shape `[..]`; PyTorch's
    /// `torch.linalg.matrix_norm`). The Frobenius norm has a zero gradient at a zero matrix;
    /// the spectral and nuclear norms differentiate through the singular values.
    ///
    /// ```
    /// use ferrograd::{MatrixNorm, Tensor};
    /// let a = Tensor::from_vec(vec![3.0f64, 0.0, 0.0, -4.0], &[2, 2]);
    /// assert_eq!(a.matrix_norm(MatrixNorm::Frobenius).item::<f64>(), 5.0);
    /// assert_eq!(a.matrix_norm(MatrixNorm::Nuclear).item::<f64>(), 7.0);
    /// assert_eq!(a.matrix_norm(MatrixNorm::Two).item::<f64>(), 4.0);
    /// assert_eq!(a.matrix_norm(MatrixNorm::One).item::<f64>(), 4.0);
    /// ```
    #[track_caller]
    pub fn matrix_norm(&self, ord: MatrixNorm) -> Tensor {
        if self.ndim() < 2 {
            panic!(
                "ferrograd: matrix_norm: expects a matrix or a batch of matrices [.., m, n], \
                 got shape {:?} (at {})",
                self.shape(),
                ferrograd_array::Site(std::panic::Location::caller())
            );
        }
        let d = self.ndim();
        match ord {
            MatrixNorm::Frobenius => self.norm_dim(2.0, [d - 2, d - 1], false),
            MatrixNorm::Nuclear => self.svdvals().sum_dim(-1, false),
            MatrixNorm::Two => self.svdvals().amax_dim(-1, false),
            MatrixNorm::NegTwo => self.svdvals().amin_dim(-1, false),
            MatrixNorm::One => self.abs().sum_dim(d - 2, false).amax_dim(-1, false),
            MatrixNorm::NegOne => self.abs().sum_dim(d - 2, false).amin_dim(-1, false),
            MatrixNorm::Inf => self.abs().sum_dim(d - 1, false).amax_dim(-1, false),
            MatrixNorm::NegInf => self.abs().sum_dim(d - 1, false).amin_dim(-1, false),
        }
    }

    /// The `p`-norm distance between each row of `self` (`[.., P, M]`) and each row of
    /// `other` (`[.., R, M]`), as `[.., P, R]`; batch dims broadcast (PyTorch's
    /// `torch.cdist`, computed exactly from the differences for every `p`; the gradient at a
    /// zero distance is 0).
    ///
    /// ```
    /// use ferrograd::Tensor;
    /// let a = Tensor::from_vec(vec![0.0f64, 0.0, 3.0, 4.0], &[2, 2]);
    /// let b = Tensor::from_vec(vec![0.0f64, 0.0], &[1, 2]);
    /// assert_eq!(a.cdist(&b, 2.0).to_vec::<f64>(), vec![0.0, 5.0]);
    /// ```
    #[track_caller]
    pub fn cdist(&self, other: &Tensor, p: f64) -> Tensor {
        if self.ndim() < 2
            || other.ndim() < 2
            || self.shape()[self.ndim() - 1] != other.shape()[other.ndim() - 1]
        {
            panic!(
                "ferrograd: cdist: expects [.., P, M] and [.., R, M] with one M, got shapes \
                 {:?} and {:?} (at {})",
                self.shape(),
                other.shape(),
                ferrograd_array::Site(std::panic::Location::caller())
            );
        }
        let diff = &self.unsqueeze(-2) - &other.unsqueeze(-3);
        diff.norm_dim(p, -1, false)
    }
}

/// Sums of products over labelled dims, in Einstein's notation (PyTorch's and NumPy's
/// `einsum`): `"ij,jk->ik"` is a matrix product, `"ii->i"` a diagonal, `"bij->bji"` a
/// transpose, `"...ij,...jk"` a batched product. Each operand has one label (a letter) per
/// dim, `...` standing for any number of leading broadcast dims; a label repeated within an
/// operand takes its diagonal; labels missing from the output are summed. Without `->` the
/// output has the labels that appear once, in alphabetical order (after `...`'s dims).
///
/// Contractions run pairwise from the left as batched matrix products, so the work is a
/// `matmul` per operand, never a broadcast product of all of them.
///
/// ```
/// use ferrograd::{einsum, Tensor};
/// let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], &[2, 2]);
/// let b = Tensor::from_vec(vec![5.0f64, 6.0, 7.0, 8.0], &[2, 2]);
/// assert_eq!(einsum("ij,jk->ik", &[&a, &b]).to_vec::<f64>(), a.matmul(&b).to_vec::<f64>());
/// assert_eq!(einsum("ii", &[&a]).item::<f64>(), 5.0);
/// assert_eq!(einsum("ij->j", &[&a]).to_vec::<f64>(), vec![4.0, 6.0]);
/// ```
#[track_caller]
pub fn einsum(spec: &str, operands: &[&Tensor]) -> Tensor {
    let site = ferrograd_array::Site(std::panic::Location::caller());
    let fail = |msg: String| -> ! { panic!("ferrograd: einsum: {msg} (in \"{spec}\", at {site})") };
    let spec_clean: String = spec.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match spec_clean.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (spec_clean.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != operands.len() {
        fail(format!(
            "{} operand terms for {} operands",
            terms.len(),
            operands.len()
        ));
    }
    // Labels as u32: letters by code point, the dims of `...` as 0, 1, ... (leftmost first).
    let parse = |term: &str, ndim: Option<usize>| -> (Vec<u32>, Option<usize>) {
        let (before, after, has_dots) = match term.split_once("...") {
            Some((b, a)) => (b, a, true),
            None => (term, "", false),
        };
        let mut labels = Vec::new();
        for c in before.chars().chain(after.chars()) {
            if !c.is_ascii_alphabetic() {
                fail(format!(
                    "'{c}' is not a label (labels are letters, and '...')"
                ));
            }
        }
        labels.extend(before.chars().map(|c| c as u32 + 1000));
        let named = before.len() + after.len();
        let dots = match (has_dots, ndim) {
            (true, Some(n)) => {
                if n < named {
                    fail(format!(
                        "term \"{term}\" names more dims than its operand has ({n})"
                    ));
                }
                Some(n - named)
            }
            (true, None) => Some(0),
            (false, _) => None,
        };
        if let Some(k) = dots {
            labels.extend((0..k as u32).map(|i| 999 - i));
        }
        labels.extend(after.chars().map(|c| c as u32 + 1000));
        (labels, dots)
    };
    let mut dots_max = 0;
    let mut parsed = Vec::new();
    for (term, t) in terms.iter().zip(operands) {
        let (labels, dots) = parse(term, Some(t.ndim()));
        if dots.is_none() && labels.len() != t.ndim() {
            fail(format!(
                "term \"{term}\" has {} labels for an operand of shape {:?}",
                labels.len(),
                t.shape()
            ));
        }
        dots_max = dots_max.max(dots.unwrap_or(0));
        parsed.push((labels, dots.unwrap_or(0)));
    }
    // Align `...` dims from the right: dim i of an operand's k dots is broadcast dim
    // (dots_max - k + i), labelled 999 - that (so the leftmost is the largest label...
    // relabelled to keep them distinct and ordered).
    let dots_label = |j: usize| 999 - j as u32;
    let mut ops: Vec<(Tensor, Vec<u32>)> = Vec::new();
    for ((labels, k), t) in parsed.into_iter().zip(operands) {
        let shift = dots_max - k;
        let relabel: Vec<u32> = labels
            .iter()
            .map(|&l| {
                if l < 1000 {
                    dots_label((999 - l) as usize + shift)
                } else {
                    l
                }
            })
            .collect();
        ops.push(((*t).clone(), relabel));
    }
    let dot_labels: Vec<u32> = (0..dots_max).map(dots_label).collect();
    let output: Vec<u32> = match &rhs {
        Some(r) => {
            let (labels, dots) = parse(r, Some(r.replace("...", "").len() + dots_max));
            if r.contains("...") && dots != Some(dots_max) {
                fail("bad output term".to_string());
            }
            // the output's `...` are all the broadcast dims
            labels
                .into_iter()
                .map(|l| {
                    if l < 1000 {
                        dots_label((999 - l) as usize)
                    } else {
                        l
                    }
                })
                .collect()
        }
        None => {
            let mut counts = std::collections::BTreeMap::new();
            for (_, labels) in &ops {
                for &l in labels.iter().filter(|&&l| l >= 1000) {
                    *counts.entry(l).or_insert(0) += 1;
                }
            }
            let once = counts.into_iter().filter(|&(_, c)| c == 1).map(|(l, _)| l);
            dot_labels.iter().copied().chain(once).collect()
        }
    };
    let name = |l: u32| {
        if l >= 1000 {
            char::from_u32(l - 1000).map_or("?".into(), String::from)
        } else {
            "...".into()
        }
    };
    for (i, &l) in output.iter().enumerate() {
        if output[..i].contains(&l) {
            fail(format!("output label '{}' appears twice", name(l)));
        }
        if !ops.iter().any(|(_, labels)| labels.contains(&l)) {
            fail(format!("output label '{}' is in no operand", name(l)));
        }
    }
    // The size of each label (1 broadcasts).
    let mut sizes = std::collections::HashMap::new();
    for (t, labels) in &ops {
        for (d, &l) in labels.iter().enumerate() {
            let s = t.shape()[d];
            let e = sizes.entry(l).or_insert(s);
            if *e == 1 {
                *e = s;
            } else if s != 1 && s != *e {
                fail(format!("label '{}' has sizes {} and {s}", name(l), *e));
            }
        }
    }
    // Diagonals for repeated labels, then sums of labels no one else needs.
    let needed_after = |ops: &[(Tensor, Vec<u32>)], from: usize, l: u32| {
        output.contains(&l) || ops[from..].iter().any(|(_, labels)| labels.contains(&l))
    };
    for (t, labels) in ops.iter_mut() {
        while let Some((i, j)) = (0..labels.len()).find_map(|i| {
            (i + 1..labels.len())
                .find(|&j| labels[j] == labels[i])
                .map(|j| (i, j))
        }) {
            let l = labels[i];
            *t = t.diagonal_dims(0, i, j);
            labels.remove(j);
            labels.remove(i);
            labels.push(l);
        }
    }
    let reduce_unneeded = |t: &Tensor, labels: &[u32], keep: &dyn Fn(u32) -> bool| {
        let drop: Vec<usize> = (0..labels.len()).filter(|&d| !keep(labels[d])).collect();
        if drop.is_empty() {
            return (t.clone(), labels.to_vec());
        }
        let kept: Vec<u32> = labels
            .iter()
            .enumerate()
            .filter(|(d, _)| !drop.contains(d))
            .map(|(_, &l)| l)
            .collect();
        (t.sum_dim(drop, false), kept)
    };
    let (first, rest) = ops.split_first().expect("einsum: at least one operand");
    let keep_first = |l: u32| needed_after(&ops, 1, l);
    let (mut acc, mut acc_labels) = reduce_unneeded(&first.0, &first.1, &keep_first);
    for (k, (t, labels)) in rest.iter().enumerate() {
        let later = k + 2; // operands after this one start here
        let keep_b = |l: u32| acc_labels.contains(&l) || needed_after(&ops, later, l);
        let (b, b_labels) = reduce_unneeded(t, labels, &keep_b);
        let keep_a = |l: u32| b_labels.contains(&l) || needed_after(&ops, later, l);
        let (a, a_labels) = reduce_unneeded(&acc, &acc_labels, &keep_a);
        let in_b = |l: &u32| b_labels.contains(l);
        let in_a = |l: &u32| a_labels.contains(l);
        let batch: Vec<u32> = a_labels
            .iter()
            .filter(|l| in_b(l) && needed_after(&ops, later, **l))
            .copied()
            .collect();
        let contracted: Vec<u32> = a_labels
            .iter()
            .filter(|l| in_b(l) && !batch.contains(l))
            .copied()
            .collect();
        let left: Vec<u32> = a_labels.iter().filter(|l| !in_b(l)).copied().collect();
        let right: Vec<u32> = b_labels.iter().filter(|l| !in_a(l)).copied().collect();
        let arrange = |t: &Tensor, labels: &[u32], groups: [&[u32]; 3]| {
            let order: Vec<usize> = groups
                .iter()
                .flat_map(|g| g.iter())
                .map(|l| labels.iter().position(|x| x == l).expect("label present"))
                .collect();
            let full: Vec<usize> = groups
                .iter()
                .flat_map(|g| g.iter())
                .map(|l| sizes[l])
                .collect();
            let t = t.permute(&order);
            let t = if t.shape() == full.as_slice() {
                t
            } else {
                t.expand(&full)
            };
            let size = |g: &[u32]| g.iter().map(|l| sizes[l]).product::<usize>();
            t.reshape(&[size(groups[0]), size(groups[1]), size(groups[2])])
        };
        let a3 = arrange(&a, &a_labels, [&batch, &left, &contracted]);
        let b3 = arrange(&b, &b_labels, [&batch, &contracted, &right]);
        let product = a3.matmul(&b3);
        let labels: Vec<u32> = batch.iter().chain(&left).chain(&right).copied().collect();
        let shape: Vec<usize> = labels.iter().map(|l| sizes[l]).collect();
        acc = product.reshape(&shape);
        acc_labels = labels;
    }
    // A single operand may still hold labels the output drops.
    let (acc, acc_labels) = reduce_unneeded(&acc, &acc_labels, &|l| output.contains(&l));
    let order: Vec<usize> = output
        .iter()
        .map(|l| {
            acc_labels
                .iter()
                .position(|x| x == l)
                .expect("output label present")
        })
        .collect();
    let out = acc.permute(&order);
    let full: Vec<usize> = output.iter().map(|l| sizes[l]).collect();
    if out.shape() == full.as_slice() {
        out
    } else {
        out.expand(&full)
    }
}
