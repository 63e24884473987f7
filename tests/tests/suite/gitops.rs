//! `reflow plan` / `reflow apply` against a real Temporal dev server: the declared `daily-poll`
//! schedule is created, a second apply changes nothing, a changed interval or pipeline is an
//! update that plan shows as a diff, and a schedule no longer declared is deleted; a namespace
//! that does not exist is registered with its retention and reflow's search attributes, a
//! changed retention is an update, and a second apply changes nothing.

use std::time::Duration;

use reflow::gitops::{self, Change, DAILY_POLL, Desired, DesiredNamespace, DesiredSchedule, Kind};
use reflow_tests::{client, registry};

fn poll_pipeline(version_note: &str) -> workflow::Pipeline {
    let text = gitops::DAILY_POLL_YAML.replace(
        "description: List",
        &format!("description: {version_note} List"),
    );
    workflow::parse_and_validate("daily-poll.yaml", &text, registry().catalog()).unwrap()
}

fn desired(every_s: u64, note: &str) -> Desired {
    Desired {
        schedules: vec![DesiredSchedule {
            id: DAILY_POLL.into(),
            every: Duration::from_secs(every_s),
            pipeline: poll_pipeline(note),
        }],
        ..Desired::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_updates_and_deletes_the_poll_schedule_idempotently() {
    let c = client().await;
    let d = desired(180, "");

    let planned = gitops::plan(&c, &d).await.unwrap();
    assert!(
        matches!(&planned[..], [Change::Create { kind: Kind::Schedule, id, summary }] if id == DAILY_POLL && summary.contains("every 180s")),
        "{planned:?}"
    );
    let applied = gitops::apply(&c, &d).await.unwrap();
    assert_eq!(applied, planned);

    // A second apply finds nothing to change.
    let again = gitops::apply(&c, &d).await.unwrap();
    assert_eq!(
        again,
        [Change::Unchanged {
            kind: Kind::Schedule,
            id: DAILY_POLL.into()
        }]
    );
    assert!(!again.iter().any(Change::is_change));

    // The schedule starts the pinned poll pipeline every 180 s, skipping overlaps.
    let described = c
        .get_schedule_handle(DAILY_POLL)
        .describe(Default::default())
        .await
        .unwrap();
    #[allow(unreachable_patterns)] // the enum is non-exhaustive
    let (kind, queue) = match described.action() {
        temporalio_client::schedules::ScheduleDescriptionAction::StartWorkflow(a) => {
            (a.workflow_type().to_owned(), a.task_queue().to_owned())
        }
        _ => panic!("not a start-workflow action"),
    };
    assert_eq!(
        (kind.as_str(), queue.as_str()),
        ("PollDailyRecordings", "reflow")
    );

    // No webhook secret any more: 15 s; and a changed pipeline definition.
    let d2 = desired(15, "changed.");
    let planned = gitops::plan(&c, &d2).await.unwrap();
    let [Change::Update { diffs, .. }] = &planned[..] else {
        panic!("{planned:?}")
    };
    assert!(
        diffs.iter().any(|x| x == "interval: 180s → 15s"),
        "{diffs:?}"
    );
    assert!(
        diffs.iter().any(|x| x.starts_with("pipeline: ")),
        "{diffs:?}"
    );
    gitops::apply(&c, &d2).await.unwrap();
    assert_eq!(
        gitops::plan(&c, &d2).await.unwrap(),
        [Change::Unchanged {
            kind: Kind::Schedule,
            id: DAILY_POLL.into()
        }]
    );

    // DAILY_API_KEY unset: the schedule is not declared, so it goes.
    let none = Desired {
        absent: vec![DAILY_POLL.into()],
        ..Desired::default()
    };
    let planned = gitops::plan(&c, &none).await.unwrap();
    assert!(
        matches!(&planned[..], [Change::Delete { id, .. }] if id == DAILY_POLL),
        "{planned:?}"
    );
    gitops::apply(&c, &none).await.unwrap();
    assert!(gitops::plan(&c, &none).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_registers_the_namespace_and_search_attributes_idempotently() {
    let c = client().await;
    let name = format!("gitops-{}", std::process::id());
    let d = |days: u64| Desired {
        namespace: Some(DesiredNamespace {
            name: name.clone(),
            retention: Duration::from_secs(days * 86_400),
        }),
        search_attributes: gitops::reflow_search_attributes(),
        ..Desired::default()
    };

    // A namespace that does not exist: register it, then add every attribute.
    let planned = gitops::plan(&c, &d(30)).await.unwrap();
    assert_eq!(
        planned[0],
        Change::Create {
            kind: Kind::Namespace,
            id: name.clone(),
            summary: "retention 30d".into()
        }
    );
    let created: Vec<&str> = planned[1..]
        .iter()
        .filter(|c| c.kind() == Kind::SearchAttribute && matches!(c, Change::Create { .. }))
        .map(Change::id)
        .collect();
    let all: Vec<&str> = workflow::search::ALL.iter().map(|(n, _)| *n).collect();
    assert_eq!(created, all, "{planned:?}");
    assert_eq!(gitops::apply(&c, &d(30)).await.unwrap(), planned);

    // The cluster now has them, typed as declared.
    let have = gitops::search_attributes(&c, &name).await.unwrap();
    assert_eq!(have.get("RecordingId").map(String::as_str), Some("KEYWORD"));
    assert_eq!(have.get("PipelineVersion").map(String::as_str), Some("INT"));

    // A second apply finds nothing to change, and says so.
    let again = gitops::apply(&c, &d(30)).await.unwrap();
    assert!(!again.iter().any(Change::is_change), "{again:?}");
    assert_eq!(again.len(), 1 + all.len());

    // A changed retention is an update plan shows as a diff.
    let planned = gitops::plan(&c, &d(7)).await.unwrap();
    assert_eq!(
        planned.iter().filter(|c| c.is_change()).collect::<Vec<_>>(),
        [&Change::Update {
            kind: Kind::Namespace,
            id: name.clone(),
            diffs: vec!["retention: 30d → 7d".into()]
        }]
    );
    gitops::apply(&c, &d(7)).await.unwrap();
    assert!(
        !gitops::plan(&c, &d(7))
            .await
            .unwrap()
            .iter()
            .any(Change::is_change)
    );
}
