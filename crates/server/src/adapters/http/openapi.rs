//! The OpenAPI 3.1 document, served at `/openapi.json` and committed as docs/openapi.json, with
//! a human-readable reference at `/docs` (Swagger UI from the `swagger-ui-dist` crate: its
//! files are in the binary, nothing is fetched at build or run time).
//!
//! Operations come from the `#[utoipa::path]` annotation on each handler; the schemas below
//! describe the JSON the handlers read and write. The handlers parse bodies by hand (each
//! field gets its own error code), so the request schemas are descriptions, kept honest by the
//! tests: the JSON of real views has exactly their schema's properties, every operation is
//! routed, and the committed document is the generated one.

use axum::Router;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

/// An error answer: every 4xx and 5xx.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// The `error` object.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (README, "The API").
    #[schema(example = "out_of_stock")]
    code: String,
    /// For people: Simplified Chinese when `Accept-Language` prefers `zh`, English otherwise.
    message: String,
    /// With a Chinese message: the English one, with its specifics.
    #[schema(nullable = false)]
    detail: Option<String>,
}

/// A string schema with a pattern or a format, and an example.
fn string_schema(
    description: &str,
    pattern: Option<&str>,
    format: Option<KnownFormat>,
    example: &str,
) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(pattern)
        .format(format.map(SchemaFormat::KnownFormat))
        .examples([serde_json::Value::from(example)])
        .into()
}

/// Declares a string type's schema: a pattern, lengths in characters, an example.
macro_rules! text_schema {
    ($(#[$doc:meta])* $name:ident, $description:literal, $pattern:literal, $min:literal, $max:literal, $example:literal) => {
        $(#[$doc])*
        #[derive(Serialize)]
        pub struct $name(String);

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some($description))
                    .pattern(Some($pattern))
                    .min_length(Some($min))
                    .max_length(Some($max))
                    .examples([serde_json::Value::from($example)])
                    .into()
            }
        }

        impl ToSchema for $name {}
    };
}

text_schema!(
    /// A SKU.
    Sku,
    "1 to 64 characters of A-Z a-z 0-9 . _ : -",
    r"^[A-Za-z0-9._:-]{1,64}$",
    1,
    64,
    "sku-1"
);
text_schema!(
    /// A customer id.
    CustomerId,
    "1 to 64 characters, not all blank, no control characters",
    r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
    1,
    64,
    "c-1"
);
text_schema!(
    /// A product name.
    ProductName,
    "1 to 200 characters, not all blank, no control characters",
    r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$",
    1,
    200,
    "Hairy crab gift box"
);
text_schema!(
    /// A payment provider's id of a payment.
    PaymentId,
    "1 to 255 characters, no control characters",
    r"^[^\x00-\x1f\x7f-\x9f]{1,255}$",
    1,
    255,
    "pay-0001"
);
text_schema!(
    /// Why an operator cancels.
    Reason,
    "1 to 200 characters, no control characters",
    r"^[^\x00-\x1f\x7f-\x9f]{1,200}$",
    1,
    200,
    "payment dead-lettered"
);
text_schema!(
    /// An `Idempotency-Key`.
    IdempotencyKey,
    "1 to 255 printable ASCII characters",
    r"^[\x20-\x7e]{1,255}$",
    1,
    255,
    "order-0001"
);

text_schema!(
    /// An order, deal or event id: a UUID (v7, time-ordered, when ordermill made it).
    Id,
    "A UUID, hyphenated",
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    36,
    36,
    "01a23102-21e1-7497-90f7-8f134a524198"
);

/// A decimal amount with at most two decimals, at most 999999999.99.
#[derive(Serialize)]
pub struct Amount(String);

impl PartialSchema for Amount {
    fn schema() -> RefOr<Schema> {
        string_schema(
            "A decimal amount, at most two decimals, at most 999999999.99 (never a float).",
            Some(r"^[0-9]{1,9}(\.[0-9]{1,2})?$"),
            None,
            "19.99",
        )
    }
}

impl ToSchema for Amount {}

/// An instant, RFC 3339 with milliseconds (UTC).
#[derive(Serialize)]
pub struct Instant(String);

impl PartialSchema for Instant {
    fn schema() -> RefOr<Schema> {
        string_schema(
            "An instant, RFC 3339 with milliseconds (UTC).",
            None,
            Some(KnownFormat::DateTime),
            "2026-12-01T09:49:13.057Z",
        )
    }
}

