//! The order body ordermill accepts, as the reference servers parse it (the ceiling and the
//! synchronous baseline must pay the same parsing cost as ordermill for the comparison to hold).

use serde::{Deserialize, Serialize};

/// One item of an order.
#[derive(Debug, Deserialize, Serialize)]
pub(crate) struct Item {
    pub sku: String,
    pub quantity: u32,
}

/// `{"customer_id", "items": [...]}`.
#[derive(Debug, Deserialize)]
pub(crate) struct OrderRequest {
    pub customer_id: String,
    pub items: Vec<Item>,
}
