// ordermill dashboard: polls /admin/overview with the admin token and draws it. No framework,
// no build step: the file is compiled into the binary as it is. Every value from the server is
// put in the page as text (textContent), never as HTML: SKUs, customer ids and error messages
// come from people.
"use strict";

const TEXT = {
  en: {
    state_idle: "not connected", state_live: "live", state_error: "error", state_paused: "paused",
    refresh: "refresh", paused: "paused", forget_token: "forget token",
    login_help: "This page reads the admin API. Enter the admin token (admin_token, ORDERMILL_ADMIN_TOKEN); it is kept in this tab only.",
    connect: "Connect", orders: "Orders", accepted: "accepted", confirmed: "confirmed",
    cancelled: "cancelled", rejected: "rejected", shed: "shed",
    since_start: "totals since the nodes started", latency: "Latency", count: "count",
    accept_to_confirm: "accept → confirmed", intake: "intake (201)",
    latency_help: "Bucket bounds: \"≤ 5 ms\" means under 5 ms.", nodes: "Nodes",
    queues: "Queues", queue: "queue", ready: "ready", in_flight: "in flight", retrying: "retrying",
    dead: "dead", consumers: "Consumers", acked: "acked", retried: "retried",
    dead_lettered: "dead-lettered", dead_letters: "Dead letters", event: "event", order: "order",
    attempts: "attempts", error: "error", died_at: "died at", none: "none",
    open_deals: "Open deals", deal: "deal", price: "price", joined: "joined",
    slots_left: "slots left", closes_in: "closes in", recent_orders: "Recent orders",
    customer: "customer", items: "items", total: "total", status: "status", created: "created",
    no_orders: "no orders yet", replay: "Replay", purge: "Purge", cancel: "Cancel",
    replay_all: "Replay all", purge_all: "Purge all",
    updated: "updated", node_self: "this node", node_down: "no answer",
    bad_token: "The admin token was refused; enter it again.",
    admin_disabled: "The admin API is disabled on this node: set admin_token (ORDERMILL_ADMIN_TOKEN) and restart it.",
    unreachable: "The node does not answer; retrying.",
    confirm_purge: "Delete this dead letter for good? Its order stays as it is.",
    confirm_purge_all: "Delete every dead letter of this queue for good?",
    confirm_cancel: "Cancel this order? Its stock goes back on sale and the customer is notified.",
    replayed: "Replayed", purged: "Purged", order_cancelled: "Order cancelled",
    part_unavailable: "Not shown (could not be read):",
    reasons: "rejected by reason:",
    hot_stock: (r, f, l) => `Hot-stock counts rebuilt ${r}× since the nodes started · orders refused as fenced ${f} · late commits ${l} (docs/OPERATIONS.md, "Redis loses its data")`,
  },
  zh: {
    state_idle: "未连接", state_live: "实时", state_error: "错误", state_paused: "已暂停",
    refresh: "刷新", paused: "暂停", forget_token: "清除令牌",
    login_help: "此页面读取管理 API。请输入管理令牌（admin_token，ORDERMILL_ADMIN_TOKEN），它只保存在当前标签页中。",
    connect: "连接", orders: "订单", accepted: "已受理", confirmed: "已确认",
    cancelled: "已取消", rejected: "已拒绝", shed: "过载丢弃",
    since_start: "总数自节点启动起计", latency: "延迟", count: "次数",
    accept_to_confirm: "受理 → 确认", intake: "下单（201）",
    latency_help: "分桶上界：“≤ 5 ms”表示低于 5 毫秒。", nodes: "节点",
    queues: "队列", queue: "队列", ready: "待处理", in_flight: "处理中", retrying: "重试中",
    dead: "死信", consumers: "消费者", acked: "已确认", retried: "已重试",
    dead_lettered: "转入死信", dead_letters: "死信", event: "事件", order: "订单",
    attempts: "尝试次数", error: "错误", died_at: "进入死信时间", none: "无",
    open_deals: "进行中的拼团", deal: "拼团", price: "价格", joined: "已参团",
    slots_left: "剩余名额", closes_in: "剩余时间", recent_orders: "最近订单",
    customer: "顾客", items: "商品", total: "金额", status: "状态", created: "创建时间",
    no_orders: "暂无订单", replay: "重放", purge: "删除", cancel: "取消订单",
    replay_all: "全部重放", purge_all: "全部删除",
    updated: "更新于", node_self: "本节点", node_down: "无响应",
    bad_token: "管理令牌被拒绝，请重新输入。",
    admin_disabled: "此节点未启用管理 API：请设置 admin_token（ORDERMILL_ADMIN_TOKEN）并重启。",
    unreachable: "节点无响应，正在重试。",
    confirm_purge: "永久删除这条死信？其订单保持不变。",
    confirm_purge_all: "永久删除此队列的所有死信？",
    confirm_cancel: "取消此订单？库存将重新上架，并通知顾客。",
    replayed: "已重放", purged: "已删除", order_cancelled: "订单已取消",
    part_unavailable: "未显示（无法读取）：",
    reasons: "拒绝原因：",
    hot_stock: (r, f, l) => `热点库存计数自节点启动起重建 ${r} 次 · 因计数已重建而拒绝的订单 ${f} · 迟到的提交 ${l}（见 docs/OPERATIONS.md「Redis loses its data」）`,
  },
};

