//! What the training examples share: choosing the data (the shipped digits, or MNIST IDX
//! files), a progress bar, accuracy, and loss/accuracy plots as SVG.

#![allow(dead_code)] // each example uses part of this

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use ferrograd::Tensor;
use ferrograd_nn::data::{self, Dataset};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;

/// The repository's `data/` folder, wherever the example is run from (or `$FERROGRAD_DATA`,
/// for a binary carried away from the checkout it was built in).
pub fn data_dir() -> PathBuf {
    match std::env::var_os("FERROGRAD_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data"),
    }
}

/// Replaces the standard panic message's location with the repository path: Cargo names an
/// example kept outside its package `crates/ferrograd-nn/../../examples/x.rs`, and the
/// standard hook prints that as it is. Backtraces still follow `RUST_BACKTRACE`.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("Box<dyn Any>");
        let at = info.location().map(|l| (l.file(), l.line(), l.column()));
        eprintln!(
            "{}",
            panic_text(thread.name().unwrap_or("<unnamed>"), at, message)
        );
        let backtrace = std::backtrace::Backtrace::capture();
        match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => eprintln!("stack backtrace:\n{backtrace}"),
            _ => eprintln!(
                "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
            ),
        }
    }));
}

/// The first lines of a panic report, as the standard hook writes them but with the
/// location's path normalized.
pub fn panic_text(thread: &str, at: Option<(&str, u32, u32)>, message: &str) -> String {
    match at {
        Some((file, line, column)) => format!(
            "thread '{thread}' panicked at {}:{line}:{column}:\n{message}",
            ferrograd::array::normalize_path(file)
        ),
        None => format!("thread '{thread}' panicked:\n{message}"),
    }
}

/// Prints `error: {message}` and exits with status 2 (a usage error).
pub fn usage_error(message: impl std::fmt::Display) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2);
}

/// `(train, test)`: MNIST from `mnist_dir` when given, else the shipped digits with 20% held
/// out. Exits with an error when a file cannot be read, or when `batch_size` is larger than
/// the training set.
pub fn load(mnist_dir: Option<&Path>, seed: u64, batch_size: usize) -> (Dataset, Dataset) {
    let result = match mnist_dir {
        Some(dir) => data::load_mnist_dir(dir),
        None => data::load_digits(data_dir().join("digits.csv.gz")).map(|d| d.split(0.2, seed)),
    };
    let (train, test) = result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    if train.is_empty() || test.is_empty() {
        usage_error(format!(
            "{} training and {} test examples: both sets need at least one",
            train.len(),
            test.len()
        ));
    }
    if batch_size > train.len() {
        usage_error(format!(
            "--batch-size {batch_size} is larger than the {} training examples",
            train.len()
        ));
    }
    (train, test)
}

/// A clap value parser for counts that must be at least 1 (epochs, batch size, units).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A clap value parser for rates that must be finite and positive (learning rates).
pub fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(v) => Err(format!("must be a finite number above 0, got {v}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Where a plot goes: `given`, or `plots/{name}.svg` under the workspace's target folder
/// (`CARGO_TARGET_DIR` when set), wherever the example runs from.
pub fn plot_path(given: Option<&Path>, name: &str) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        // relative to where cargo ran, as cargo reads it (an absolute path stays as it is)
        Some(t) => std::env::current_dir().unwrap_or_default().join(t),
        None => workspace.join("target"),
    };
    let path = target.join("plots").join(format!("{name}.svg"));
    // print `/work/ferrograd/target/...`, not `.../crates/ferrograd-nn/../../target/...`
    std::fs::create_dir_all(path.parent().expect("a folder"))
        .ok()
        .and_then(|_| path.parent()?.canonicalize().ok())
        .map(|dir| dir.join(format!("{name}.svg")))
        .unwrap_or(path)
}

/// `1 epoch`, `3 epochs`.
pub fn epochs(n: usize) -> String {
    if n == 1 {
        "1 epoch".into()
    } else {
        format!("{n} epochs")
    }
}

/// True when progress goes to a terminal: a progress bar then, one line per epoch otherwise
/// (logs, CI) or with `--quick`.
pub fn interactive(quick: bool) -> bool {
    !quick && std::io::stdout().is_terminal()
}

/// A progress bar over `steps` steps (hidden when not [`interactive`]).
pub fn progress(steps: u64, quick: bool) -> ProgressBar {
    if !interactive(quick) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar
}

