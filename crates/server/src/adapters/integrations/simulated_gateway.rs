//! A payment gateway in-process, for development, tests and benchmarks.
//!
//! Test customers behave like a card network's test cards:
//! - `test-decline`: always declined;
//! - `test-flaky`: fails transiently on the first two attempts per order, then succeeds;
//! - `test-down`: always fails transiently.
//!
//! Everyone else succeeds, after `latency`, except a `failure_rate` share that fails
//! transiently. A successful charge is remembered per order id, as a real gateway's
//! idempotency key would be, so a repeated charge is not a second charge.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use ordermill_core::OrderId;
use ordermill_core::ports::{ChargeError, ChargeRequest, PaymentGateway};

/// The simulated gateway.
pub struct SimulatedGateway {
    latency: Duration,
    failure_rate: f64,
    attempts: Mutex<HashMap<OrderId, u32>>,
    charged: Mutex<HashSet<OrderId>>,
}

impl SimulatedGateway {
    /// A gateway answering after `latency`, failing a `failure_rate` share transiently.
    pub fn new(latency: Duration, failure_rate: f64) -> Self {
        SimulatedGateway {
            latency,
            failure_rate: failure_rate.clamp(0.0, 1.0),
            attempts: Mutex::default(),
            charged: Mutex::default(),
        }
    }

    /// How many distinct orders were charged (for tests and the bench).
    pub fn charges(&self) -> usize {
        self.charged.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<(), ChargeError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let attempt = {
            let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
            let n = attempts.entry(request.order_id).or_insert(0);
            *n += 1;
            *n
        };
        match request.customer_id.as_str() {
            "test-decline" => {
                return Err(ChargeError::Declined("card declined (test-decline)".into()));
            }
            "test-down" => {
                return Err(ChargeError::Transient("gateway unreachable (test-down)".into()));
            }
            "test-flaky" if attempt <= 2 => {
                return Err(ChargeError::Transient(format!(
                    "gateway timeout (test-flaky, attempt {attempt})"
                )));
            }
            _ => {}
        }
        if self.failure_rate > 0.0 && fastrand::f64() < self.failure_rate {
            return Err(ChargeError::Transient("simulated gateway failure".into()));
        }
        self.charged.lock().unwrap_or_else(|p| p.into_inner()).insert(request.order_id);
        Ok(())
    }
}
