//! Charging customers.

use async_trait::async_trait;
use thiserror::Error;

use crate::clock::UnixMillis;
use crate::money::Money;
use crate::order_id::OrderId;

/// A charge to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// The order; also the idempotency key a real gateway deduplicates on.
    pub order_id: OrderId,
    /// Who pays.
    pub customer_id: String,
    /// How much.
    pub amount: Money,
}

/// Why a charge did not go through.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChargeError {
    /// Final: the order is cancelled.
    #[error("payment declined: {0}")]
    Declined(String),
    /// Temporary: retry later.
    #[error("payment gateway unavailable: {0}")]
    Transient(String),
    /// The gateway refused the request itself ([`crate::outside::definite_refusal`]):
    /// retrying cannot help; dead-lettered at once, the order stays accepted for an operator
    /// to fix the configuration and replay.
    #[error("payment gateway refused the request: {0}")]
    Rejected(String),
}

/// A payment gateway.
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Charges, at most once per order id.
    ///
    /// # Errors
    /// [`ChargeError::Declined`] or [`ChargeError::Transient`].
    async fn charge(&self, request: &ChargeRequest) -> Result<(), ChargeError>;

    /// Pay later: asks the provider for a payment intent and returns the URL where the
    /// customer pays `request.amount` by `pay_by`. Idempotent per order id, like a charge.
    ///
    /// # Errors
    /// As [`PaymentGateway::charge`]: a decline cancels the order, a transient failure is
    /// retried.
    async fn request_payment(
        &self,
        request: &ChargeRequest,
        pay_by: UnixMillis,
    ) -> Result<String, ChargeError>;
}
