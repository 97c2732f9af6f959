//! The margin-family losses and the reduced forms of the older ones against PyTorch 2.15
//! (values printed by it, quoted below) for every reduction, and their gradients against
//! finite differences.

use ferrograd::{gradcheck, DType, Tensor};
use ferrograd_nn::functional::{self as F, Reduce};

// PyTorch 2.15, inputs as built by `inputs()` below
const NLL_NONE: [f64; 4] = [
    0.7737350839680697,
    0.6758803502636003,
    0.7349069948740143,
    1.6649069948740143,
];
const BCE_NONE: [f64; 12] = [
    1.0374879504858856,
    0.5847451567037304,
    0.6255951823371514,
    0.9803133180448746,
    0.5050369938177537,
    0.7184596480132863,
    0.5458929371800755,
    0.40651526920662473,
    0.5803299666264258,
    0.7602581946816906,
    0.47407698418010646,
    0.9310837825796713,
];
const BCE_LOGITS_NONE: [f64; 12] = [
    1.0374879504858856,
    0.5847451567037305,
    0.6255951823371514,
    0.9803133180448749,
    0.5050369938177537,
    0.7184596480132862,
    0.5458929371800755,
    0.40651526920662473,
    0.5803299666264258,
    0.7602581946816906,
    0.47407698418010663,
    0.9310837825796712,
];
const RANKING_NONE: [f64; 4] = [0.3, 0.34, 0.38000000000000006, 0.0];
const HINGE_EMB_NONE: [f64; 12] = [
    -0.6,
    0.63,
    0.14,
    0.0,
    0.8200000000000001,
    -0.04999999999999993,
    0.31999999999999973,
    0.6899999999999998,
    0.6400000000000001,
    0.27,
    0.5000000000000001,
    -0.4299999999999998,
];
const SOFT_MARGIN_NONE: [f64; 12] = [
    1.0374879504858856,
    0.5847451567037305,
    0.6255951823371514,
    0.980313318044875,
    0.5050369938177537,
    0.7184596480132862,
    0.5458929371800755,
    0.40651526920662473,
    0.5803299666264258,
    0.7602581946816906,
    0.47407698418010663,
    0.9310837825796712,
];
const MULTILABEL_NONE: [f64; 4] = [
    0.7492760965089226,
    0.7346033199586383,
    0.5109127243377086,
    0.7218063204804895,
];
const COSINE_NONE: [f64; 4] = [
    0.0027969442579894865,
    0.8678440017783684,
    0.818488478056329,
    1.3392042744014971,
];
const MULTI_MARGIN_NONE: [f64; 4] = [
    0.16333333333333336,
    0.08000000000000007,
    0.1433333333333333,
    1.03,
];
const MULTI_MARGIN_SQ_W_NONE: [f64; 4] = [
    0.23225000000000004,
    0.03308333333333336,
    0.2678666666666666,
    3.0792499999999996,
];
const NLL_MEAN: [f64; 1] = [0.9623573559949247];
const BCE_MEAN: [f64; 1] = [0.6791496153214398];
const BCE_LOGITS_MEAN: [f64; 1] = [0.6791496153214398];
const RANKING_MEAN: [f64; 1] = [0.255];
const HINGE_EMB_MEAN: [f64; 1] = [0.24416666666666673];
const SOFT_MARGIN_MEAN: [f64; 1] = [0.6791496153214398];
const MULTILABEL_MEAN: [f64; 1] = [0.6791496153214398];
const COSINE_MEAN: [f64; 1] = [0.757083424623546];
const MULTI_MARGIN_MEAN: [f64; 1] = [0.3541666666666667];
const MULTI_MARGIN_SQ_W_MEAN: [f64; 1] = [0.9031124999999999];
const NLL_SUM: [f64; 1] = [3.8494294239796987];
const BCE_SUM: [f64; 1] = [8.149795383857278];
const BCE_LOGITS_SUM: [f64; 1] = [8.149795383857278];
const RANKING_SUM: [f64; 1] = [1.02];
const HINGE_EMB_SUM: [f64; 1] = [2.9300000000000006];
const SOFT_MARGIN_SUM: [f64; 1] = [8.149795383857278];
const MULTILABEL_SUM: [f64; 1] = [2.716598461285759];
const COSINE_SUM: [f64; 1] = [3.028333698494184];
const MULTI_MARGIN_SUM: [f64; 1] = [1.4166666666666667];
const MULTI_MARGIN_SQ_W_SUM: [f64; 1] = [3.6124499999999995];

