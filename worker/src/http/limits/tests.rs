//! Unit tests of [`super`] (`limits.rs`).

use super::*;

#[test]
fn slots_are_capped_per_process_and_per_client_and_given_back() {
    let slots = Arc::new(ClientSlots::new(3, 2));
    let a: IpAddr = "10.0.0.1".parse().unwrap();
    let b: IpAddr = "10.0.0.2".parse().unwrap();
    let a1 = slots.try_acquire(Some(a)).unwrap();
    let _a2 = slots.try_acquire(Some(a)).unwrap();
    assert_eq!(
        slots.try_acquire(Some(a)).unwrap_err(),
        SlotRefused::Client { client: a, held: 2 }
    );
    let _b1 = slots.try_acquire(Some(b)).unwrap();
    assert_eq!(
        slots.try_acquire(Some(b)).unwrap_err(),
        SlotRefused::Full(3)
    );
    drop(a1);
    assert_eq!(slots.in_use(), 2);
    let _a3 = slots.try_acquire(Some(a)).unwrap();
}

#[test]
fn connection_and_socket_limits_are_settings() {
    let settings = |vars: &[(&str, &str)]| {
        crate::settings::Settings::from_vars(
            Default::default(),
            vars.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    };
    let l = HttpLimits::from_settings(&settings(&[
        ("REFLOW_HTTP_MAX_CONNECTIONS", "100"),
        ("REFLOW_HTTP_MAX_CONNECTIONS_PER_CLIENT", "500"),
        ("REFLOW_HTTP_IDLE_TIMEOUT", "2m"),
        ("REFLOW_WS_MAX", "40"),
        ("REFLOW_WS_MAX_PER_CLIENT", "3"),
    ]));
    assert_eq!(l.max_connections, 100);
    assert_eq!(
        l.max_connections_per_client, 100,
        "never above the process cap"
    );
    assert_eq!(l.idle_timeout, Duration::from_secs(120));
    assert_eq!((l.ws_max, l.ws_max_per_client), (40, 3));
    let l = HttpLimits::from_settings(&settings(&[("REFLOW_HTTP_MAX_CONNECTIONS", "5")]));
    assert_eq!((l.max_connections, l.max_connections_per_client), (5, 1));
    // Nothing set: the defaults.
    let d = HttpLimits::from_settings(&settings(&[]));
    assert_eq!(d, HttpLimits::default());
    assert_eq!(d.max_connections_per_client, 256);
}
