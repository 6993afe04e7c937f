//! Validation errors: each variant has a stable `code()` that clients branch on.

use thiserror::Error;

/// A value from outside (an HTTP body, a config file) that breaks a domain rule.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    /// A quantity outside `1..=10000` or not an integer.
    #[error("quantity must be an integer from 1 to {max}, got {got}")]
    InvalidQuantity {
        /// What the client sent, as text.
        got: String,
        /// The largest accepted quantity.
        max: u32,
    },
    /// A SKU that is empty, too long or holds characters outside `[A-Za-z0-9._:-]`.
    #[error("sku must be 1 to 64 characters of A-Z a-z 0-9 . _ : -, got {0:?}")]
    InvalidSku(String),
    /// A customer id that is empty, too long or holds control characters.
    #[error("customer_id must be 1 to 64 printable characters")]
    InvalidCustomerId,
    /// A money amount that is not a plain non-negative decimal with at most 2 decimals.
    #[error(
        "{field} must be a decimal string like \"19.99\" (at most 2 decimals, at most {max}), got {got:?}"
    )]
    InvalidMoney {
        /// The field that held it (`price`, `deal_price`, ...).
        field: &'static str,
        /// What the client sent.
        got: String,
        /// The largest accepted amount, printed.
        max: &'static str,
    },
    /// An order with no items.
    #[error("an order needs at least one item")]
    NoItems,
    /// An order with more items than allowed.
    #[error("an order may hold at most {max} items, got {got}")]
    TooManyItems {
        /// How many items the client sent.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// The same SKU twice in one order.
    #[error("sku {0:?} appears more than once; send one item per sku with the summed quantity")]
    DuplicateSku(String),
    /// A product name that is empty or too long.
    #[error("name must be 1 to 200 printable characters")]
    InvalidProductName,
    /// A stock level that is negative or too large.
    #[error("stock must be an integer from 0 to {max}, got {got}")]
    InvalidStock {
        /// What the client sent, as text.
        got: String,
        /// The limit.
        max: i64,
    },
    /// An `Idempotency-Key` header that is empty, too long or not printable ASCII.
    #[error("Idempotency-Key must be 1 to 255 printable ASCII characters")]
    InvalidIdempotencyKey,
    /// An order id that is not a UUID.
    #[error("order id must be a UUID like 0193a1b2-...; got {0:?}")]
    InvalidOrderId(String),
    /// A deal id that is not a UUID.
    #[error("deal id must be a UUID like 0193a1b2-...; got {0:?}")]
    InvalidDealId(String),
    /// A group size outside the accepted range.
    #[error("group_size must be an integer from 2 to {max}, got {got}")]
    InvalidGroupSize {
        /// What the client sent, as text.
        got: String,
        /// The limit.
        max: u32,
    },
    /// A deal deadline that is missing, unreadable or out of range.
    #[error("{0}")]
    InvalidExpiry(String),
    /// A per-customer purchase limit that is not a positive integer.
    #[error("per_customer_limit must be null or an integer from 1 to {max}, got {got}")]
    InvalidLimit {
        /// What the client sent, as text.
        got: String,
        /// The limit.
        max: u32,
    },
    /// A line or order total above [`crate::Money::MAX`], the one bound on money the whole
    /// system (intake, stores, payment) shares.
    #[error(
        "the order's total would exceed {max}, the largest amount ordermill handles; split the order"
    )]
    TotalOverflow {
        /// The bound, as text.
        max: &'static str,
    },
    /// A report id that is not a UUID.
    #[error("report id must be a UUID like 0193a1b2-...; got {0:?}")]
    InvalidReportId(String),
    /// A report's range that is empty, reversed, too long or unreadable.
    #[error("{0}")]
    InvalidReportRange(String),
    /// A report filter its kind does not take, or an unreadable one.
    #[error("{0}")]
    InvalidReportFilter(String),
}

impl ValidationError {
    /// The machine-readable code sent to clients in `{"error": {"code": ...}}`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidQuantity { .. } => "invalid_quantity",
            Self::InvalidSku(_) => "invalid_sku",
            Self::InvalidCustomerId => "invalid_customer_id",
            Self::InvalidMoney { .. } => "invalid_price",
            Self::NoItems => "no_items",
            Self::TooManyItems { .. } => "too_many_items",
            Self::DuplicateSku(_) => "duplicate_sku",
            Self::InvalidProductName => "invalid_name",
            Self::InvalidStock { .. } => "invalid_stock",
            Self::InvalidIdempotencyKey => "invalid_idempotency_key",
            Self::InvalidOrderId(_) => "invalid_order_id",
            Self::InvalidDealId(_) => "invalid_deal_id",
            Self::InvalidGroupSize { .. } => "invalid_group_size",
            Self::InvalidExpiry(_) => "invalid_expiry",
            Self::InvalidLimit { .. } => "invalid_limit",
            Self::TotalOverflow { .. } => "amount_too_large",
            Self::InvalidReportId(_) => "invalid_report_id",
            Self::InvalidReportRange(_) => "invalid_report_range",
            Self::InvalidReportFilter(_) => "invalid_report_filter",
        }
    }
}
