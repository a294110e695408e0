//! [`Bridge`]: the one hook that lets a bus reach past its process (cluster mode).

use std::time::Duration;

use binary::Message;

use crate::error::RequestError;

/// Carries a bus's traffic to other processes and back. Set once with [`crate::Bus::set_bridge`];
/// a bus without one (the default) pays a single atomic load per publish for the hook.
///
/// Messages that arrive from other processes are handed to the bus with
/// [`crate::Bus::publish_bridged`] and [`crate::Bus::request_local`], which deliver locally
/// and never come back to the bridge, so nothing loops and nothing is delivered twice.
pub trait Bridge: Send + Sync + 'static {
    /// A message was published on this bus and delivered to the local subscribers (an event
    /// or any other non-reply kind, not a request made with [`crate::Bus::request`]). Called on
    /// the publisher's thread, in publish order: it must not block. The message is the bus's
    /// own copy, the bridge's to keep.
    fn published(&self, message: Message);

    /// [`crate::Bus::request`] found no local subscriber for `message.topic`: answer it
    /// elsewhere, waiting at most `timeout`. The reply keeps `message.id`. Return
    /// [`RequestError::NoResponders`] when no other process has a responder either.
    fn request(&self, message: Message, timeout: Duration) -> Result<Message, RequestError>;
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use binary::{Message, MessageKind};

    use super::Bridge;
    use crate::error::RequestError;
    use crate::test_support::PATIENCE;

    /// Records what it is handed; answers requests on `remote.*` only.
    #[derive(Default)]
    struct Recorder {
        published: Mutex<Vec<Message>>,
        requests: Mutex<Vec<Message>>,
    }

    impl Bridge for Arc<Recorder> {
        fn published(&self, message: Message) {
            self.published.lock().unwrap().push(message);
        }

        fn request(&self, message: Message, _timeout: Duration) -> Result<Message, RequestError> {
            self.requests.lock().unwrap().push(message.clone());
            if message.topic.starts_with("remote.") {
                Ok(message.response(b"from afar".to_vec()))
            } else {
                Err(RequestError::NoResponders {
                    topic: message.topic,
                })
            }
        }
    }

    #[test]
    fn publishes_go_to_the_bridge_after_local_delivery_and_bridged_ones_do_not() {
        let bus = crate::Bus::new();
        let recorder = Arc::new(Recorder::default());
        assert!(bus.set_bridge(Arc::new(recorder.clone())));
        assert!(
            !bus.set_bridge(Arc::new(recorder.clone())),
            "one bridge per bus"
        );
        let (_subscription, inbox) = bus.subscribe_channel("a.*").unwrap();

        for index in 0..3u8 {
            let report = bus.publish(Message::event("a.x", vec![index])).unwrap();
            assert_eq!(report.delivered, 1);
        }
        let report = bus
            .publish_bridged(Message::event("a.y", b"remote".to_vec()))
            .unwrap();
        assert_eq!(report.delivered, 1);
        let payloads: Vec<Vec<u8>> = (0..4)
            .map(|_| inbox.recv_timeout(PATIENCE).unwrap().payload)
            .collect();
        assert_eq!(payloads, [vec![0], vec![1], vec![2], b"remote".to_vec()]);
        let published = recorder.published.lock().unwrap();
        assert_eq!(
            published
                .iter()
                .map(|m| m.payload.clone())
                .collect::<Vec<_>>(),
            [vec![0], vec![1], vec![2]],
            "in order, and never the bridged message"
        );
        drop(published);
        // An invalid topic is refused before the bridge sees it.
        assert!(bus.publish(Message::event("a.*", vec![])).is_err());
        assert_eq!(recorder.published.lock().unwrap().len(), 3);
    }

    #[test]
    fn a_waiting_publish_reaches_the_bridge_once_after_it_found_room_and_never_when_it_gave_up() {
        let bus = crate::Bus::with_config(crate::BusConfig {
            mailbox_capacity: 1,
        });
        let recorder = Arc::new(Recorder::default());
        bus.set_bridge(Arc::new(recorder.clone()));
        let (_subscription, inbox) = bus.subscribe_channel("a").unwrap();
        let soon = || std::time::Instant::now() + Duration::from_millis(20);
        bus.publish_waiting(Message::event("a", vec![1]), soon())
            .unwrap();
        assert!(
            bus.publish_waiting(Message::event("a", vec![2]), soon())
                .is_err()
        );
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            (0..2)
                .map(|_| inbox.recv_timeout(PATIENCE).unwrap().payload)
                .collect::<Vec<_>>()
        });
        bus.publish_waiting(
            Message::event("a", vec![3]),
            std::time::Instant::now() + PATIENCE,
        )
        .unwrap();
        assert_eq!(reader.join().unwrap(), [vec![1], vec![3]]);
        let published: Vec<Vec<u8>> = recorder
            .published
            .lock()
            .unwrap()
            .iter()
            .map(|message| message.payload.clone())
            .collect();
        assert_eq!(published, [vec![1], vec![3]]);
    }

    #[test]
    fn requests_nobody_local_answers_go_to_the_bridge_but_local_ones_do_not() {
        let bus = crate::Bus::new();
        let recorder = Arc::new(Recorder::default());
        bus.set_bridge(Arc::new(recorder.clone()));
        let reply = bus
            .request(Message::event("remote.q", b"?".to_vec()), PATIENCE)
            .unwrap();
        assert_eq!(
            (reply.kind, &reply.payload[..]),
            (MessageKind::Response, &b"from afar"[..])
        );
        let asked = recorder.requests.lock().unwrap()[0].clone();
        assert_eq!(asked.kind, MessageKind::Request);
        assert_eq!(reply.id, asked.id, "the reply keeps the request's id");

        // request_local never asks the bridge.
        let error = bus
            .request_local(Message::event("remote.q", vec![]), PATIENCE)
            .unwrap_err();
        assert!(
            matches!(error, RequestError::NoResponders { .. }),
            "{error}"
        );
        assert_eq!(recorder.requests.lock().unwrap().len(), 1);

        // A local responder answers locally; the bridge is not asked.
        let replies = bus.clone();
        let _responder = bus
            .subscribe("remote.q", move |request| {
                let _ = replies.reply(request.response(b"near".to_vec()));
            })
            .unwrap();
        let reply = bus
            .request(Message::event("remote.q", vec![]), PATIENCE)
            .unwrap();
        assert_eq!(reply.payload, b"near");
        assert_eq!(recorder.requests.lock().unwrap().len(), 1);
        // Requests are not handed to the bridge as publishes.
        assert!(recorder.published.lock().unwrap().is_empty());
        bus.close();
    }
}
