use std::sync::{Arc, Mutex};

use ferrograd::{grad, DType, DebugError, Phase, Tensor, Tree};

#[derive(Tree, Clone)]
struct Inputs {
    w: Tensor,
    x: Tensor,
}

#[test]
fn the_divide_by_zero_example_reports_the_line_of_the_division() {
    let inputs = Inputs {
        w: Tensor::full(&[32, 100], 0.5, DType::F64),
        x: Tensor::full(&[100], 0.5, DType::F64),
    };
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let division_line = line!() + 1;
    let func = |p: &Inputs| (p.w.mv(&p.x) / 0.0).sum(); // DIV ZERO!
    let df = grad(func).debug_hook(move |event| {
        seen.lock().unwrap().push((
            event.op.clone(),
            event.phase,
            event.location.line(),
            event.location.file().to_string(),
            event.message(),
            event.dot(),
        ));
    });
    let (g, loss) = df.call(&inputs, ());
    assert!(loss.item::<f64>().is_infinite());
    assert!(g.w.to_f64_vec().iter().all(|v| !v.is_finite()));
    let events = events.lock().unwrap();
    let (op, phase, line, file, message, dot) = &events[0];
    assert_eq!((op.as_str(), *phase), ("div_scalar", Phase::Forward));
    assert_eq!(*line, division_line, "{message}");
    assert!(file.ends_with("tests/autodiff/debugger.rs"));
    assert!(
        message.contains("inf in the forward of div_scalar at") && message.contains("debugger.rs"),
        "{message}"
    );
    assert!(
        dot.starts_with("digraph") && dot.contains("div_scalar") && dot.contains("color=red"),
        "{dot}"
    );
    assert!(
        dot.contains("\"w\\n[32, 100]") && dot.contains("matmul"),
        "parameters are named in the graph: {dot}"
    );
    // the backward pass reports too: the division's gradient g / 0 is infinite
    assert!(
        events
            .iter()
            .any(|e| e.1 == Phase::Backward && e.0 == "div_scalar"),
        "{:?}",
        events.iter().map(|e| (&e.0, e.1)).collect::<Vec<_>>()
    );
}

#[test]
fn graphs_save_as_dot_and_render_when_graphviz_exists() {
    let dir = std::env::temp_dir().join(format!("ferrograd-debug-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let saved = Arc::new(Mutex::new(None));
    let slot = saved.clone();
    let (dot_path, svg_path) = (dir.join("graph.dot"), dir.join("graph.svg"));
    let (dp, sp) = (dot_path.clone(), svg_path.clone());
    let df = grad(|x: &Tensor| x.log().sum()).debug_hook(move |event| {
        if slot.lock().unwrap().is_none() {
            event.save_dot(&dp).unwrap();
            *slot.lock().unwrap() = Some(event.save_svg(&sp));
        }
    });
    df.call(&Tensor::from_vec(vec![-1.0f64, 1.0], &[2]), ());
    let dot = std::fs::read_to_string(&dot_path).unwrap();
    assert!(dot.contains("log") && dot.contains("NaN"), "{dot}");
    match saved.lock().unwrap().take().expect("hook ran") {
        Ok(()) => assert!(std::fs::read_to_string(&svg_path).unwrap().contains("<svg")),
        Err(DebugError::GraphvizMissing { dot_path, .. }) => {
            assert_eq!(std::fs::read_to_string(dot_path).unwrap(), dot);
            let msg = DebugError::GraphvizMissing {
                path: svg_path.clone(),
                dot_path: dir.join("graph.dot"),
            }
            .to_string();
            assert!(
                msg.contains("Graphviz `dot` program is not installed")
                    && msg.contains("apt-get install graphviz"),
                "{msg}"
            );
        }
        Err(e) => panic!("unexpected error {e}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finite_runs_never_call_the_hook() {
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let df = grad(|x: &Tensor| x.exp().sum()).debug_hook(move |_| *c.lock().unwrap() += 1);
    df.call(&Tensor::from_vec(vec![1.0f64, 2.0], &[2]), ());
    assert_eq!(*calls.lock().unwrap(), 0);
}
