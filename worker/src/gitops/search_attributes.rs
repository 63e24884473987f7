//! reflow's custom search attributes ([`workflow::search::ALL`]): added to the namespace when
//! missing, in one call; a registered one of another type is reported, never removed (that
//! would lose data). A worker refuses to start without them
//! ([`missing_search_attributes`]).

use std::collections::BTreeMap;
use std::time::Duration;

use temporalio_client::Client;
use temporalio_common::protos::temporal::api::enums::v1::IndexedValueType;
use temporalio_common::protos::temporal::api::operatorservice::v1::{
    AddSearchAttributesRequest, ListSearchAttributesRequest,
};

use super::{Change, GitOpsError, Kind, rpc_error};

/// reflow's search attributes, as `Desired::search_attributes` takes them.
pub fn reflow_search_attributes() -> Vec<(String, String)> {
    workflow::search::ALL
        .iter()
        .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
        .collect()
}

/// The namespace's custom search attributes by name, with their type names.
pub async fn search_attributes(
    client: &Client,
    namespace: &str,
) -> Result<BTreeMap<String, String>, GitOpsError> {
    let request = ListSearchAttributesRequest {
        namespace: namespace.to_owned(),
    };
    let listed = client
        .connection()
        .operator_service()
        .list_search_attributes(tonic::Request::new(request))
        .await
        .map_err(rpc_error(Kind::SearchAttribute, namespace))?
        .into_inner();
    Ok(listed
        .custom_attributes
        .into_iter()
        .map(|(name, t)| {
            let t = IndexedValueType::try_from(t).map_or_else(
                |_| format!("type {t}"),
                |t| {
                    t.as_str_name()
                        .trim_start_matches("INDEXED_VALUE_TYPE_")
                        .to_owned()
                },
            );
            (name, t)
        })
        .collect())
}

fn indexed_type(name: &str) -> Option<IndexedValueType> {
    IndexedValueType::from_str_name(&format!(
        "INDEXED_VALUE_TYPE_{}",
        name.to_ascii_uppercase()
            .replace("KEYWORDLIST", "KEYWORD_LIST")
    ))
}

/// `reflow plan`'s lines for the `declared` attributes (name, type) of `namespace` (none
/// registered yet when the namespace does not exist).
pub(super) async fn plan(
    client: &Client,
    namespace: &str,
    declared: &[(String, String)],
    namespace_exists: bool,
) -> Result<Vec<Change>, GitOpsError> {
    let have = if namespace_exists && !declared.is_empty() {
        search_attributes(client, namespace).await?
    } else {
        Default::default()
    };
    let mut out = Vec::new();
    for (name, kind) in declared {
        match have.get(name) {
            None => out.push(Change::Create {
                kind: Kind::SearchAttribute,
                id: name.clone(),
                summary: kind.clone(),
            }),
            // The server says `KEYWORD_LIST` where the declaration says `KeywordList`.
            Some(t) if !t.replace('_', "").eq_ignore_ascii_case(kind) => {
                return Err(GitOpsError::Conflict {
                    kind: Kind::SearchAttribute,
                    id: name.clone(),
                    message: format!(
                        "registered as {t}, declared {kind}; a registered attribute's type cannot change (remove it with `temporal operator search-attribute remove --name {name}` if no run needs it)"
                    ),
                });
            }
            Some(_) => out.push(Change::Unchanged {
                kind: Kind::SearchAttribute,
                id: name.clone(),
            }),
        }
    }
    Ok(out)
}

/// Add the attributes `changes` (the plan) create, in one call.
pub(super) async fn apply(
    client: &Client,
    namespace: &str,
    declared: &[(String, String)],
    changes: &[Change],
) -> Result<(), GitOpsError> {
    let new_attributes: Vec<&str> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Create {
                kind: Kind::SearchAttribute,
                id,
                ..
            } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    if new_attributes.is_empty() {
        return Ok(());
    }
    add_search_attributes(client, namespace, declared, &new_attributes).await
}

async fn add_search_attributes(
    client: &Client,
    namespace: &str,
    declared: &[(String, String)],
    names: &[&str],
) -> Result<(), GitOpsError> {
    let mut map = std::collections::HashMap::new();
    for (name, kind) in declared {
        if names.contains(&name.as_str()) {
            let t = indexed_type(kind).ok_or_else(|| GitOpsError::Conflict {
                kind: Kind::SearchAttribute,
                id: name.clone(),
                message: format!("unknown type {kind:?} (Keyword, Text, Int, Double, Bool, Datetime, KeywordList)"),
            })?;
            map.insert(name.clone(), t as i32);
        }
    }
    // A namespace registered a moment ago reaches the operator service's cache later (the
    // server refreshes it every few seconds): wait for it, up to a minute.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let request = AddSearchAttributesRequest {
            search_attributes: map.clone(),
            namespace: namespace.to_owned(),
        };
        match client
            .connection()
            .operator_service()
            .add_search_attributes(tonic::Request::new(request))
            .await
        {
            Ok(_) => return Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound && std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(s) => return Err(rpc_error(Kind::SearchAttribute, namespace)(s)),
        }
    }
}

/// Whether every reflow search attribute is registered in the client's namespace; the missing
/// ones otherwise. A worker checks this at start: a run's first workflow task would fail
/// without them.
pub async fn missing_search_attributes(client: &Client) -> Result<Vec<String>, GitOpsError> {
    let namespace = temporalio_client::NamespacedClient::namespace(client);
    let have = search_attributes(client, &namespace).await?;
    Ok(workflow::search::ALL
        .iter()
        .filter(|(n, _)| !have.contains_key(*n))
        .map(|(n, _)| (*n).to_owned())
        .collect())
}
