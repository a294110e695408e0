// upper-go: a bus module in Go (the go-sdk, ABI 1).
//
//   - Requests on `upper.go` are answered with the payload in upper case (an Error reply for an
//     empty payload): `POST /m/sender/ask?topic=upper.go` makes the Rust `sender` ask it.
//   - Events on `greetings.*` (what `sender` publishes) are relayed, upper-cased, to WebSocket
//     clients of `/ws?topic=shout`.
//   - GET /m/upper-go answers {"answered":N,"relayed":M}.
package main

import (
	"bytes"
	"fmt"

	"modhost.local/guest"
)

var answered, relayed int

func upper(m guest.Message) {
	if m.Kind != guest.KindRequest {
		return
	}
	if len(m.Payload) == 0 {
		_, _ = guest.ReplyError(m, "nothing to upper-case")
		return
	}
	answered++
	if _, err := guest.Reply(m, bytes.ToUpper(m.Payload)); err != nil {
		guest.Warnf("replying on %s: %v", m.Topic, err)
	}
}

func shout(m guest.Message) {
	relayed++
	guest.Broadcast("shout", bytes.ToUpper(m.Payload))
}

func status(r *guest.HttpRequest) *guest.HttpResponse {
	if r.Path != "" && r.Path != "/" {
		return guest.NotFound()
	}
	body := fmt.Sprintf(`{"answered":%d,"relayed":%d}`, answered, relayed)
	return guest.NewResponse(200).WithHeader("content-type", "application/json").WithBody([]byte(body))
}

func init() {
	guest.On("upper.go", upper)
	guest.On("greetings.*", shout)
	guest.HandleHTTP(status)
}

// main is not called: the module is a reactor (-buildmode=c-shared), driven by its exports.
func main() {}