/// A `--device` value: `cpu`, `cuda` (the first GPU) or `cuda:N`.
pub fn device(s: &str) -> Result<ferrograd::Device, String> {
    let device = match s {
        "cpu" => ferrograd::Device::Cpu,
        "cuda" => ferrograd::Device::Cuda(0),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => ferrograd::Device::Cuda(n),
            _ => return Err(format!("`{s}` is not a device: use cpu, cuda or cuda:N")),
        },
    };
    // reachable now, or a clear error before any work
    ferrograd::Tensor::zeros(&[1], ferrograd::DType::F32)
        .to_device(device)
        .map(|_| device)
        .map_err(|e| e.to_string())
}

/// The share of rows whose largest logit is the label (counted on the host).
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> f64 {
    let logits = logits
        .to_device(ferrograd::Device::Cpu)
        .expect("reading the logits back");
    let predicted = logits.argmax(-1, false).to_vec::<i64>();
    let labels = labels.to_vec::<i64>();
    predicted
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p == l)
        .count() as f64
        / labels.len().max(1) as f64
}

/// One panel of a plot: its y-axis label and the named series drawn in it.
pub struct Panel<'a> {
    /// The y-axis label.
    pub y: &'a str,
    /// `(name, value per epoch)`.
    pub series: &'a [(&'a str, &'a [f64])],
}

/// Draws the panels side by side into an SVG file, each series against the epoch (whole
/// numbers) as a line with a point per epoch, so a one-epoch run shows too.
pub fn plot(path: &Path, title: &str, panels: &[Panel]) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let width = 480 * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let colors = [RED, BLUE, GREEN, MAGENTA];
    for (area, panel) in root
        .split_evenly((1, panels.len().max(1)))
        .iter()
        .zip(panels)
    {
        let epochs = panel.series.iter().map(|(_, v)| v.len()).max().unwrap_or(1) as i32;
        let values = || panel.series.iter().flat_map(|(_, v)| v.iter().copied());
        let (low, high) = values().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
        let (low, high) = if low.is_finite() {
            (low, high)
        } else {
            (0.0, 1.0)
        };
        let pad = ((high - low) * 0.08).max(high.abs() * 0.02).max(1e-9);
        let mut chart = ChartBuilder::on(area)
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0i32..epochs + 1, (low - pad).max(0.0)..high + pad)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(panel.y)
            .x_labels((epochs + 2).min(12) as usize)
            .x_label_formatter(&|e| {
                if *e >= 1 && *e <= epochs {
                    e.to_string()
                } else {
                    String::new()
                }
            })
            .draw()?;
        for (i, (name, values)) in panel.series.iter().enumerate() {
            let color = colors[i % colors.len()];
            let points = || values.iter().enumerate().map(|(e, &v)| (e as i32 + 1, v));
            chart
                .draw_series(LineSeries::new(points(), color.stroke_width(2)))?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
            chart.draw_series(points().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        if panel.series.len() > 1 {
            // losses fall and accuracies rise: the upper right corner is usually free
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()?;
        }
    }
    root.present()?;
    Ok(())
}

/// How long and how a training run goes, and where its curves go.
pub struct Run<'a> {
    /// The title of the plot.
    pub title: &'a str,
    /// Where the curves go (SVG).
    pub plot: &'a Path,
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Shuffling seed.
    pub seed: u64,
    /// No progress bar.
    pub quiet: bool,
    /// Where the parameters and each batch go (`--device`).
    pub device: ferrograd::Device,
}

/// Trains `params` with `opt` on the gradient of `loss`; after each epoch, measures the test
/// accuracy of `predict`. Plots the curves, prints the closing line and returns the final
/// held-out accuracy.
pub fn fit<P: ferrograd::Tree>(
    run: &Run,
    train: &Dataset,
    test: &Dataset,
    params: P,
    opt: &mut impl ferrograd_nn::optim::Optimizer,
    loss: impl Fn(&P, &Tensor, &Tensor) -> Tensor,
    predict: impl Fn(&P, &Tensor) -> Tensor,
) -> f64 {
    let start = std::time::Instant::now();
    let on = |t: &Tensor| t.to_device(run.device).unwrap_or_else(|e| usage_error(e));
    let mut params = ferrograd::to_device(&params, run.device).unwrap_or_else(|e| usage_error(e));
    let test_inputs = on(&test.inputs);
    let df = ferrograd::grad(&loss);
    let (mut losses, mut accuracies) = (Vec::new(), Vec::new());
    let bar = progress(
        (run.epochs * train.len().div_ceil(run.batch_size)) as u64,
        run.quiet,
    );
    for epoch in 1..=run.epochs {
        bar.set_prefix(format!("epoch {epoch}"));
        let mut total = 0.0;
        for (x, y) in train.batches(run.batch_size, Some(run.seed + epoch as u64)) {
            let (x, y) = (on(&x), on(&y));
            let (g, l) = df.call(&params, (&x, &y));
            total += l.item_f64() * y.numel() as f64;
            params = opt.step(&params, &g);
            bar.inc(1);
        }
        losses.push(total / train.len() as f64);
        accuracies.push(accuracy(&predict(&params, &test_inputs), &test.labels));
        bar.set_message(format!(
            "loss {:.4}, test accuracy {:.2}%",
            losses[epoch - 1],
            100.0 * accuracies[epoch - 1]
        ));
        if !interactive(run.quiet) {
            println!(
                "epoch {epoch:3}: train loss {:.4}, test accuracy {:.2}% ({:.1} s)",
                losses[epoch - 1],
                100.0 * accuracies[epoch - 1],
                start.elapsed().as_secs_f64()
            );
        }
    }
    bar.finish();
    report(
        run.title,
        run.plot,
        &losses,
        &accuracies,
        start.elapsed().as_secs_f64(),
    )
}