/// `arange(n) * step % modulus - shift` in `shape`, as the reference builds its inputs.
fn ramp(shape: &[usize], step: f64, modulus: f64, shift: f64) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(
        (0..n)
            .map(|k| (k as f64 * step) % modulus - shift)
            .collect(),
        shape,
    )
}

struct Inputs {
    x: Tensor,
    x2: Tensor,
    classes: Tensor,
    signs: Tensor,
    signs12: Tensor,
    bits: Tensor,
    weight: Tensor,
}

fn inputs() -> Inputs {
    let signs12 = Tensor::from_vec(
        vec![
            1.0f64, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0,
        ],
        &[4, 3],
    );
    Inputs {
        x: ramp(&[4, 3], 0.37, 1.3, 0.6),
        x2: ramp(&[4, 3], 0.29, 1.1, 0.5),
        classes: Tensor::from_vec(vec![2i64, 0, 1, 2], &[4]),
        signs: Tensor::from_vec(vec![1.0f64, -1.0, -1.0, 1.0], &[4]),
        bits: signs12.gt_scalar(0.0).to_dtype(DType::F64),
        signs12,
        weight: Tensor::from_vec(vec![0.5f64, 2.0, 1.5], &[3]),
    }
}

#[track_caller]
fn matches(name: &str, got: &Tensor, want: &[f64]) {
    let got = got.to_vec::<f64>();
    assert_eq!(got.len(), want.len(), "{name}");
    for (a, b) in got.iter().zip(want) {
        assert!((a - b).abs() < 1e-13, "{name}: {got:?} vs PyTorch {want:?}");
    }
}

#[test]
fn values_against_pytorch_for_every_reduction() {
    let i = inputs();
    let col = |t: &Tensor| t.at((.., 0));
    for (reduction, tables) in [
        (
            Reduce::None,
            [
                &NLL_NONE[..],
                &BCE_NONE,
                &BCE_LOGITS_NONE,
                &RANKING_NONE,
                &HINGE_EMB_NONE,
                &SOFT_MARGIN_NONE,
                &MULTILABEL_NONE,
                &COSINE_NONE,
                &MULTI_MARGIN_NONE,
                &MULTI_MARGIN_SQ_W_NONE,
            ],
        ),
        (
            Reduce::Mean,
            [
                &NLL_MEAN[..],
                &BCE_MEAN,
                &BCE_LOGITS_MEAN,
                &RANKING_MEAN,
                &HINGE_EMB_MEAN,
                &SOFT_MARGIN_MEAN,
                &MULTILABEL_MEAN,
                &COSINE_MEAN,
                &MULTI_MARGIN_MEAN,
                &MULTI_MARGIN_SQ_W_MEAN,
            ],
        ),
        (
            Reduce::Sum,
            [
                &NLL_SUM[..],
                &BCE_SUM,
                &BCE_LOGITS_SUM,
                &RANKING_SUM,
                &HINGE_EMB_SUM,
                &SOFT_MARGIN_SUM,
                &MULTILABEL_SUM,
                &COSINE_SUM,
                &MULTI_MARGIN_SUM,
                &MULTI_MARGIN_SQ_W_SUM,
            ],
        ),
    ] {
        let r = reduction;
        let got = [
            F::nll_loss(&i.x.log_softmax(1), &i.classes, r),
            F::binary_cross_entropy(&i.x.sigmoid(), &i.bits, r),
            F::binary_cross_entropy_with_logits(&i.x, &i.bits, r),
            F::margin_ranking_loss(&col(&i.x), &col(&i.x2), &i.signs, 0.2, r),
            F::hinge_embedding_loss(&i.x, &i.signs12, 0.4, r),
            F::soft_margin_loss(&i.x, &i.signs12, r),
            F::multilabel_soft_margin_loss(&i.x, &i.bits, r),
            F::cosine_embedding_loss(&i.x, &i.x2, &i.signs, 0.1, r),
            F::multi_margin_loss(&i.x, &i.classes, 1, 0.8, None, r),
            F::multi_margin_loss(&i.x, &i.classes, 2, 1.0, Some(&i.weight), r),
        ];
        for (k, (g, want)) in got.iter().zip(tables).enumerate() {
            matches(&format!("loss {k} with {r:?}"), g, want);
        }
    }
}

