// hello-go: an HTTP module in Go (the go-sdk, ABI 1).
//
//   - GET /m/hello-go answers `hello from Go`.
//   - POST /m/hello-go/echo answers the request back: the body, and the method, path and query
//     in x-echo-* headers.
//   - GET /m/hello-go/ask?topic=T&q=P sends P as a bus request on T (default users.get) and
//     answers the reply's payload: a Go module asking a Rust one. 502 for an Error reply, 504
//     for a timeout, 503 when nobody serves T.
package main

import (
	"errors"
	"time"

	"modhost.local/guest"
)

var served int

func handle(r *guest.HttpRequest) *guest.HttpResponse {
	served++
	switch {
	case r.Path == "" || r.Path == "/":
		return guest.Text(200, "hello from Go")
	case r.Path == "/echo":
		return guest.NewResponse(200).
			WithHeader("x-echo-method", r.Method).
			WithHeader("x-echo-query", r.Query).
			WithHeader("x-echo-served", itoa(served)).
			WithBody(r.Body)
	case r.Path == "/ask" && r.Method == "GET":
		return ask(r)
	}
	return guest.NotFound()
}

func ask(r *guest.HttpRequest) *guest.HttpResponse {
	topic, ok := r.QueryValue("topic")
	if !ok {
		topic = "users.get"
	}
	payload, _ := r.QueryValue("q")
	reply, err := guest.Request(topic, []byte(payload), 500*time.Millisecond)
	var replyErr *guest.ErrorReply
	var callErr *guest.CallError
	switch {
	case err == nil:
		return guest.NewResponse(200).WithHeader("content-type", "application/json").WithBody(reply)
	case errors.As(err, &replyErr):
		return guest.Text(502, err.Error())
	case errors.As(err, &callErr) && callErr.Code == guest.CodeTimedOut:
		return guest.Text(504, err.Error())
	case errors.As(err, &callErr) && (callErr.Code == guest.CodeNoSubscriber || callErr.Code == guest.CodeOverloaded):
		return guest.Text(503, err.Error())
	}
	return guest.Text(500, err.Error())
}

// itoa without strconv: keeps the module a little smaller.
func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var digits []byte
	for ; n > 0; n /= 10 {
		digits = append([]byte{byte('0' + n%10)}, digits...)
	}
	return string(digits)
}

func init() {
	guest.OnInit(func() error {
		guest.Infof("hello-go started")
		return nil
	})
	guest.HandleHTTP(handle)
}

// main is not called: the module is a reactor (-buildmode=c-shared), driven by its exports.
func main() {}