const STATUS_ZH = {
  accepted: "已受理", confirmed: "已确认", cancelled: "已取消",
  awaiting_payment: "待支付", awaiting_group: "待成团",
};

const TOKEN_KEY = "ordermill.admin_token";
const LANG_KEY = "ordermill.lang";
const SPARK_POINTS = 90;

let lang = localStorage.getItem(LANG_KEY)
  || ((navigator.languages || [navigator.language]).find((l) => /^(zh|en)/i.test(l)) || "en").slice(0, 2).toLowerCase();
let token = sessionStorage.getItem(TOKEN_KEY);
let previous = null;
let timer = null;
let last = null;
const series = { accepted: [], confirmed: [] };

const $ = (id) => document.getElementById(id);
const t = (key) => (TEXT[lang] && TEXT[lang][key]) || TEXT.en[key] || key;

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  $("lang").textContent = lang === "zh" ? "English" : "中文";
  setState($("state").dataset.state);
  if (last) draw(last);
}

const number = (n) => (n === null || n === undefined ? "–" : new Intl.NumberFormat(lang === "zh" ? "zh-CN" : "en-US", { maximumFractionDigits: 0 }).format(n));
const rate = (n) => (n < 10 ? n.toFixed(1) : number(n));

function bound(value) {
  if (value === null || value === undefined) return "–";
  if (value === "+Inf") return "> 2.5 s";
  return value >= 1 ? `≤ ${value} s` : `≤ ${+(value * 1000).toFixed(2)} ms`;
}

function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === undefined || text === null ? "–" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function button(label, action, attrs, danger) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.dataset.action = action;
  for (const [k, v] of Object.entries(attrs)) b.dataset[k] = v;
  if (danger) b.className = "danger";
  return b;
}

function fill(tableId, emptyId, rows, build) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren(...rows.map((r) => { const tr = document.createElement("tr"); build(tr, r); return tr; }));
  $(tableId).hidden = rows.length === 0;
  if (emptyId) $(emptyId).hidden = rows.length !== 0;
}

function setState(state, text) {
  $("state").dataset.state = state;
  $("state").textContent = text || t(`state_${state}`);
}

