//! Waiting: [`sleep`], and [`poll`] a check with backoff until it is done or time is up.
//!
//! A plugin waits on WASI's monotonic clock (`std::thread::sleep` and `Instant` work in
//! Pier), using no CPU meanwhile. The call's own limit still applies (an hour for
//! `deploy`, and `pier conformance --timeout` under the conformance runner).
//!
//! ```text
//! let build = poll(Duration::from_secs(1), Duration::from_secs(15), Duration::from_secs(900), || {
//!     let build: Build = api::Request::get(&url).send()?.json()?;
//!     Ok((build.status != "pending").then_some(build))
//! })?;
//! ```

use std::time::{Duration, Instant};

use crate::MethodError;

/// Waits `duration`.
pub fn sleep(duration: Duration) {
    std::thread::sleep(duration);
}

/// The wait after one of `last` (zero before the first): `interval` first, then twice the
/// last wait, never more than `max_interval`.
pub fn next_interval(last: Duration, interval: Duration, max_interval: Duration) -> Duration {
    if last.is_zero() { interval } else { last.saturating_mul(2) }.min(max_interval)
}

/// Calls `check` until it returns `Some`, and returns that value.
///
/// Waits `interval` after the first check, then twice as long each time, at most
/// `max_interval`, and never past `timeout` in all; once `timeout` has passed, returns a
/// `provider` error ("gave up waiting after …"). `check` returning an error stops at once
/// with that error (a failed build). Under `pier conformance`, whose fake provider answers
/// `200 {}`, a check that never sees its final state polls until `timeout`: keep the
/// timeout below conformance's `--timeout` (30 s by default) or script the final state in
/// `conformance.json`.
pub fn poll<T>(
    interval: Duration,
    max_interval: Duration,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, MethodError>,
) -> Result<T, MethodError> {
    let deadline = Instant::now() + timeout;
    let mut wait = Duration::ZERO;
    loop {
        if let Some(done) = check()? {
            return Ok(done);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(MethodError::Provider(format!("gave up waiting after {}", seconds(timeout))));
        }
        wait = next_interval(wait, interval, max_interval);
        sleep(wait.min(remaining));
    }
}

/// `90 s`, `1.5 s`.
fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_from_the_interval_up_to_the_maximum() {
        let mut wait = Duration::ZERO;
        let waits: Vec<u128> = (0..7)
            .map(|_| {
                wait = next_interval(wait, 100 * MS, 1000 * MS);
                wait.as_millis()
            })
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000, 1000]);
        // An interval above the maximum is cut to it; doubling never overflows.
        assert_eq!(next_interval(Duration::ZERO, 5000 * MS, 1000 * MS), 1000 * MS);
        assert_eq!(next_interval(Duration::MAX, MS, Duration::MAX), Duration::MAX);
    }

    #[test]
    fn a_check_that_is_done_returns_at_once() {
        let mut calls = 0;
        let started = Instant::now();
        let value = poll(Duration::from_secs(60), Duration::from_secs(60), Duration::from_secs(60), || {
            calls += 1;
            Ok(Some(calls))
        });
        assert_eq!(value.ok(), Some(1));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_check_polls_until_done_with_backoff() {
        let mut calls = 0;
        let started = Instant::now();
        let value = poll(MS, 4 * MS, Duration::from_secs(60), || {
            calls += 1;
            Ok((calls == 4).then_some("ready"))
        });
        assert_eq!(value.ok(), Some("ready"));
        // Waited 1 + 2 + 4 ms.
        assert!(started.elapsed() >= 7 * MS, "{:?}", started.elapsed());
    }

    #[test]
    fn an_error_stops_polling_and_time_running_out_is_a_provider_error() {
        let mut calls = 0;
        let failed = poll::<()>(MS, MS, Duration::from_secs(60), || {
            calls += 1;
            Err(MethodError::DeployFailed(crate::DeployFailure { reason: "build failed".into(), tail: vec![] }))
        });
        assert!(matches!(failed, Err(MethodError::DeployFailed(_))));
        assert_eq!(calls, 1);

        let started = Instant::now();
        let gave_up = poll::<()>(MS, 2 * MS, 20 * MS, || Ok(None));
        match gave_up {
            Err(MethodError::Provider(message)) => assert_eq!(message, "gave up waiting after 0.02 s"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() >= 20 * MS);
    }
}
