// Unit tests with the SDK's recording stand-in for the host (`go test`, natively).
package main

import (
	"slices"
	"testing"

	"modhost.local/guest"
)

func TestAnswersAndRelays(t *testing.T) {
	guest.Start()
	if subs := guest.Subscriptions(); !slices.Equal(subs, []string{"upper.go", "greetings.*"}) {
		t.Fatalf("subscriptions: %v", subs)
	}
	guest.Deliver(guest.Message{Topic: "upper.go", Kind: guest.KindRequest, ID: 9, Payload: []byte("hi go")})
	guest.Deliver(guest.Message{Topic: "upper.go", Kind: guest.KindRequest, ID: 10})
	published := guest.TakePublished()
	if len(published) != 2 ||
		published[0].Kind != guest.KindResponse || published[0].ID != 9 || string(published[0].Payload) != "HI GO" ||
		published[1].Kind != guest.KindError || published[1].ID != 10 {
		t.Fatalf("replies: %+v", published)
	}
	guest.Deliver(guest.Message{Topic: "greetings.hello", Kind: guest.KindEvent, Payload: []byte("hello")})
	guest.Deliver(guest.Message{Topic: "other", Kind: guest.KindEvent, Payload: []byte("no")})
	broadcasts := guest.TakeBroadcasts()
	if len(broadcasts) != 1 || broadcasts[0].Topic != "shout" || string(broadcasts[0].Payload) != "HELLO" {
		t.Fatalf("broadcasts: %+v", broadcasts)
	}
	status := guest.Call(&guest.HttpRequest{Method: "GET"})
	if string(status.Body) != `{"answered":1,"relayed":1}` {
		t.Fatalf("%s", status.Body)
	}
}
