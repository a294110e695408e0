// HTTP helpers for handlers: building responses, reading the query.

package guest

import (
	"net/url"
	"strconv"
)

// NewResponse is an empty response with status.
func NewResponse(status uint16) *HttpResponse { return &HttpResponse{Status: status} }

// Text is a response with status and a text/plain body.
func Text(status uint16, body string) *HttpResponse {
	return NewResponse(status).WithHeader("content-type", "text/plain; charset=utf-8").WithBody([]byte(body))
}

// NotFound is `404 not found`.
func NotFound() *HttpResponse { return Text(404, "not found") }

// WithHeader adds a header and returns the response.
func (p *HttpResponse) WithHeader(name, value string) *HttpResponse {
	p.Headers = append(p.Headers, Header{Name: name, Value: []byte(value)})
	return p
}

// WithBody sets the body and returns the response.
func (p *HttpResponse) WithBody(body []byte) *HttpResponse {
	p.Body = body
	return p
}

// QueryValue is the first value of the query parameter name, percent-decoded ('+' is a
// space), and whether it was there.
func (q *HttpRequest) QueryValue(name string) (string, bool) {
	values, err := url.ParseQuery(q.Query)
	if err != nil {
		return "", false
	}
	if v, ok := values[name]; ok && len(v) > 0 {
		return v[0], true
	}
	return "", false
}

// QueryInt is the query parameter name as an integer, or fallback when absent or not one.
func (q *HttpRequest) QueryInt(name string, fallback int) int {
	if v, ok := q.QueryValue(name); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return fallback
}