#[test]
fn gradients_against_finite_differences() {
    let i = inputs();
    type Loss = Box<dyn Fn(&Tensor, &Inputs) -> Tensor>;
    let losses: Vec<(&str, Loss)> = vec![
        (
            "nll",
            Box::new(|x, i| F::nll_loss(&x.log_softmax(1), &i.classes, Reduce::Mean)),
        ),
        (
            "bce",
            Box::new(|x, i| F::binary_cross_entropy(&x.sigmoid(), &i.bits, Reduce::Sum)),
        ),
        (
            "ranking",
            Box::new(|x, i| {
                F::margin_ranking_loss(
                    &x.at((.., 0)),
                    &i.x2.at((.., 1)),
                    &i.signs,
                    0.2,
                    Reduce::Mean,
                )
            }),
        ),
        (
            "hinge embedding",
            Box::new(|x, i| F::hinge_embedding_loss(x, &i.signs12, 0.4, Reduce::Mean)),
        ),
        (
            "soft margin",
            Box::new(|x, i| F::soft_margin_loss(x, &i.signs12, Reduce::Mean)),
        ),
        (
            "multilabel",
            Box::new(|x, i| F::multilabel_soft_margin_loss(x, &i.bits, Reduce::Mean)),
        ),
        (
            "cosine",
            Box::new(|x, i| F::cosine_embedding_loss(x, &i.x2, &i.signs, 0.1, Reduce::Mean)),
        ),
        (
            "multi margin",
            Box::new(|x, i| {
                F::multi_margin_loss(x, &i.classes, 2, 1.0, Some(&i.weight), Reduce::Mean)
            }),
        ),
        (
            "hinge",
            Box::new(|x, i| F::hinge_loss(x, &i.signs12, 1.0, Reduce::Sum)),
        ),
    ];
    for (name, loss) in losses {
        let f = |p: &Vec<Tensor>| loss(&p[0], &i);
        let report = gradcheck(f, &vec![i.x.clone()], (), 1e-6);
        assert!(report.passed(), "{name}: {report}");
    }
}

