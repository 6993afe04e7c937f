//! Error messages in the client's language. Codes are the contract and never change; the
//! message is for people: English by default, Simplified Chinese when `Accept-Language` prefers
//! `zh` (any `zh-*` tag: Traditional-script clients get Simplified, the only translation
//! there is). A Chinese answer keeps the English message, with its specifics (which SKU, which
//! limit), as `detail`.
//!
//! [`CATALOGUE`] is the one table: every error code with its Chinese message. The tests check
//! that no code the API answers lacks one, and that the README's API table and the catalogue
//! name the same codes.

use axum::extract::Request;
use axum::http::header::ACCEPT_LANGUAGE;
use axum::middleware::Next;
use axum::response::Response;

/// A language errors are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English (the default).
    En,
    /// Simplified Chinese.
    Zh,
}

tokio::task_local! {
    /// The language of the request being answered (set by [`negotiate`]).
    static LANG: Lang;
}

/// Every error code and its message in Simplified Chinese.
pub const CATALOGUE: &[(&str, &str)] = &[
    ("admin_disabled", "管理接口未启用：请设置 admin_token（ORDERMILL_ADMIN_TOKEN）后再试。"),
    ("already_joined", "您已参加此团购，每位顾客只能参团一次。"),
    ("amount_mismatch", "回调金额与订单总额不一致，未作处理。"),
    ("amount_too_large", "金额超出上限（999999999.99），请减少数量或拆分订单。"),
    (
        "bad_signature",
        "签名缺失或与请求体不符：请用 payment.callback_secret 对 \"<t>.<原始请求体>\" 做 HMAC-SHA256 签名。",
    ),
    ("bus_unavailable", "消息队列暂时不可用，请稍后重试。"),
    ("cache_unavailable", "库存缓存暂时不可用，未作任何修改，请稍后重试。"),
    ("customer_mismatch", "请求中的 customer_id 与您的登录身份不符。"),
    ("customer_required", "此操作必须以顾客身份进行，管理令牌不能代替顾客下单。"),
    ("dead_letter_not_found", "该队列中没有此事件的死信。"),
    ("deal_expired", "此团购已过期，无法再参团。"),
    ("deal_full", "此团购已满员。"),
    ("deal_not_found", "找不到此团购。"),
    ("duplicate_sku", "同一商品（SKU）在订单中出现了多次，请合并为一行。"),
    ("idempotency_key_in_use", "使用相同幂等键（Idempotency-Key）的请求仍在处理中，请稍后重试。"),
    ("idempotency_key_reused", "此幂等键已用于内容不同的请求，请为新请求使用新的键。"),
    ("internal_error", "服务器内部错误，已记录日志。"),
    ("invalid_amount", "金额格式无效：请使用最多两位小数的十进制字符串，例如 \"39.98\"。"),
    ("invalid_customer_id", "顾客编号无效：需为 1 到 64 个可打印字符。"),
    ("invalid_deal_id", "团购编号无效。"),
    ("invalid_expiry", "截止时间无效：需在 1 秒到 30 天之后。"),
    ("invalid_group_size", "成团人数无效：需在 2 到 1000 之间。"),
    ("invalid_idempotency_key", "幂等键无效：需为 1 到 255 个可打印 ASCII 字符。"),
    ("invalid_limit", "每人限购数量无效：需为正整数。"),
    ("invalid_name", "商品名称无效：不能为空，且不超过 200 个字符。"),
    ("invalid_order_id", "订单编号无效。"),
    ("invalid_payment_id", "支付编号无效：需为 1 到 255 个字符，且不含控制字符。"),
    ("invalid_price", "价格无效：请使用最多两位小数的十进制字符串，例如 \"19.99\"。"),
    ("invalid_quantity", "数量无效：需在 1 到 10000 之间。"),
    ("invalid_query", "查询参数无效。"),
    ("invalid_queue", "队列名称无效。"),
    ("invalid_reason", "取消原因无效：需为 1 到 200 个字符，且不含控制字符。"),
    ("invalid_report_filter", "报表筛选条件无效。"),
    ("invalid_report_format", "报表格式无效，可选 csv 或 xlsx。"),
    ("invalid_report_id", "报表编号无效。"),
    ("invalid_report_kind", "报表类型无效，可选 sales_by_sku、orders、deals、payments。"),
    ("invalid_report_range", "报表时间范围无效：起始时间须早于结束时间，且跨度不超过 400 天。"),
    ("invalid_request", "请求体的 JSON 结构不符合要求。"),
    ("invalid_sku", "商品编号（SKU）无效：需为 1 到 64 个字母、数字或 . _ : - 字符。"),
    ("invalid_status", "状态无效：只能是 \"paid\" 或 \"failed\"。"),
    ("invalid_stock", "库存数量无效：需为非负整数。"),
    ("limit_exceeded", "超出每人限购数量。"),
    ("malformed_json", "请求体不是有效的 JSON。"),
    ("method_not_allowed", "此接口不支持该请求方法。"),
    ("no_items", "订单中没有商品。"),
    ("no_orders", "批量请求中没有订单。"),
    ("not_found", "没有此接口，请参阅 README 中的接口说明。"),
    ("not_ready", "尚未就绪：节点未就绪，或报表尚未生成完毕，请稍后重试。"),
    ("order_confirmed", "订单已确认并已扣款，不能取消；请通过支付服务商退款。"),
    ("order_in_deal", "订单属于尚未成团的团购，由团购决定其去留（过期即取消）。"),
    ("order_not_found", "找不到此订单。"),
    ("order_paid", "订单已付款，正在确认中，不能取消。"),
    ("out_of_stock", "库存不足，商品已售罄。"),
    ("overloaded", "服务繁忙，订单未被处理（未写入、未占库存），请稍后重试。"),
    ("payload_too_large", "请求体过大：请减少商品数量，或使用批量接口 /api/orders/batch。"),
    ("product_not_found", "找不到此商品。"),
    ("rate_limited", "请求过于频繁，请按 Retry-After 的时间稍后再试。"),
    ("report_not_found", "找不到此报表（可能已过期删除）。"),
    ("shutting_down", "服务正在停止，请稍后重试。"),
    (
        "stale_signature",
        "签名时间与服务器时间相差超过 5 分钟：请用当前时间签名，并检查发送方的时钟。",
    ),
    (
        "starting",
        "节点正在启动，正在等待其依赖的服务（数据库、消息队列或缓存）可用，请稍后重试或改用其他节点。",
    ),
    ("stock_below_held", "新库存低于已接受订单占用的数量，未作修改。"),
    ("store_unavailable", "数据存储暂时不可用，未作任何修改，请稍后重试。"),
    ("timeout", "请求处理超时，请稍后重试。"),
    ("too_many_items", "订单中的商品过多：最多 100 行。"),
    ("too_many_orders", "批量请求中的订单过多：最多 1000 个。"),
    ("unauthorized", "缺少凭证或凭证无效：请在 Authorization 头中发送有效的 Bearer 令牌。"),
    ("unavailable", "库存计数正在重建，请稍后重试。"),
    ("unknown_queue", "拓扑中没有此队列。"),
    ("unknown_sku", "目录中没有此商品（SKU）。"),
    ("unreadable_body", "无法读取请求体。"),
];