function toast(text) {
  const el = $("toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 5000);
}

function spark() {
  const all = [...series.accepted, ...series.confirmed];
  const max = Math.max(1, ...all);
  // The newest point on the right edge, older ones to its left.
  const step = 300 / (SPARK_POINTS - 1);
  const points = (values) => values.map((v, i) => `${300 - (values.length - 1 - i) * step},${60 - (v / max) * 56}`).join(" ");
  $("spark-accepted").setAttribute("points", points(series.accepted));
  $("spark-confirmed").setAttribute("points", points(series.confirmed));
}

function draw(o) {
  const totals = o.totals;
  for (const key of ["accepted", "confirmed", "cancelled", "rejected", "shed"]) {
    $(`total-${key}`).textContent = number(totals[key]);
    $(`rate-${key}`).textContent = o.rates ? rate(o.rates[key]) : "–";
  }
  const reasons = Object.entries(o.rejected_by_reason || {});
  $("reasons").textContent = reasons.length ? `${t("reasons")} ${reasons.map(([r, n]) => `${r} ${number(n)}`).join(" · ")}` : "";
  // Only an api node on shared Redis counts ever rebuilds them: the line stays away otherwise.
  const hot = o.hot_stock || { rebuilds: 0, fenced_orders: 0, late_commits: 0 };
  $("hot-stock").hidden = hot.rebuilds + hot.fenced_orders + hot.late_commits === 0;
  $("hot-stock").textContent = t("hot_stock")(number(hot.rebuilds), number(hot.fenced_orders), number(hot.late_commits));
  for (const [id, p] of [["confirm", o.latency.accept_to_confirm], ["intake", o.latency.intake]]) {
    for (const q of ["p50", "p90", "p99"]) $(`lat-${id}-${q}`).textContent = bound(p[q]);
    $(`lat-${id}-count`).textContent = number(p.count);
  }
  $("nodes").replaceChildren(...o.nodes.map((n) => {
    const li = document.createElement("li");
    li.textContent = `${n.ok ? "●" : "○"} ${n.node === "self" ? t("node_self") : n.node}${n.ok ? "" : ` — ${n.error || t("node_down")}`}`;
    li.className = n.ok ? "status-confirmed" : "status-cancelled";
    return li;
  }));
  fill("queues", null, o.queues, (tr, q) => {
    if (q.dead > 0) tr.className = "hot";
    cell(tr, q.queue);
    cell(tr, number(q.ready), "num");
    cell(tr, number(q.in_flight), "num");
    cell(tr, number(q.delayed), "num");
    cell(tr, number(q.dead), "num");
    tr.dataset.queue = q.queue;
  });
  fill("consumers", null, o.consumers, (tr, c) => {
    cell(tr, c.queue);
    cell(tr, number(c.ack), "num");
    cell(tr, number(c.retry), "num");
    cell(tr, number(c.dead), "num");
  });
  fill("dead-letters", "dlq-empty", o.dead_letters, (tr, d) => {
    tr.dataset.eventId = d.event_id;
    cell(tr, d.queue);
    cell(tr, d.event_id, "id");
    cell(tr, d.order_id, "id");
    cell(tr, d.attempts, "num");
    cell(tr, d.error, "wrap");
    cell(tr, when(d.died_at));
    const td = cell(tr, "");
    td.append(button(t("replay"), "replay", { queue: d.queue, eventId: d.event_id }), " ",
      button(t("purge"), "purge", { queue: d.queue, eventId: d.event_id }, true));
  });
  fill("deals", "deals-empty", o.deals, (tr, d) => {
    cell(tr, d.deal_id, "id");
    cell(tr, d.sku);
    cell(tr, d.deal_price, "num");
    cell(tr, `${number(d.member_count)} / ${number(d.group_size)}`, "num");
    cell(tr, number(d.slots_left), "num");
    cell(tr, d.time_left);
  });
  fill("recent", "recent-empty", o.recent_orders, (tr, r) => {
    tr.dataset.orderId = r.order_id;
    cell(tr, r.order_id, "id");
    cell(tr, r.customer_id);
    cell(tr, (r.items || []).map((l) => `${l.sku}×${l.quantity}`).join(", "), "wrap");
    cell(tr, r.total, "num");
    const status = lang === "zh" ? (STATUS_ZH[r.status] || r.status) : r.status.replace("_", " ");
    cell(tr, status, `status-${r.status}`).dataset.status = r.status;
    cell(tr, when(r.created_at));
    const td = cell(tr, "");
    if (r.status === "accepted" || r.status === "awaiting_payment") {
      td.append(button(t("cancel"), "cancel", { orderId: r.order_id }, true));
    }
  });
  const missing = o.unavailable || [];
  $("unavailable").hidden = missing.length === 0;
  $("unavailable").textContent = missing.length ? `${t("part_unavailable")} ${missing.map((m) => `${m.part}: ${m.error}`).join("; ")}` : "";
  $("updated").textContent = `${t("updated")} ${when(o.generated_at)}`;
}

async function api(method, path) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Accept-Language": lang === "zh" ? "zh-CN" : "en" },
    cache: "no-store",
  });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  return { status: response.status, body };
}