#[test]
fn criterion_modules_compute_their_losses() {
    use ferrograd_nn::layers::{
        AbsCriterion, CosineEmbeddingCriterion, HingeEmbeddingCriterion, KlDivCriterion,
        MarginCriterion, MarginRankingCriterion, MultiLabelSoftMarginCriterion,
        MultiMarginCriterion, SmoothL1Criterion, SoftMarginCriterion,
    };
    use ferrograd_nn::Criterion;
    let i = inputs();
    let sum = Reduce::Sum;
    let same = |a: Tensor, b: Tensor| assert_eq!(a.to_vec::<f64>(), b.to_vec::<f64>());
    same(
        AbsCriterion { reduction: sum }.loss(&i.x, &i.x2),
        F::l1_loss(&i.x, &i.x2, sum),
    );
    same(
        SmoothL1Criterion::default().loss(&i.x, &i.x2),
        F::smooth_l1_loss(&i.x, &i.x2, 1.0, Reduce::Mean),
    );
    let lp = i.x.log_softmax(1);
    let probs = i.x2.softmax(1);
    same(
        KlDivCriterion::default().loss(&lp, &probs),
        F::kl_div(&lp, &probs, Reduce::Mean, false),
    );
    same(
        MarginCriterion::default().loss(&i.x, &i.signs12),
        F::hinge_loss(&i.x, &i.signs12, 1.0, Reduce::Mean),
    );
    matches(
        "MultiMarginCriterion",
        &MultiMarginCriterion {
            margin: 0.8,
            ..Default::default()
        }
        .loss(&i.x, &i.classes),
        &MULTI_MARGIN_MEAN,
    );
    matches(
        "HingeEmbeddingCriterion",
        &HingeEmbeddingCriterion {
            margin: 0.4,
            reduction: sum,
        }
        .loss(&i.x, &i.signs12),
        &HINGE_EMB_SUM,
    );
    let stacked = Tensor::stack(&[i.x.clone(), i.x2.clone()], 0);
    matches(
        "CosineEmbeddingCriterion",
        &CosineEmbeddingCriterion {
            margin: 0.1,
            ..Default::default()
        }
        .loss(&stacked, &i.signs),
        &COSINE_MEAN,
    );
    let columns = Tensor::stack(&[i.x.at((.., 0)), i.x2.at((.., 0))], 0);
    matches(
        "MarginRankingCriterion",
        &MarginRankingCriterion {
            margin: 0.2,
            ..Default::default()
        }
        .loss(&columns, &i.signs),
        &RANKING_MEAN,
    );
    matches(
        "SoftMarginCriterion",
        &SoftMarginCriterion::default().loss(&i.x, &i.signs12),
        &SOFT_MARGIN_MEAN,
    );
    matches(
        "MultiLabelSoftMarginCriterion",
        &MultiLabelSoftMarginCriterion::default().loss(&i.x, &i.bits),
        &MULTILABEL_MEAN,
    );
    // the pair criteria refuse an input that is not a stacked pair
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        CosineEmbeddingCriterion::default().loss(&i.x, &i.signs);
    }))
    .expect_err("a panic");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("stacked along dim 0") && msg.contains("[4, 3]"),
        "{msg}"
    );
}