/// Runs an example's `run` with `args` plus a temporary `--plot` file, checks the file is an
/// SVG, removes it, and returns what `run` returned (for the examples' own tests).
pub fn run_with_temporary_plot<R>(
    name: &str,
    args: &[&str],
    run: impl FnOnce(Vec<String>) -> R,
) -> R {
    let plot = std::env::temp_dir().join(format!("ferrograd-{name}-{}.svg", std::process::id()));
    let mut argv: Vec<String> = std::iter::once(name.to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect();
    argv.extend(["--plot".to_string(), plot.to_string_lossy().into_owned()]);
    let result = run(argv);
    assert!(std::fs::read_to_string(&plot)
        .expect("the plot was written")
        .contains("<svg"));
    std::fs::remove_file(plot).expect("remove the plot");
    result
}

/// Writes the curves, prints the closing line, and returns the final held-out accuracy.
pub fn report(
    name: &str,
    plot_path: &Path,
    losses: &[f64],
    accuracies: &[f64],
    seconds: f64,
) -> f64 {
    let percent: Vec<f64> = accuracies.iter().map(|a| 100.0 * a).collect();
    let panels = [
        Panel {
            y: "train loss",
            series: &[("train loss", losses)],
        },
        Panel {
            y: "test accuracy (%)",
            series: &[("test accuracy", &percent)],
        },
    ];
    if let Err(e) = plot(plot_path, name, &panels) {
        eprintln!("warning: could not write {}: {e}", plot_path.display());
    }
    println!(
        "held-out accuracy: {:.2}% after {} ({seconds:.1} s); curves in {}",
        100.0 * accuracies.last().copied().unwrap_or(0.0),
        epochs(accuracies.len()),
        plot_path.display()
    );
    accuracies.last().copied().unwrap_or(0.0)
}

/// This example's tests again, with every `grad` in optimize mode and each replay checked
/// bit for bit against direct mode.
#[cfg(test)]
#[test]
fn the_suite_passes_in_optimize_check_mode() {
    ferrograd::rerun_tests_in_check_mode("the_suite_passes_in_optimize_check_mode");
}

/// The examples' panic reports name their lines by the path a reader knows too.
#[cfg(test)]
#[test]
fn panic_reports_name_example_files_by_their_repository_path() {
    let text = panic_text(
        "main",
        Some((
            "crates/ferrograd-nn/../../examples/train_mnist_mlp.rs",
            12,
            5,
        )),
        "boom",
    );
    assert_eq!(
        text,
        "thread 'main' panicked at examples/train_mnist_mlp.rs:12:5:\nboom"
    );
    // this very file, as Cargo names it to the compiler
    let here = std::panic::Location::caller().file();
    assert!(
        here.contains("../") || here.starts_with("examples/"),
        "{here}"
    );
    assert!(panic_text("t", Some((here, 1, 1)), "m").contains("at examples/common/mod.rs:1:1"));
}

/// Library messages name an example's lines by the path a reader knows, not by Cargo's
/// `crates/ferrograd-nn/../../examples/...`.
#[cfg(test)]
#[test]
fn messages_name_example_files_by_their_repository_path() {
    let a = Tensor::zeros(&[2, 3], ferrograd::DType::F32);
    let b = Tensor::zeros(&[4, 5], ferrograd::DType::F32);
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.matmul(&b))).unwrap_err();
    let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("(at examples/common/mod.rs:"), "{message}");
    let df = ferrograd::grad(|x: &Tensor| x.square().sum()).optimize(true);
    df.call(&a, ());
    let plan = df.plan_text();
    assert!(plan.contains("at examples/common/mod.rs:"), "{plan}");
    assert!(!plan.contains("../"), "{plan}");
}
