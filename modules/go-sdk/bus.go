// The host imports as Go functions: publish, subscribe, request/reply, logs, WebSocket
// broadcasts. The raw calls are in abi_wasm.go (the real host) and abi_native.go (a
// recording stand-in for `go test`).

package guest

import (
	"fmt"
	"time"
)

// Code is a negative status from a host import (binary::abi::Code in the Rust crates).
type Code int32

// The codes of docs/ABI.md.
const (
	CodeInvalid      Code = -1 // a bad topic, an oversized or undecodable message
	CodeLimit        Code = -2 // a limit was hit (subscriptions)
	CodeClosed       Code = -3 // the bus is closed
	CodeTimedOut     Code = -4 // the request timed out
	CodeNoSubscriber Code = -5 // nobody serves the request's topic
	CodeOverloaded   Code = -6 // every responder's mailbox was full
)

func (c Code) String() string {
	switch c {
	case CodeInvalid:
		return "invalid input"
	case CodeLimit:
		return "limit reached"
	case CodeClosed:
		return "bus closed"
	case CodeTimedOut:
		return "timed out"
	case CodeNoSubscriber:
		return "no subscriber"
	case CodeOverloaded:
		return "overloaded"
	}
	return fmt.Sprintf("code %d", int32(c))
}

// CallError is a host import that answered with a Code.
type CallError struct {
	Op    string // "publish", "subscribe", "request"
	Topic string
	Code  Code
}

func (e *CallError) Error() string {
	return fmt.Sprintf("%s %q: %s (%d)", e.Op, e.Topic, e.Code, int32(e.Code))
}

// ErrorReply is a request answered with an Error reply; Reason is its payload.
type ErrorReply struct {
	Topic  string
	Reason string
}

func (e *ErrorReply) Error() string {
	return fmt.Sprintf("request %q: answered with an error: %s", e.Topic, e.Reason)
}

// Publish sends payload as an event on topic and returns how many mailboxes it reached.
func Publish(topic string, payload []byte) (int, error) {
	return PublishMessage(Message{Topic: topic, Kind: KindEvent, Payload: payload})
}

// PublishMessage publishes a complete message: an event or request goes to the topic's
// subscribers, a response or error to the module waiting for the reply with that ID.
func PublishMessage(m Message) (int, error) {
	code := sysPublish(m.Encode())
	if code < 0 {
		return 0, &CallError{Op: "publish", Topic: m.Topic, Code: Code(code)}
	}
	return int(code), nil
}

// PublishBatch publishes messages in order in one host call (the publish_batch import), each
// once every mailbox it goes to has room: while one is full the host waits, sleeping, up to
// timeout and never past the calling export's deadline. It returns how many messages, from
// the first, were published; the rest were offered to nobody. A batch with an invalid topic
// or over the host's message limit is refused whole (CodeInvalid).
func PublishBatch(messages []Message, timeout time.Duration) (int, error) {
	code := sysPublishBatch(EncodeBatch(messages), int32(min(timeout.Milliseconds(), 1<<31-1)))
	if code < 0 {
		return 0, &CallError{Op: "publish_batch", Topic: fmt.Sprintf("%d messages", len(messages)), Code: Code(code)}
	}
	return int(code), nil
}

// Reply answers a request received in a message handler; it reports whether the requester
// was still waiting.
func Reply(request Message, payload []byte) (bool, error) {
	n, err := PublishMessage(Message{Topic: request.Topic, Kind: KindResponse, ID: request.ID, Payload: payload})
	return n > 0, err
}

// ReplyError answers a request with an Error reply carrying reason.
func ReplyError(request Message, reason string) (bool, error) {
	n, err := PublishMessage(Message{Topic: request.Topic, Kind: KindError, ID: request.ID, Payload: []byte(reason)})
	return n > 0, err
}

// Subscribe subscribes the module to pattern: an exact topic, `prefix.*` or `*`. Calls made
// during init go live when this version is swapped in. Prefer On, which also dispatches.
func Subscribe(pattern string) error {
	if code := sysSubscribe(pattern); code < 0 {
		return &CallError{Op: "subscribe", Topic: pattern, Code: Code(code)}
	}
	return nil
}

// Request sends payload as a request on topic and waits for the reply (at most timeout,
// and never past the calling export's own deadline). An Error reply is an *ErrorReply.
func Request(topic string, payload []byte, timeout time.Duration) ([]byte, error) {
	ms := min(max(timeout.Milliseconds(), 0), 1<<31-1)
	reply, code := sysRequest(Message{Topic: topic, Kind: KindRequest, Payload: payload}.Encode(), int32(ms))
	if code < 0 {
		return nil, &CallError{Op: "request", Topic: topic, Code: Code(code)}
	}
	m, err := DecodeMessage(reply)
	if err != nil {
		return nil, err
	}
	if m.Kind == KindError {
		return nil, &ErrorReply{Topic: topic, Reason: string(m.Payload)}
	}
	return m.Payload, nil
}

// Broadcast sends payload to the WebSocket clients of /ws?topic=topic.
func Broadcast(topic string, payload []byte) { sysBroadcast(topic, payload) }

// Level is a log level.
type Level int32

// The log levels of the log_at import.
const (
	LevelTrace Level = 0
	LevelDebug Level = 1
	LevelInfo  Level = 2
	LevelWarn  Level = 3
	LevelError Level = 4
)

// Log writes one line to the server's log, tagged with the module's name.
func Log(level Level, text string) { sysLog(int32(level), text) }

// Infof logs at info level.
func Infof(format string, args ...any) { Log(LevelInfo, fmt.Sprintf(format, args...)) }

// Warnf logs at warn level.
func Warnf(format string, args ...any) { Log(LevelWarn, fmt.Sprintf(format, args...)) }

// Errorf logs at error level.
func Errorf(format string, args ...any) { Log(LevelError, fmt.Sprintf(format, args...)) }