// PyTorch 2.15 ctc_loss, x = arange(7 * 4 * 5) * 0.37 % 1.3 - 0.6 as [7, 4, 5]
const CTC_NONE: [f64; 4] = [
    6.857406707786573,
    6.030497157780739,
    7.587599499151783,
    f64::INFINITY,
];
const CTC_MEAN: [f64; 1] = [f64::INFINITY];
const CTC_SUM: [f64; 1] = [f64::INFINITY];
const CTC_GRAD: [f64; 140] = [
    -0.2119221162182132,
    -0.5091415843022543,
    0.238846357304631,
    0.3457861390561586,
    0.1364312041596778,
    -0.10738616571529905,
    0.22042759172893614,
    0.319120654572856,
    -0.6144466909398751,
    0.18228461035338214,
    -0.6135805772652964,
    0.09888714678217965,
    0.007373303675029899,
    0.20726108286778727,
    0.3000590439402994,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    -0.04753643861666352,
    -0.36327816091897513,
    0.009440762190298031,
    0.1639776775394207,
    0.2373961598059199,
    0.04462202822218614,
    -0.3175160106420527,
    0.2388463573046307,
    -0.10238357904444179,
    0.13643120415967766,
    -0.5010178279579899,
    0.2870712107306854,
    -0.18742722011803595,
    0.1639776775394204,
    0.23739615980591994,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    -0.04419557614130034,
    -0.030815188620096124,
    -0.2331840839099207,
    0.12591023831793458,
    0.18228461035338261,
    0.011739082292140074,
    -0.27327214157744956,
    0.14316234534185465,
    0.11346467430887944,
    0.00490603963457541,
    -0.2999542289547321,
    0.22042759172893642,
    -0.22866821144552082,
    0.12591023831793433,
    0.1822846103533822,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    -0.125164468274978,
    0.1279264466999022,
    -0.4849793216407598,
    0.345786139056158,
    0.1364312041596777,
    0.051233863500421736,
    0.031095062910596175,
    0.0517271240512751,
    0.16397767753942055,
    -0.2980337280017135,
    -0.22452074617387296,
    0.12649999838700599,
    -0.2717254205258934,
    0.26513583920280526,
    0.10461032910995512,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    -0.43919849238041586,
    0.09888714678217958,
    -0.16700878120985074,
    0.20726108286778774,
    0.30005904394029925,
    0.05634461433828086,
    0.22042759172893647,
    -0.19840128123771775,
    0.12591023831793483,
    -0.2042811631474344,
    -0.36495017455043255,
    0.2870712107306855,
    -0.3234948735255927,
    0.16397767753941986,
    0.23739615980591997,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    -0.44621861957697057,
    0.28707121073068487,
    -0.24222642849905449,
    0.16397767753942066,
    0.23739615980591947,
    -0.02309670513634912,
    0.12649999838700582,
    -0.47314946156341753,
    0.26513583920280587,
    0.104610329109955,
    -0.36009344684408223,
    0.22042759172893608,
    -0.16852899355617043,
    0.1259102383179346,
    0.18228461035338192,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    0.008765975854117123,
    0.22042759172893558,
    -0.5373884162543698,
    0.1259102383179343,
    0.1822846103533828,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
    -0.4756276575444647,
    0.1264999983870057,
    -0.020618509155301556,
    0.26513583920280565,
    0.10461032910995492,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
];
const CTC_ZERO_INF: [f64; 4] = [6.857406707786573, 6.030497157780739, 7.587599499151783, 0.0];

#[test]
fn ctc_against_pytorch() {
    use ferrograd::grad;
    let x = ramp(&[7, 4, 5], 0.37, 1.3, 0.6);
    let targets = Tensor::from_vec(
        vec![1i64, 2, 2, 0, 3, 1, 4, 2, 2, 0, 0, 0, 4, 4, 1, 3],
        &[4, 4],
    );
    let (il, tl) = ([7usize, 6, 7, 3], [3usize, 4, 1, 3]);
    let ctc = |x: &Tensor, r: Reduce, zero: bool| {
        F::ctc_loss(&x.log_softmax(2), &targets, &il, &tl, 0, r, zero)
    };
    let none = ctc(&x, Reduce::None, false).to_vec::<f64>();
    for (a, b) in none.iter().zip(CTC_NONE) {
        assert!(a == &b || (a - b).abs() < 1e-12, "{none:?} vs {CTC_NONE:?}");
    }
    assert_eq!(ctc(&x, Reduce::Mean, false).item::<f64>(), CTC_MEAN[0]);
    assert_eq!(ctc(&x, Reduce::Sum, false).item::<f64>(), CTC_SUM[0]);
    matches("zero_infinity", &ctc(&x, Reduce::None, true), &CTC_ZERO_INF);
    // the gradient of the summed losses (impossible alignments zeroed) against PyTorch's
    let (g, _) = grad(|x: &Tensor| ctc(x, Reduce::Sum, true)).call(&x, ());
    matches("gradient", &g, &CTC_GRAD);
    // feasible lengths: the mean divides each loss by its target length
    let feasible = [7usize, 6, 7, 6];
    let per = F::ctc_loss(
        &x.log_softmax(2),
        &targets,
        &feasible,
        &tl,
        0,
        Reduce::None,
        false,
    )
    .to_vec::<f64>();
    let mean = F::ctc_loss(
        &x.log_softmax(2),
        &targets,
        &feasible,
        &tl,
        0,
        Reduce::Mean,
        false,
    )
    .item::<f64>();
    let want = per.iter().zip(tl).map(|(l, s)| l / s as f64).sum::<f64>() / 4.0;
    assert!((mean - want).abs() < 1e-12);
    // finite differences at first and second order
    let small = ramp(&[4, 2, 3], 0.29, 1.1, 0.5);
    let t2 = Tensor::from_vec(vec![1i64, 2, 2, 0], &[2, 2]);
    let f = |p: &Vec<Tensor>| {
        F::ctc_loss(
            &p[0].log_softmax(2),
            &t2,
            &[4, 3],
            &[2, 1],
            0,
            Reduce::Mean,
            false,
        )
    };
    let report = gradcheck(f, &vec![small.clone()], (), 1e-6);
    assert!(report.passed(), "{report}");
    let report = ferrograd::gradgradcheck(f, &vec![small], (), 1e-5);
    assert!(report.passed(), "second order: {report}");
}

