//! Running a case and a whole search.

use crate::*;

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) async fn run_case(faults: Faults, offset: u64, ops: &[Op]) -> TestCaseResult {
    let mut run = Run::new(faults, T_BASE + offset).await;
    for (i, op) in ops.iter().enumerate() {
        if let Err(v) = run.step(op).await {
            return Err(TestCaseError::fail(format!(
                "[{}] {}\n  at op #{i}: {op:?}\n  trace:\n{}",
                v.property,
                v.message,
                run.trace.join("\n")
            )));
        }
    }
    Ok(())
}

pub(crate) fn config(cases: u32) -> Config {
    let mut config = Config::default();
    // `PROPTEST_CASES` (read by `Config::default`) wins over the file's count.
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config.failure_persistence = None;
    config
}

/// Runs the property search with `mix`; panics with the shrunk sequence on a failure.
pub(crate) fn check(mix: Mix, cases: u32) {
    let rt = runtime();
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&scenario(mix), |(offset, ops)| {
        rt.block_on(run_case(Faults::default(), offset, &ops))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    if std::env::var_os("FLOW_STATS").is_some() {
        let mut counts = REACHED.lock().unwrap().clone();
        counts.sort();
        for (what, n) in counts {
            eprintln!("{n:>7}  {what}");
        }
    }
}

/// Runs the same search against an app with `faults` and requires it to find a violation
/// of `property`.
pub(crate) fn expect_caught(faults: Faults, mix: Mix, property: &str) {
    expect_caught_as(faults, mix, &[property]);
}

/// [`expect_caught`], where the interleaving of a burst decides which of `properties`
/// the fault violates first.
pub(crate) fn expect_caught_as(faults: Faults, mix: Mix, properties: &[&str]) {
    let rt = runtime();
    let mut config = config(256);
    config.cases = 256;
    config.max_shrink_iters = 256;
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    match runner.run(&scenario(mix), |(offset, ops)| {
        rt.block_on(run_case(faults, offset, &ops))
    }) {
        Ok(()) => panic!("{faults:?}: no sequence violated {properties:?}"),
        Err(TestError::Fail(reason, ops)) => assert!(
            properties
                .iter()
                .any(|p| reason.message().starts_with(&format!("[{p}]"))),
            "{faults:?} was caught, but not as a violation of {properties:?}: {}\n{ops:?}",
            reason.message()
        ),
        Err(e) => panic!("{e}"),
    }
}
