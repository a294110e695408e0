// A module's parts, registered from the main package's init(): the HTTP handler, the message
// handlers by topic pattern, the init and drain hooks. The exports (abi_wasm.go) and the test
// stand-ins (abi_native.go) dispatch to them through serve, deliver and start.

package guest

import (
	"fmt"
	"strings"
)

// Handler answers one HTTP request to /m/{name}[/rest].
type Handler func(*HttpRequest) *HttpResponse

// MessageHandler acts on one bus message. A request (Kind KindRequest) is answered with Reply
// or ReplyError; one left unanswered makes the requester wait until its timeout.
type MessageHandler func(Message)

type route struct {
	pattern string
	handler MessageHandler
}

var module struct {
	init    func() error
	handle  Handler
	routes  []route
	other   MessageHandler
	drain   func() uint32
	started bool
}

// HandleHTTP sets the module's HTTP handler. Without one the module answers 404.
func HandleHTTP(h Handler) { module.handle = h }

// OnInit sets what runs once per instance, after the Go runtime has started and before the
// module takes traffic. An error (or a panic) refuses this version: the host keeps serving
// the previous one.
func OnInit(f func() error) { module.init = f }

// On subscribes to pattern (an exact topic, `prefix.*` or `*`) when the module starts and
// sends matching messages to h. The first matching pattern wins.
func On(pattern string, h MessageHandler) { module.routes = append(module.routes, route{pattern, h}) }

// OnOtherMessage handles messages no On pattern matches (subscriptions made by hand).
func OnOtherMessage(h MessageHandler) { module.other = h }

// OnDrain sets what the host asks while this version is retired: milliseconds to wait before
// asking again, 0 when done. Without it the module is done at once.
func OnDrain(f func() uint32) { module.drain = f }

// Matches reports whether the subscription pattern selects topic: an exact topic, `*`, or
// `prefix.*` (topics starting with `prefix.` and at least one more byte).
func Matches(pattern, topic string) bool {
	if pattern == "*" {
		return true
	}
	if prefix, ok := strings.CutSuffix(pattern, ".*"); ok && prefix != "" && !strings.Contains(prefix, "*") {
		return len(topic) > len(prefix)+1 && strings.HasPrefix(topic, prefix+".")
	}
	// Any other '*' makes an invalid pattern, which selects nothing.
	return !strings.Contains(pattern, "*") && pattern == topic
}

// start subscribes the On patterns and runs the init hook; an error panics, which the host
// sees as a failed init.
func start() {
	if module.started {
		return
	}
	module.started = true
	for _, r := range module.routes {
		if err := Subscribe(r.pattern); err != nil {
			panic(fmt.Sprintf("modhost guest: init: %v", err))
		}
	}
	if module.init != nil {
		if err := module.init(); err != nil {
			panic(fmt.Sprintf("modhost guest: init: %v", err))
		}
	}
}

// serve runs the HTTP handler; a panic is logged and answered 500, and the module keeps
// serving.
func serve(request *HttpRequest) (response *HttpResponse) {
	if module.handle == nil {
		return NotFound()
	}
	defer func() {
		if p := recover(); p != nil {
			Log(LevelError, fmt.Sprintf("handler panicked on %s %q: %v", request.Method, request.Path, p))
			response = Text(500, "internal error")
		}
	}()
	response = module.handle(request)
	if response == nil {
		response = NotFound()
	}
	return response
}

// deliver dispatches a message to its handler. A panic is logged (and a request answered with
// an Error reply) and the module keeps running.
func deliver(message Message) {
	defer func() {
		if p := recover(); p != nil {
			Log(LevelError, fmt.Sprintf("message handler panicked on %q: %v", message.Topic, p))
			if message.Kind == KindRequest {
				_, _ = ReplyError(message, fmt.Sprintf("handler panicked: %v", p))
			}
		}
	}()
	for _, r := range module.routes {
		if Matches(r.pattern, message.Topic) {
			r.handler(message)
			return
		}
	}
	if module.other != nil {
		module.other(message)
		return
	}
	Log(LevelDebug, fmt.Sprintf("no handler for a message on %q", message.Topic))
	if message.Kind == KindRequest {
		_, _ = ReplyError(message, fmt.Sprintf("no handler for %q", message.Topic))
	}
}

func drainMillis() uint32 {
	if module.drain == nil {
		return 0
	}
	return module.drain()
}