impl ToSchema for Instant {}

/// A latency percentile's bound: seconds, `"+Inf"` beyond the last bucket, `null` before
/// any observation.
pub struct Bound;

impl PartialSchema for Bound {
    fn schema() -> RefOr<Schema> {
        utoipa::openapi::schema::OneOfBuilder::new()
            .description(Some(
                "Seconds (a histogram bucket's upper bound); \"+Inf\" beyond the last bucket (2.5 s); null before any observation.",
            ))
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["+Inf"])))
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .into()
    }
}

impl ToSchema for Bound {}

/// A product to create or replace.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"name": "Hairy crab gift box", "price": "19.99", "stock": 1000, "per_customer_limit": 2}))]
pub struct ProductInput {
    name: ProductName,
    price: Amount,
    /// Units on hand, 0 or more.
    #[schema(minimum = 0)]
    stock: i64,
    /// Most units one customer may hold; `null` removes the limit, absent keeps it.
    #[schema(minimum = 1, nullable = true)]
    per_customer_limit: Option<u32>,
}

/// A product.
#[derive(Serialize, ToSchema)]
pub struct Product {
    #[schema(example = "sku-1")]
    sku: String,
    name: String,
    price: Amount,
    /// Units on hand (stock of record), including units held by accepted orders.
    stock: i64,
    /// Units that can still be sold.
    stock_available: i64,
    #[schema(nullable = true)]
    per_customer_limit: Option<u32>,
}

/// Every product.
#[derive(Serialize, ToSchema)]
pub struct ProductList {
    products: Vec<Product>,
}

/// One line of a new order.
#[derive(Serialize, ToSchema)]
pub struct ItemInput {
    sku: Sku,
    #[schema(minimum = 1, maximum = 10000)]
    quantity: u32,
}

/// A new order; the price comes from the catalog.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"customer_id": "c-1", "items": [{"sku": "sku-1", "quantity": 2}]}))]
pub struct OrderInput {
    /// Optional for a verified customer (then it must be theirs).
    #[schema(nullable = false)]
    customer_id: Option<CustomerId>,
    /// 1 to 100 lines, no SKU twice.
    #[schema(min_items = 1, max_items = 100)]
    items: Vec<ItemInput>,
}

/// A new order in a batch, with its own idempotency key. Each order's fields are checked on
/// their own and a bad one is reported in that order's result, so they take any value here.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchOrderInput {
    /// Any value: a bad one is this order's 422.
    customer_id: Option<serde_json::Value>,
    /// Lines like those of a single order (`{"sku", "quantity"}` objects); a bad one is this
    /// order's 422.
    #[schema(nullable = true)]
    items: Option<Vec<BatchItemInput>>,
    #[schema(nullable = true)]
    idempotency_key: Option<String>,
}

/// A line of a batch order: checked per order, like the order's other fields.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItemInput {
    /// Any value: a bad one is this order's 422.
    sku: Option<serde_json::Value>,
    /// Any value: a bad one is this order's 422.
    quantity: Option<serde_json::Value>,
}

/// Up to 1000 orders.
#[derive(Serialize, ToSchema)]
pub struct BatchInput {
    #[schema(min_items = 1, max_items = 1000)]
    orders: Vec<BatchOrderInput>,
}

/// Where an order is in its life.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    AwaitingGroup,
    Accepted,
    AwaitingPayment,
    Confirmed,
    Cancelled,
}

/// A priced line.
#[derive(Serialize, ToSchema)]
pub struct OrderLine {
    sku: String,
    quantity: u32,
    unit_price: Amount,
    line_total: Amount,
}

/// A status the order reached, or (`note`) something that happened to it.
#[derive(Serialize, ToSchema)]
pub struct HistoryEntry {
    status: OrderStatus,
    at: Instant,
    /// `refund_required`: money arrived after the order was cancelled.
    #[schema(nullable = false)]
    note: Option<String>,
}

/// An order.
#[derive(Serialize, ToSchema)]
pub struct Order {
    #[schema(example = "01a23102-21e1-7497-90f7-8f134a524198")]
    order_id: String,
    status: OrderStatus,
    customer_id: String,
    total: Amount,
    items: Vec<OrderLine>,
    created_at: Instant,
    history: Vec<HistoryEntry>,
    /// Pay later: the deadline to pay by.
    #[schema(nullable = false)]
    pay_by: Option<Instant>,
    /// Pay later: where the customer pays.
    #[schema(nullable = false)]
    payment_url: Option<String>,
}

