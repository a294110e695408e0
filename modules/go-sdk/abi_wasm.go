//go:build wasip1

// The ABI 1 exports and imports of docs/ABI.md, for `GOOS=wasip1 GOARCH=wasm go build
// -buildmode=c-shared` (Go >= 1.24): the build is a WASI reactor whose `_initialize` starts the
// Go runtime and runs the packages' init functions, which register the module's parts.

package guest

import (
	"runtime"
	"unsafe"
)

//go:wasmimport env publish_message
func publishMessage(ptr unsafe.Pointer, size uint32) int32

//go:wasmimport env publish_batch
func publishBatch(ptr unsafe.Pointer, size uint32, timeoutMs int32) int32

//go:wasmimport env subscribe_topic
func subscribeTopic(ptr unsafe.Pointer, size uint32, handler int32) int32

//go:wasmimport env request
func requestImport(ptr unsafe.Pointer, size uint32, timeoutMs int32) int64

//go:wasmimport env log_at
func logAt(level int32, ptr unsafe.Pointer, size uint32)

//go:wasmimport env ws_broadcast
func wsBroadcast(topicPtr unsafe.Pointer, topicLen uint32, payloadPtr unsafe.Pointer, payloadLen uint32)

// Buffers handed to the host (from alloc, and handle's responses) stay referenced here until
// the host gives them back: Go's collector does not move memory, but it would free a buffer
// nothing points to.
var pinned = map[uintptr][]byte{}

func pin(buf []byte) unsafe.Pointer {
	if len(buf) == 0 {
		buf = make([]byte, 1)[:0]
	}
	ptr := unsafe.Pointer(unsafe.SliceData(buf))
	pinned[uintptr(ptr)] = buf[:cap(buf)]
	return ptr
}

// unpin takes back a buffer the host returned: ours again, no longer pinned. A pointer that
// isn't one of ours is read in place.
func unpin(ptr unsafe.Pointer, size uint32) []byte {
	if buf, ok := pinned[uintptr(ptr)]; ok {
		delete(pinned, uintptr(ptr))
		if int(size) <= len(buf) {
			return buf[:size]
		}
	}
	return unsafe.Slice((*byte)(ptr), size)
}

func bytesPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func stringPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

func sysPublish(encoded []byte) int32 {
	code := publishMessage(bytesPtr(encoded), uint32(len(encoded)))
	runtime.KeepAlive(encoded)
	return code
}

func sysPublishBatch(encoded []byte, timeoutMs int32) int32 {
	code := publishBatch(bytesPtr(encoded), uint32(len(encoded)), timeoutMs)
	runtime.KeepAlive(encoded)
	return code
}

func sysSubscribe(pattern string) int32 {
	code := subscribeTopic(stringPtr(pattern), uint32(len(pattern)), 0)
	runtime.KeepAlive(pattern)
	return code
}

func sysRequest(encoded []byte, timeoutMs int32) ([]byte, int64) {
	packed := requestImport(bytesPtr(encoded), uint32(len(encoded)), timeoutMs)
	runtime.KeepAlive(encoded)
	if packed < 0 {
		return nil, packed
	}
	// The reply was written into a buffer from our alloc: take it back.
	addr, size := uintptr(packed>>32), uint32(packed)
	buf, ok := pinned[addr]
	if !ok || int(size) > len(buf) {
		return nil, int64(CodeInvalid)
	}
	delete(pinned, addr)
	return buf[:size], 0
}

func sysLog(level int32, text string) {
	logAt(level, stringPtr(text), uint32(len(text)))
	runtime.KeepAlive(text)
}

func sysBroadcast(topic string, payload []byte) {
	wsBroadcast(stringPtr(topic), uint32(len(topic)), bytesPtr(payload), uint32(len(payload)))
	runtime.KeepAlive(topic)
	runtime.KeepAlive(payload)
}

//go:wasmexport modhost_abi_version
func exportAbiVersion() int32 { return 1 }

//go:wasmexport alloc
func exportAlloc(size uint32) unsafe.Pointer { return pin(make([]byte, size)) }

//go:wasmexport dealloc
func exportDealloc(ptr unsafe.Pointer, _ uint32) { delete(pinned, uintptr(ptr)) }

//go:wasmexport init
func exportInit() { start() }

//go:wasmexport handle
func exportHandle(ptr unsafe.Pointer, size uint32) uint64 {
	var response *HttpResponse
	if request, err := DecodeHttpRequest(unpin(ptr, size)); err != nil {
		Log(LevelError, err.Error())
		response = Text(400, err.Error())
	} else {
		response = serve(&request)
	}
	out := response.Encode()
	return uint64(uintptr(pin(out)))<<32 | uint64(len(out))
}

//go:wasmexport on_message
func exportOnMessage(ptr unsafe.Pointer, size uint32) {
	message, err := DecodeMessage(unpin(ptr, size))
	if err != nil {
		Log(LevelError, err.Error())
		return
	}
	deliver(message)
}

//go:wasmexport on_messages
func exportOnMessages(ptr unsafe.Pointer, size uint32) {
	if err := deliverBatch(unpin(ptr, size), deliver); err != nil {
		Log(LevelError, err.Error())
	}
}

//go:wasmexport drain
func exportDrain() int32 { return int32(drainMillis()) }
