//! A payment gateway in-process, for development, tests and benchmarks.
//!
//! Test customers behave like a card network's test cards:
//! - `test-decline`: always declined;
//! - `test-flaky`: fails transiently on the first two attempts per order, then succeeds;
//! - `test-down`: always fails transiently.
//!
//! Everyone else succeeds, after `latency`, except a `failure_rate` share that fails
//! transiently. A successful charge is remembered per order id, as a real gateway's
//! idempotency key would be, so a repeated charge is not a second charge. What it remembers
//! is bounded (the most recent [`REMEMBERED`] orders), so a long run does not grow it without
//! limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;

use async_trait::async_trait;
use ordermill_core::OrderId;
use ordermill_core::ports::{ChargeError, ChargeRequest, PaymentGateway};

/// The simulated gateway.
pub struct SimulatedGateway {
    latency: Duration,
    failure_rate: f64,
    /// Attempts per order, kept only for `test-flaky` orders.
    attempts: Cache<OrderId, u32>,
    charged: Cache<OrderId, ()>,
    distinct_charges: AtomicU64,
}

/// Orders remembered as charged (a redelivery older than that would be charged again, as by a
/// real gateway whose idempotency keys expired).
pub const REMEMBERED: u64 = 1_000_000;

impl SimulatedGateway {
    /// A gateway answering after `latency`, failing a `failure_rate` share transiently.
    pub fn new(latency: Duration, failure_rate: f64) -> Self {
        SimulatedGateway {
            latency,
            failure_rate: failure_rate.clamp(0.0, 1.0),
            attempts: Cache::new(10_000),
            charged: Cache::new(REMEMBERED),
            distinct_charges: AtomicU64::new(0),
        }
    }

    /// How many distinct orders were charged (for tests and the bench).
    pub fn charges(&self) -> u64 {
        self.distinct_charges.load(Ordering::Relaxed)
    }
}

impl SimulatedGateway {
    fn random_failure(&self) -> Result<(), ChargeError> {
        if self.failure_rate > 0.0 && fastrand::f64() < self.failure_rate {
            return Err(ChargeError::Transient("simulated gateway failure".into()));
        }
        Ok(())
    }
}

/// Where the simulated gateway sends customers to pay (a made-up page on a reserved domain).
pub const CHECKOUT_BASE: &str = "https://pay.example/checkout/";

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn request_payment(
        &self,
        request: &ChargeRequest,
        _pay_by: ordermill_core::UnixMillis,
    ) -> Result<String, ChargeError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        match request.customer_id.as_str() {
            "test-decline" => Err(ChargeError::Declined("card declined (test-decline)".into())),
            "test-down" => Err(ChargeError::Transient("gateway unreachable (test-down)".into())),
            _ => {
                self.random_failure()?;
                Ok(format!("{CHECKOUT_BASE}{}", request.order_id))
            }
        }
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<(), ChargeError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        match request.customer_id.as_str() {
            "test-decline" => {
                return Err(ChargeError::Declined("card declined (test-decline)".into()));
            }
            "test-down" => {
                return Err(ChargeError::Transient("gateway unreachable (test-down)".into()));
            }
            "test-flaky" => {
                let attempt = self
                    .attempts
                    .entry(request.order_id)
                    .and_upsert_with(|seen| seen.map_or(1, |n| n.into_value() + 1))
                    .into_value();
                if attempt <= 2 {
                    return Err(ChargeError::Transient(format!(
                        "gateway timeout (test-flaky, attempt {attempt})"
                    )));
                }
            }
            _ => {}
        }
        self.random_failure()?;
        if self.charged.entry(request.order_id).or_insert(()).is_fresh() {
            self.distinct_charges.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ordermill_core::{Money, OrderIdGenerator, UnixMillis};

    use super::*;

    fn request(ids: &OrderIdGenerator, customer: &str) -> ChargeRequest {
        ChargeRequest {
            order_id: ids.next(UnixMillis(1)),
            customer_id: customer.into(),
            amount: Money::from_minor(250).expect("in range"),
        }
    }

    #[tokio::test]
    async fn test_customers_behave_like_test_cards_and_a_repeat_is_one_charge() {
        let gateway = SimulatedGateway::new(Duration::ZERO, 0.0);
        let ids = OrderIdGenerator::new();
        let flaky = request(&ids, "test-flaky");
        for _ in 0..2 {
            assert!(matches!(gateway.charge(&flaky).await, Err(ChargeError::Transient(_))));
        }
        assert_eq!(gateway.charge(&flaky).await, Ok(()), "the third attempt goes through");
        let decline = request(&ids, "test-decline");
        assert!(matches!(gateway.charge(&decline).await, Err(ChargeError::Declined(_))));
        let plain = request(&ids, "alice");
        assert_eq!(gateway.charge(&plain).await, Ok(()));
        assert_eq!(gateway.charge(&plain).await, Ok(()));
        assert_eq!(gateway.charges(), 2, "flaky and alice, each once");
        gateway.attempts.run_pending_tasks();
        assert!(gateway.attempts.entry_count() <= 1, "only test-flaky is tracked");
    }
}
