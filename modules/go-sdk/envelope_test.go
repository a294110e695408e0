// The envelope code against the golden vectors of crates/binary/test_data (the bytes the
// Rust side pins): each decodes to the documented values and re-encodes to the same bytes,
// and every truncation, a trailing byte and an unknown kind are refused.

package guest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func golden(t *testing.T, name string) []byte {
	t.Helper()
	path := filepath.Join("..", "..", "crates", "binary", "test_data", name+".bin")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the golden vector: %v", err)
	}
	return data
}

// refusesDamage checks that every strict prefix and the input plus one byte are refused.
func refusesDamage[T any](t *testing.T, name string, data []byte, decode func([]byte) (T, error)) {
	t.Helper()
	for n := 0; n < len(data); n++ {
		if _, err := decode(data[:n]); err == nil {
			t.Errorf("%s: the first %d of %d bytes decoded", name, n, len(data))
		}
	}
	_, err := decode(append(append([]byte{}, data...), 0))
	if err == nil || !strings.Contains(err.Error(), "trailing") {
		t.Errorf("%s with a trailing byte: %v", name, err)
	}
}

func TestGoldenMessages(t *testing.T) {
	cases := []struct {
		name string
		want Message
	}{
		{"message_request", Message{Topic: "users.get", Kind: KindRequest, ID: 42, Payload: []byte("7")}},
		{"message_event", Message{Topic: "users.created", Kind: KindEvent, Payload: []byte(`{"id":7}`)}},
		{"message_error", Message{Topic: "users.get", Kind: KindError, ID: 42, Payload: []byte("no such user")}},
	}
	for _, c := range cases {
		data := golden(t, c.name)
		got, err := DecodeMessage(data)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got.Topic != c.want.Topic || got.Kind != c.want.Kind || got.ID != c.want.ID || !bytes.Equal(got.Payload, c.want.Payload) {
			t.Errorf("%s: decoded %+v, want %+v", c.name, got, c.want)
		}
		if !bytes.Equal(c.want.Encode(), data) {
			t.Errorf("%s: encoding differs from the golden bytes:\n%x\n%x", c.name, c.want.Encode(), data)
		}
		refusesDamage(t, c.name, data, DecodeMessage)
	}
	empty := golden(t, "message_empty")
	if m, err := DecodeMessage(empty); err != nil || !bytes.Equal(m.Encode(), empty) {
		t.Errorf("message_empty: %+v %v", m, err)
	}
}

func TestGoldenBatch(t *testing.T) {
	batch := []Message{
		{Topic: "a.b", Kind: KindEvent, Payload: []byte("1")},
		{Topic: "c", Kind: KindRequest, ID: 9},
	}
	if got, want := EncodeBatch(batch), golden(t, "message_batch"); !bytes.Equal(got, want) {
		t.Fatalf("EncodeBatch differs from the golden bytes:\n%x\n%x", got, want)
	}
}

func TestUnknownKindIsRefused(t *testing.T) {
	data := golden(t, "message_request")
	data[17] = 9 // the kind's first byte, after the 8-byte length and "users.get"
	_, err := DecodeMessage(data)
	if err == nil || !strings.Contains(err.Error(), `field "kind" at byte 17`) {
		t.Fatalf("an unknown kind: %v", err)
	}
}

func TestGoldenHttpRequests(t *testing.T) {
	data := golden(t, "http_request")
	got, err := DecodeHttpRequest(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Method != "POST" || got.Path != "/7" || got.Query != "verbose=1" || string(got.Body) != `{"name":"ada"}` {
		t.Errorf("decoded %+v", got)
	}
	if token, ok := got.Header("X-Token"); !ok || token != "s3cret" {
		t.Errorf("x-token: %q %v", token, ok)
	}
	if v, ok := got.QueryValue("verbose"); !ok || v != "1" {
		t.Errorf("query verbose: %q %v", v, ok)
	}
	if !bytes.Equal(got.Encode(), data) {
		t.Errorf("re-encoding differs")
	}
	refusesDamage(t, "http_request", data, DecodeHttpRequest)

	minimal := golden(t, "http_request_minimal")
	want := HttpRequest{Method: "GET"}
	if !bytes.Equal(want.Encode(), minimal) {
		t.Errorf("http_request_minimal: %x", want.Encode())
	}
	refusesDamage(t, "http_request_minimal", minimal, DecodeHttpRequest)
}

func TestGoldenHttpResponse(t *testing.T) {
	data := golden(t, "http_response")
	want := NewResponse(201).WithHeader("content-type", "application/json").WithBody([]byte(`{"id":7}`))
	if !bytes.Equal(want.Encode(), data) {
		t.Fatalf("encoding differs:\n%x\n%x", want.Encode(), data)
	}
	got, err := DecodeHttpResponse(data)
	if err != nil || got.Status != 201 || string(got.Body) != `{"id":7}` {
		t.Fatalf("decoded %+v %v", got, err)
	}
	refusesDamage(t, "http_response", data, DecodeHttpResponse)
}

func TestHugeCountsFailWithoutAllocating(t *testing.T) {
	// A header count of 2^60 in a 20-byte input: refused before any allocation.
	data := []byte{200, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if _, err := DecodeHttpResponse(data); err == nil || !strings.Contains(err.Error(), `field "headers" at byte 2`) {
		t.Fatalf("%v", err)
	}
	payload := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	if _, err := DecodeMessage(payload); err == nil || !strings.Contains(err.Error(), `field "payload" at byte 16`) {
		t.Fatalf("%v", err)
	}
}

func TestInvalidUtf8IsRefused(t *testing.T) {
	data := Message{Topic: "ab", Kind: KindEvent}.Encode()
	data[8] = 0xff
	if _, err := DecodeMessage(data); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("%v", err)
	}
}

// The topic vectors (binary::topic) for the "match" lines: the SDK's dispatch follows them.
func TestTopicMatchingFollowsTheVectors(t *testing.T) {
	path := filepath.Join("..", "..", "crates", "binary", "test_data", "topics.txt")
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, line := range strings.Split(string(text), "\n") {
		words := strings.Fields(line)
		if len(words) != 3 || (words[0] != "match" && words[0] != "!match") {
			continue
		}
		if got := Matches(words[1], words[2]); got != (words[0] == "match") {
			t.Errorf("%s: Matches says %v", line, got)
		}
		checked++
	}
	if checked < 5 {
		t.Fatalf("only %d match vectors in %s", checked, path)
	}
}
