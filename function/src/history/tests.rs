use super::*;

fn history(name: &str, lease: Duration) -> (Arc<History>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("tingxie-history-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let history = History::open(dir.to_str().unwrap(), &CacheConfig::new("/tmp/unused"), lease, "host/1/x").unwrap();
    (Arc::new(history), dir)
}

fn start(tenant: &str) -> Start {
    Start {
        tenant: tenant.into(),
        model: "tiny.en".into(),
        task: "transcribe".into(),
        filename: Some("a.wav".into()),
        ..Default::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn records_are_listed_newest_first_in_pages_and_each_tenant_sees_its_own() {
    runtime().block_on(async {
        let (history, dir) = history("list", Duration::from_secs(30));
        let mut ids = Vec::new();
        for i in 0..5 {
            let entry = history.begin(start("a")).await.unwrap();
            if i % 2 == 0 {
                entry.update(|r| r.finish(Ok(("en", 1.5)))).await.unwrap();
            }
            ids.push(entry.id().await);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        let other = history.begin(start("b")).await.unwrap();
        let first = history.list("a", &Query { limit: 2, ..Default::default() }).await.unwrap();
        let listed: Vec<&str> = first.data.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(listed, [ids[4].as_str(), ids[3].as_str()]);
        assert!(first.has_more);
        let after = Some(first.data[1].id.clone());
        let second = history.list("a", &Query { limit: 10, after, ..Default::default() }).await.unwrap();
        assert_eq!(second.data.len(), 3);
        assert!(!second.has_more);
        let completed = history.list("a", &Query { limit: 10, status: Some(Status::Completed), ..Default::default() }).await.unwrap();
        assert_eq!(completed.data.len(), 3);
        assert!(completed.data.iter().all(|r| r.language.as_deref() == Some("en") && r.audio_seconds == Some(1.5)));
        let since = history.list("a", &Query { limit: 10, since: Some(second.data[0].created_at), ..Default::default() }).await.unwrap();
        assert_eq!(since.data.len(), 3, "records created at or after the time");
        let (record, result) = history.get("a", &ids[0]).await.unwrap();
        assert_eq!((record.status, result), (Status::Completed, None));
        assert!(matches!(history.get("b", &ids[0]).await, Err(Error::NoSuchTranscription(_))));
        assert!(matches!(history.get("a", &other.id().await).await, Err(Error::NoSuchTranscription(_))));
        assert!(matches!(history.get("a", "../b/x").await, Err(Error::NoSuchTranscription(_))));
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn a_record_whose_lease_ran_out_says_its_process_stopped() {
    runtime().block_on(async {
        let (history, dir) = history("lease", Duration::from_millis(30));
        let entry = history.begin(start("a")).await.unwrap();
        let id = entry.id().await;
        // Renewed while the work runs: still running after several leases.
        let (record, _) = entry
            .renewed_while(async {
                tokio::time::sleep(Duration::from_millis(150)).await;
                history.get("a", &id).await.unwrap()
            })
            .await;
        assert_eq!(record.status, Status::Running);
        // Not renewed any more (the process is gone): interrupted, and stored so.
        tokio::time::sleep(Duration::from_millis(80)).await;
        let (record, _) = history.get("a", &id).await.unwrap();
        assert_eq!(record.status, Status::Interrupted);
        assert!(record.error.unwrap().message.contains("host/1/x"));
        let stored: Record = serde_json::from_slice(&std::fs::read(dir.join(format!("records/a/{id}.json"))).unwrap()).unwrap();
        assert_eq!(stored.status, Status::Interrupted);
        std::fs::remove_dir_all(dir).unwrap();
    });
}

#[test]
fn ids_sort_newest_first_and_bound_a_time() {
    let (old, new) = (record::id_bound(1_000.0), record::id_bound(2_000.0));
    assert!(new < old);
    assert_eq!(new.len(), 23);
    assert!("is".parse::<Status>().is_err());
    assert_eq!("interrupted".parse::<Status>(), Ok(Status::Interrupted));
}
