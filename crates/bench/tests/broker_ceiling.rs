//! `bench broker-ceiling` against the real broker: every message confirmed, every copy
//! consumed, and nothing of the bench left on the broker afterwards. Counts, not speed.
//!
//! Runs when `ORDERMILL_TEST_AMQP_URL` is set, e.g.
//! `ORDERMILL_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo test -p ordermill-bench --test broker_ceiling -- --nocapture`;
//! `ORDERMILL_TEST_CEILING_MESSAGES` overrides the message count, for a one-off measurement.

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use ordermill_bench::broker_ceiling::{self, BrokerCeilingArgs};
use ordermill_core::test_support::service_url;

fn amqp_url() -> Option<String> {
    service_url("ORDERMILL_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_confirmed_and_every_copy_consumed_and_nothing_is_left_behind() {
    let Some(url) = amqp_url() else { return };
    let messages = std::env::var("ORDERMILL_TEST_CEILING_MESSAGES")
        .ok()
        .map_or(2_000, |n| n.parse().expect("ORDERMILL_TEST_CEILING_MESSAGES is a number"));
    let args = BrokerCeilingArgs {
        amqp: url.clone(),
        messages,
        queues: 3,
        // Smaller than the message count, so the window and the prefetch both bind.
        window: 256,
        prefetch: 64,
        ..BrokerCeilingArgs::default()
    };
    let report = broker_ceiling::run(args).await.unwrap();
    println!("{report}");

    assert_eq!(report.messages, messages);
    assert_eq!(report.publish.confirmed, messages);
    assert_eq!(report.publish.confirm_latency_ms.samples, messages);
    assert_eq!(report.queues.len(), 3);
    assert_eq!(report.consume.acked, messages * 3);
    assert_eq!(report.consume.duplicates, 0);
    assert_eq!(report.left_behind, None);
    assert!(!report.amqp.contains("guest:guest"), "the password leaked: {}", report.amqp);

    let json = tempfile::NamedTempFile::new().unwrap();
    report.write_json(json.path()).unwrap();
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(json.path()).unwrap())
        .expect("the JSON report parses");
    assert_eq!(saved["consume"]["acked"], messages * 3);

    // A passive declare fails (and closes its channel) when the object does not exist.
    let connection = Connection::connect(&url, ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let passive = ExchangeDeclareOptions { passive: true, ..ExchangeDeclareOptions::default() };
    let exchange = channel
        .exchange_declare(
            report.exchange.as_str().into(),
            ExchangeKind::Topic,
            passive,
            FieldTable::default(),
        )
        .await;
    assert!(exchange.is_err(), "the exchange {} is still there", report.exchange);
    for queue in &report.queues {
        let channel = connection.create_channel().await.unwrap();
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let declared =
            channel.queue_declare(queue.as_str().into(), passive, FieldTable::default()).await;
        assert!(declared.is_err(), "the queue {queue} is still there");
    }
    let _ = connection.close(200, "checked".into()).await;
}

#[tokio::test]
async fn an_unreachable_broker_is_named_in_the_error_with_what_to_check() {
    let args = BrokerCeilingArgs {
        // Port 1 on loopback: refused at once, nothing listens there.
        amqp: "amqp://guest:secret@127.0.0.1:1/%2f".to_owned(),
        ..BrokerCeilingArgs::default()
    };
    let error = broker_ceiling::run(args).await.unwrap_err().to_string();
    assert!(error.contains("127.0.0.1:1"), "{error}");
    assert!(error.contains("is RabbitMQ running"), "{error}");
    assert!(!error.contains("secret"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqps_broker_is_measured_with_ca_file_and_refused_without_it_naming_the_flag() {
    let Some(url) = amqp_url() else { return };
    // The broker's plain port behind a TLS front whose CA no system trusts.
    let ca = ordermill_tls_testkit::TestCa::new();
    let (tls_url, relayed) = ca.front_amqp(&url).await;
    let ca_file = ca.pem_file();
    let args = BrokerCeilingArgs {
        amqp: tls_url.clone(),
        ca_file: Some(ca_file.to_path_buf()),
        messages: 500,
        ..BrokerCeilingArgs::default()
    };
    let report = broker_ceiling::run(args).await.unwrap();
    assert_eq!(report.publish.confirmed, 500);
    assert_eq!(report.consume.acked, 1_500);
    assert_eq!(report.left_behind, None);
    assert!(relayed.load(std::sync::atomic::Ordering::Relaxed) >= 1, "it went through TLS");

    let doubting = BrokerCeilingArgs { amqp: tls_url, ..BrokerCeilingArgs::default() };
    let error = broker_ceiling::run(doubting).await.unwrap_err().to_string();
    assert!(error.contains("certificate"), "{error}");
    assert!(error.contains("--ca-file"), "{error}");

    let plain_with_ca = BrokerCeilingArgs {
        amqp: url,
        ca_file: Some(ca_file.to_path_buf()),
        ..BrokerCeilingArgs::default()
    };
    let error = broker_ceiling::run(plain_with_ca).await.unwrap_err().to_string();
    assert!(error.contains("--ca-file is for an amqps:// URL"), "{error}");
}
