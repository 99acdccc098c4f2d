//! A broker shut down leaves nothing running: `run` returns only after every task it started
//! (its own, the Raft node's, the servers') has ended. Checked on a runtime of its own, with
//! tokio's count of alive tasks, after a session that starts every kind of task: topic
//! creation, produce, fetch, a subscription, a consumer-group heartbeat.

use std::time::Duration;

use bytes::Bytes;
use rafka_broker::config::BrokerConfig;
use rafka_proto::v1;

/// Bound on every wait of this test.
const DEADLINE: Duration = Duration::from_secs(60);

async fn wait_ready(http: std::net::SocketAddr) {
    rafka_tests::poll("the broker to be ready", DEADLINE, || async {
        match rafka_tests::http::http_get(http, "/readyz", Duration::from_secs(2)).await {
            Ok((200, _)) => Ok(()),
            Ok((status, body)) => Err(format!("{status}: {body}")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap();
}

/// Exercises the broker over gRPC, then drops every client.
async fn session(grpc: std::net::SocketAddr) {
    let url = format!("http://{grpc}");
    let mut admin = v1::admin_client::AdminClient::connect(url.clone()).await.unwrap();
    let created = admin
        .create_topic(v1::CreateTopicRequest {
            name: "t".into(),
            partitions: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.error.unwrap().code, 0, "topic created");
    let mut data = v1::data_client::DataClient::connect(url.clone()).await.unwrap();
    let record = rafka_proto::batch::NewRecord {
        value: Some(Bytes::from_static(b"v")),
        timestamp: 1,
        ..Default::default()
    };
    let batch = rafka_proto::batch::build(&[record], None, rafka_proto::batch::Compression::None);
    // The new partition's leader is being elected until the produce is accepted (retriable).
    let produced = rafka_tests::poll("the first produce", DEADLINE, || {
        let mut data = data.clone();
        let batch = batch.clone();
        async move {
            let req =
                v1::ProduceRequest { topic: "t".into(), partition: 0, batch, ..Default::default() };
            let resp = data.produce(req).await.map_err(|s| s.to_string())?.into_inner();
            match resp.error {
                Some(e) if e.code == 0 => Ok(resp.base_offset),
                e => Err(format!("refused: {e:?}")),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(produced, 0);
    let fetched = data
        .fetch(v1::FetchRequest { topic: "t".into(), partition: 0, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.batches.len(), 1);
    // A subscription left open while the broker shuts down.
    let mut sub = data
        .subscribe(v1::SubscribeRequest { topic: "t".into(), partition: 0, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(sub.message().await.unwrap().is_some_and(|r| r.batches.len() == 1));
    let mut groups = v1::groups_client::GroupsClient::connect(url).await.unwrap();
    let hb = groups
        .group_heartbeat(v1::GroupHeartbeatRequest {
            group_id: "g".into(),
            member_epoch: 0,
            subscribed_topics: vec!["t".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(hb.error.is_none_or(|e| e.code == 0), "joined the group");
}

#[test]
fn shutdown_leaves_no_task_running() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
        let config = BrokerConfig {
            listen: grpc_addr.to_string(),
            http: http_addr.to_string(),
            data_dir: dir.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        config.validate().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let broker = rafka_broker::run(
            rafka_broker::Listeners { broker: grpc, named: vec![], http },
            config,
            async {
                let _ = stopped.await;
            },
        );
        let client = async {
            wait_ready(http_addr).await;
            session(grpc_addr).await;
            stop.send(()).unwrap();
        };
        let (ran, ()) = tokio::time::timeout(DEADLINE, async { tokio::join!(broker, client) })
            .await
            .expect("the session and shutdown end in time");
        ran.unwrap();
    });
    let alive = runtime.metrics().num_alive_tasks();
    assert_eq!(alive, 0, "tasks still running after the broker stopped");
}