/// The Chinese message of `code`, if the catalogue has one.
pub fn zh(code: &str) -> Option<&'static str> {
    CATALOGUE.iter().find(|(c, _)| *c == code).map(|(_, m)| *m)
}

/// The language `Accept-Language` prefers: Chinese when the highest-weighted tag is `zh` or
/// `zh-*`, English otherwise (and when the header is absent or unreadable).
pub fn preferred(accept_language: Option<&str>) -> Lang {
    let Some(header) = accept_language else { return Lang::En };
    match accept_language::parse(header).first() {
        Some(tag)
            if tag.eq_ignore_ascii_case("zh") || tag.to_ascii_lowercase().starts_with("zh-") =>
        {
            Lang::Zh
        }
        _ => Lang::En,
    }
}

/// The language of the request being answered; English outside a request.
pub fn current() -> Lang {
    LANG.try_with(|lang| *lang).unwrap_or(Lang::En)
}

/// Middleware: answers the request in the language it prefers (see [`preferred`]).
pub async fn negotiate(request: Request, next: Next) -> Response {
    let lang = preferred(request.headers().get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()));
    if lang == Lang::En {
        return next.run(request).await;
    }
    LANG.scope(lang, next.run(request)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_is_chosen_only_when_it_is_preferred() {
        for zh in ["zh-CN", "zh", "zh-CN,zh;q=0.9,en;q=0.8", "en;q=0.5, zh-TW;q=0.9", "ZH-cn"] {
            assert_eq!(preferred(Some(zh)), Lang::Zh, "{zh}");
        }
        for en in ["en", "en-US,en;q=0.9,zh-CN;q=0.8", "fr", "", "*", "zhx"] {
            assert_eq!(preferred(Some(en)), Lang::En, "{en}");
        }
        assert_eq!(preferred(None), Lang::En);
    }

    #[test]
    fn the_catalogue_has_each_code_once() {
        let mut codes: Vec<&str> = CATALOGUE.iter().map(|(c, _)| *c).collect();
        codes.sort_unstable();
        let before = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), before, "a code is listed twice");
        assert!(CATALOGUE.iter().all(|(_, m)| !m.is_empty()));
    }

    /// The codes in the README's API table (backquoted snake_case words of its error column).
    fn documented_codes() -> Vec<String> {
        let readme = include_str!("../../../../../README.md");
        let start = readme.find("| endpoint | success | errors |").expect("the README's API table");
        let table = readme[start..].lines().take_while(|l| l.starts_with('|')).skip(2);
        let mut codes = Vec::new();
        for row in table {
            let errors = row.rsplit(" | ").next().unwrap_or("");
            for quoted in errors.split('`').skip(1).step_by(2) {
                // Fields and settings the column mentions, not codes.
                let named = ["customer_id", "max_backlog"].contains(&quoted);
                let is_code = !named
                    && quoted.contains('_')
                    && quoted.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                if is_code {
                    codes.push(quoted.to_owned());
                }
            }
        }
        codes.sort_unstable();
        codes.dedup();
        codes
    }

    #[test]
    fn every_documented_code_has_a_chinese_message() {
        let documented = documented_codes();
        assert!(documented.len() > 40, "the README table was not read: {documented:?}");
        let missing: Vec<&String> = documented.iter().filter(|c| zh(c).is_none()).collect();
        assert!(missing.is_empty(), "documented codes without a translation: {missing:?}");
    }

    #[test]
    fn the_domain_errors_codes_all_have_a_chinese_message() {
        use ordermill_core::{JoinRefusal, ValidationError};
        let validation = [
            ValidationError::NoItems,
            ValidationError::InvalidCustomerId,
            ValidationError::InvalidProductName,
            ValidationError::InvalidIdempotencyKey,
            ValidationError::InvalidSku(String::new()),
            ValidationError::DuplicateSku(String::new()),
            ValidationError::InvalidOrderId(String::new()),
            ValidationError::InvalidDealId(String::new()),
            ValidationError::InvalidExpiry(String::new()),
        ];
        let codes = validation.iter().map(ValidationError::code).chain(
            [JoinRefusal::AlreadyJoined, JoinRefusal::Full, JoinRefusal::Expired]
                .map(JoinRefusal::code),
        );
        for code in codes {
            assert!(zh(code).is_some(), "{code} has no Chinese message");
        }
    }

    proptest::proptest! {
        // Every request carries one, from anyone: any value picks a language, never a panic,
        // and a lone `zh-*` tag picks Chinese.
        #[test]
        fn any_accept_language_picks_a_language(header in "[ -~]{0,120}", region in "[A-Za-z]{2}") {
            let _ = preferred(Some(&header));
            proptest::prop_assert_eq!(preferred(Some(&format!("zh-{region}"))), Lang::Zh);
        }
    }
}