/// A deal member's order, as the join answered it.
#[derive(Serialize, ToSchema)]
pub struct JoinedOrder {
    deal_id: String,
    #[serde(flatten)]
    order: Order,
}

/// A page of orders, newest first.
#[derive(Serialize, ToSchema)]
pub struct OrderPage {
    orders: Vec<Order>,
    /// The next (older) page's URL; absent on the last page.
    #[schema(nullable = false)]
    next: Option<String>,
}

/// One order's outcome in a batch.
#[derive(Serialize, ToSchema)]
pub struct BatchResult {
    /// What a single request would have answered (201, 409, 422, ...).
    status: u16,
    #[schema(nullable = false)]
    order: Option<Order>,
    /// An idempotent replay of an earlier order.
    #[schema(nullable = false)]
    replayed: Option<bool>,
    #[schema(nullable = false)]
    error: Option<ErrorDetail>,
}

/// A batch's outcome, one result per order in order.
#[derive(Serialize, ToSchema)]
pub struct BatchReply {
    accepted: usize,
    rejected: usize,
    results: Vec<BatchResult>,
}

/// A group-buy deal to open: `expires_in` (`"15m"`) or `expires_at`, 1 s to 30 days ahead.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"sku": "crab", "deal_price": "9.90", "group_size": 3, "expires_in": "15m"}))]
pub struct DealInput {
    sku: Sku,
    deal_price: Amount,
    #[schema(minimum = 2, maximum = 1000)]
    group_size: u32,
    #[schema(nullable = false)]
    expires_in: Option<String>,
    #[schema(nullable = false)]
    expires_at: Option<Instant>,
}

/// A deal's member (the admin token sees them).
#[derive(Serialize, ToSchema)]
pub struct DealMember {
    customer_id: String,
    order_id: String,
    joined_at: Instant,
}

/// A deal.
#[derive(Serialize, ToSchema)]
pub struct Deal {
    deal_id: String,
    sku: String,
    deal_price: Amount,
    group_size: u32,
    /// `open`, `completed` or `expired`.
    status: String,
    member_count: usize,
    /// Whether the verified caller joined.
    #[schema(nullable = false)]
    joined: Option<bool>,
    #[schema(nullable = false)]
    members: Option<Vec<DealMember>>,
    slots_left: u32,
    created_at: Instant,
    expires_at: Instant,
    time_left_ms: i64,
    #[schema(example = "14m 59s")]
    time_left: String,
}

/// Joining a deal.
#[derive(Serialize, ToSchema)]
pub struct JoinInput {
    #[schema(nullable = false)]
    customer_id: Option<CustomerId>,
}

/// What the payment provider says about a pay-later order.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"order_id": "01a23102-21e1-7497-90f7-8f134a524198", "payment_id": "pay-0001", "status": "paid", "amount": "39.98"}))]
pub struct PaymentCallback {
    order_id: Id,
    payment_id: PaymentId,
    status: CallbackStatus,
    amount: Amount,
}

/// What happened to the payment.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    Paid,
    Failed,
}

/// What a callback did.
#[derive(Serialize, ToSchema)]
pub struct CallbackReply {
    order_id: String,
    status: OrderStatus,
    /// `paid`, `failed`, `refund_required`, `repeat` or `ignored`.
    outcome: String,
}

/// Why an operator cancels.
#[derive(Serialize, ToSchema)]
pub struct CancelInput {
    /// Absent or null: "cancelled by an operator".
    reason: Option<Reason>,
}

/// What a cancellation did.
#[derive(Serialize, ToSchema)]
pub struct CancelReply {
    /// `cancelled` or `already_cancelled`.
    outcome: String,
    order: Order,
}

/// `{"status": "ok"}`; `"starting"` while the node waits for its engines at start.
#[derive(Serialize, ToSchema)]
pub struct Health {
    status: String,
}

/// What the node checked.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    status: String,
    store: String,
    stock: String,
    /// `ok`, `reconnecting`, or `embedded`.
    broker: String,
}

/// A queue's counts.
#[derive(Serialize, ToSchema)]
pub struct QueueDepth {
    queue: String,
    ready: u64,
    delayed: u64,
    in_flight: u64,
    dead: u64,
}

/// Every queue's counts.
#[derive(Serialize, ToSchema)]
pub struct Queues {
    queues: Vec<QueueDepth>,
}

