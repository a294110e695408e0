//! Module calls across nodes: each node answers the call subjects of the modules it has (one
//! queue group per cluster, so one node takes each call), and forwards calls to modules it
//! lacks.

use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use binary::{DecodeOptions, Envelope as _, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::bridge::timeout_header;
use crate::error::ForwardError;
use crate::node::Inner;
use crate::stats::bump;
use crate::subject;

/// How often the call and bus subscriptions are compared with the loaded modules and the
/// bus's patterns, besides every [`crate::Cluster::modules_changed`].
const SYNC_INTERVAL: Duration = Duration::from_millis(250);

/// Keeps one call subscription per loaded module, and the bus subscriptions in line with the
/// bus's patterns.
pub(crate) async fn sync_loop(inner: Arc<Inner>) {
    loop {
        sync(&inner).await;
        crate::interest::sync(&inner).await;
        tokio::select! {
            () = tokio::time::sleep(SYNC_INTERVAL) => {}
            () = inner.modules_changed.notified() => {}
        }
    }
}

async fn sync(inner: &Arc<Inner>) {
    let wanted: BTreeSet<String> = inner.local.modules().into_iter().collect();
    let (added, removed) = {
        let serving = inner.serving.lock().unwrap_or_else(PoisonError::into_inner);
        let added: Vec<String> = wanted
            .iter()
            .filter(|name| !serving.contains_key(*name))
            .cloned()
            .collect();
        let removed: Vec<String> = serving
            .keys()
            .filter(|name| !wanted.contains(*name))
            .cloned()
            .collect();
        (added, removed)
    };
    for name in removed {
        let task = inner
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&name);
        if let Some(task) = task {
            // Dropping the subscriber with the task unsubscribes.
            task.abort();
        }
    }
    let cluster = &inner.config.cluster_name;
    let mut subscribed = Vec::new();
    for name in added {
        match inner
            .client
            .queue_subscribe(subject::call(cluster, &name), subject::call_group(cluster))
            .await
        {
            Ok(subscriber) => subscribed.push((name, subscriber)),
            Err(error) => tracing::warn!(module = %name, "cluster: not serving calls: {error}"),
        }
    }
    if subscribed.is_empty() {
        return;
    }
    // A module counts as served once the NATS server has the subscriptions (a flush is a
    // round trip after them), so a forwarded call never meets "no responders" after
    // `/_admin/cluster` lists the module. While disconnected the flush fails; the client
    // subscribes again when it reconnects.
    if let Err(error) = inner.client.flush().await {
        tracing::debug!("cluster: flushing new call subscriptions: {error}");
    }
    for (name, subscriber) in subscribed {
        let task = tokio::spawn(serve_calls(inner.clone(), name.clone(), subscriber));
        inner
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, task);
    }
}

async fn serve_calls(inner: Arc<Inner>, module: String, mut calls: async_nats::Subscriber) {
    while let Some(message) = calls.next().await {
        let inner = inner.clone();
        let module = module.clone();
        tokio::spawn(async move { serve_call(&inner, module, message).await });
    }
}

/// Answers one forwarded call with this node's module.
async fn serve_call(inner: &Inner, module: String, message: async_nats::Message) {
    let Some(reply_to) = message.reply.clone() else {
        bump(&inner.counters.dropped);
        return;
    };
    if !inner.accept_origin(&message) {
        return;
    }
    let options = DecodeOptions {
        max_size: message.payload.len(),
    };
    let response = match HttpRequest::decode_with(&message.payload, &options) {
        Ok(request) => {
            let timeout = timeout_header(&message).unwrap_or(Duration::from_secs(30));
            bump(&inner.counters.calls_served);
            inner.local.call(module.clone(), request, timeout).await
        }
        Err(error) => {
            bump(&inner.counters.dropped);
            HttpResponse::new(400, format!("invalid forwarded request: {error}"))
        }
    };
    let mut payload = response.encode();
    let limit = inner.client.max_payload();
    if payload.len() > limit {
        payload = HttpResponse::new(
            502,
            format!(
                "module \"{module}\" answered {} bytes, over the cluster's limit of {limit}",
                payload.len()
            ),
        )
        .encode();
    }
    if let Err(error) = inner
        .client
        .publish_with_headers(reply_to, inner.origin_headers(), Bytes::from(payload))
        .await
    {
        tracing::debug!(module = %module, "cluster: call answer not sent: {error}");
    }
}

pub(crate) async fn forward(
    inner: &Inner,
    module: &str,
    request: &HttpRequest,
    timeout: Duration,
) -> Result<HttpResponse, ForwardError> {
    if !inner.connected() {
        return Err(ForwardError::Disconnected {
            module: module.to_owned(),
        });
    }
    let payload = request.encode();
    let limit = inner.client.max_payload();
    if payload.len() > limit {
        return Err(ForwardError::TooLarge {
            module: module.to_owned(),
            size: payload.len(),
            limit,
        });
    }
    let mut headers = inner.origin_headers();
    headers.insert(
        subject::TIMEOUT_MS,
        timeout.as_millis().to_string().as_str(),
    );
    let call = async_nats::Request::new()
        .headers(headers)
        .payload(Bytes::from(payload))
        .timeout(Some(timeout));
    bump(&inner.counters.calls_out);
    let subject = subject::call(&inner.config.cluster_name, module);
    let reply = inner
        .client
        .send_request(subject, call)
        .await
        .map_err(|error| match error.kind() {
            async_nats::RequestErrorKind::TimedOut => ForwardError::Timeout {
                module: module.to_owned(),
                after: timeout,
            },
            async_nats::RequestErrorKind::NoResponders => ForwardError::NoNode {
                module: module.to_owned(),
            },
            _ => ForwardError::Disconnected {
                module: module.to_owned(),
            },
        })?;
    let options = DecodeOptions {
        max_size: reply.payload.len(),
    };
    HttpResponse::decode_with(&reply.payload, &options).map_err(|error| ForwardError::BadReply {
        module: module.to_owned(),
        reason: error.to_string(),
    })
}
