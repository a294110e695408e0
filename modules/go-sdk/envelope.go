// Package guest is modhost's SDK for modules written in Go (ABI 1, docs/ABI.md).
//
// This file is the envelope encoding of docs/wire-format.md: HttpRequest, HttpResponse,
// Header and Message, little-endian, u64 lengths and counts, no padding. It has no
// WebAssembly-specific code, so `go test` runs it natively against the golden vectors in
// crates/binary/test_data.
package guest

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Kind is a Message's kind.
type Kind uint32

// The four message kinds; any other value on the wire is an error.
const (
	KindEvent    Kind = 0
	KindRequest  Kind = 1 // a request: answer it with Reply or ReplyError
	KindResponse Kind = 2
	KindError    Kind = 3 // a reply saying why the request failed (payload: UTF-8 text)
)

// String names the kind as the Rust side does.
func (k Kind) String() string {
	switch k {
	case KindEvent:
		return "Event"
	case KindRequest:
		return "Request"
	case KindResponse:
		return "Response"
	case KindError:
		return "Error"
	}
	return fmt.Sprintf("Kind(%d)", uint32(k))
}

// Message is a bus message: an event, a request, or a reply to one.
type Message struct {
	Topic   string
	Kind    Kind
	ID      uint32 // correlates a request with its reply; 0 for events
	Payload []byte
}

// Header is one HTTP header; names arrive lower-case.
type Header struct {
	Name  string
	Value []byte
}

// HttpRequest is what the host passes to a module's handler.
type HttpRequest struct {
	Method  string
	Path    string // after /m/{name}: "" for /m/hello, "/7" for /m/hello/7
	Query   string // without the '?', still percent-encoded
	Headers []Header
	Body    []byte
}

// HttpResponse is what a handler answers.
type HttpResponse struct {
	Status  uint16
	Headers []Header
	Body    []byte
}

// DecodeError says which envelope and field could not be decoded, and where.
type DecodeError struct {
	Envelope string
	Field    string
	Offset   int
	Reason   string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("decoding %s: field %q at byte %d: %s", e.Envelope, e.Field, e.Offset, e.Reason)
}

// reader decodes fields in order, checking every length against the bytes that remain
// before anything is allocated.
type reader struct {
	envelope string
	data     []byte
	at       int
	err      *DecodeError
}

func (r *reader) fail(field, reason string) {
	if r.err == nil {
		r.err = &DecodeError{Envelope: r.envelope, Field: field, Offset: r.at, Reason: reason}
	}
}

func (r *reader) take(field string, n uint64) []byte {
	if r.err != nil {
		return nil
	}
	left := uint64(len(r.data) - r.at)
	if n > left {
		r.fail(field, fmt.Sprintf("truncated: needs %d bytes, %d left", n, left))
		return nil
	}
	out := r.data[r.at : r.at+int(n)]
	r.at += int(n)
	return out
}