/// A dead letter.
#[derive(Serialize, ToSchema)]
pub struct DeadLetter {
    event_id: String,
    #[schema(nullable = true)]
    order_id: Option<String>,
    routing_key: String,
    attempts: u32,
    error: String,
    died_at: Instant,
    /// The event's JSON body.
    payload: serde_json::Value,
}

/// A page of a queue's dead letters, oldest first.
#[derive(Serialize, ToSchema)]
pub struct DeadLetterPage {
    queue: String,
    count: usize,
    total: u64,
    offset: usize,
    limit: usize,
    #[schema(nullable = true)]
    next: Option<String>,
    dead_letters: Vec<DeadLetter>,
}

/// How many dead letters were replayed.
#[derive(Serialize, ToSchema)]
pub struct Replayed {
    queue: String,
    replayed: usize,
}

/// How many dead letters were purged.
#[derive(Serialize, ToSchema)]
pub struct Purged {
    queue: String,
    purged: usize,
}

/// Asking for a report.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"kind": "sales_by_sku", "from": "2026-11-01T00:00:00Z", "to": "2026-12-01T00:00:00Z", "format": "xlsx"}))]
pub struct ReportInput {
    /// `sales_by_sku` (confirmed orders' lines per SKU), `orders`, `deals`, `payments`.
    #[schema(example = "orders")]
    kind: String,
    /// Created at or after: RFC 3339, or milliseconds since 1970.
    from: serde_json::Value,
    /// Created before; at most 400 days after `from`.
    to: serde_json::Value,
    /// `csv` or `xlsx`; absent or null: `csv`.
    format: Option<String>,
    #[schema(nullable = true)]
    filters: Option<ReportFilters>,
}

/// What a report is narrowed to.
#[derive(Serialize, ToSchema)]
pub struct ReportFilters {
    /// `orders`, `payments`: one order status.
    #[schema(nullable = true)]
    status: Option<String>,
    /// Only orders (or deals) of this SKU (`sales_by_sku`: only its line).
    #[schema(nullable = true)]
    sku: Option<Sku>,
}

/// A report's status and progress.
#[derive(Serialize, ToSchema)]
pub struct ReportStatusView {
    report_id: Id,
    kind: String,
    format: String,
    from: Instant,
    to: Instant,
    filters: ReportFiltersView,
    /// `queued`, `running`, `done` or `failed`.
    status: String,
    rows_done: u64,
    /// Counted when the run starts.
    #[schema(nullable = true)]
    rows_estimated: Option<u64>,
    /// 0 to 100 (100 only once done).
    percent: u8,
    /// Why it failed.
    #[schema(nullable = false)]
    error: Option<String>,
    created_at: Instant,
    #[schema(nullable = true)]
    finished_at: Option<Instant>,
    /// When the file is removed.
    #[schema(nullable = true)]
    expires_at: Option<Instant>,
    #[schema(nullable = true)]
    size_bytes: Option<u64>,
    status_url: String,
    /// Once done.
    #[schema(nullable = false)]
    download_url: Option<String>,
}

/// The filters a report was asked with.
#[derive(Serialize, ToSchema)]
pub struct ReportFiltersView {
    #[schema(nullable = false)]
    status: Option<String>,
    #[schema(nullable = false)]
    sku: Option<String>,
}

/// The credentials (README, "Who may do what").
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |what: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(what)).build(),
            )
        };
        components.add_security_scheme(
            "merchant_token",
            bearer("A merchant token (auth.merchant_tokens): catalog writes and deals."),
        );
        components.add_security_scheme(
            "admin_token",
            bearer("The admin token (admin_token): /admin/*, and reading any order."),
        );
        components.add_security_scheme(
            "customer_jwt",
            bearer("A customer's JWT (auth.customers = \"jwt\"): the customer is its `sub`."),
        );
        components.add_security_scheme(
            "payment_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Ordermill-Signature",
                "t=<unix seconds>,v1=<hex HMAC-SHA256(payment.callback_secret, \"<t>.<raw body>\")>",
            ))),
        );
    }
}

/// A node still waiting for its engines at start answers every operation but the probes 503
/// `starting` (`starting.rs`): said on each, beside the 503s the operation gives itself.
struct WhileStarting;