#[test]
fn the_older_criteria_take_a_reduction_too() {
    use ferrograd_nn::layers::{
        BceCriterion, ClassNllCriterion, CrossEntropyCriterion, MseCriterion,
    };
    use ferrograd_nn::Criterion;
    let i = inputs();
    let sum = Reduce::Sum;
    let same = |a: Tensor, b: Tensor| assert_eq!(a.to_vec::<f64>(), b.to_vec::<f64>());
    // the default is the mean, through the same functions as before
    same(
        MseCriterion::default().loss(&i.x, &i.x2),
        F::mse(&i.x, &i.x2),
    );
    same(
        MseCriterion { reduction: sum }.loss(&i.x, &i.x2),
        F::mse_loss(&i.x, &i.x2, sum),
    );
    let lp = i.x.log_softmax(1);
    same(
        ClassNllCriterion::default().loss(&lp, &i.classes),
        F::class_nll(&lp, &i.classes),
    );
    matches(
        "nll none",
        &ClassNllCriterion {
            reduction: Reduce::None,
        }
        .loss(&lp, &i.classes),
        &NLL_NONE,
    );
    same(
        CrossEntropyCriterion::default().loss(&i.x, &i.classes),
        F::cross_entropy(&i.x, &i.classes),
    );
    let smoothed = CrossEntropyCriterion {
        label_smoothing: 0.1,
        reduction: sum,
        ..Default::default()
    };
    let options = F::CrossEntropy {
        label_smoothing: 0.1,
        reduction: sum,
        ..Default::default()
    };
    same(
        smoothed.loss(&i.x, &i.classes),
        F::cross_entropy_with(&i.x, &i.classes, options),
    );
    let p = i.x.sigmoid();
    same(
        BceCriterion::default().loss(&p, &i.bits),
        F::bce(&p, &i.bits),
    );
    matches(
        "bce sum",
        &BceCriterion { reduction: sum }.loss(&p, &i.bits),
        &BCE_SUM,
    );
}

