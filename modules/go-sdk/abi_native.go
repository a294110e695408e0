//go:build !wasip1

// A recording stand-in for the host, for `go test` of a module on the development machine
// (the counterpart of the Rust SDK's guest::testing): imports are recorded instead of sent,
// requests are answered by SetResponder, and Start, Call and Deliver run the module's parts
// as the exports would.

package guest

import (
	"encoding/binary"
	"sync"
)

// Logged is one recorded log line.
type Logged struct {
	Level Level
	Text  string
}

// Broadcasted is one recorded WebSocket broadcast.
type Broadcasted struct {
	Topic   string
	Payload []byte
}

var recorded struct {
	sync.Mutex
	published     []Message
	subscriptions []string
	logs          []Logged
	broadcasts    []Broadcasted
	responder     func(Message) (Message, Code)
}

func sysPublish(encoded []byte) int32 {
	m, err := DecodeMessage(encoded)
	if err != nil {
		return int32(CodeInvalid)
	}
	recorded.Lock()
	defer recorded.Unlock()
	recorded.published = append(recorded.published, m)
	return 1
}

func sysPublishBatch(encoded []byte, _ int32) int32 {
	if len(encoded) < 8 {
		return int32(CodeInvalid)
	}
	count := binary.LittleEndian.Uint64(encoded)
	rest := encoded[8:]
	var batch []Message
	for i := uint64(0); i < count; i++ {
		if len(rest) < 8 {
			return int32(CodeInvalid)
		}
		topic := binary.LittleEndian.Uint64(rest)
		if topic > uint64(len(rest)) || uint64(len(rest))-topic < 24 {
			return int32(CodeInvalid)
		}
		payload := binary.LittleEndian.Uint64(rest[16+topic:])
		size := 24 + topic + payload
		if payload > uint64(len(rest)) || size > uint64(len(rest)) {
			return int32(CodeInvalid)
		}
		m, err := DecodeMessage(rest[:size])
		if err != nil {
			return int32(CodeInvalid)
		}
		batch = append(batch, m)
		rest = rest[size:]
	}
	if len(rest) != 0 {
		return int32(CodeInvalid)
	}
	recorded.Lock()
	defer recorded.Unlock()
	recorded.published = append(recorded.published, batch...)
	return int32(len(batch))
}

func sysSubscribe(pattern string) int32 {
	recorded.Lock()
	defer recorded.Unlock()
	recorded.subscriptions = append(recorded.subscriptions, pattern)
	return 0
}

func sysRequest(encoded []byte, _ int32) ([]byte, int64) {
	m, err := DecodeMessage(encoded)
	if err != nil {
		return nil, int64(CodeInvalid)
	}
	recorded.Lock()
	responder := recorded.responder
	recorded.Unlock()
	if responder == nil {
		return nil, int64(CodeNoSubscriber)
	}
	reply, code := responder(m)
	if code < 0 {
		return nil, int64(code)
	}
	return reply.Encode(), 0
}

func sysLog(level int32, text string) {
	recorded.Lock()
	defer recorded.Unlock()
	recorded.logs = append(recorded.logs, Logged{Level(level), text})
}

func sysBroadcast(topic string, payload []byte) {
	recorded.Lock()
	defer recorded.Unlock()
	recorded.broadcasts = append(recorded.broadcasts, Broadcasted{topic, append([]byte{}, payload...)})
}

// Start runs the module's init as the host would (subscriptions, then OnInit), once.
func Start() { start() }

// Call runs the HTTP handler on request, as the handle export does.
func Call(request *HttpRequest) *HttpResponse { return serve(request) }

// Deliver runs the message handlers on message, as the on_message export does.
func Deliver(message Message) { deliver(message) }

// DeliverBatch runs the message handlers on each message of an encoded MessageBatch, in order,
// as the on_messages export does.
func DeliverBatch(batch []byte) error { return deliverBatch(batch, deliver) }

// SetResponder answers the module's Requests: the reply message, or a negative Code.
func SetResponder(f func(request Message) (Message, Code)) {
	recorded.Lock()
	defer recorded.Unlock()
	recorded.responder = f
}

// TakePublished returns and forgets the messages published so far (replies included).
func TakePublished() []Message {
	recorded.Lock()
	defer recorded.Unlock()
	out := recorded.published
	recorded.published = nil
	return out
}

// Subscriptions returns the patterns subscribed so far.
func Subscriptions() []string {
	recorded.Lock()
	defer recorded.Unlock()
	return append([]string{}, recorded.subscriptions...)
}

// TakeLogs returns and forgets the log lines so far.
func TakeLogs() []Logged {
	recorded.Lock()
	defer recorded.Unlock()
	out := recorded.logs
	recorded.logs = nil
	return out
}

// TakeBroadcasts returns and forgets the WebSocket broadcasts so far.
func TakeBroadcasts() []Broadcasted {
	recorded.Lock()
	defer recorded.Unlock()
	out := recorded.broadcasts
	recorded.broadcasts = nil
	return out
}
