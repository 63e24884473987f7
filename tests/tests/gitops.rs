//! `reflow plan` / `reflow apply` against a real Temporal dev server: the declared `daily-poll`
//! schedule is created, a second apply changes nothing, a changed interval or pipeline is an
//! update that plan shows as a diff, and a schedule no longer declared is deleted.

use std::time::Duration;

use reflow::gitops::{self, Change, DAILY_POLL, Desired, DesiredSchedule};
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
        absent: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_creates_updates_and_deletes_the_poll_schedule_idempotently() {
    let c = client().await;
    let d = desired(180, "");

    let planned = gitops::plan(&c, &d).await.unwrap();
    assert!(
        matches!(&planned[..], [Change::Create { id, summary }] if id == DAILY_POLL && summary.contains("every 180s")),
        "{planned:?}"
    );
    let applied = gitops::apply(&c, &d).await.unwrap();
    assert_eq!(applied, planned);

    // A second apply finds nothing to change.
    let again = gitops::apply(&c, &d).await.unwrap();
    assert_eq!(
        again,
        [Change::Unchanged {
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
            id: DAILY_POLL.into()
        }]
    );

    // DAILY_API_KEY unset: the schedule is not declared, so it goes.
    let none = Desired {
        schedules: Vec::new(),
        absent: vec![DAILY_POLL.into()],
    };
    let planned = gitops::plan(&c, &none).await.unwrap();
    assert!(
        matches!(&planned[..], [Change::Delete { id, .. }] if id == DAILY_POLL),
        "{planned:?}"
    );
    gitops::apply(&c, &none).await.unwrap();
    assert!(gitops::plan(&c, &none).await.unwrap().is_empty());
}