/// The logistic losses at a logit of 0 (a zero-initialised head's first step): the
/// gradient is σ(0) - t, as in PyTorch; the form max(x, 0) + ln(1 + e^-|x|) gave the kinks'
/// 0 for the softplus part there (-t for bce_with_logits, 0 for soft_margin_loss; found
/// against PyTorch 2.15).
#[test]
fn logistic_losses_have_their_slope_at_a_zero_logit() {
    let x = Tensor::zeros(&[3], DType::F64);
    let t = Tensor::from_vec(vec![0.0f64, 1.0, 0.3], &[3]);
    let grad_of = |f: &dyn Fn(&Tensor) -> Tensor| {
        let (g, _) = ferrograd::grad(|x: &Tensor| f(x)).call(&x, ());
        g.to_vec::<f64>()
    };
    let want = [0.5, -0.5, 0.2];
    let close = |g: Vec<f64>, want: &[f64]| {
        assert!(
            g.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-15),
            "{g:?} vs {want:?}"
        )
    };
    close(
        grad_of(&|x| F::binary_cross_entropy_with_logits(x, &t, Reduce::Sum)),
        &want,
    );
    close(grad_of(&|x| F::bce_with_logits(x, &t) * 3.0), &want);
    close(
        grad_of(&|x| ferrograd_nn::loss::bce_with_logits_sum(x, &t).0),
        &want,
    );
    let rows = t.reshape(&[1, 3]);
    close(
        grad_of(&|x| F::multilabel_soft_margin_loss(&x.reshape(&[1, 3]), &rows, Reduce::Sum) * 3.0),
        &want,
    );
    // soft margin, ln(1 + e^(-y x)): -y σ(0)
    let y = Tensor::from_vec(vec![1.0f64, -1.0, 1.0], &[3]);
    close(
        grad_of(&|x| F::soft_margin_loss(x, &y, Reduce::Sum)),
        &[-0.5, 0.5, -0.5],
    );
}

/// `nll_loss` of a class per position (`[N, C, d...]` log-probabilities, as PyTorch takes for
/// segmentation; it refused them): the cross-entropy of the same log-probabilities, for
/// every reduction, and refused out-of-range classes at the caller's line.
#[test]
fn nll_loss_takes_a_class_per_position() {
    let x = Tensor::from_vec(
        (0..24).map(|i| ((i * 5 % 7) as f64 - 3.0) * 0.4).collect(),
        &[2, 3, 4],
    );
    let lp = x.log_softmax(1);
    let t = Tensor::from_vec(vec![0i64, 2, 1, 1, 2, 0, 0, 1], &[2, 4]);
    for r in [Reduce::None, Reduce::Sum, Reduce::Mean] {
        let want = F::cross_entropy_with(
            &lp,
            &t,
            F::CrossEntropy {
                reduction: r,
                ..Default::default()
            },
        );
        let got = F::nll_loss(&lp, &t, r);
        assert_eq!(got.shape(), want.shape());
        assert!(
            got.allclose(&want, 1e-14, 1e-14),
            "{r:?}: {got:?} vs {want:?}"
        );
    }
    let bad = Tensor::from_vec(vec![0i64, 3, 1, 1, 2, 0, 0, 1], &[2, 4]);
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        F::nll_loss(&lp, &bad, Reduce::Mean)
    }))
    .unwrap_err();
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains("class index 3") && msg.contains("tests/losses.rs"),
        "{msg}"
    );
}

/// The second derivative of smooth L1 and Huber: 1/β (1) inside, where the difference is 0
/// too (the square of |d| gave |d|'s kink, 0 there), and 0 from the threshold on, where
/// Huber's linear part starts as in PyTorch (`|d| < δ` is the quadratic part). Found
/// comparing Hessian-vector products with PyTorch 2.15.
#[test]
fn smooth_l1_and_huber_curve_where_they_are_quadratic() {
    let x = Tensor::from_vec(vec![0.0f64, 0.5, -1.0, 1.0, 2.0], &[5]);
    let zeros = Tensor::zeros(&[5], DType::F64);
    let diag = |f: &dyn Fn(&Tensor) -> Tensor| {
        let h = ferrograd::hessian(|x: &Tensor| f(x), &x).to_vec::<f64>();
        (0..5).map(|i| h[i * 5 + i]).collect::<Vec<f64>>()
    };
    let beta = 2.0;
    assert_eq!(
        diag(&|x| F::smooth_l1_loss(x, &zeros, beta, Reduce::Sum)),
        [0.5, 0.5, 0.5, 0.5, 0.0]
    );
    assert_eq!(
        diag(&|x| F::huber_loss(x, &zeros, 1.0, Reduce::Sum)),
        [1.0, 1.0, 0.0, 0.0, 0.0]
    );
}