func (r *reader) u16(field string) uint16 {
	if b := r.take(field, 2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32(field string) uint32 {
	if b := r.take(field, 4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64(field string) uint64 {
	if b := r.take(field, 8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

// bytes reads a u64 length and that many bytes (copied: the input buffer may be reused).
func (r *reader) bytes(field string) []byte {
	start := r.at
	n := r.u64(field)
	if r.err != nil {
		return nil
	}
	b := r.take(field, n)
	if b == nil {
		r.err.Offset = start
		return nil
	}
	return append([]byte{}, b...)
}

func (r *reader) str(field string) string {
	start := r.at
	b := r.bytes(field)
	if r.err == nil && !utf8.Valid(b) {
		r.at = start
		r.fail(field, "invalid UTF-8")
	}
	return string(b)
}

func (r *reader) headers(field string) []Header {
	start := r.at
	count := r.u64(field)
	if r.err != nil {
		return nil
	}
	// The smallest header is two empty lengths: 16 bytes.
	if left := uint64(len(r.data) - r.at); count > left/16 {
		r.at = start
		r.fail(field, fmt.Sprintf("truncated: %d headers need at least %d bytes, %d left", count, count*16, left))
		return nil
	}
	headers := make([]Header, 0, count)
	for i := uint64(0); i < count && r.err == nil; i++ {
		name := r.str(field)
		value := r.bytes(field)
		headers = append(headers, Header{Name: name, Value: value})
	}
	return headers
}

func (r *reader) finish() error {
	if r.err == nil && r.at != len(r.data) {
		r.fail("(end)", fmt.Sprintf("%d trailing bytes", len(r.data)-r.at))
	}
	if r.err != nil {
		return r.err
	}
	return nil
}

func putBytes(out []byte, b []byte) []byte {
	out = binary.LittleEndian.AppendUint64(out, uint64(len(b)))
	return append(out, b...)
}

func putString(out []byte, s string) []byte {
	out = binary.LittleEndian.AppendUint64(out, uint64(len(s)))
	return append(out, s...)
}

func putHeaders(out []byte, headers []Header) []byte {
	out = binary.LittleEndian.AppendUint64(out, uint64(len(headers)))
	for _, h := range headers {
		out = putString(out, h.Name)
		out = putBytes(out, h.Value)
	}
	return out
}

// Encode gives the message's wire bytes.
func (m Message) Encode() []byte {
	out := make([]byte, 0, 24+len(m.Topic)+len(m.Payload))
	out = putString(out, m.Topic)
	out = binary.LittleEndian.AppendUint32(out, uint32(m.Kind))
	out = binary.LittleEndian.AppendUint32(out, m.ID)
	return putBytes(out, m.Payload)
}

// EncodeBatch gives the wire bytes of a MessageBatch (docs/wire-format.md): the count, then
// each message's encoding back to back. What PublishBatch sends.
func EncodeBatch(messages []Message) []byte {
	size := 8
	for _, m := range messages {
		size += 24 + len(m.Topic) + len(m.Payload)
	}
	out := make([]byte, 0, size)
	out = binary.LittleEndian.AppendUint64(out, uint64(len(messages)))
	for _, m := range messages {
		out = putString(out, m.Topic)
		out = binary.LittleEndian.AppendUint32(out, uint32(m.Kind))
		out = binary.LittleEndian.AppendUint32(out, m.ID)
		out = putBytes(out, m.Payload)
	}
	return out
}

// DecodeMessage decodes a Message, refusing truncated input, unknown kinds, invalid UTF-8 in
// the topic and trailing bytes.
func DecodeMessage(data []byte) (Message, error) {
	r := reader{envelope: "Message", data: data}
	m := r.message()
	return m, r.finish()
}

func (r *reader) message() Message {
	var m Message
	m.Topic = r.str("topic")
	at := r.at
	m.Kind = Kind(r.u32("kind"))
	if r.err == nil && m.Kind > KindError {
		r.at = at
		r.fail("kind", fmt.Sprintf("unknown kind %d", uint32(m.Kind)))
	}
	m.ID = r.u32("id")
	m.Payload = r.bytes("payload")
	return m
}

// minMessageBytes is the size of a message with an empty topic and payload.
const minMessageBytes = 24

// deliverBatch hands each message of a MessageBatch (docs/wire-format.md) to handle, in order,
// decoding one at a time. Before each it writes the message's index into the batch's count
// field (the first 8 bytes): after an on_messages call that trapped or ran out of time the host
// reads there which message failed (docs/ABI.md). An undecodable message ends the batch with
// its error; the messages before it were handled.
func deliverBatch(data []byte, handle func(Message)) error {
	r := reader{envelope: "MessageBatch", data: data}
	count := r.u64("messages")
	if r.err == nil && count > uint64(len(data)-r.at)/minMessageBytes {
		r.at = 0
		r.fail("messages", fmt.Sprintf("%d messages cannot fit in %d bytes", count, len(data)))
	}
	for index := uint64(0); index < count && r.err == nil; index++ {
		m := r.message()
		if r.err != nil {
			break
		}
		binary.LittleEndian.PutUint64(data[:8], index)
		handle(m)
	}
	return r.finish()
}

// Encode gives the request's wire bytes.
func (q HttpRequest) Encode() []byte {
	out := putString(nil, q.Method)
	out = putString(out, q.Path)
	out = putString(out, q.Query)
	out = putHeaders(out, q.Headers)
	return putBytes(out, q.Body)
}

// DecodeHttpRequest decodes an HttpRequest with the same checks as DecodeMessage.
func DecodeHttpRequest(data []byte) (HttpRequest, error) {
	r := reader{envelope: "HttpRequest", data: data}
	var q HttpRequest
	q.Method = r.str("method")
	q.Path = r.str("path")
	q.Query = r.str("query")
	q.Headers = r.headers("headers")
	q.Body = r.bytes("body")
	return q, r.finish()
}

// Encode gives the response's wire bytes.
func (p HttpResponse) Encode() []byte {
	out := binary.LittleEndian.AppendUint16(make([]byte, 0, 2+8+8+len(p.Body)), p.Status)
	out = putHeaders(out, p.Headers)
	return putBytes(out, p.Body)
}

// DecodeHttpResponse decodes an HttpResponse with the same checks as DecodeMessage.
func DecodeHttpResponse(data []byte) (HttpResponse, error) {
	r := reader{envelope: "HttpResponse", data: data}
	var p HttpResponse
	p.Status = r.u16("status")
	p.Headers = r.headers("headers")
	p.Body = r.bytes("body")
	return p, r.finish()
}

func findHeader(headers []Header, name string) (string, bool) {
	for _, h := range headers {
		if strings.EqualFold(h.Name, name) {
			return string(h.Value), true
		}
	}
	return "", false
}

// Header is the first header called name (case-insensitive).
func (q *HttpRequest) Header(name string) (string, bool) { return findHeader(q.Headers, name) }

// Header is the first header called name (case-insensitive).
func (p *HttpResponse) Header(name string) (string, bool) { return findHeader(p.Headers, name) }