impl Modify for WhileStarting {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in &mut openapi.paths.paths {
            if ["/healthz", "/readyz", "/metrics"].contains(&path.as_str()) {
                continue;
            }
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                match responses.get_mut("503") {
                    Some(RefOr::T(response)) => response.description.push_str(", starting"),
                    Some(RefOr::Ref(_)) => {}
                    None => {
                        let body = ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build();
                        let response = ResponseBuilder::new()
                            .description("starting")
                            .content("application/json", body)
                            .build();
                        responses.insert("503".to_owned(), RefOr::T(response));
                    }
                }
            }
        }
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ordermill",
        description = "Asynchronous order processing: orders are answered 201 once durable; inventory, payment and notification follow through a message queue. Error codes are stable; messages follow Accept-Language (zh or en).",
        license(name = "see the repository")
    ),
    paths(
        super::products::list,
        super::products::show,
        super::products::put,
        super::orders::create,
        super::orders::create_batch,
        super::orders::show,
        super::orders::mine,
        super::deals::open,
        super::deals::show,
        super::deals::join,
        super::payments::callback,
        super::admin::queues,
        super::admin::list,
        super::admin::replay,
        super::admin::purge,
        super::admin_orders::list,
        super::admin_orders::cancel,
        super::dashboard::overview,
        super::reports::create,
        super::reports::show,
        super::reports::download,
        super::health::healthz,
        super::health::readyz,
        super::metrics::render,
    ),
    components(schemas(IdempotencyKey)),
    modifiers(&Credentials, &WhileStarting),
    tags(
        (name = "catalog", description = "Products: public reads, merchant writes."),
        (name = "orders", description = "Placing and reading orders."),
        (name = "deals", description = "Group buying (团购)."),
        (name = "payments", description = "Pay later: the provider's callback."),
        (name = "reports", description = "Reports (报表): asked for, run off the request path, downloaded."),
        (name = "admin", description = "Operations, with the admin token."),
        (name = "health", description = "Probes and metrics."),
    )
)]
pub struct ApiDoc;

/// The document as served and committed (pretty JSON, ending with a newline).
pub fn document() -> String {
    let mut text = ApiDoc::openapi().to_pretty_json().unwrap_or_else(|error| {
        // Serializing the derived document cannot fail; a failure would be a utoipa bug.
        format!("{{\"error\": \"the OpenAPI document could not be built: {error}\"}}")
    });
    text.push('\n');
    text
}

/// `/openapi.json` and `/docs`.
pub fn router() -> Router {
    let document = document();
    let spec = get(move || {
        let document = document.clone();
        async move {
            ([(axum::http::header::CONTENT_TYPE, "application/json")], document).into_response()
        }
    });
    Router::new().route("/openapi.json", spec).merge(swagger_ui_dist::generate_routes(
        swagger_ui_dist::ApiDefinition {
            uri_prefix: "/docs",
            api_definition: swagger_ui_dist::OpenApiSource::Uri("/openapi.json"),
            title: Some("ordermill API"),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed document: regenerate it with
    /// `ORDERMILL_UPDATE_OPENAPI=1 cargo test -p ordermill-server openapi`.
    const COMMITTED: &str = include_str!("../../../../../docs/openapi.json");

    #[test]
    fn the_committed_document_is_the_generated_one() {
        let generated = document();
        if std::env::var_os("ORDERMILL_UPDATE_OPENAPI").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
            std::fs::write(path, &generated).expect("docs/openapi.json is writable");
            return;
        }
        assert!(
            generated == COMMITTED,
            "docs/openapi.json is not what the handlers generate: run \
             ORDERMILL_UPDATE_OPENAPI=1 cargo test -p ordermill-server openapi, and commit it"
        );
    }

    #[test]
    fn it_is_openapi_3_1_with_every_operation_tagged_and_answering_errors_as_error_bodies() {
        let doc: serde_json::Value = serde_json::from_str(&document()).expect("JSON");
        assert!(
            doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")),
            "{}",
            doc["openapi"]
        );
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.len() >= 17, "{:?}", paths.keys());
        for (path, operations) in paths {
            for (method, operation) in operations.as_object().expect("operations") {
                assert!(operation["tags"].is_array(), "{method} {path} has no tag");
                for (status, response) in operation["responses"].as_object().expect("responses") {
                    if status.starts_with('4') || status.starts_with('5') {
                        let body = &response["content"]["application/json"]["schema"]["$ref"];
                        assert_eq!(
                            body, "#/components/schemas/ErrorBody",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
}