function showLogin(message) {
  $("board").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("login-error").textContent = message || "";
  setState("idle");
  $("token").focus();
}

async function poll() {
  clearTimeout(timer);
  if (!token) return showLogin();
  let reply;
  try {
    reply = await api("GET", "/admin/overview");
  } catch (_) {
    setState("error", t("unreachable"));
    return schedule();
  }
  if (reply.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    return showLogin(t("bad_token"));
  }
  if (reply.status === 404) return showLogin(t("admin_disabled"));
  if (reply.status !== 200 || !reply.body) {
    setState("error", reply.body && reply.body.error ? reply.body.error.message : `HTTP ${reply.status}`);
    return schedule();
  }
  const o = reply.body;
  const now = Date.parse(o.generated_at);
  if (previous && now > previous.at) {
    const seconds = (now - previous.at) / 1000;
    o.rates = {};
    for (const key of ["accepted", "confirmed", "cancelled", "rejected", "shed"]) {
      o.rates[key] = Math.max(0, (o.totals[key] - previous.totals[key]) / seconds);
    }
    for (const key of ["accepted", "confirmed"]) {
      series[key].push(o.rates[key]);
      if (series[key].length > SPARK_POINTS) series[key].shift();
    }
    spark();
  } else if (last && last.rates) {
    o.rates = last.rates;
  }
  previous = { at: now, totals: o.totals };
  last = o;
  $("login").hidden = true;
  $("board").hidden = false;
  $("logout").hidden = false;
  draw(o);
  setState(Number($("every").value) > 0 ? "live" : "paused");
  schedule();
}

function schedule() {
  const every = Number($("every").value);
  if (every > 0) timer = setTimeout(poll, every);
}

async function act(target) {
  const { action, queue, eventId, orderId } = target.dataset;
  let method, path, confirmKey, done;
  if (action === "replay") {
    method = "POST"; path = `/admin/dlq/${encodeURIComponent(queue)}/replay?event_id=${encodeURIComponent(eventId)}`; done = t("replayed");
  } else if (action === "purge") {
    method = "DELETE"; path = `/admin/dlq/${encodeURIComponent(queue)}?event_id=${encodeURIComponent(eventId)}`; confirmKey = "confirm_purge"; done = t("purged");
  } else if (action === "cancel") {
    method = "POST"; path = `/admin/orders/${encodeURIComponent(orderId)}/cancel`; confirmKey = "confirm_cancel"; done = t("order_cancelled");
  } else {
    return;
  }
  if (confirmKey && !window.confirm(t(confirmKey))) return;
  target.disabled = true;
  try {
    const reply = await api(method, path);
    if (reply.status >= 200 && reply.status < 300) {
      toast(`${done}: ${eventId || orderId}`);
    } else {
      toast(reply.body && reply.body.error ? reply.body.error.message : `HTTP ${reply.status}`);
    }
  } catch (_) {
    toast(t("unreachable"));
  }
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  // A token passed as #token=... (handy for a bookmark or a test) is taken into this tab and
  // removed from the address bar; a fragment is never sent to a server, so it is in no log.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("token")) {
    token = fragment.get("token");
    sessionStorage.setItem(TOKEN_KEY, token);
    window.history.replaceState(null, "", location.pathname + location.search);
  }
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    token = $("token").value.trim();
    $("token").value = "";
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    poll();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    token = null;
    showLogin();
  });
  $("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem(LANG_KEY, lang);
    applyLanguage();
  });
  $("every").addEventListener("change", poll);
  $("board").addEventListener("click", (event) => {
    const target = event.target.closest("button[data-action]");
    if (target) act(target);
  });
  applyLanguage();
  poll();
});
