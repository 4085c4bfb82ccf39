//! The simulated morning: requests minute by minute from 06:00 to 11:00 UTC on
//! 2026-01-15, logs from 09:00. Everything comes from one seeded generator, walked
//! in a fixed order, so a seed always gives the same bytes.

use chrono::{DateTime, SecondsFormat};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

/// 2026-01-15T00:00:00Z in milliseconds.
pub const DAY_MS: i64 = 1_768_435_200_000;
const MINUTE: i64 = 60_000;

/// Minutes of the day.
pub const SIM_START_MIN: i64 = 6 * 60;
pub const LOG_START_MIN: i64 = 9 * 60;
pub const END_MIN: i64 = 11 * 60;

/// The span the log files cover (the database covers from 06:00).
const LOGGED: std::ops::Range<i64> = DAY_MS + LOG_START_MIN * MINUTE..DAY_MS + END_MIN * MINUTE;

pub const fn at(h: i64, m: i64, s: i64) -> i64 {
    DAY_MS + ((h * 60 + m) * 60 + s) * 1000
}

/// The payment-service v2.14.0 rollout starts (one pod every 20 s).
pub const PAYMENT_DEPLOY: i64 = at(10, 12, 0);
/// By now every payment-service pod runs with maxPoolSize=5 and the pool saturates.
pub const POOL_SATURATED: i64 = at(10, 13, 30);
/// Failures reach their plateau.
const INCIDENT_PLATEAU: i64 = at(10, 16, 0);
const USER_DEPLOY: i64 = at(10, 5, 9);
const REDIS_FAILOVER: i64 = at(9, 30, 5);
const CACHE_RECOVERED: i64 = at(9, 36, 10);

/// Mean requests per minute at full load.
const CHECKOUT_RATE: f64 = 38.0;
const CART_RATE: f64 = 22.0;
const PRODUCTS_RATE: f64 = 62.0;
const USERS_RATE: f64 = 40.0;
const LOGIN_RATE: f64 = 12.0;
const WEBHOOK_RATE: f64 = 16.0;

