;; The puppet: an ABI 1 module whose `handle` runs the request body as a script of host import
;; calls, with arguments the fuzzer chose. Built by `src/puppet.rs`, which documents the
;; script format. The request must have empty method, path and query and no headers, so the
;; body starts 40 bytes into the encoded HttpRequest.
;;
;; Memory: 0..1024 unused, 1024.. the response (status, no headers, body = one i64 result per
;; operation), 4096.. the bump heap, reset when an export returns (calls never overlap).
(module
  (import "env" "publish" (func $publish (param i32 i32 i32 i32)))
  (import "env" "subscribe" (func $subscribe (param i32 i32 i32)))
  (import "env" "ws_broadcast" (func $ws_broadcast (param i32 i32 i32 i32)))
  (import "env" "log" (func $log (param i32 i32)))
  (import "env" "publish_message" (func $publish_message (param i32 i32) (result i32)))
  (import "env" "subscribe_topic" (func $subscribe_topic (param i32 i32 i32) (result i32)))
  (import "env" "unsubscribe" (func $unsubscribe (param i32 i32) (result i32)))
  (import "env" "request" (func $request (param i32 i32 i32) (result i64)))
  (import "env" "log_at" (func $log_at (param i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))

  (func (export "modhost_abi_version") (result i32) (i32.const 1))

  ;; A bump allocator that grows memory when it runs out (the host refuses a pointer past
  ;; the end if the grow failed).
  (func (export "alloc") (param $len i32) (result i32)
    (local $ptr i32) (local $end i64) (local $size i64)
    (local.set $ptr (global.get $heap))
    (local.set $end (i64.add (i64.extend_i32_u (local.get $ptr)) (i64.extend_i32_u (local.get $len))))
    (local.set $size (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $end) (local.get $size))
      (then (drop (memory.grow (i32.wrap_i64
        (i64.shr_u (i64.add (i64.sub (local.get $end) (local.get $size)) (i64.const 65535))
                   (i64.const 16)))))))
    (global.set $heap (i32.wrap_i64 (local.get $end)))
    (local.get $ptr))

  ;; Mode 0: `value` is an absolute address; 1: relative to the body; 2: relative to the end
  ;; of memory (a negative value points below it).
  (func $pointer (param $value i32) (param $mode i32) (param $body i32) (result i32)
    (if (result i32) (i32.eq (local.get $mode) (i32.const 1))
      (then (i32.add (local.get $value) (local.get $body)))
      (else (if (result i32) (i32.eq (local.get $mode) (i32.const 2))
        (then (i32.add (local.get $value) (i32.shl (memory.size) (i32.const 16))))
        (else (local.get $value))))))

  (func (export "handle") (param $ptr i32) (param $len i32) (result i64)
    (local $body i32) (local $count i32) (local $i i32) (local $record i32)
    (local $mode i32) (local $a i32) (local $b i32) (local $c i32) (local $d i32)
    (local $result i64)
    (local.set $body (i32.add (local.get $ptr) (i32.const 40)))
    (local.set $count (i32.load (local.get $body)))
    (if (i32.gt_u (local.get $count) (i32.const 256)) (then (local.set $count (i32.const 256))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $record
          (i32.add (i32.add (local.get $body) (i32.const 4)) (i32.mul (local.get $i) (i32.const 24))))
        (local.set $mode (i32.load offset=4 (local.get $record)))
        (local.set $a (call $pointer (i32.load offset=8 (local.get $record))
          (i32.and (local.get $mode) (i32.const 3)) (local.get $body)))
        (local.set $b (i32.load offset=12 (local.get $record)))
        (local.set $c (call $pointer (i32.load offset=16 (local.get $record))
          (i32.and (i32.shr_u (local.get $mode) (i32.const 2)) (i32.const 3)) (local.get $body)))
        (local.set $d (i32.load offset=20 (local.get $record)))
        (local.set $result (i64.const 0))
        (block $op_done
          (block $trap (block $grow (block $log_at (block $request (block $unsubscribe
          (block $subscribe_topic (block $publish_message (block $log (block $ws_broadcast
          (block $subscribe (block $publish
            (br_table $publish $subscribe $ws_broadcast $log $publish_message $subscribe_topic
                      $unsubscribe $request $log_at $grow $trap $op_done
                      (i32.load (local.get $record))))
            (call $publish (local.get $a) (local.get $b) (local.get $c) (local.get $d))
            (br $op_done))
            (call $subscribe (local.get $a) (local.get $b) (local.get $c))
            (br $op_done))
            (call $ws_broadcast (local.get $a) (local.get $b) (local.get $c) (local.get $d))
            (br $op_done))
            (call $log (local.get $a) (local.get $b))
            (br $op_done))
            (local.set $result (i64.extend_i32_s (call $publish_message (local.get $a) (local.get $b))))
            (br $op_done))
            (local.set $result (i64.extend_i32_s
              (call $subscribe_topic (local.get $a) (local.get $b) (local.get $c))))
            (br $op_done))
            (local.set $result (i64.extend_i32_s (call $unsubscribe (local.get $a) (local.get $b))))
            (br $op_done))
            (local.set $result (call $request (local.get $a) (local.get $b) (local.get $c)))
            (br $op_done))
            (call $log_at (local.get $c) (local.get $a) (local.get $b))
            (br $op_done))
            (local.set $result (i64.extend_i32_s (memory.grow (local.get $b))))
            (br $op_done))
          unreachable)
        (i64.store (i32.add (i32.const 1042) (i32.shl (local.get $i) (i32.const 3)))
          (local.get $result))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    ;; HttpResponse { status: 200, headers: [], body: the results }
    (i32.store16 (i32.const 1024) (i32.const 200))
    (i64.store (i32.const 1026) (i64.const 0))
    (i64.store (i32.const 1034) (i64.extend_i32_u (i32.shl (local.get $count) (i32.const 3))))
    (global.set $heap (i32.const 4096))
    (i64.or (i64.shl (i64.const 1024) (i64.const 32))
            (i64.extend_i32_u (i32.add (i32.const 18) (i32.shl (local.get $count) (i32.const 3))))))

  ;; Whatever it subscribed to arrives here and is dropped.
  (func (export "on_message") (param $ptr i32) (param $len i32)
    (global.set $heap (i32.const 4096)))
)
