// Unit tests with the SDK's recording stand-in for the host (`go test`, natively).
package main

import (
	"testing"

	"modhost.local/guest"
)

func TestHello(t *testing.T) {
	guest.Start()
	if logs := guest.TakeLogs(); len(logs) != 1 || logs[0].Text != "hello-go started" {
		t.Fatalf("init logs: %+v", logs)
	}
	response := guest.Call(&guest.HttpRequest{Method: "GET"})
	if response.Status != 200 || string(response.Body) != "hello from Go" {
		t.Fatalf("%d %q", response.Status, response.Body)
	}
}

func TestEcho(t *testing.T) {
	response := guest.Call(&guest.HttpRequest{Method: "POST", Path: "/echo", Query: "a=1", Body: []byte("ping")})
	method, _ := response.Header("x-echo-method")
	query, _ := response.Header("x-echo-query")
	if response.Status != 200 || string(response.Body) != "ping" || method != "POST" || query != "a=1" {
		t.Fatalf("%+v", response)
	}
}

func TestAskRelaysRepliesAndErrors(t *testing.T) {
	guest.SetResponder(func(request guest.Message) (guest.Message, guest.Code) {
		if string(request.Payload) == "7" {
			return guest.Message{Kind: guest.KindResponse, Payload: []byte(`{"id":7}`)}, 0
		}
		return guest.Message{Kind: guest.KindError, Payload: []byte("no such user")}, 0
	})
	defer guest.SetResponder(nil)
	found := guest.Call(&guest.HttpRequest{Method: "GET", Path: "/ask", Query: "q=7"})
	if found.Status != 200 || string(found.Body) != `{"id":7}` {
		t.Fatalf("%d %q", found.Status, found.Body)
	}
	missing := guest.Call(&guest.HttpRequest{Method: "GET", Path: "/ask", Query: "q=8"})
	if missing.Status != 502 {
		t.Fatalf("%d %q", missing.Status, missing.Body)
	}
	guest.SetResponder(nil)
	nobody := guest.Call(&guest.HttpRequest{Method: "GET", Path: "/ask", Query: "topic=none"})
	if nobody.Status != 503 {
		t.Fatalf("%d %q", nobody.Status, nobody.Body)
	}
}