pub const SERVICES: [&str; 5] = [
    "gateway",
    "checkout-api",
    "payment-service",
    "inventory-service",
    "user-service",
];
const GATEWAY: usize = 0;
const CHECKOUT: usize = 1;
const PAYMENT: usize = 2;
const INVENTORY: usize = 3;
const USER: usize = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: i64,
    pub customer_id: String,
    pub amount_cents: i64,
    pub status: &'static str,
    pub failure_reason: Option<&'static str>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub id: i64,
    pub order_id: i64,
    pub state: &'static str,
    pub error_code: Option<&'static str>,
    pub latency_ms: i64,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deploy {
    pub service: &'static str,
    pub version: &'static str,
    pub previous_version: &'static str,
    pub deployed_at: &'static str,
    pub deployed_by: &'static str,
    pub change_summary: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigChange {
    pub service: &'static str,
    pub key: &'static str,
    pub old_value: &'static str,
    pub new_value: &'static str,
    pub changed_at: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrafficRow {
    pub minute: String,
    pub service: &'static str,
    pub requests: i64,
    pub errors: i64,
    pub p95_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub app_log: String,
    pub app_lines: usize,
    pub gateway_log: String,
    pub gateway_lines: usize,
    pub identity_log: String,
    pub identity_lines: usize,
    pub orders: Vec<Order>,
    pub payments: Vec<Payment>,
    pub deploys: Vec<Deploy>,
    pub config_changes: Vec<ConfigChange>,
    pub traffic: Vec<TrafficRow>,
}

pub const DEPLOYS: &[Deploy] = &[
    Deploy {
        service: "inventory-service",
        version: "5.2.0",
        previous_version: "5.1.4",
        deployed_at: "2026-01-12 14:03:11",
        deployed_by: "alice.nguyen",
        change_summary: "Batch stock lookups; bump PostgreSQL driver to 42.7.4",
    },
    Deploy {
        service: "user-service",
        version: "3.8.0",
        previous_version: "3.7.2",
        deployed_at: "2026-01-13 16:40:02",
        deployed_by: "deploy-bot",
        change_summary: "Configurable session TTL; dependency updates",
    },
    Deploy {
        service: "checkout-api",
        version: "1.41.0",
        previous_version: "1.40.3",
        deployed_at: "2026-01-14 11:20:45",
        deployed_by: "marco.rossi",
        change_summary: "Express checkout behind feature flag feature.express_checkout",
    },
    Deploy {
        service: "gateway",
        version: "0.9.7",
        previous_version: "0.9.6",
        deployed_at: "2026-01-14 17:05:30",
        deployed_by: "deploy-bot",
        change_summary: "Raise upstream keepalive to 60s",
    },
    Deploy {
        service: "inventory-service",
        version: "5.2.1",
        previous_version: "5.2.0",
        deployed_at: "2026-01-15 08:31:12",
        deployed_by: "alice.nguyen",
        change_summary: "Fix N+1 query in product listing",
    },
    Deploy {
        service: "user-service",
        version: "3.8.1",
        previous_version: "3.8.0",
        deployed_at: "2026-01-15 10:05:09",
        deployed_by: "deploy-bot",
        change_summary: "Remove legacy token support (flagged off since 3.6)",
    },
    Deploy {
        service: "payment-service",
        version: "2.14.0",
        previous_version: "2.13.2",
        deployed_at: "2026-01-15 10:12:00",
        deployed_by: "deploy-bot (PR #4821 by j.okafor)",
        change_summary:
            "Upgrade Stripe SDK to 12.4; read DB pool settings from shared config (db.pool.*)",
    },
];

pub const CONFIG_CHANGES: &[ConfigChange] = &[
    ConfigChange {
        service: "checkout-api",
        key: "feature.express_checkout",
        old_value: "false",
        new_value: "true",
        changed_at: "2026-01-14 11:21:00",
    },
    ConfigChange {
        service: "user-service",
        key: "session.ttl_minutes",
        old_value: "720",
        new_value: "480",
        changed_at: "2026-01-15 07:45:00",
    },
    ConfigChange {
        service: "inventory-service",
        key: "cache.product_catalog.ttl_seconds",
        old_value: "60",
        new_value: "600",
        changed_at: "2026-01-15 09:34:40",
    },
    ConfigChange {
        service: "payment-service",
        key: "db.pool.maxPoolSize",
        old_value: "50",
        new_value: "5",
        changed_at: "2026-01-15 10:12:00",
    },
    ConfigChange {
        service: "payment-service",
        key: "db.pool.minimumIdle",
        old_value: "10",
        new_value: "5",
        changed_at: "2026-01-15 10:12:00",
    },
];

const CHECKOUT_PODS: [&str; 3] = [
    "checkout-api-5d8f7c9b4-k2lzp",
    "checkout-api-5d8f7c9b4-q8wxn",
    "checkout-api-5d8f7c9b4-t4mfj",
];
const PAYMENT_PODS_OLD: [&str; 3] = [
    "payment-service-6c8d9f7b5-a7hkd",
    "payment-service-6c8d9f7b5-m2rzc",
    "payment-service-6c8d9f7b5-x9vtp",
];
const PAYMENT_PODS_NEW: [&str; 3] = [
    "payment-service-7f4b8c9d2-b5nqe",
    "payment-service-7f4b8c9d2-j3ctw",
    "payment-service-7f4b8c9d2-r8ysl",
];
const INVENTORY_PODS: [&str; 3] = [
    "inventory-service-84c6d5f8b-c3jtv",
    "inventory-service-84c6d5f8b-h6pld",
    "inventory-service-84c6d5f8b-w1kzs",
];
const USER_PODS_OLD: [&str; 2] = [
    "user-service-59b7c6d4f-f2gxm",
    "user-service-59b7c6d4f-n7qpd",
];
const USER_PODS_NEW: [&str; 2] = [
    "user-service-6a2e8f1c7-d4wrk",
    "user-service-6a2e8f1c7-s9hbv",
];

/// When payment pod `i` switches to v2.14.0.
fn payment_pod_switch(i: usize) -> i64 {
    PAYMENT_DEPLOY + 20_000 * i as i64
}

fn user_pod_switch(i: usize) -> i64 {
    USER_DEPLOY + 30_000 * i as i64
}

fn fmt_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// `YYYY-MM-DD HH:MM:SS`, the SQLite convention.
fn fmt_sql(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Per-minute accumulators for `traffic_minutely`.
#[derive(Default, Clone)]
struct Traffic {
    requests: i64,
    errors: i64,
    durations: Vec<i64>,
}

enum Outcome {
    Authorized,
    Declined,
    Pending,
    OutOfStock,
    /// checkout-api gives up after 10 s; payment-service waits the pool's 30 s.
    PoolTimeout,
    /// payment-service rejects at once because the pool queue is full.
    PoolRejected,
}

struct Sim {
    rng: StdRng,
    app: Vec<(i64, u64, String)>,
    gateway: Vec<(i64, u64, String)>,
    identity: Vec<(i64, u64, String)>,
    seq: u64,
    orders: Vec<Order>,
    payments: Vec<Payment>,
    traffic: Vec<[Traffic; 5]>,
    next_order: i64,
}

impl Sim {
    fn hex(&mut self, n: usize) -> String {
        const DIGITS: &[u8] = b"0123456789abcdef";
        (0..n)
            .map(|_| DIGITS[self.rng.gen_range(0..16)] as char)
            .collect()
    }

    /// A log-normal duration with the given median, in ms.
    fn lognormal(&mut self, median: f64, sigma: f64) -> i64 {
        // Irwin–Hall: twelve uniforms minus six is close enough to a standard normal.
        let z: f64 = (0..12).map(|_| self.rng.gen::<f64>()).sum::<f64>() - 6.0;
        ((median * det_exp(sigma * z)).round() as i64).max(1)
    }

    fn poisson(&mut self, lambda: f64) -> usize {
        let limit = det_exp(-lambda);
        let mut k = 0;
        let mut p: f64 = self.rng.gen();
        while p > limit && k < 10_000 {
            k += 1;
            p *= self.rng.gen::<f64>();
        }
        k
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.rng.gen_range(0..items.len())]
    }

    fn record(&mut self, minute_index: usize, service: usize, duration: i64, error: bool) {
        if let Some(slot) = self.traffic.get_mut(minute_index) {
            let t = &mut slot[service];
            t.requests += 1;
            t.errors += i64::from(error);
            t.durations.push(duration);
        }
    }

    fn app_line(
        &mut self,
        ms: i64,
        level: &str,
        service: &str,
        host: &str,
        message: &str,
        extra: Vec<(&str, Value)>,
    ) {
        if !LOGGED.contains(&ms) {
            return;
        }
        let mut map = Map::new();
        map.insert("@timestamp".into(), Value::String(fmt_ms(ms)));
        map.insert("level".into(), Value::String(level.into()));
        map.insert("service".into(), Value::String(service.into()));
        map.insert("host".into(), Value::String(host.into()));
        map.insert("message".into(), Value::String(message.into()));
        for (k, v) in extra {
            map.insert(k.into(), v);
        }
        let line = Value::Object(map).to_string();
        self.seq += 1;
        self.app.push((ms, self.seq, line));
    }

    fn gateway_line(&mut self, ms: i64, level: &str, rest: &str) {
        if !LOGGED.contains(&ms) {
            return;
        }
        self.seq += 1;
        self.gateway.push((
            ms,
            self.seq,
            format!("{} {level} [gateway] {rest}", fmt_ms(ms)),
        ));
    }

    fn identity_line(&mut self, ms: i64, level: &str, rest: &str) {
        if !LOGGED.contains(&ms) {
            return;
        }
        let ts = DateTime::from_timestamp_millis(ms)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
            .unwrap_or_default();
        self.seq += 1;
        self.identity.push((
            ms,
            self.seq,
            format!("{ts} {level} service=auth-service {rest}"),
        ));
    }

    fn payment_pod(&mut self, ms: i64) -> (&'static str, &'static str) {
        let i = self.rng.gen_range(0..3);
        if ms >= payment_pod_switch(i) {
            (PAYMENT_PODS_NEW[i], "2.14.0")
        } else {
            (PAYMENT_PODS_OLD[i], "2.13.2")
        }
    }

    fn user_pod(&mut self, ms: i64) -> &'static str {
        let i = self.rng.gen_range(0..2);
        if ms >= user_pod_switch(i) {
            USER_PODS_NEW[i]
        } else {
            USER_PODS_OLD[i]
        }
    }

    fn client_ip(&mut self) -> String {
        format!(
            "10.{}.{}.{}",
            self.rng.gen_range(40..48),
            self.rng.gen_range(0..256),
            self.rng.gen_range(1..255)
        )
    }

    /// Share of authorizations that fail at `ms`.
    fn failure_share(&mut self, ms: i64) -> f64 {
        if ms < POOL_SATURATED {
            0.0
        } else if ms < INCIDENT_PLATEAU {
            0.6 * (ms - POOL_SATURATED) as f64 / (INCIDENT_PLATEAU - POOL_SATURATED) as f64
        } else {
            let phase = (ms - INCIDENT_PLATEAU) as f64 / (7.0 * MINUTE as f64);
            (0.64 + 0.08 * det_sin(phase) + self.rng.gen_range(-0.04..0.04)).clamp(0.0, 0.85)
        }
    }

    fn checkout(&mut self, minute_index: usize, t: i64) {
        let order_id = self.next_order;
        self.next_order += 1;
        let customer = format!("cus_{:05}", self.rng.gen_range(10_000..14_000));
        let amount = (self.lognormal(4800.0, 0.7)).clamp(499, 250_000);
        let items = self.rng.gen_range(1..6);
        let trace = self.hex(16);
        let checkout_pod = self.pick(&CHECKOUT_PODS);
        let inventory_pod = self.pick(&INVENTORY_PODS);
        let (payment_pod, version) = self.payment_pod(t);
        let inv = self.lognormal(18.0, 0.4);
        let overhead = self.rng.gen_range(12..40);
        let share = self.failure_share(t);
        let r: f64 = self.rng.gen();
        let outcome = if r < 0.003 {
            Outcome::OutOfStock
        } else if r < 0.028 {
            Outcome::Declined
        } else if r < 0.033 {
            Outcome::Pending
        } else if self.rng.gen::<f64>() < share {
            if self.rng.gen_bool(0.6) {
                Outcome::PoolTimeout
            } else {
                Outcome::PoolRejected
            }
        } else {
            Outcome::Authorized
        };
        let saturated = t >= POOL_SATURATED;
        let common = |trace: &str| {
            vec![
                ("trace_id", Value::from(trace)),
                ("order_id", Value::from(order_id)),
            ]
        };
        self.app_line(
            t + 2,
            "debug",
            "checkout-api",
            checkout_pod,
            &format!("Cart validated: {items} item(s), total_cents={amount}"),
            common(&trace),
        );
        // Inventory reservation.
        if matches!(outcome, Outcome::OutOfStock) {
            let sku = format!("SKU-{:05}", self.rng.gen_range(10_000..99_999));
            self.app_line(
                t + inv,
                "warn",
                "inventory-service",
                inventory_pod,
                &format!("Reservation failed: insufficient stock for {sku}"),
                [common(&trace), vec![("duration_ms", Value::from(inv))]].concat(),
            );
        } else {
            self.app_line(
                t + inv,
                "info",
                "inventory-service",
                inventory_pod,
                &format!("Reserved {items} item(s) for order"),
                [common(&trace), vec![("duration_ms", Value::from(inv))]].concat(),
            );
        }
        self.record(minute_index, INVENTORY, inv, false);
        // Payment.
        let (pay_latency, pay_state, pay_error, status, total, failure): (
            i64,
            &str,
            Option<&str>,
            i64,
            i64,
            Option<&str>,
        ) = match outcome {
            Outcome::OutOfStock => (0, "", None, 409, inv + overhead, Some("out_of_stock")),
            Outcome::Declined => {
                let lat = self.lognormal(if saturated { 2600.0 } else { 290.0 }, 0.4);
                let code = self.pick(&["insufficient_funds", "do_not_honor", "expired_card"]);
                self.app_line(
                    t + inv + lat,
                    "warn",
                    "payment-service",
                    payment_pod,
                    &format!("Card declined by issuer: {code}"),
                    [
                        common(&trace),
                        vec![
                            ("version", Value::from(version)),
                            ("duration_ms", Value::from(lat)),
                        ],
                    ]
                    .concat(),
                );
                (
                    lat,
                    "declined",
                    Some("card_declined"),
                    402,
                    inv + lat + overhead,
                    Some("card_declined"),
                )
            }
            Outcome::Pending => {
                let lat = self.lognormal(if saturated { 2600.0 } else { 380.0 }, 0.4);
                self.app_line(
                    t + inv + lat,
                    "info",
                    "payment-service",
                    payment_pod,
                    "Payment requires customer action (3-D Secure)",
                    [common(&trace), vec![("version", Value::from(version))]].concat(),
                );
                (lat, "pending", None, 202, inv + lat + overhead, None)
            }
            Outcome::Authorized => {
                let lat = if saturated {
                    self.lognormal(2400.0, 0.65).min(29_000)
                } else {
                    self.lognormal(170.0, 0.35)
                };
                self.app_line(
                    t + inv + lat,
                    "info",
                    "payment-service",
                    payment_pod,
                    "Payment authorized",
                    [
                        common(&trace),
                        vec![
                            ("amount_cents", Value::from(amount)),
                            ("provider", Value::from("stripe")),
                            ("version", Value::from(version)),
                            ("duration_ms", Value::from(lat)),
                        ],
                    ]
                    .concat(),
                );
                (lat, "authorized", None, 200, inv + lat + overhead, None)
            }
            Outcome::PoolTimeout => {
                let lat = 30_000 + self.rng.gen_range(0..45);
                self.app_line(
                    t + inv + lat,
                    "error",
                    "payment-service",
                    payment_pod,
                    "HikariPool-1 - Connection is not available, request timed out after 30000ms.",
                    [
                        common(&trace),
                        vec![
                            ("version", Value::from(version)),
                            (
                                "error.type",
                                Value::from("java.sql.SQLTransientConnectionException"),
                            ),
                        ],
                    ]
                    .concat(),
                );
                let total = inv + 10_000 + self.rng.gen_range(1..9);
                (
                    lat,
                    "failed",
                    Some("db_pool_timeout"),
                    504,
                    total,
                    Some("payment_timeout"),
                )
            }
            Outcome::PoolRejected => {
                let lat = self.rng.gen_range(3..40);
                let waiting = self.rng.gen_range(24..49);
                self.app_line(
                    t + inv + lat,
                    "error",
                    "payment-service",
                    payment_pod,
                    &format!(
                        "could not obtain connection from pool (active=5, idle=0, waiting={waiting})"
                    ),
                    [
                        common(&trace),
                        vec![
                            ("version", Value::from(version)),
                            ("http.status", Value::from(503)),
                        ],
                    ]
                    .concat(),
                );
                let total = inv + lat + overhead;
                (
                    lat,
                    "failed",
                    Some("pool_exhausted"),
                    503,
                    total,
                    Some("payment_unavailable"),
                )
            }
        };
        if pay_latency > 0 {
            self.record(minute_index, PAYMENT, pay_latency, pay_state == "failed");
            let payment_id = self.payments.len() as i64 + 1;
            self.payments.push(Payment {
                id: payment_id,
                order_id,
                state: pay_state,
                error_code: pay_error,
                latency_ms: pay_latency,
                created_at: fmt_sql(t + inv),
            });
        }
        // checkout-api's answer.
        let http = |status: i64, total: i64| {
            vec![
                ("http.method", Value::from("POST")),
                ("http.path", Value::from("/checkout")),
                ("http.status", Value::from(status)),
                ("duration_ms", Value::from(total)),
            ]
        };
        match status {
            504 => self.app_line(
                t + total,
                "error",
                "checkout-api",
                checkout_pod,
                "POST /checkout failed: payment authorization timeout",
                [common(&trace), http(status, total)].concat(),
            ),
            503 => self.app_line(
                t + total,
                "error",
                "checkout-api",
                checkout_pod,
                "upstream payment-service returned 503",
                [common(&trace), http(status, total)].concat(),
            ),
            409 => self.app_line(
                t + total,
                "warn",
                "checkout-api",
                checkout_pod,
                &format!("POST /checkout {status} in {total}ms: out of stock"),
                [common(&trace), http(status, total)].concat(),
            ),
            _ => self.app_line(
                t + total,
                "info",
                "checkout-api",
                checkout_pod,
                &format!("POST /checkout {status} in {total}ms"),
                [common(&trace), http(status, total)].concat(),
            ),
        }
        self.record(minute_index, CHECKOUT, total, status >= 500);
        let ip = self.client_ip();
        let gw_total = total + self.rng.gen_range(1..4);
        let level = gateway_level(status);
        self.gateway_line(
            t + gw_total,
            level,
            &format!(
                "{ip} POST /api/v1/checkout HTTP/1.1 {status} {gw_total}ms upstream=checkout-api req_id={trace}"
            ),
        );
        self.record(minute_index, GATEWAY, gw_total, status >= 500);
        let (order_status, reason) = match status {
            200 => ("completed", None),
            202 => ("pending", None),
            _ => ("failed", failure),
        };
        self.orders.push(Order {
            id: order_id,
            customer_id: customer,
            amount_cents: amount,
            status: order_status,
            failure_reason: reason,
            created_at: fmt_sql(t),
        });
    }

    fn cart(&mut self, minute_index: usize, t: i64) {
        let d = self.lognormal(24.0, 0.35);
        let pod = self.pick(&CHECKOUT_PODS);
        let trace = self.hex(16);
        self.app_line(
            t + d,
            "info",
            "checkout-api",
            pod,
            &format!("GET /cart 200 in {d}ms"),
            vec![
                ("trace_id", Value::from(trace.as_str())),
                ("http.method", Value::from("GET")),
                ("http.path", Value::from("/cart")),
                ("http.status", Value::from(200)),
                ("duration_ms", Value::from(d)),
            ],
        );
        self.record(minute_index, CHECKOUT, d, false);
        let ip = self.client_ip();
        let gw = d + self.rng.gen_range(1..4);
        self.gateway_line(
            t + gw,
            "INFO",
            &format!(
                "{ip} GET /api/v1/cart HTTP/1.1 200 {gw}ms upstream=checkout-api req_id={trace}"
            ),
        );
        self.record(minute_index, GATEWAY, gw, false);
    }

    fn products(&mut self, minute_index: usize, t: i64) {
        let cold = (REDIS_FAILOVER..CACHE_RECOVERED).contains(&t);
        let miss = self.rng.gen_bool(if cold { 0.62 } else { 0.05 });
        let d = if miss {
            self.lognormal(if cold { 210.0 } else { 60.0 }, 0.5)
        } else {
            self.lognormal(21.0, 0.3)
        };
        let pod = self.pick(&INVENTORY_PODS);
        let trace = self.hex(16);
        self.app_line(
            t + d,
            "info",
            "inventory-service",
            pod,
            &format!("GET /products 200 in {d}ms"),
            vec![
                ("trace_id", Value::from(trace)),
                ("cache", Value::from(if miss { "miss" } else { "hit" })),
                ("http.status", Value::from(200)),
                ("duration_ms", Value::from(d)),
            ],
        );
        self.record(minute_index, INVENTORY, d, false);
    }

    fn users(&mut self, minute_index: usize, t: i64) {
        let d = self.lognormal(16.0, 0.35);
        let pod = self.user_pod(t);
        let user = format!("u_{}", self.rng.gen_range(10_000..20_000));
        self.app_line(
            t + d,
            "info",
            "user-service",
            pod,
            &format!("GET /users/me 200 in {d}ms"),
            vec![
                ("user_id", Value::from(user)),
                ("http.status", Value::from(200)),
                ("duration_ms", Value::from(d)),
            ],
        );
        self.record(minute_index, USER, d, false);
    }

    fn login(&mut self, minute_index: usize, t: i64) {
        let d = self.lognormal(85.0, 0.3);
        let pod = self.user_pod(t);
        let user = format!("u_{}", self.rng.gen_range(10_000..20_000));
        let ok = self.rng.gen_bool(0.93);
        if ok {
            let mfa = self.pick(&["none", "totp", "webauthn"]);
            self.app_line(
                t + d,
                "info",
                "user-service",
                pod,
                "Login succeeded",
                vec![
                    ("user_id", Value::from(user.as_str())),
                    ("mfa", Value::from(mfa)),
                    ("duration_ms", Value::from(d)),
                ],
            );
            if mfa != "none" && self.rng.gen_bool(0.3) {
                self.identity_line(
                    t + d - 5,
                    "INFO",
                    &format!("mfa challenge passed user_id={user} method={mfa}"),
                );
            }
        } else {
            self.app_line(
                t + d,
                "warn",
                "user-service",
                pod,
                "Login failed: invalid credentials",
                vec![
                    ("user_id", Value::from(user.as_str())),
                    ("duration_ms", Value::from(d)),
                ],
            );
            let ip = self.client_ip();
            self.identity_line(
                t + d - 3,
                "WARN",
                &format!("password check failed user_id={user} ip={ip}"),
            );
        }
        self.record(minute_index, USER, d, false);
    }

    fn webhook(&mut self, minute_index: usize, t: i64) {
        let (pod, version) = self.payment_pod(t);
        let kind = self.pick(&[
            "charge.succeeded",
            "charge.refunded",
            "payment_intent.created",
            "charge.dispute.created",
        ]);
        let evt = format!("evt_{}", self.hex(14));
        let failed = self.rng.gen::<f64>() < self.failure_share(t);
        if failed {
            self.app_line(
                t + 30_000,
                "error",
                "payment-service",
                pod,
                "HikariPool-1 - Connection is not available, request timed out after 30000ms.",
                vec![
                    ("event_id", Value::from(evt)),
                    ("version", Value::from(version)),
                    (
                        "error.type",
                        Value::from("java.sql.SQLTransientConnectionException"),
                    ),
                ],
            );
            self.record(minute_index, PAYMENT, 30_000, true);
        } else {
            let d = self.lognormal(if t >= POOL_SATURATED { 1900.0 } else { 45.0 }, 0.4);
            self.app_line(
                t + d,
                "info",
                "payment-service",
                pod,
                &format!("Processed webhook {kind} in {d}ms"),
                vec![
                    ("event_id", Value::from(evt)),
                    ("version", Value::from(version)),
                    ("duration_ms", Value::from(d)),
                ],
            );
            self.record(minute_index, PAYMENT, d, false);
        }
    }

    /// Lines that are not requests: pool stats, jobs, consumer lag, health, and the
    /// morning's events.
    fn periodic(&mut self, minute: i64, t0: i64) {
        for i in 0..3 {
            let t = t0 + 15_000 + 20_000 * i as i64 + self.rng.gen_range(0..500);
            let new = t >= payment_pod_switch(i);
            let (pod, version) = if new {
                (PAYMENT_PODS_NEW[i], "2.14.0")
            } else {
                (PAYMENT_PODS_OLD[i], "2.13.2")
            };
            let (total, active, waiting) = if !new {
                (50, self.rng.gen_range(1..7), 0)
            } else if t < POOL_SATURATED {
                (5, self.rng.gen_range(3..6), self.rng.gen_range(0..4))
            } else {
                (5, 5, self.rng.gen_range(18..46))
            };
            self.app_line(
                t,
                "debug",
                "payment-service",
                pod,
                &format!(
                    "HikariPool-1 - Pool stats (total={total}, active={active}, idle={}, waiting={waiting})",
                    total - active
                ),
                vec![("version", Value::from(version))],
            );
        }
        if minute % 5 == 0 {
            let t = t0 + 30_000;
            let (pod, version) = self.payment_pod(t);
            if t >= POOL_SATURATED {
                self.app_line(
                    t + 30_000,
                    "error",
                    "payment-service",
                    pod,
                    "HikariPool-1 - Connection is not available, request timed out after 30000ms.",
                    vec![
                        ("job", Value::from("ReconciliationJob")),
                        ("version", Value::from(version)),
                        (
                            "error.type",
                            Value::from("java.sql.SQLTransientConnectionException"),
                        ),
                    ],
                );
                self.app_line(
                    t + 30_002,
                    "error",
                    "payment-service",
                    pod,
                    "ReconciliationJob failed: could not get JDBC connection",
                    vec![
                        ("job", Value::from("ReconciliationJob")),
                        ("version", Value::from(version)),
                    ],
                );
            } else {
                let n = self.rng.gen_range(90..160);
                let d = self.lognormal(820.0, 0.2);
                self.app_line(
                    t + d,
                    "info",
                    "payment-service",
                    pod,
                    &format!("ReconciliationJob completed: {n} payments checked in {d}ms"),
                    vec![
                        ("job", Value::from("ReconciliationJob")),
                        ("version", Value::from(version)),
                    ],
                );
            }
            let t = t0 + 1_000;
            self.gateway_line(t, "INFO", "upstream checkout-api: 3/3 endpoints healthy");
            if minute % 15 == 0 {
                self.identity_line(t0 + 2_000, "INFO", "jwks refreshed keys=3 kid=auth-2026-01");
            }
        }
        // The outbox publisher polls the database from every pod; once the pool is
        // exhausted each poll waits the full timeout and fails.
        for (i, pod) in PAYMENT_PODS_NEW.iter().enumerate() {
            let t = t0 + 5_000 + 20_000 * i as i64;
            if t >= POOL_SATURATED && t >= payment_pod_switch(i) {
                for half in [0, 30_000] {
                    self.app_line(
                        t + half + 30_000,
                        "error",
                        "payment-service",
                        pod,
                        "HikariPool-1 - Connection is not available, request timed out after 30000ms.",
                        vec![
                            ("job", Value::from("OutboxPublisher")),
                            ("version", Value::from("2.14.0")),
                            ("error.type", Value::from("java.sql.SQLTransientConnectionException")),
                        ],
                    );
                }
            }
        }
        if minute % 2 == 0 {
            let pod = self.pick(&CHECKOUT_PODS);
            let partition = self.rng.gen_range(0..6);
            let lag = self.rng.gen_range(0..25);
            self.app_line(
                t0 + 45_000,
                "info",
                "checkout-api",
                pod,
                &format!("Kafka consumer lag topic=order-events partition={partition} lag={lag}"),
                vec![],
            );
        }
        // A slow inventory query every ten minutes or so, all morning: real but not the cause.
        if self.rng.gen_bool(0.1) {
            let pod = self.pick(&INVENTORY_PODS);
            let d = self.rng.gen_range(1_200..3_400);
            let t = t0 + self.rng.gen_range(0..60_000);
            self.app_line(
                t,
                "warn",
                "inventory-service",
                pod,
                &format!("Slow query took {d}ms: SELECT sku, available FROM stock WHERE warehouse_id = $1 AND sku = ANY($2)"),
                vec![("duration_ms", Value::from(d))],
            );
        }
        // Occasional unrelated errors.
        if self.rng.gen_bool(1.0 / 14.0) {
            let pod = self.user_pod(t0);
            let t = t0 + self.rng.gen_range(0..60_000);
            let user = format!("u_{}", self.rng.gen_range(10_000..20_000));
            self.app_line(
                t,
                "error",
                "user-service",
                pod,
                "Failed to send welcome email: SMTP 421 4.7.0 Try again later",
                vec![("user_id", Value::from(user))],
            );
        }
        if self.rng.gen_bool(1.0 / 30.0) {
            let ip = self.client_ip();
            let d = self.rng.gen_range(2..6);
            let t = t0 + self.rng.gen_range(0..60_000);
            let req = self.hex(16);
            self.gateway_line(
                t,
                "WARN",
                &format!("{ip} GET /api/v1/checkout/../../etc/passwd HTTP/1.1 400 {d}ms upstream=- req_id={req}"),
            );
        }
        self.events(t0);
    }

    /// The morning's one-off events that fall in this minute.
    fn events(&mut self, t0: i64) {
        let in_minute = |t: i64| t >= t0 && t < t0 + MINUTE;
        // 09:30 Redis failover: a cache miss burst that resolves by 09:36.
        if in_minute(REDIS_FAILOVER) {
            for (i, pod) in INVENTORY_PODS.iter().enumerate() {
                self.app_line(
                    REDIS_FAILOVER + 40 * i as i64,
                    "warn",
                    "inventory-service",
                    pod,
                    "Redis connection reset by peer, reconnecting",
                    vec![("redis.host", Value::from("redis-0.cache:6379"))],
                );
                self.app_line(
                    REDIS_FAILOVER + 2_100 + 40 * i as i64,
                    "info",
                    "inventory-service",
                    pod,
                    "Redis reconnected (failover to replica redis-1)",
                    vec![("redis.host", Value::from("redis-1.cache:6379"))],
                );
            }
        }
        if t0 > REDIS_FAILOVER && t0 < CACHE_RECOVERED {
            let rate = self.rng.gen_range(55..70);
            let pod = self.pick(&INVENTORY_PODS);
            self.app_line(
                t0 + 5_000,
                "warn",
                "inventory-service",
                pod,
                &format!("Cache miss rate {rate}% for product-catalog (threshold 20%)"),
                vec![],
            );
        }
        if in_minute(CACHE_RECOVERED) {
            self.app_line(
                CACHE_RECOVERED,
                "info",
                "inventory-service",
                INVENTORY_PODS[0],
                "Cache hit rate recovered: 96% for product-catalog",
                vec![],
            );
        }
        // 10:05 user-service v3.8.1: a harmless deploy close to the incident.
        for i in 0..2 {
            let t = user_pod_switch(i);
            if in_minute(t) {
                self.app_line(
                    t - 1_500,
                    "info",
                    "user-service",
                    USER_PODS_OLD[i],
                    "Received SIGTERM, shutting down gracefully",
                    vec![("version", Value::from("3.8.0"))],
                );
                self.app_line(
                    t - 3_000,
                    "info",
                    "user-service",
                    USER_PODS_NEW[i],
                    "Starting user-service v3.8.1",
                    vec![("version", Value::from("3.8.1"))],
                );
                self.app_line(
                    t - 2_400,
                    "warn",
                    "user-service",
                    USER_PODS_NEW[i],
                    "Deprecated config key auth.legacy_tokens is ignored",
                    vec![("version", Value::from("3.8.1"))],
                );
                self.app_line(
                    t - 200,
                    "info",
                    "user-service",
                    USER_PODS_NEW[i],
                    "Started UserServiceApplication in 4.1 seconds",
                    vec![("version", Value::from("3.8.1"))],
                );
            }
        }
        // 10:12 payment-service v2.14.0, rolled out pod by pod, with maxPoolSize=5.
        for i in 0..3 {
            let t = payment_pod_switch(i);
            if in_minute(t) {
                let (old, new) = (PAYMENT_PODS_OLD[i], PAYMENT_PODS_NEW[i]);
                let v = |v: &str| vec![("version", Value::from(v))];
                self.app_line(
                    t - 6_800,
                    "info",
                    "payment-service",
                    new,
                    "Starting payment-service v2.14.0 (commit 9c41e7a)",
                    v("2.14.0"),
                );
                self.app_line(t - 6_100, "info", "payment-service", new, "Loaded configuration from shared-config/payment-service: db.pool.maxPoolSize=5 db.pool.minimumIdle=5 db.pool.connectionTimeout=30000", v("2.14.0"));
                self.app_line(
                    t - 5_200,
                    "info",
                    "payment-service",
                    new,
                    "HikariPool-1 - Starting...",
                    v("2.14.0"),
                );
                self.app_line(
                    t - 4_900,
                    "info",
                    "payment-service",
                    new,
                    "HikariPool-1 - Start completed.",
                    v("2.14.0"),
                );
                self.app_line(
                    t - 300,
                    "info",
                    "payment-service",
                    new,
                    "Started PaymentServiceApplication in 6.8 seconds",
                    v("2.14.0"),
                );
                self.app_line(
                    t,
                    "info",
                    "payment-service",
                    old,
                    "Received SIGTERM, shutting down gracefully",
                    v("2.13.2"),
                );
                self.app_line(
                    t + 1_200,
                    "info",
                    "payment-service",
                    old,
                    "HikariPool-1 - Shutdown completed.",
                    v("2.13.2"),
                );
            }
        }
    }
}

// The platform's `exp` and `sin` may differ in the last bit between C libraries,
// which would change rounded durations and so the bytes of the logs. These use only
// IEEE-exact operations (+, -, *, /, round), so every platform gives the same output.

fn det_exp(x: f64) -> f64 {
    // exp(x) = exp(x / 64)^64, with a Taylor series for the small argument.
    let y = x / 64.0;
    let (mut term, mut sum) = (1.0f64, 1.0f64);
    for k in 1..=16 {
        term *= y / k as f64;
        sum += term;
    }
    for _ in 0..6 {
        sum *= sum;
    }
    sum
}

fn det_sin(x: f64) -> f64 {
    let tau = std::f64::consts::TAU;
    let x = x - (x / tau).round() * tau;
    let (mut term, mut sum) = (x, x);
    for k in 1..=13 {
        term *= -x * x / ((2 * k) as f64 * (2 * k + 1) as f64);
        sum += term;
    }
    sum
}

fn gateway_level(status: i64) -> &'static str {
    match status {
        500.. => "ERROR",
        400..=499 => "WARN",
        _ => "INFO",
    }
}

/// Traffic relative to the 09:00–11:00 peak: lower early in the morning.
fn load(minute: i64) -> f64 {
    let x = (minute - SIM_START_MIN) as f64 / (LOG_START_MIN - SIM_START_MIN) as f64;
    let ramp = if x < 1.0 {
        0.35 + 0.65 * x
    } else {
        1.0 + 0.05 * (x - 1.0)
    };
    ramp * (1.0 + 0.06 * det_sin(minute as f64 / 9.0))
}

fn render(mut lines: Vec<(i64, u64, String)>) -> (String, usize) {
    lines.sort_by_key(|line| (line.0, line.1));
    let count = lines.len();
    let mut out = String::with_capacity(lines.iter().map(|l| l.2.len() + 1).sum());
    for (_, _, line) in lines {
        out.push_str(&line);
        out.push('\n');
    }
    (out, count)
}

fn p95(mut durations: Vec<i64>) -> i64 {
    if durations.is_empty() {
        return 0;
    }
    durations.sort_unstable();
    let rank = ((durations.len() as f64) * 0.95).ceil() as usize;
    durations[rank.clamp(1, durations.len()) - 1]
}

pub fn simulate(seed: u64) -> Dataset {
    let minutes = (END_MIN - SIM_START_MIN) as usize;
    let mut sim = Sim {
        rng: StdRng::seed_from_u64(seed),
        app: Vec::new(),
        gateway: Vec::new(),
        identity: Vec::new(),
        seq: 0,
        orders: Vec::new(),
        payments: Vec::new(),
        traffic: vec![Default::default(); minutes],
        next_order: 1_048_000,
    };
    for (index, minute) in (SIM_START_MIN..END_MIN).enumerate() {
        let t0 = DAY_MS + minute * MINUTE;
        let load = load(minute);
        type Kind = fn(&mut Sim, usize, i64);
        let kinds: [(f64, Kind); 6] = [
            (CHECKOUT_RATE, Sim::checkout),
            (CART_RATE, Sim::cart),
            (PRODUCTS_RATE, Sim::products),
            (USERS_RATE, Sim::users),
            (LOGIN_RATE, Sim::login),
            (WEBHOOK_RATE, Sim::webhook),
        ];
        for (rate, run) in kinds {
            let n = sim.poisson(rate * load);
            let mut times: Vec<i64> = (0..n).map(|_| t0 + sim.rng.gen_range(0..MINUTE)).collect();
            times.sort_unstable();
            for t in times {
                run(&mut sim, index, t);
            }
        }
        sim.periodic(minute, t0);
    }
    let traffic = std::mem::take(&mut sim.traffic)
        .into_iter()
        .enumerate()
        .flat_map(|(index, services)| {
            let minute = fmt_sql(DAY_MS + (SIM_START_MIN + index as i64) * MINUTE);
            let minute = minute.get(..16).unwrap_or_default().to_string();
            services
                .into_iter()
                .enumerate()
                .map(move |(s, t)| TrafficRow {
                    minute: minute.clone(),
                    service: SERVICES[s],
                    requests: t.requests,
                    errors: t.errors,
                    p95_ms: p95(t.durations),
                })
        })
        .collect();
    let (app_log, app_lines) = render(std::mem::take(&mut sim.app));
    let (gateway_log, gateway_lines) = render(std::mem::take(&mut sim.gateway));
    let (identity_log, identity_lines) = render(std::mem::take(&mut sim.identity));
    Dataset {
        app_log,
        app_lines,
        gateway_log,
        gateway_lines,
        identity_log,
        identity_lines,
        orders: sim.orders,
        payments: sim.payments,
        deploys: DEPLOYS.to_vec(),
        config_changes: CONFIG_CHANGES.to_vec(),
        traffic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_constants_are_what_they_say() {
        assert_eq!(fmt_ms(DAY_MS), "2026-01-15T00:00:00.000Z");
        assert_eq!(fmt_ms(PAYMENT_DEPLOY), "2026-01-15T10:12:00.000Z");
        assert_eq!(fmt_sql(at(9, 30, 5)), "2026-01-15 09:30:05");
    }

    #[test]
    fn portable_math_is_close_to_the_library() {
        for x in [-60.0, -3.0, -0.5, 0.0, 0.7, 2.8] {
            let (a, b) = (det_exp(x), f64::exp(x));
            assert!(((a - b) / b).abs() < 1e-9, "exp({x}): {a} vs {b}");
        }
        for x in [-20.0, -1.0, 0.0, 0.5, 3.0, 13.3] {
            assert!((det_sin(x) - x.sin()).abs() < 1e-9, "sin({x})");
        }
    }
}
